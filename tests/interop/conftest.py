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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RegistryServer, start_distribution, start_pyreg

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
