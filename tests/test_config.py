"""The registry's configuration: distribution's config.yml format and REGISTRY_* overrides."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from pyreg.registry.config import (
    Config,
    ConfigError,
    config_from_json,
    config_to_json,
    load_config,
    parse_duration,
    split_addr,
)
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parent.parent

# Debian's /etc/docker/registry/config.yml (docker-registry 2.8), verbatim.
DEBIAN_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return load_config(str(path), env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return str(info.value)


# -- the embedded default -------------------------------------------------------------------------


def test_embedded_default() -> None:
    config = load_config(None, {})
    assert config.http.addr == "127.0.0.1:5000"
    assert (config.http.bind_host, config.http.bind_port) == ("127.0.0.1", 5000)
    assert config.storage.driver == "filesystem"
    assert config.storage.filesystem_root == "./registry-data"
    assert config.storage.delete_enabled is False
    assert config.auth == {} and config.proxy == {}
    purge = config.storage.uploadpurging
    assert (purge.enabled, purge.age, purge.interval, purge.dryrun) == (True, 168 * 3600, 24 * 3600, False)
    assert config.log_level == "info" and config.log.formatter == "text"


def test_empty_file_is_the_embedded_default(tmp_path: Path) -> None:
    assert load(tmp_path, "") == load_config(None, {})


def test_file_without_storage_uses_the_embedded_root(tmp_path: Path) -> None:
    assert load(tmp_path, "version: 0.1\n").storage.filesystem_root == "./registry-data"


def test_filesystem_without_root_is_distributions_default(tmp_path: Path) -> None:
    config = load(tmp_path, "storage:\n  filesystem: {}\n")
    assert config.storage.filesystem_root == "/var/lib/registry"


# -- distribution's own files ---------------------------------------------------------------------


def test_debian_config_loads_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load(tmp_path, DEBIAN_CONFIG)
    assert config.http.addr == ":5000" and config.http.bind_host == "0.0.0.0"
    assert config.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert config.storage.filesystem_root == "/var/lib/docker-registry"
    assert config.storage.delete_enabled is True
    assert config.storage.cache == {"blobdescriptor": "inmemory"}
    assert config.auth == {"htpasswd": {"realm": "basic-realm", "path": "/etc/docker/registry"}}
    assert config.log.fields == {"service": "registry"}
    # Health checks are distribution's alone: named once, not fatal.
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring configuration keys pyreg does not use: health"
    ]


def test_installed_debian_config_loads() -> None:
    path = Path("/etc/docker/registry/config.yml")
    if not path.exists():
        message = "Debian's docker-registry is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert load_config(str(path), {}).storage.driver == "filesystem"


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "config").glob("*.yml")), ids=lambda p: p.name)
def test_deploy_configs_load(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_config(str(path), {})
    assert not caplog.records  # every key in the examples is one pyreg reads


def test_deploy_configs_exist() -> None:
    names = {p.name for p in (REPO / "deploy" / "config").glob("*.yml")}
    assert {"minimal.yml", "full.yml"} <= names


def test_docker_compose_parses_and_names_a_real_config() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    registry = compose["services"]["registry"]
    sources = [v.split(":")[0] for v in registry["volumes"] if v.startswith("./")]
    assert sources and all((REPO / s).exists() for s in sources)
    assert set(compose["volumes"]) >= {v.split(":")[0] for v in registry["volumes"] if not v.startswith(".")}


# -- every key ------------------------------------------------------------------------------------


def test_log_keys(tmp_path: Path) -> None:
    config = load(tmp_path, "log:\n  level: DEBUG\n  formatter: json\n  accesslog: {disabled: true}\n")
    assert (config.log_level, config.log.formatter, config.log.accesslog_disabled) == ("debug", "json", True)


def test_legacy_loglevel(tmp_path: Path) -> None:
    assert load(tmp_path, "loglevel: warn\n").log_level == "warn"
    assert load(tmp_path, "loglevel: warn\nlog: {level: error}\n").log_level == "error"


def test_http_keys(tmp_path: Path) -> None:
    config = load(tmp_path, """\
http:
  addr: "[::1]:5001"
  prefix: /registry
  secret: s3cret
  host: https://registry.example.com
  relativeurls: true
  draintimeout: 30s
  tls: {certificate: /c.pem, key: /k.pem, clientcas: [/ca.pem]}
  headers: {Strict-Transport-Security: [max-age=31536000]}
""")
    http = config.http
    assert (http.bind_host, http.bind_port, http.prefix, http.secret) == ("::1", 5001, "/registry", "s3cret")
    assert (http.host, http.relativeurls, http.draintimeout) == ("https://registry.example.com", True, 30.0)
    assert (http.tls.certificate, http.tls.key, http.tls.clientcas) == ("/c.pem", "/k.pem", ["/ca.pem"])
    assert http.headers == {"Strict-Transport-Security": ["max-age=31536000"]}


def test_http_unix_socket(tmp_path: Path) -> None:
    config = load(tmp_path, "http: {net: unix, addr: /run/pyreg.sock}\n")
    assert (config.http.net, config.http.addr) == ("unix", "/run/pyreg.sock")


def test_storage_keys(tmp_path: Path) -> None:
    config = load(tmp_path, """\
storage:
  filesystem: {rootdirectory: /srv/registry, maxthreads: 100}
  delete: {enabled: true}
  redirect: {disable: true}
  cache: {blobdescriptor: inmemory}
  maintenance:
    uploadpurging: {enabled: true, age: 1h30m, interval: 10m, dryrun: true}
    readonly: {enabled: true}
""")
    s = config.storage
    assert (s.driver, s.filesystem_root, s.delete_enabled, s.redirect_disable, s.readonly) == (
        "filesystem", "/srv/registry", True, True, True)
    assert (s.uploadpurging.age, s.uploadpurging.interval, s.uploadpurging.dryrun) == (5400, 600, True)


def test_partial_uploadpurging_keeps_defaults(tmp_path: Path) -> None:
    purge = load(tmp_path, "storage:\n  maintenance:\n    uploadpurging: {age: 2h}\n").storage.uploadpurging
    assert (purge.enabled, purge.age, purge.interval) == (True, 7200, 24 * 3600)


def test_uploadpurging_disabled(tmp_path: Path) -> None:
    text = "storage:\n  maintenance:\n    uploadpurging: {enabled: false}\n"
    assert load(tmp_path, text).storage.uploadpurging.enabled is False


def test_inmemory_as_a_bare_name(tmp_path: Path) -> None:
    assert load(tmp_path, "storage: inmemory\n").storage.driver == "inmemory"


def test_s3_keys_are_kept_raw(tmp_path: Path) -> None:
    config = load(tmp_path, """\
storage:
  s3:
    bucket: images
    region: us-east-1
    regionendpoint: http://127.0.0.1:8333
    accesskey: AK
    secretkey: SK
    forcepathstyle: true
    secure: "false"
    rootdirectory: /pyreg
    chunksize: 10485760
    multipartcopythresholdsize: 33554432
""")
    assert config.storage.driver == "s3"
    assert config.storage.s3["secure"] == "false" and config.storage.s3["chunksize"] == 10485760
    assert config.storage.s3["regionendpoint"] == "http://127.0.0.1:8333"


def test_auth_htpasswd(tmp_path: Path) -> None:
    config = load(tmp_path, "auth:\n  htpasswd: {realm: r, path: /etc/htpasswd}\n")
    assert config.auth == {"htpasswd": {"realm": "r", "path": "/etc/htpasswd"}}


def test_auth_token(tmp_path: Path) -> None:
    text = """\
auth:
  token: {realm: "https://auth/token", service: reg, issuer: iss, rootcertbundle: /b.pem, autoredirect: false}
"""
    assert load(tmp_path, text).auth["token"]["service"] == "reg"


def test_proxy_is_kept_raw(tmp_path: Path) -> None:
    config = load(tmp_path, "proxy: {remoteurl: 'https://registry-1.docker.io', username: u, password: p, ttl: 72h}\n")
    assert config.proxy == {"remoteurl": "https://registry-1.docker.io", "username": "u",
                            "password": "p", "ttl": "72h"}


def test_proxy_ttl_zero(tmp_path: Path) -> None:
    assert load(tmp_path, "proxy: {remoteurl: 'http://up', ttl: 0}\n").proxy["ttl"] == 0


def test_catalog_maxentries(tmp_path: Path) -> None:
    assert load(tmp_path, "catalog: {maxentries: 50}\n").catalog_maxentries == 50
    assert load(tmp_path, "catalog: {maxentries: 0}\n").catalog_maxentries == 1000


# -- errors name the key --------------------------------------------------------------------------


def test_bad_boolean(tmp_path: Path) -> None:
    assert error(tmp_path, "storage:\n  delete: {enabled: maybe}\n") == (
        "storage.delete.enabled: expected a boolean, got 'maybe'")


@pytest.mark.parametrize("value", ["1 week", "10", "1h-5m", "", "h"])
def test_bad_duration(tmp_path: Path, value: str) -> None:
    text = f"storage:\n  maintenance:\n    uploadpurging: {{age: '{value}'}}\n"
    assert error(tmp_path, text).startswith("storage.maintenance.uploadpurging.age: expected a duration")


def test_bare_number_is_not_a_duration(tmp_path: Path) -> None:
    assert "got 3600" in error(tmp_path, "http: {draintimeout: 3600}\n")


def test_negative_duration(tmp_path: Path) -> None:
    assert "negative" in error(tmp_path, "storage:\n  maintenance:\n    uploadpurging: {interval: -1h}\n")


@pytest.mark.parametrize("addr", ["5000", "localhost", ":http", "host:99999", "::1:5000", ":"])
def test_bad_addr(tmp_path: Path, addr: str) -> None:
    assert error(tmp_path, f"http: {{addr: '{addr}'}}\n").startswith("http.addr: ")


def test_unknown_log_level(tmp_path: Path) -> None:
    assert error(tmp_path, "log: {level: verbose}\n") == (
        "log.level: expected one of error, warn, info, debug, got 'verbose'")


def test_unknown_formatter(tmp_path: Path) -> None:
    assert error(tmp_path, "log: {formatter: xml}\n").startswith("log.formatter: ")


@pytest.mark.parametrize("version", ["0.2", "1.0", "'abc'"])
def test_unsupported_version(tmp_path: Path, version: str) -> None:
    assert error(tmp_path, f"version: {version}\n").startswith("version: unsupported version")


def test_version_is_optional_and_may_be_a_string(tmp_path: Path) -> None:
    assert load(tmp_path, "version: '0.1'\n").version == "0.1"


def test_several_storage_drivers(tmp_path: Path) -> None:
    text = "storage:\n  filesystem: {rootdirectory: /a}\n  inmemory: {}\n  delete: {enabled: true}\n"
    assert error(tmp_path, text).startswith(
        "storage: exactly one storage driver allowed, got filesystem, inmemory")


def test_unsupported_storage_driver(tmp_path: Path) -> None:
    assert "unsupported storage driver 'gcs'" in error(tmp_path, "storage:\n  gcs: {bucket: b}\n")


def test_wrong_section_type(tmp_path: Path) -> None:
    assert error(tmp_path, "storage:\n  delete: true\n") == "storage.delete: expected a mapping, got True"
    assert error(tmp_path, "http: [1]\n") == "http: expected a mapping, got a list"


def test_two_auth_schemes(tmp_path: Path) -> None:
    text = "auth:\n  htpasswd: {realm: r, path: p}\n  token: {realm: r}\n"
    assert error(tmp_path, text).startswith("auth: exactly one auth scheme allowed")


def test_unknown_auth_scheme_is_fatal(tmp_path: Path) -> None:
    assert "unsupported auth scheme 'silly'" in error(tmp_path, "auth:\n  silly: {realm: r, service: s}\n")


def test_auth_required_keys(tmp_path: Path) -> None:
    assert error(tmp_path, "auth:\n  htpasswd: {realm: r}\n") == "auth.htpasswd.path: required by htpasswd auth"
    text = "auth:\n  token: {realm: r, service: s, issuer: i}\n"
    assert "rootcertbundle or jwks" in error(tmp_path, text)
    assert error(tmp_path, "auth: htpasswd\n").startswith("auth.htpasswd.realm: ")


def test_s3_errors(tmp_path: Path) -> None:
    assert error(tmp_path, "storage:\n  s3: {region: r}\n") == "storage.s3.bucket: required by the s3 driver"
    base = "storage:\n  s3:\n    bucket: b\n    region: r\n"
    assert error(tmp_path, base + "    secure: sometimes\n").startswith("storage.s3.secure: expected a boolean")
    assert error(tmp_path, base + "    chunksize: big\n").startswith("storage.s3.chunksize: expected an integer")
    assert "at least 5242880" in error(tmp_path, base + "    chunksize: 1024\n")


def test_proxy_needs_a_remote_url(tmp_path: Path) -> None:
    assert error(tmp_path, "proxy: {username: u}\n").startswith("proxy.remoteurl: expected a URL")
    assert error(tmp_path, "proxy: {remoteurl: 'ftp://x'}\n").startswith("proxy.remoteurl: ")


def test_tls_certificate_without_key(tmp_path: Path) -> None:
    assert error(tmp_path, "http:\n  tls: {certificate: /c.pem}\n").startswith("http.tls: ")


def test_headers_must_be_strings(tmp_path: Path) -> None:
    assert error(tmp_path, "http:\n  headers: {X-A: [{a: 1}]}\n").startswith("http.headers.X-A: ")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = error(tmp_path, "http:\n  addr: [\n")
    assert message.startswith(str(tmp_path / "config.yml") + ":") and "invalid YAML" in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(str(tmp_path / "absent.yml"), {})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in error(tmp_path, "- a\n- b\n")


# -- unknown keys: one warning --------------------------------------------------------------------


def test_unknown_keys_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load(tmp_path, "colour: blue\nhttp: {addr: ':5000', debug: {addr: ':5001'}}\nnotifications: {}\n"
                   "storage:\n  filesystem: {rootdirectory: /a, shards: 3}\n",
         {"REGISTRY_HTTP_NOPE": "1"})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "ignoring configuration keys pyreg does not use: REGISTRY_HTTP_NOPE, colour, notifications, "
        "http.debug, storage.filesystem.shards")


def test_clean_config_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load(tmp_path, "version: 0.1\nstorage:\n  cache: {blobdescriptor: inmemory}\n  filesystem: {}\n")
    assert not caplog.records


# -- environment overrides ------------------------------------------------------------------------


def test_env_overrides_file(tmp_path: Path) -> None:
    config = load(tmp_path, DEBIAN_CONFIG, {
        "REGISTRY_HTTP_ADDR": "127.0.0.1:6000",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/elsewhere",
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_LOG_LEVEL": "debug",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/etc/pyreg/htpasswd",
    })
    assert config.http.addr == "127.0.0.1:6000"
    assert config.storage.filesystem_root == "/elsewhere"
    assert config.storage.delete_enabled is False
    assert config.log_level == "debug"
    assert config.auth["htpasswd"] == {"realm": "basic-realm", "path": "/etc/pyreg/htpasswd"}


def test_env_values_are_yaml(tmp_path: Path) -> None:
    config = load_config(None, {"REGISTRY_STORAGE_DELETE_ENABLED": "true", "REGISTRY_CATALOG_MAXENTRIES": "7",
                                "REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS": "[DENY]"})
    assert config.storage.delete_enabled is True and config.catalog_maxentries == 7
    assert config.http.headers == {"x-frame-options": ["DENY"]}  # distribution lower-cases new keys


def test_env_creates_sections() -> None:
    config = load_config(None, {"REGISTRY_AUTH_HTPASSWD_REALM": "r", "REGISTRY_AUTH_HTPASSWD_PATH": "/p",
                                "REGISTRY_PROXY_REMOTEURL": "https://upstream",
                                "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "1h"})
    assert config.auth == {"htpasswd": {"realm": "r", "path": "/p"}}
    assert config.proxy == {"remoteurl": "https://upstream"}
    assert config.storage.uploadpurging.age == 3600
    assert config.storage.filesystem_root == "./registry-data"


def test_env_selects_s3_without_a_file() -> None:
    config = load_config(None, {"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_S3_REGION": "r",
                                "REGISTRY_STORAGE_S3_FORCEPATHSTYLE": "true"})
    assert config.storage.driver == "s3"
    assert config.storage.s3 == {"bucket": "b", "region": "r", "forcepathstyle": True}


def test_env_storage_replaces_the_files_storage(tmp_path: Path) -> None:
    # As distribution: REGISTRY_STORAGE=s3 replaces the whole section (delete included), then the
    # REGISTRY_STORAGE_S3_* variables, sorted after it, fill it in.
    config = load(tmp_path, DEBIAN_CONFIG, {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b",
                                            "REGISTRY_STORAGE_S3_REGION": "r"})
    assert config.storage.driver == "s3" and config.storage.s3 == {"bucket": "b", "region": "r"}
    assert config.storage.delete_enabled is False


def test_env_second_driver_is_an_error(tmp_path: Path) -> None:
    message = error(tmp_path, DEBIAN_CONFIG, {"REGISTRY_STORAGE_S3_BUCKET": "b"})
    assert "exactly one storage driver allowed, got filesystem, s3" in message
    assert "REGISTRY_STORAGE" in message


def test_env_error_names_the_variable(tmp_path: Path) -> None:
    assert error(tmp_path, DEBIAN_CONFIG, {"REGISTRY_STORAGE_DELETE_ENABLED": "maybe"}) == (
        "storage.delete.enabled (from REGISTRY_STORAGE_DELETE_ENABLED): expected a boolean, got 'maybe'")


def test_env_invalid_yaml(tmp_path: Path) -> None:
    assert error(tmp_path, "", {"REGISTRY_HTTP_ADDR": "[:5000"}).startswith("REGISTRY_HTTP_ADDR: invalid value")


def test_env_matches_existing_map_keys_case_insensitively(tmp_path: Path) -> None:
    config = load(tmp_path, "storage:\n  s3: {bucket: a, region: r}\n", {"REGISTRY_STORAGE_S3_BUCKET": "b"})
    assert config.storage.s3 == {"bucket": "b", "region": "r"}


def test_env_list_index(tmp_path: Path) -> None:
    config = load(tmp_path, "http:\n  tls: {certificate: c, key: k}\n",
                  {"REGISTRY_HTTP_TLS_CLIENTCAS_0": "/ca.pem"})
    assert config.http.tls.clientcas == ["/ca.pem"]


def test_env_section_as_yaml() -> None:
    config = load_config(None, {"REGISTRY_STORAGE_DELETE": "{enabled: true}"})
    assert config.storage.delete_enabled is True


def test_env_legacy_loglevel() -> None:
    assert load_config(None, {"REGISTRY_LOGLEVEL": "error"}).log_level == "error"


def test_env_is_case_sensitive(caplog: pytest.LogCaptureFixture) -> None:
    assert load_config(None, {"REGISTRY_http_addr": ":1"}).http.addr == "127.0.0.1:5000"
    assert "REGISTRY_http_addr" in caplog.text


def test_env_configuration_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("http: {addr: ':7000'}\n")
    assert load_config(None, {"REGISTRY_CONFIGURATION_PATH": str(path)}).http.addr == ":7000"


def test_env_other_variables_ignored() -> None:
    assert load_config(None, {"PATH": "/bin", "REGISTRYX": "1", "REGISTRY_VERSION": "9"}) == Config()


# -- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("168h", 168 * 3600), ("24h", 86400), ("1h30m", 5400), ("10s", 10), ("500ms", 0.5),
    ("1.5h", 5400), ("0", 0), ("2m3.5s", 123.5), ("100us", 1e-4), ("1µs", 1e-6), ("-1m", -60),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1d", "1.h.", "1 h", "+", "."])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_split_addr() -> None:
    assert split_addr(":5000") == ("0.0.0.0", 5000)
    assert split_addr("localhost:80") == ("localhost", 80)
    assert split_addr("[::]:5000") == ("::", 5000)


def test_json_round_trip(tmp_path: Path) -> None:
    config = load(tmp_path, DEBIAN_CONFIG, {"REGISTRY_HTTP_TLS_CERTIFICATE": "c", "REGISTRY_HTTP_TLS_KEY": "k"})
    assert config_from_json(config_to_json(config)) == config


def test_dockerfile_copies_what_exists() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    sources = [src for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]]
    assert sources and all((REPO / s).exists() for s in sources)
    assert "EXPOSE 5000" in lines and "VOLUME /var/lib/registry" in lines
    assert 'CMD ["serve", "/etc/pyreg/config.yml"]' in lines
