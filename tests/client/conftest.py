"""Fixtures of the client tests: stores, sessions, images put into a store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyreg.client.config import ClientConfig
from pyreg.client.retry import RetryPolicy
from pyreg.client.session import RegistrySession
from pyreg.client.store import ImageStore
from pyreg.oci.imageref import parse_reference
from tests.client.images import SampleImage


async def _no_wait(seconds: float) -> None:
    pass


FAST_RETRY = RetryPolicy(attempts=4, sleep=_no_wait)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


@pytest.fixture
async def session() -> AsyncIterator[RegistrySession]:
    s = RegistrySession(ClientConfig(), retry=FAST_RETRY)
    yield s
    await s.aclose()


def put_image(store: ImageStore, image: SampleImage, name: str) -> None:
    for digest, data in image.blobs().items():
        store.put_blob(data, digest)
    store.put_blob(image.manifest)
    store.add(parse_reference(name), image.descriptor())
