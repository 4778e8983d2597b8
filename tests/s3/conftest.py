"""Fixtures of the S3 driver's tests: the session's SeaweedFS and drivers on it."""

from __future__ import annotations

import pytest

from pyreg.registry.storage.s3 import S3Driver
from tests.s3.seaweed import SeaweedServer, s3_driver, shared_seaweedfs


@pytest.fixture
def seaweedfs(request: pytest.FixtureRequest) -> SeaweedServer:
    return shared_seaweedfs(request)


@pytest.fixture
def driver(seaweedfs: SeaweedServer, request: pytest.FixtureRequest) -> S3Driver:
    """An S3 driver under a fresh root directory of the shared bucket."""
    return s3_driver(seaweedfs, request)
