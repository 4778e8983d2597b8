"""Fixtures of the black-box API tests: an httpx client bound to a real registry on a socket."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import Api, unique_repo
from tests.conftest import RegistryServer, start_pyreg


@pytest.fixture(scope="session")
def server(shared_registry: RegistryServer) -> RegistryServer:
    """The session's registry: use unique repository names."""
    return shared_registry


def _api(srv: RegistryServer) -> Iterator[Api]:
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        yield Api(client, srv.url)


@pytest.fixture(scope="session")
def api(server: RegistryServer) -> Iterator[Api]:
    yield from _api(server)


@pytest.fixture
def fresh_api(registry: RegistryServer) -> Iterator[Api]:
    """A registry of its own, for tests whose assertions depend on the whole store."""
    yield from _api(registry)


@pytest.fixture(scope="session")
def nodelete_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry with `storage.delete.enabled: false`, from a config file written here."""
    base = tmp_path_factory.mktemp("nodelete")
    root = base / "data"
    config = base / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: warn
http:
  addr: 127.0.0.1:5000
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: false
"""
    )
    srv = start_pyreg(root, config=config)  # start_pyreg's --addr overrides the file's address
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def nodelete_api(nodelete_server: RegistryServer) -> Iterator[Api]:
    yield from _api(nodelete_server)


@pytest.fixture
def repo() -> str:
    return unique_repo()
