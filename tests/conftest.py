"""Fixtures shared by the whole suite: a real pyreg registry on a socket, free ports, tools."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

# Test images and real clients (skopeo, podman, a session dockerd) for every suite.
pytest_plugins = ["tests.tools"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a command-line tool; outside CI a missing tool skips, under CI it fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (the README's set-up command installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered at {url}")


class StorageView(Protocol):
    """What a registry stored, read behind its back: paths are relative to the storage root
    (`docker/registry/v2/...`), whatever the backend (a directory, or keys under an S3 prefix)."""

    def files(self, under: str = "") -> set[str]:
        """The files under `under`, as paths relative to the root."""
        ...

    def read(self, path: str) -> bytes:
        """A file's bytes; FileNotFoundError when there is none."""
        ...

    def exists(self, path: str) -> bool:
        """A file, or a directory (on S3: a prefix with a key under it)."""
        ...

    def beside_root(self) -> set[str]:
        """Names next to the root (config files left out): what escaped it."""
        ...


@dataclass
class FilesystemView:
    root: Path

    def files(self, under: str = "") -> set[str]:
        top = self.root / under
        if not top.exists():
            return set()
        return {str(p.relative_to(self.root)) for p in top.rglob("*") if p.is_file()}

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def beside_root(self) -> set[str]:
        return {p.name for p in self.root.parent.iterdir()
                if p.name != self.root.name and not p.name.endswith(".yml")}


@dataclass
class RegistryServer:
    """A running registry process: pyreg, or distribution for comparison."""

    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT, as image references use it
    root: Path  # the storage root directory (on S3, only a name: see `storage`)
    config: Path
    proc: subprocess.Popen[bytes]
    view: StorageView | None = field(default=None, repr=False)

    @property
    def storage(self) -> StorageView:
        """The stored files, on whichever backend the server uses (the filesystem by default)."""
        return self.view if self.view is not None else FilesystemView(self.root)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def write_config(path: Path, root: Path, addr: str, extra: str = "") -> None:
    path.write_text(
        f"""version: 0.1
log:
  level: warn
http:
  addr: {addr}
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
{extra}"""
    )


def start_pyreg(root: Path, config: Path | None = None, workers: int = 1, extra: str = "") -> RegistryServer:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    if config is None:
        config = root.parent / f"config-{port}.yml"
        write_config(config, root, addr, extra)
    cmd = [sys.executable, "-m", "pyreg.registry.cli", "serve", str(config), "--addr", addr]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd)
    server = RegistryServer(f"http://{addr}", addr, root, config, proc)
    return serving(server)


def serving(server: RegistryServer) -> RegistryServer:
    """`server` once it answers `GET /v2/`; killed when it never does."""
    try:
        wait_for_http(f"{server.url}/v2/", server.proc)
    except BaseException:
        server.kill()
        raise
    return server


def start_distribution(root: Path, extra: str = "") -> RegistryServer:
    """Debian's docker-registry (CNCF distribution 2.8) on the given root."""
    binary = require_tool("docker-registry")
    port = free_port()
    addr = f"127.0.0.1:{port}"
    config = root.parent / f"distribution-{port}.yml"
    write_config(config, root, addr, extra)
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.Popen([binary, "serve", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RegistryServer(f"http://{addr}", addr, root, config, proc)
    return serving(server)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A fresh pyreg registry (filesystem storage, deletes enabled) on a real socket."""
    root = tmp_path / "data"
    server = start_pyreg(root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """One pyreg registry for the whole session, for tests that use unique repository names."""
    root = tmp_path_factory.mktemp("shared") / "data"
    server = start_pyreg(root)
    yield server
    server.stop()
