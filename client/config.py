"""pyreg's own configuration: `$PYREG_CONFIG`, else `$XDG_CONFIG_HOME/pyreg/config.toml`.

    default-registry = "registry.example:5000"     # for names without a registry (docker.io)
    insecure-registries = ["build-box:5000"]        # plain HTTP allowed (loopback always is)

    [registries."docker.io"]
    mirrors = ["127.0.0.1:5001", "https://mirror.example"]   # tried in order for pulls, then docker.io
    insecure = false                                # the default; loopback hosts are insecure unless
                                                    # set to false here

"Insecure" is docker's: TLS certificates are not verified, and plain HTTP is tried when HTTPS
does not answer. Loopback addresses are insecure by default (docker's 127.0.0.0/8 rule).
A missing file is an empty configuration; an invalid one is a `ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from pyreg.client.errors import ConfigError
from pyreg.client.hosts import is_loopback
from pyreg.oci.imageref import DOCKER_HUB, DOCKER_HUB_API


# NamedTuples rather than dataclasses: importing `dataclasses` costs the client's start-up 5 ms,
# creating each dataclass 0.5 ms more.
class Endpoint(NamedTuple):
    """One place to send registry API requests to: `https://host` or `http://host`."""

    host: str  # host[:port], the key credentials are found under
    schemes: tuple[str, ...]  # in the order to try
    insecure: bool = False  # certificates not verified; credentials may go over plain HTTP


class RegistrySettings(NamedTuple):
    mirrors: tuple[str, ...] = ()
    insecure: bool | None = None  # None: insecure when loopback


class ClientConfig(NamedTuple):
    default_registry: str = DOCKER_HUB
    registries: Mapping[str, RegistrySettings] = MappingProxyType({})
    path: Path | None = None

    def settings(self, domain: str) -> RegistrySettings:
        return self.registries.get(domain) or RegistrySettings()

    def insecure(self, host: str) -> bool:
        flag = self.settings(host).insecure
        return is_loopback(host) if flag is None else flag

    def endpoint(self, host: str) -> Endpoint:
        """How to reach `host`: https first, then plain http for loopback or insecure hosts."""
        if host == DOCKER_HUB:
            host = DOCKER_HUB_API
        for prefix, scheme in (("http://", "http"), ("https://", "https")):
            if host.startswith(prefix):
                bare = host.removeprefix(prefix).rstrip("/")
                return Endpoint(bare, (scheme,), self.insecure(bare))
        if self.insecure(host):
            # Loopback is plain HTTP almost always: try it first and save a TLS attempt per run.
            return Endpoint(host, ("http", "https") if is_loopback(host) else ("https", "http"), True)
        return Endpoint(host, ("https",))

    def pull_endpoints(self, domain: str) -> list[Endpoint]:
        """The mirrors of `domain` in order, then the registry itself."""
        return [*(self.endpoint(m) for m in self.settings(domain).mirrors), self.endpoint(domain)]


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("PYREG_CONFIG"):
        return Path(environ["PYREG_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "pyreg" / "config.toml"


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of strings")
    return tuple(value)


def load_config(path: Path) -> ClientConfig:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ClientConfig(path=path)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    import tomllib  # only when there is a file: start-up time counts

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    known = {"default-registry", "insecure-registries", "registries"}
    for key in doc:
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r}")
    default = doc.get("default-registry", DOCKER_HUB)
    if not isinstance(default, str) or not default or "/" in default:
        raise ConfigError(f"{path}: default-registry: expected a host[:port]")
    insecure = set(_strings(doc.get("insecure-registries", []), "insecure-registries"))
    registries: dict[str, RegistrySettings] = {}
    table = doc.get("registries", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: registries: expected a table")
    for host, section in table.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: registries.{host}: expected a table")
        for key in section:
            if key not in ("mirrors", "insecure"):
                raise ConfigError(f"{path}: registries.{host}: unknown key {key!r}")
        flag = section.get("insecure")
        if flag is not None and not isinstance(flag, bool):
            raise ConfigError(f"{path}: registries.{host}.insecure: expected true or false")
        mirrors = _strings(section.get("mirrors", []), f"registries.{host}.mirrors")
        registries[host] = RegistrySettings(mirrors, True if host in insecure else flag)
    for host in insecure - set(registries):
        registries[host] = RegistrySettings(insecure=True)
    return ClientConfig(default, registries, path)
