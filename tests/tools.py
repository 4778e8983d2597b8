"""Test images and real clients as fixtures, for every suite that drives them (a plugin loaded by
tests/conftest.py, so that the session's dockerd starts once, whichever suites run).

``image`` (three layers, host architecture) and ``index_image`` (linux/amd64 + linux/arm64) are
OCI layouts built once per session from /bin/busybox; see ``tests/interop/images.py``.
``skopeo`` and ``podman`` run on throwaway state under the test's tmp directory. ``docker`` drives
a dockerd started once per session, with its own data-root, exec-root and socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool
from tests.interop.clients import Docker, Podman, Skopeo, run
from tests.interop.images import Layout, build_image, build_index


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
