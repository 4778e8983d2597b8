"""Fixtures for the interop suite: registries to test against, test images, real clients.

Registries
    ``target`` is a fresh registry on a socket, pyreg by default. ``target_with_oracle`` runs the
    test against pyreg and against Debian's docker-registry (CNCF distribution 2.8): when both fail,
    the test is wrong; when only pyreg fails, pyreg is. ``PYREG_INTEROP_TARGETS=pyreg,distribution``
    (or ``=distribution``) overrides both lists, e.g. to check the harness against the oracle alone.

Images
    ``image`` (three layers, host architecture) and ``index_image`` (linux/amd64 + linux/arm64)
    are OCI layouts built once per session from /bin/busybox; see ``images.py``.

Clients
    ``skopeo`` and ``podman`` run on throwaway state under the test's tmp directory. ``docker``
    drives a dockerd that this suite starts once per session, with its own data-root, exec-root and
    socket, and stops at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, RegistryServer, require_tool, start_distribution, start_pyreg
from tests.interop.clients import Docker, Podman, Skopeo, run
from tests.interop.images import Layout, build_image, build_index

TARGETS_ENV = "PYREG_INTEROP_TARGETS"


def target_names(default: tuple[str, ...]) -> list[str]:
    value = os.environ.get(TARGETS_ENV, "")
    names = [n.strip() for n in value.split(",") if n.strip()] or list(default)
    unknown = set(names) - {"pyreg", "distribution"}
    if unknown:
        raise ValueError(f"{TARGETS_ENV}: unknown registries {sorted(unknown)}")
    return names


def start_registry(kind: str, root: Path, workers: int = 1) -> RegistryServer:
    """pyreg or distribution serving ``root`` (deletes enabled)."""
    if kind == "pyreg":
        return start_pyreg(root, workers=workers)
    if workers != 1:
        raise ValueError("distribution runs as one process")
    return start_distribution(root)


def is_pyreg(server: RegistryServer) -> bool:
    """False for distribution, whose config file start_distribution names distribution-PORT.yml."""
    return not server.config.name.startswith("distribution-")


StartRegistry = Callable[[str, Path], RegistryServer]


@pytest.fixture
def registries() -> Iterator[StartRegistry]:
    """Start registries by kind on a given root; all still running are stopped at the end."""
    started: list[RegistryServer] = []

    def start(kind: str, root: Path) -> RegistryServer:
        server = start_registry(kind, root)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(params=target_names(("pyreg",)))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(request.param, tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture(params=target_names(("pyreg", "distribution")))
def target_with_oracle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(request.param, tmp_path / "data")
    yield server
    server.stop()


# ---------------------------------------------------------------- images


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    require_tool("busybox")
    return build_image(tmp_path_factory.mktemp("image") / "layout", tag="v1")


@pytest.fixture(scope="session")
def index_image(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    require_tool("busybox")
    return build_index(tmp_path_factory.mktemp("index") / "layout", tag="multi")


# ---------------------------------------------------------------- clients


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    tmp = tmp_path / "skopeo-tmp"
    tmp.mkdir()
    return Skopeo(require_tool("skopeo"), tmp)


@pytest.fixture
def podman() -> Iterator[Podman]:
    # podman refuses a runroot path longer than 50 characters: pytest's tmp_path is too long.
    base = Path(tempfile.mkdtemp(prefix="pyreg-podman-"))
    client = Podman(require_tool("podman"), base)
    try:
        yield client
    finally:
        client.reset()
        shutil.rmtree(base, ignore_errors=True)


def _daemon_failure(message: str, log: Path) -> None:
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    text = (
        f"{message}\n"
        "The docker tests start their own dockerd (Debian's docker.io) as root with "
        "--storage-driver overlay2 (then vfs), --iptables=false --bridge=none; "
        f"dockerd's log ends with:\n{tail}"
    )
    if IN_CI:
        pytest.fail(text)
    pytest.skip(text)


def _start_dockerd(base: Path, driver: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    dockerd = require_tool("dockerd")
    sock = base / "docker.sock"
    log = base / f"dockerd-{driver}.log"
    cmd = [
        dockerd,
        "--data-root",
        str(base / "data"),
        "--exec-root",
        str(base / "exec"),
        "--pidfile",
        str(base / "dockerd.pid"),
        "-H",
        f"unix://{sock}",
        "--storage-driver",
        driver,
        # No bridge and no iptables rules: nothing on the host's network changes, and a second
        # dockerd on the machine cannot clash with this one over docker0. Containers run with
        # --network none; pushes and pulls are made by the daemon itself over loopback.
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--log-level",
        "warn",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"unix://{sock}", log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """A private dockerd for the session (its socket path must stay short: unix sockets max 107)."""
    client_binary = require_tool("docker")
    require_tool("dockerd")
    if os.geteuid() != 0:
        _daemon_failure("dockerd needs root", Path("/nonexistent"))
    base = Path(tempfile.mkdtemp(prefix="pyreg-dockerd-"))
    config_dir = base / "client-config"
    config_dir.mkdir()
    proc: subprocess.Popen[bytes] | None = None
    client: Docker | None = None
    log = base / "none.log"
    for driver in ("overlay2", "vfs"):
        proc, host, log = _start_dockerd(base, driver)
        client = Docker(client_binary, host, config_dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if client("version", check=False, timeout=10).returncode == 0:
                break
            time.sleep(0.5)
        if proc.poll() is None and client("info", check=False, timeout=20).returncode == 0:
            break
        _stop(proc)
        proc = None
    if proc is None or client is None:
        shutil.rmtree(base, ignore_errors=True)
        _daemon_failure("dockerd did not start with overlay2 nor with vfs", log)
        raise AssertionError("unreachable")
    try:
        yield client
    finally:
        client("system", "prune", "--all", "--force", check=False, timeout=120)
        _stop(proc)
        # Whatever overlay mounts the daemon left (it should leave none) must go before rmtree.
        run(["umount", "-R", str(base / "data")], check=False)
        shutil.rmtree(base, ignore_errors=True)
