"""pyreg with other tools: skopeo pulls what pyreg pushed and the reverse, skopeo reads pyreg's
store, podman loads what pyreg saved and the reverse, distribution as the registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.cli import Pyreg
from tests.conftest import RegistryServer, start_distribution
from tests.interop.clients import Podman, Skopeo
from tests.interop.images import assert_identical, build_image, build_index

pytestmark = pytest.mark.interop


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_distribution(tmp_path / "dist-data")
    yield server
    server.stop()


def test_skopeo_pushes_pyreg_pulls_and_skopeo_reads_the_store(
        tmp_path: Path, shared_registry: RegistryServer, skopeo: Skopeo) -> None:
    built = build_image(tmp_path / "built", tag="v1")
    ref = f"{shared_registry.host}/interop/r{uuid.uuid4().hex[:8]}:v1"
    skopeo.copy(built.ref, f"docker://{ref}")
    pyreg = Pyreg(tmp_path / "home")
    result = pyreg("pull", ref)
    assert result.code == 0, result.err
    # The store is an OCI layout that skopeo reads by the full name.
    skopeo.copy(f"oci:{pyreg.root}:{ref}", f"oci:{tmp_path / 'out'}:v1")
    assert_identical(built, tmp_path / "out", "v1")


@pytest.mark.parametrize("kind", ["pyreg", "distribution"])
def test_pyreg_pushes_skopeo_pulls(tmp_path: Path, shared_registry: RegistryServer, skopeo: Skopeo,
                                   kind: str) -> None:
    server = shared_registry if kind == "pyreg" else start_distribution(tmp_path / "dist")
    try:
        built = build_index(tmp_path / "built", tag="multi", name="example.com/x/y")
        pyreg = Pyreg(tmp_path / "home")
        loaded = pyreg("load", "-i", str(built.path))
        assert loaded.out == "Loaded image: example.com/x/y:multi\n", loaded.err
        ref = f"{server.host}/interop/r{uuid.uuid4().hex[:8]}:multi"
        assert pyreg("tag", "example.com/x/y:multi", ref).code == 0
        pushed = pyreg("push", ref)
        assert pushed.code == 0, pushed.err
        skopeo.copy(f"docker://{ref}", f"oci:{tmp_path / 'out'}:multi", "--all")
        assert_identical(built, tmp_path / "out", "multi")
        # and back: pyreg pulls the index it pushed, resolving the host platform
        again = Pyreg(tmp_path / "again")
        assert again("pull", ref).code == 0
    finally:
        if server is not shared_registry:
            server.stop()


def test_podman_loads_what_pyreg_saved_and_the_reverse(tmp_path: Path, podman: Podman) -> None:
    built = build_image(tmp_path / "built", tag="v1", name="localhost/pyreg/saved")
    pyreg = Pyreg(tmp_path / "home")
    assert pyreg("load", "-i", str(built.path)).code == 0
    archive = tmp_path / "saved.tar"
    assert pyreg("save", "localhost/pyreg/saved:v1", "-o", str(archive)).code == 0
    out = podman("load", "-i", str(archive)).stdout
    assert "localhost/pyreg/saved:v1" in out
    assert podman("image", "inspect", "localhost/pyreg/saved:v1").returncode == 0
    # podman's docker archive (uncompressed layers, legacy layout) loads into pyreg
    podman("tag", "localhost/pyreg/saved:v1", "localhost/pyreg/back:v2")
    back = tmp_path / "podman.tar"
    podman("save", "--format", "docker-archive", "-o", str(back), "localhost/pyreg/back:v2")
    other = Pyreg(tmp_path / "other")
    loaded = other("load", "-i", str(back))
    assert loaded.code == 0 and "Loaded image: localhost/pyreg/back:v2" in loaded.out, loaded.err
    history = other("history", "localhost/pyreg/back:v2").out
    assert "pyreg tests: busybox" in history
    # OCI archive too
    oci = tmp_path / "podman-oci.tar"
    podman("save", "--format", "oci-archive", "-o", str(oci), "localhost/pyreg/back:v2")
    assert other("load", "-i", str(oci)).code == 0


def test_save_formats_round_trip(tmp_path: Path, skopeo: Skopeo) -> None:
    built = build_image(tmp_path / "built", tag="v1", name="example.com/a/b")
    pyreg = Pyreg(tmp_path / "home")
    assert pyreg("load", "-i", str(built.path)).code == 0
    for fmt, dest in (("docker", "img.tar"), ("oci-archive", "img-oci.tar"), ("oci", "layout")):
        path = tmp_path / dest
        assert pyreg("save", "--format", fmt, "-o", str(path), "example.com/a/b:v1").code == 0
        fresh = Pyreg(tmp_path / f"load-{fmt}")
        assert fresh("load", "-i", str(path)).out == "Loaded image: example.com/a/b:v1\n"
    skopeo.copy(f"oci:{tmp_path / 'layout'}:v1", f"oci:{tmp_path / 'copy'}:v1")
    assert_identical(built, tmp_path / "copy", "v1")
    skopeo.copy(f"docker-archive:{tmp_path / 'img.tar'}", f"dir:{tmp_path / 'dir'}")
