"""pyreg and a real docker engine (Debian's dockerd 20.10, started once per session by the `docker`
fixture) exchange archives both ways.

dockerd 20.10 reads and writes only docker's legacy archive: `manifest.json` naming the config
and the layer files, `<id>/layer.tar` uncompressed layers, a `repositories` file; it ignores an
OCI layout beside it (`docker load`) and writes none (`docker save`; docker 25 adds one). pyreg's
default `save` format carries both, so 20.10 and newer read it; `pyreg load` reads either.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.client.cli import Pyreg
from tests.interop.clients import Docker
from tests.interop.images import build_image

pytestmark = pytest.mark.interop

NAME = "localhost/pyreg/docker-interop"


def saved_by_pyreg(tmp_path: Path, tag: str) -> tuple[Pyreg, Path]:
    """A test image loaded into a pyreg store as NAME:tag, and `pyreg save`d to an archive."""
    built = build_image(tmp_path / "built", tag=tag, name=NAME)
    pyreg = Pyreg(tmp_path / "home")
    assert pyreg("load", "-i", str(built.path)).code == 0
    archive = tmp_path / "saved.tar"
    assert pyreg("save", f"{NAME}:{tag}", "-o", str(archive)).code == 0
    return pyreg, archive


def test_docker_loads_what_pyreg_saved(tmp_path: Path, docker: Docker) -> None:
    pyreg, archive = saved_by_pyreg(tmp_path, "v1")
    try:
        out = docker("load", "-i", str(archive)).stdout
        assert f"Loaded image: {NAME}:v1" in out, out
        inspected = json.loads(docker("image", "inspect", f"{NAME}:v1").stdout)[0]
        assert inspected["Id"] == json.loads(pyreg("inspect", f"{NAME}:v1").out)[0]["Id"]
        ran = docker("run", "--rm", "--network", "none", f"{NAME}:v1", "echo", "hello")
        assert ran.stdout == "hello\n"
    finally:
        docker("rmi", f"{NAME}:v1", check=False)


def test_pyreg_loads_what_docker_saved(tmp_path: Path, docker: Docker) -> None:
    _, first = saved_by_pyreg(tmp_path, "v2")
    try:
        docker("load", "-i", str(first))
        docker("tag", f"{NAME}:v2", f"{NAME}:from-docker")
        archive = tmp_path / "docker.tar"
        docker("save", "-o", str(archive), f"{NAME}:from-docker")
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        assert "manifest.json" in names and any(n.endswith("/layer.tar") for n in names)
        other = Pyreg(tmp_path / "other")
        loaded = other("load", "-i", str(archive))
        assert loaded.code == 0 and loaded.out == f"Loaded image: {NAME}:from-docker\n", loaded.err
        # the same image: docker's ID is the config's digest, as pyreg's is
        docker_id = json.loads(docker("image", "inspect", f"{NAME}:from-docker").stdout)[0]["Id"]
        assert json.loads(other("inspect", f"{NAME}:from-docker").out)[0]["Id"] == docker_id
        assert "pyreg tests: busybox" in other("history", f"{NAME}:from-docker").out
        # and it goes back to docker once more, from pyreg's store
        again = tmp_path / "again.tar"
        assert other("save", f"{NAME}:from-docker", "-o", str(again)).code == 0
        docker("rmi", f"{NAME}:from-docker")
        assert f"Loaded image: {NAME}:from-docker" in docker("load", "-i", str(again)).stdout
    finally:
        docker("rmi", f"{NAME}:v2", f"{NAME}:from-docker", check=False)
