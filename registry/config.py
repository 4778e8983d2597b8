"""Registry configuration: distribution's `config.yml` format, with REGISTRY_* overrides.

A `config.yml` written for CNCF distribution loads unchanged: shared keys mean the same, keys pyreg
has no use for are ignored with one warning line, and every key can be overridden from the
environment the way distribution does it (`REGISTRY_` + the key path upper-cased and joined by `_`,
the value parsed as YAML). `load_config` works in three steps:

1. read the YAML file, or start from nothing (the embedded default fills every gap);
2. apply the REGISTRY_* overrides to the raw mapping, walking distribution's schema (its
   configuration/parser.go): struct fields match by upper-cased name, map keys are created
   lower-cased, a bare string names the single entry of `storage` and `auth`;
3. interpret and validate into `Config`; a bad value raises `ConfigError` naming the key, and the
   environment variable when the value came from one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import yaml

logger = logging.getLogger(__name__)

CONFIGURATION_PATH_ENV = "REGISTRY_CONFIGURATION_PATH"
DEFAULT_ADDR = "127.0.0.1:5000"
DEFAULT_ROOT = "./registry-data"  # the embedded default: no config at all
DISTRIBUTION_ROOT = "/var/lib/registry"  # distribution's default when `filesystem` has no root
LOG_LEVELS = ("error", "warn", "info", "debug")
LOG_FORMATTERS = ("text", "json", "logstash")
STORAGE_DRIVERS = ("filesystem", "s3", "inmemory")
AUTH_SCHEMES = ("htpasswd", "token")


class ConfigError(Exception):
    """An invalid configuration; the message names the key (and env var) at fault."""


@dataclass
class TLSConfig:
    certificate: str | None = None
    key: str | None = None
    clientcas: list[str] = field(default_factory=list)  # CA files: client certificates required


@dataclass
class HTTPConfig:
    addr: str = DEFAULT_ADDR  # HOST:PORT, ":PORT" for all interfaces; a path when net is "unix"
    secret: str | None = None
    prefix: str = ""  # "" or "/path" (no trailing slash): the API is at prefix + "/v2/"
    tls: TLSConfig = field(default_factory=TLSConfig)
    net: str = "tcp"  # "tcp" or "unix"
    host: str | None = None  # externally reachable base URL (distribution's http.host)
    relativeurls: bool = False
    headers: dict[str, list[str]] = field(default_factory=dict)
    draintimeout: float = 0.0  # seconds; 0 = wait for connections to finish

    @property
    def bind_host(self) -> str:
        return split_addr(self.addr)[0]

    @property
    def bind_port(self) -> int:
        return split_addr(self.addr)[1]


@dataclass
class UploadPurgingConfig:
    enabled: bool = True
    age: float = 168 * 3600.0  # seconds
    interval: float = 24 * 3600.0
    dryrun: bool = False


@dataclass
class StorageConfig:
    driver: str = "filesystem"  # "filesystem", "s3" or "inmemory"
    filesystem_root: str = DEFAULT_ROOT
    delete_enabled: bool = False
    redirect_disable: bool = False
    uploadpurging: UploadPurgingConfig = field(default_factory=UploadPurgingConfig)
    s3: dict[str, Any] = field(default_factory=dict)  # raw `storage.s3` keys, types validated
    readonly: bool = False  # storage.maintenance.readonly.enabled
    cache: dict[str, Any] = field(default_factory=dict)  # accepted, unused


@dataclass
class LogConfig:
    formatter: str = "text"  # "text", "json" or "logstash"
    fields: dict[str, Any] = field(default_factory=dict)  # static fields added to each record
    accesslog_disabled: bool = False


@dataclass
class Config:
    version: str = "0.1"
    log_level: str = "info"  # one of LOG_LEVELS
    http: HTTPConfig = field(default_factory=HTTPConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: dict[str, Any] = field(default_factory=dict)  # raw: {"htpasswd": {...}} or {"token": {...}}
    proxy: dict[str, Any] = field(default_factory=dict)  # raw: remoteurl, username, password, ttl
    log: LogConfig = field(default_factory=LogConfig)
    catalog_maxentries: int = 1000


def load_config(path: str | None, environ: Mapping[str, str]) -> Config:
    """The effective configuration: `path` (or $REGISTRY_CONFIGURATION_PATH), then REGISTRY_* overrides."""
    path = path or environ.get(CONFIGURATION_PATH_ENV) or None
    raw = _read_file(path) if path else {}
    origins: dict[str, str] = {}
    unused: list[str] = []
    raw = _apply_environ(raw, environ, origins, unused)
    config = _Reader(origins, unused).config(raw)
    if unused:
        logger.warning("ignoring configuration keys pyreg does not use: %s", ", ".join(unused))
    return config


# -- durations and addresses ----------------------------------------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d*(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`168h`, `1h30m`, `500ms`, `-1.5s`), as time.ParseDuration reads it."""
    rest = text[1:] if text[:1] in "+-" else text
    sign = -1.0 if text.startswith("-") else 1.0
    if rest == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(rest):
        m = _DURATION_PART.match(rest, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def split_addr(addr: str) -> tuple[str, int]:
    """(host, port) of a Go listen address; an empty host (":5000") means every interface."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT such as ':5000', got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host needs brackets, as in '[::1]:5000', got {addr!r}")
    return host or "0.0.0.0", int(port)


# -- step 1: the file -----------------------------------------------------------------------------


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of configuration keys, got {_show(raw)}")
    return raw


# -- step 2: the environment ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """A node of distribution's Configuration type, as far as env overrides need to know it."""

    kind: str  # "struct" (fixed keys), "map" (free keys), "list", "any" (interface{}), "leaf"
    fields: Mapping[str, _Node] = field(default_factory=dict)
    elem: _Node | None = None
    named: bool = False  # a bare string names the single entry: `storage: s3`, `auth: htpasswd`


_LEAF, _ANY = _Node("leaf"), _Node("any")
_PARAMS = _Node("map", elem=_ANY)


def _struct(**fields: _Node) -> _Node:
    return _Node("struct", fields)


# Sections pyreg does not read are `any`: overrides still apply, and the warning names them.
_SCHEMA = _struct(
    version=_LEAF,
    loglevel=_LEAF,
    log=_struct(accesslog=_struct(disabled=_LEAF), level=_LEAF, formatter=_LEAF, fields=_PARAMS,
                hooks=_Node("list", elem=_ANY), reportcaller=_LEAF),
    storage=_Node("map", elem=_PARAMS, named=True),
    auth=_Node("map", elem=_PARAMS, named=True),
    http=_struct(addr=_LEAF, net=_LEAF, host=_LEAF, prefix=_LEAF, secret=_LEAF, relativeurls=_LEAF,
                 draintimeout=_LEAF, headers=_Node("map", elem=_Node("list", elem=_LEAF)),
                 tls=_struct(certificate=_LEAF, key=_LEAF, clientcas=_Node("list", elem=_LEAF),
                             minimumtls=_LEAF, ciphersuites=_Node("list", elem=_LEAF), letsencrypt=_ANY),
                 debug=_ANY, http2=_struct(disabled=_LEAF)),
    catalog=_struct(maxentries=_LEAF),
    proxy=_struct(remoteurl=_LEAF, username=_LEAF, password=_LEAF, ttl=_LEAF),
    middleware=_ANY, reporting=_ANY, notifications=_ANY, redis=_ANY, health=_ANY,
    compatibility=_ANY, validation=_ANY, policy=_ANY,
)


def _apply_environ(raw: dict[str, Any], environ: Mapping[str, str], origins: dict[str, str],
                   unused: list[str]) -> dict[str, Any]:
    # Distribution applies the variables in lexical order, so REGISTRY_STORAGE=s3 (which replaces
    # the whole storage section) comes before the REGISTRY_STORAGE_S3_* that fill it in.
    raw = _named(raw, _SCHEMA)
    for name in sorted(environ):
        if not name.startswith("REGISTRY_") or name in (CONFIGURATION_PATH_ENV, "REGISTRY_VERSION"):
            continue
        raw = _override(raw, _SCHEMA, name.split("_")[1:], (), environ[name], name, origins, unused)
    return raw


def _named(value: Any, node: _Node) -> Any:
    """Distribution's `storage: s3` spelling as the mapping it stands for, at every `named` node."""
    if node.named and isinstance(value, str):
        return {value: {}}
    if node.kind == "struct" and isinstance(value, dict):
        return {k: _named(v, node.fields[k]) if k in node.fields else v for k, v in value.items()}
    return value


def _override(cur: Any, node: _Node, path: list[str], keys: tuple[str, ...], text: str, name: str,
              origins: dict[str, str], unused: list[str]) -> Any:
    """`cur` with the value at `path` replaced by `text` parsed as YAML (as parser.go does)."""
    if not path:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{name}: invalid value {text!r}: {getattr(e, 'problem', e)}") from None
        origins[".".join(keys)] = name
        return _named(value, node)
    head, rest = path[0], path[1:]
    if node.kind == "struct":
        sub = {f.upper(): f for f in node.fields}.get(head)
        if sub is None:  # distribution: "Ignoring unrecognized environment variable"
            unused.append(name)
            return cur
        out = dict(cur) if isinstance(cur, dict) else {}
        out[sub] = _override(out.get(sub), node.fields[sub], rest, (*keys, sub), text, name, origins, unused)
        return out
    if node.kind == "list" or (node.kind == "any" and isinstance(cur, list)):
        items = list(cur) if isinstance(cur, list) else []
        if not head.isdigit() or int(head) > len(items):
            raise ConfigError(f"{name}: {head!r} is not an index of {'.'.join(keys)}")
        if int(head) == len(items):
            items.append(None)
        elem = node.elem or _ANY
        items[int(head)] = _override(items[int(head)], elem, rest, (*keys, head), text, name, origins, unused)
        return items
    if node.kind in ("map", "any"):
        out = dict(cur) if isinstance(cur, dict) else {}
        elem = node.elem or _ANY
        if rest:  # descend into an existing key, matched case-insensitively
            for k in out:
                if isinstance(k, str) and k.upper() == head and out[k] is not None:
                    out[k] = _override(out[k], elem, rest, (*keys, k), text, name, origins, unused)
                    return out
        # (Re)create the key, lower-cased as distribution does.
        out[head.lower()] = _override(None, elem, rest, (*keys, head.lower()), text, name, origins, unused)
        return out
    unused.append(name)  # a path that goes below a plain value
    return cur


# -- step 3: interpretation -----------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Reader:
    """Typed reads from the raw mapping; every error names the key path (and its env var)."""

    def __init__(self, origins: dict[str, str], unused: list[str]) -> None:
        self.origins = origins
        self.unused = unused

    def fail(self, key: str, message: str) -> ConfigError:
        parts = key.split(".")  # the value may come from a variable that set a whole section
        prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
        source = next((self.origins[p] for p in prefixes if p in self.origins), None)
        return ConfigError(f"{key}{f' (from {source})' if source else ''}: {message}")

    def expected(self, key: str, what: str, value: Any) -> ConfigError:
        return self.fail(key, f"expected {what}, got {_show(value)}")

    def mapping(self, parent: Mapping[str, Any], key: str, known: tuple[str, ...] | None = None,
                silent: tuple[str, ...] = ()) -> dict[str, Any]:
        """The section at `key` ({} when absent); keys outside `known` go to the warning."""
        value = parent.get(key.rpartition(".")[2])
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.expected(key, "a mapping", value)
        if known is not None:
            self.unused.extend(f"{key}.{k}" for k in value if k not in known and k not in silent)
        return value

    def string(self, parent: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
        value = parent.get(key.rpartition(".")[2])
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.expected(key, "a string", value)
        return str(value)  # YAML reads `addr: 5000` as a number; distribution takes the text

    def boolean(self, parent: Mapping[str, Any], key: str, default: bool) -> bool:
        value = parent.get(key.rpartition(".")[2])
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.expected(key, "a boolean", value)
        return value

    def integer(self, parent: Mapping[str, Any], key: str, default: int) -> int:
        value = parent.get(key.rpartition(".")[2])
        if value is None:
            return default
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.expected(key, "an integer", value)
        return value

    def duration(self, parent: Mapping[str, Any], key: str, default: float) -> float:
        value = parent.get(key.rpartition(".")[2])
        if value is None:
            return default
        if value == 0 and not isinstance(value, bool):
            return 0.0
        if not isinstance(value, str):
            raise self.expected(key, "a duration such as '24h' or '90s'", value)
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise self.expected(key, "a duration such as '24h' or '90s'", value) from None
        if seconds < 0:
            raise self.fail(key, f"a duration cannot be negative, got {value!r}")
        return seconds

    def choice(self, parent: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.string(parent, key) or default).lower()
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    # -- sections --

    def config(self, raw: dict[str, Any]) -> Config:
        known = ("version", "loglevel", "log", "http", "storage", "auth", "proxy", "catalog")
        self.unused.extend(str(k) for k in raw if k not in known)
        version = raw.get("version")
        if version is not None and str(version) != "0.1":
            raise self.fail("version", f"unsupported version {str(version)!r} (pyreg reads 0.1)")
        log = self.mapping(raw, "log", ("level", "formatter", "fields", "accesslog"))
        level = (self.choice(log, "log.level", "info", LOG_LEVELS) if log.get("level") is not None
                 else self.choice(raw, "loglevel", "info", LOG_LEVELS))  # the legacy spelling
        access = self.mapping(log, "log.accesslog", ("disabled",))
        catalog = self.mapping(raw, "catalog", ("maxentries",))
        maxentries = self.integer(catalog, "catalog.maxentries", 1000)
        return Config(
            log_level=level,
            http=self.http(self.mapping(raw, "http", _HTTP_KEYS, silent=("http2",))),
            storage=self.storage(self.mapping(raw, "storage")),
            auth=self.auth(self.mapping(raw, "auth")),
            proxy=self.proxy(self.mapping(raw, "proxy", ("remoteurl", "username", "password", "ttl"))),
            log=LogConfig(
                formatter=self.choice(log, "log.formatter", "text", LOG_FORMATTERS),
                fields=dict(self.mapping(log, "log.fields")),
                accesslog_disabled=self.boolean(access, "log.accesslog.disabled", False),
            ),
            catalog_maxentries=maxentries if maxentries > 0 else 1000,  # as distribution
        )

    def http(self, sec: dict[str, Any]) -> HTTPConfig:
        net = self.choice(sec, "http.net", "tcp", ("tcp", "tcp4", "tcp6", "unix"))
        addr = self.string(sec, "http.addr", DEFAULT_ADDR) or DEFAULT_ADDR
        if net != "unix":
            try:
                split_addr(addr)
            except ValueError as e:
                raise self.fail("http.addr", str(e)) from None
        host = self.string(sec, "http.host")
        if host and not re.match(r"https?://[^/]", host):
            raise self.expected("http.host", "a URL such as 'https://registry.example.com'", host)
        prefix = self.string(sec, "http.prefix", "") or ""
        if prefix and not prefix.startswith("/"):
            raise self.expected("http.prefix", "a path starting with '/'", prefix)
        prefix = prefix.rstrip("/")  # "" or "/path": the app prepends it to "/v2/" as is
        tls = self.mapping(sec, "http.tls", ("certificate", "key", "clientcas"))
        cert, key = self.string(tls, "http.tls.certificate"), self.string(tls, "http.tls.key")
        if bool(cert) != bool(key):
            raise self.fail("http.tls", "certificate and key go together: set both or neither")
        headers: dict[str, list[str]] = {}
        for name, value in self.mapping(sec, "http.headers").items():
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
                raise self.expected(f"http.headers.{name}", "a list of strings", value)
            headers[str(name)] = [str(v) for v in values]
        return HTTPConfig(
            addr=addr, net="unix" if net == "unix" else "tcp", host=host, prefix=prefix,
            secret=self.string(sec, "http.secret"), headers=headers,
            relativeurls=self.boolean(sec, "http.relativeurls", False),
            draintimeout=self.duration(sec, "http.draintimeout", 0.0),
            tls=TLSConfig(certificate=cert, key=key, clientcas=self.strings(tls, "http.tls.clientcas")),
        )

    def strings(self, parent: Mapping[str, Any], key: str) -> list[str]:
        value = parent.get(key.rpartition(".")[2]) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.expected(key, "a list of strings", value)
        return list(value)

    def storage(self, sec: dict[str, Any]) -> StorageConfig:
        drivers = [str(k) for k in sec if k not in ("maintenance", "delete", "redirect", "cache")]
        if len(drivers) > 1:
            raise self.fail("storage", f"exactly one storage driver allowed, got {', '.join(drivers)}"
                            " (to switch driver from the environment, set REGISTRY_STORAGE first)")
        driver = drivers[0] if drivers else "filesystem"
        if driver not in STORAGE_DRIVERS:
            raise self.fail("storage", f"unsupported storage driver {driver!r} "
                            f"(pyreg has {', '.join(STORAGE_DRIVERS)})")
        params = self.mapping(sec, f"storage.{driver}", _DRIVER_KEYS[driver], silent=("maxthreads",))
        # No driver at all is the embedded default; `filesystem:` without a root is distribution's.
        root = DISTRIBUTION_ROOT if drivers else DEFAULT_ROOT
        if driver == "filesystem":
            root = self.string(params, "storage.filesystem.rootdirectory", root) or root
        if driver == "s3":
            self.s3(params)
        maint = self.mapping(sec, "storage.maintenance", ("uploadpurging", "readonly"))
        purge = self.mapping(maint, "storage.maintenance.uploadpurging",
                             ("enabled", "age", "interval", "dryrun"))
        p = "storage.maintenance.uploadpurging"
        purging = UploadPurgingConfig(
            enabled=self.boolean(purge, f"{p}.enabled", True),
            age=self.duration(purge, f"{p}.age", 168 * 3600.0),
            interval=self.duration(purge, f"{p}.interval", 24 * 3600.0),
            dryrun=self.boolean(purge, f"{p}.dryrun", False),
        )
        if purging.enabled and purging.interval <= 0:
            raise self.fail(f"{p}.interval", "must be more than 0 while purging is enabled")
        readonly = self.mapping(maint, "storage.maintenance.readonly", ("enabled",))
        delete = self.mapping(sec, "storage.delete", ("enabled",))
        redirect = self.mapping(sec, "storage.redirect", ("disable",))
        return StorageConfig(
            driver=driver, filesystem_root=root,
            delete_enabled=self.boolean(delete, "storage.delete.enabled", False),
            redirect_disable=self.boolean(redirect, "storage.redirect.disable", False),
            uploadpurging=purging, s3=dict(params) if driver == "s3" else {},
            readonly=self.boolean(readonly, "storage.maintenance.readonly.enabled", False),
            cache=dict(self.mapping(sec, "storage.cache")),
        )

    def s3(self, params: dict[str, Any]) -> None:
        for key in ("bucket", "region"):
            if not self.string(params, f"storage.s3.{key}"):
                raise self.fail(f"storage.s3.{key}", "required by the s3 driver")
        for key in _S3_STRINGS:
            self.string(params, f"storage.s3.{key}")
        for key in _S3_BOOLS:  # the s3 driver, like distribution's, also takes "true"/"false"
            value = params.get(key)
            if value is not None and not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
                raise self.expected(f"storage.s3.{key}", "a boolean", value)
        for key in _S3_INTS:
            self.integer(params, f"storage.s3.{key}", 0)
        if self.integer(params, "storage.s3.chunksize", 5 << 20) < 5 << 20:
            raise self.fail("storage.s3.chunksize", "must be at least 5242880 (S3's smallest part)")

    def auth(self, sec: dict[str, Any]) -> dict[str, Any]:
        if len(sec) > 1:
            raise self.fail("auth", f"exactly one auth scheme allowed, got {', '.join(map(str, sec))}")
        for scheme in sec:
            if scheme not in AUTH_SCHEMES:
                # Never ignored: a registry meant to be private must not start open.
                raise self.fail("auth", f"unsupported auth scheme {scheme!r} (pyreg has "
                                f"{', '.join(AUTH_SCHEMES)})")
            params = self.mapping(sec, f"auth.{scheme}", _AUTH_KEYS[scheme])
            required = ("realm", "path") if scheme == "htpasswd" else ("realm", "service", "issuer")
            for key in required:
                if not self.string(params, f"auth.{scheme}.{key}"):
                    raise self.fail(f"auth.{scheme}.{key}", f"required by {scheme} auth")
            if scheme == "token":
                for key in ("rootcertbundle", "jwks", "autoredirectpath"):
                    self.string(params, f"auth.token.{key}")
                if not (params.get("rootcertbundle") or params.get("jwks") or params.get("server")):
                    raise self.fail("auth.token", "rootcertbundle or jwks is required by token auth "
                                    "(or server: the built-in token server)")
                self.boolean(params, "auth.token.autoredirect", False)
                self.strings(params, "auth.token.signingalgorithms")
            return {scheme: dict(params)}
        return {}

    def proxy(self, sec: dict[str, Any]) -> dict[str, Any]:
        if not sec:
            return {}
        url = self.string(sec, "proxy.remoteurl")
        if not url or not re.match(r"https?://[^/]", url):
            raise self.expected("proxy.remoteurl", "a URL such as 'https://registry-1.docker.io'", url)
        self.string(sec, "proxy.username")
        self.string(sec, "proxy.password")
        self.duration(sec, "proxy.ttl", 0.0)
        return dict(sec)


_HTTP_KEYS = ("addr", "net", "host", "prefix", "secret", "relativeurls", "draintimeout", "tls", "headers")
_S3_STRINGS = ("accesskey", "secretkey", "regionendpoint", "keyid", "rootdirectory", "storageclass",
               "useragent", "objectacl", "sessiontoken", "loglevel")
_S3_BOOLS = ("encrypt", "secure", "skipverify", "v4auth", "forcepathstyle", "usedualstack", "accelerate")
_S3_INTS = ("chunksize", "multipartcopychunksize", "multipartcopymaxconcurrency",
            "multipartcopythresholdsize")
_DRIVER_KEYS: dict[str, tuple[str, ...]] = {
    "filesystem": ("rootdirectory",),
    "inmemory": (),
    "s3": ("bucket", "region", *_S3_STRINGS, *_S3_BOOLS, *_S3_INTS),
}
_AUTH_KEYS: dict[str, tuple[str, ...]] = {
    "htpasswd": ("realm", "path"),
    "token": ("realm", "service", "issuer", "rootcertbundle", "jwks", "autoredirect",
              "autoredirectpath", "signingalgorithms", "server"),
}


# -- passing a Config to worker processes ---------------------------------------------------------


def config_to_json(config: Config) -> str:
    return json.dumps(dataclasses.asdict(config))


def config_from_json(text: str) -> Config:
    config: Config = _from_dict(Config, json.loads(text))
    return config


def _from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kind = hints[f.name]
            is_nested = isinstance(kind, type) and dataclasses.is_dataclass(kind)
            kwargs[f.name] = _from_dict(kind, data[f.name]) if is_nested else data[f.name]
    return cls(**kwargs)
