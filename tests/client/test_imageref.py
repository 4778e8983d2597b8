"""Docker's reference parsing and normalisation, case for case."""

from __future__ import annotations

import pytest

from pyreg.oci.digest import Digest
from pyreg.oci.imageref import InvalidReference, parse_reference
from pyreg.oci.platform import Platform, choose

HEX = "a" * 64


@pytest.mark.parametrize(("text", "full"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("user/img", "docker.io/user/img:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/img:v1", "docker.io/user/img:v1"),
    ("host:5000/a/b/c:tag", "host:5000/a/b/c:tag"),
    ("localhost/x", "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("example.com/a__b/c-d.e", "example.com/a__b/c-d.e:latest"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
    (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox:1@sha256:{HEX}"),
    ("Registry.Example/x", "Registry.Example/x:latest"),
])
def test_normalisation(text: str, full: str) -> None:
    assert str(parse_reference(text)) == full


def test_parts_and_api_host() -> None:
    ref = parse_reference(f"busybox:1@sha256:{HEX}")
    assert (ref.domain, ref.path, ref.tag) == ("docker.io", "library/busybox", "1")
    assert ref.digest == Digest("sha256", HEX)
    assert ref.reference == f"sha256:{HEX}"  # the digest wins, as docker pull does
    assert ref.api_host == "registry-1.docker.io"
    assert parse_reference("host:5000/x").api_host == "host:5000"


@pytest.mark.parametrize(("text", "familiar"), [
    ("busybox", "busybox:latest"), ("user/img:v1", "user/img:v1"),
    ("docker.io/library/a/b", "library/a/b:latest"), ("host:5000/x", "host:5000/x:latest"),
])
def test_familiar(text: str, familiar: str) -> None:
    assert parse_reference(text).familiar() == familiar


def test_default_registry_replaces_docker_hub_without_library() -> None:
    assert str(parse_reference("user/img", "127.0.0.1:5000")) == "127.0.0.1:5000/user/img:latest"
    assert str(parse_reference("busybox", "reg.example")) == "reg.example/busybox:latest"
    assert str(parse_reference("other.example/x", "reg.example")) == "other.example/x:latest"


def test_no_default_tag() -> None:
    assert parse_reference("busybox", default_tag=None).tag is None


@pytest.mark.parametrize(("text", "message"), [
    ("", "at least one component"),
    ("Busybox", "must be lowercase"),
    ("docker.io/Library/x", "must be lowercase"),
    (HEX, "cannot specify 64-byte hexadecimal strings"),
    ("a:b:c", "invalid reference format"),
    ("a/", "invalid reference format"),
    ("-a", "invalid reference format"),
    ("a@sha256:abc", "invalid reference format"),
    ("a:" + "t" * 129, "invalid reference format"),
    ("a b", "invalid reference format"),
    ("x/" + "a" * 255, "not be more than 255 characters"),
])
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_reference(text)


def test_platforms() -> None:
    assert str(Platform.parse("linux/aarch64")) == "linux/arm64/v8"
    assert Platform.parse("linux/arm64").matches(Platform("linux", "arm64", "v8"))
    assert not Platform.parse("linux/arm/v6").matches(Platform.parse("linux/arm"))
    entries = [None, {"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]
    assert choose(entries, Platform.parse("linux/arm64/v8")) == 2
    assert choose(entries, Platform.parse("windows/amd64")) is None
    with pytest.raises(ValueError, match="os/arch"):
        Platform.parse("linux")
