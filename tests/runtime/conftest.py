"""Fixtures of the runtime tests: a busybox image in an OCI layout, a runtime state directory."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from pyreg.runtime.state import StateStore
from tests.client.cli import Pyreg
from tests.conftest import IN_CI
from tests.runtime.images import BUSYBOX, busybox_layer, directory, file, layer, write_layout

IMAGE_CONFIG = {
    "Cmd": ["sh", "-c", "echo default"],
    "Env": ["PATH=/bin", "IMAGE_VAR=from-image"],
    "WorkingDir": "/srv/app",
    "ExposedPorts": {"80/tcp": {}},
}


def require_root_and_busybox() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("running containers needs root")
    if not BUSYBOX.exists():
        problems.append("/bin/busybox (busybox-static) is not installed")
    if problems:
        if IN_CI:
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


def mounts_under(root: Path) -> list[str]:
    """Host mounts that involve a runtime root: there must never be any (the container's mounts
    live in its own mount namespace). Other mounts of this shared machine are not ours to judge."""
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]


def host_links() -> set[str]:
    """The host's network devices a container could leave behind (tap, veth, bridges of ours).
    Others' devices on this shared machine come and go: only these names are judged."""
    return {name for name in os.listdir("/sys/class/net")
            if name.startswith(("tap", "veth", "pyreg", "slirp"))}


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root_and_busybox()
    path = tmp_path_factory.mktemp("layout")
    write_layout(path, image_layers(), IMAGE_CONFIG, tag="latest")
    return path


@functools.cache
def image_layers() -> list[bytes]:
    """The test image's layers: busybox, then a layer of test files."""
    # A device node of the host's memory, as a malicious image could ship one.
    mem = tarfile.TarInfo("srv/mem")
    mem.type, mem.mode, mem.devmajor, mem.devminor = tarfile.CHRTYPE, 0o666, 1, 1
    extra = layer([directory("srv"), file("srv/hello.txt", b"hello from the image\n"),
                   file("bin/not-exec", b"#!/bin/sh\necho no\n", 0o644), (mem, None)])
    return [busybox_layer(), extra]


@pytest.fixture(scope="session")
def runtime_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pyreg-root")


class Runner:
    def __init__(self, layout: Path, root: Path) -> None:
        self.layout = layout
        self.root = root

    def argv(self, *args: str, options: Sequence[str] = ()) -> list[str]:
        return [sys.executable, "-m", "pyreg.runtime", "run", "--layout", str(self.layout),
                "--ref", "latest", "--root", str(self.root), *options, "--", *args]

    def __call__(self, *args: str, options: Sequence[str] = ("--rm",), timeout: float = 60,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args, options=options), capture_output=True, text=True,
                              timeout=timeout, check=False,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def run(busybox_layout: Path, runtime_root: Path) -> Runner:
    return Runner(busybox_layout, runtime_root)


CGROUPS = Path("/sys/fs/cgroup")


def cgroup_dirs() -> set[str]:
    return {str(p) for p in CGROUPS.glob("**/pyreg/*") if p.is_dir()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


Cli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli(root: Path) -> Iterator[Cli]:
    before = cgroup_dirs()
    links = host_links()

    def call(command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyreg.runtime", command, "--root", str(root), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL)

    yield call
    for state in StateStore(root).all():
        call("rm", "-f", state.id)
    assert cgroup_dirs() == before
    assert mounts_under(root) == []
    assert host_links() <= links


def run_args(layout: Path, *args: str, command: str = "run") -> list[str]:
    return [command, "--layout", str(layout), "--ref", "latest", *args]


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError


NAME = "docker.io/library/bb:latest"


@pytest.fixture
def pyreg(tmp_path: Path, busybox_layout: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Pyreg]:
    """`pyreg` in-process, with the busybox test image in its store as `bb`."""
    client = Pyreg(tmp_path)
    write_layout(client.root, image_layers(), IMAGE_CONFIG, tag=NAME)
    before, links = cgroup_dirs(), host_links()
    yield client
    for cid in client("ps", "-a", "-q").out.split():
        client("rm", "-f", cid)
    assert cgroup_dirs() == before
    assert mounts_under(client.root) == []
    assert host_links() <= links
