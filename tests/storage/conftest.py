"""The `driver` fixture: every storage driver, so that one suite checks them all alike.

To add a driver, write a factory (it may use other fixtures through `request` and register clean-up
with `request.addfinalizer`) and add it to `DRIVER_FACTORIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pyreg.registry.storage.driver import StorageDriver
from pyreg.registry.storage.filesystem import FilesystemDriver
from pyreg.registry.storage.memory import InMemoryDriver
from tests.s3.seaweed import s3

DriverFactory = Callable[[pytest.FixtureRequest], StorageDriver]


def filesystem(request: pytest.FixtureRequest) -> StorageDriver:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return FilesystemDriver(str(tmp_path / "root"))


def inmemory(request: pytest.FixtureRequest) -> StorageDriver:
    return InMemoryDriver()


DRIVER_FACTORIES: list[DriverFactory] = [filesystem, inmemory, s3]


@pytest.fixture(params=DRIVER_FACTORIES, ids=[f.__name__ for f in DRIVER_FACTORIES])
def driver(request: pytest.FixtureRequest) -> StorageDriver:
    factory: DriverFactory = request.param
    return factory(request)


def known_bug(
    request: pytest.FixtureRequest, driver: StorageDriver, name: str, reason: str
) -> None:
    """Mark the running test as an expected failure for the driver called `name` (strict)."""
    if driver.name == name:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
