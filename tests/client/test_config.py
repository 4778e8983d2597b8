"""pyreg's config.toml: default registry, mirrors, insecure registries, and how hosts are reached."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pyreg.client.cli import _describe
from pyreg.client.config import ClientConfig, Endpoint, RegistrySettings, config_path, load_config
from pyreg.client.errors import ConfigError


def test_path_from_environment() -> None:
    assert config_path({"PYREG_CONFIG": "/c.toml"}) == Path("/c.toml")
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/pyreg/config.toml")
    assert config_path({"HOME": "/h"}) == Path("/h/.config/pyreg/config.toml")


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("""
default-registry = "reg.example:5000"
insecure-registries = ["build:5000"]

[registries."docker.io"]
mirrors = ["127.0.0.1:5001", "https://mirror.example"]

[registries."other.example"]
insecure = true
""")
    config = load_config(path)
    assert config.default_registry == "reg.example:5000"
    assert config.settings("docker.io") == RegistrySettings(("127.0.0.1:5001", "https://mirror.example"))
    assert [e.host for e in config.pull_endpoints("docker.io")] == [
        "127.0.0.1:5001", "mirror.example", "registry-1.docker.io"]
    assert config.endpoint("build:5000") == Endpoint("build:5000", ("https", "http"), insecure=True)
    assert config.endpoint("other.example").insecure
    assert load_config(tmp_path / "absent.toml") == ClientConfig(path=tmp_path / "absent.toml")


@pytest.mark.parametrize(("text", "message"), [
    ("surprise = 1", "unknown key 'surprise'"),
    ("default-registry = 5", "default-registry"),
    ("insecure-registries = 'x'", "insecure-registries: expected a list"),
    ("[registries.x]\ninsecure = 'yes'", "registries.x.insecure"),
    ("[registries.x]\nmirror = []", "unknown key 'mirror'"),
    ("not toml", "c.toml"),
])
def test_invalid(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_endpoints() -> None:
    config = ClientConfig()
    assert config.endpoint("docker.io") == Endpoint("registry-1.docker.io", ("https",))
    assert config.endpoint("reg.example") == Endpoint("reg.example", ("https",))
    assert config.endpoint("localhost:5000").schemes == ("http", "https")
    assert config.endpoint("[::1]:5000").schemes == ("http", "https")
    assert config.endpoint("localhost:5000").insecure
    assert config.endpoint("http://mirror:80").schemes == ("http",)
    # loopback can be made secure (verified HTTPS only); any host insecure
    config = ClientConfig(registries={"127.0.0.1:5000": RegistrySettings(insecure=False),
                                      "reg.example": RegistrySettings(insecure=True)})
    assert config.endpoint("127.0.0.1:5000") == Endpoint("127.0.0.1:5000", ("https",))
    assert config.endpoint("reg.example") == Endpoint("reg.example", ("https", "http"), insecure=True)


def test_disk_full_is_one_line() -> None:
    assert _describe(OSError(errno.ENOSPC, "No space left on device", "/store/blobs")) == \
        "no space left on device: /store/blobs"
