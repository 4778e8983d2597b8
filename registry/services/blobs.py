"""Blobs: one global content-addressed store, and per-repository links into it.

A repository reads only the blobs linked into it (pushed or mounted); the bytes live once under
`blobs/`, whatever the number of repositories.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from pyreg.oci.digest import Digest, DigestError
from pyreg.registry.services import paths
from pyreg.registry.storage import PathNotFound, StorageDriver


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int


async def read_link(driver: StorageDriver, path: str) -> Digest | None:
    """The digest a link file names, or None when there is no (valid) link."""
    try:
        raw = await driver.get_content(path)
    except PathNotFound:
        return None
    try:
        return Digest.parse(raw.decode("ascii", "replace").strip())
    except DigestError:
        return None


class BlobStore:
    """The registry-wide store of verified blobs."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def stat(self, digest: Digest) -> BlobInfo | None:
        try:
            info = await self.driver.stat(paths.blob_data(digest))
        except PathNotFound:
            return None
        return None if info.is_dir else BlobInfo(digest, info.size)

    def reader(self, digest: Digest, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.reader(paths.blob_data(digest), offset, length)

    async def get(self, digest: Digest) -> bytes:
        return await self.driver.get_content(paths.blob_data(digest))

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store small verified content (manifests) if not already there."""
        if await self.stat(digest) is None:
            await self.driver.put_content(paths.blob_data(digest), data)

    async def redirect_url(self, digest: Digest) -> str | None:
        return await self.driver.redirect_url(paths.blob_data(digest))


class RepositoryBlobs:
    """The blobs linked into one repository."""

    def __init__(self, store: BlobStore, name: str) -> None:
        self.store = store
        self.driver = store.driver
        self.name = name

    async def stat(self, digest: Digest) -> BlobInfo | None:
        if await read_link(self.driver, paths.layer_link(self.name, digest)) != digest:
            return None
        return await self.store.stat(digest)

    async def link(self, digest: Digest) -> None:
        path = paths.layer_link(self.name, digest)
        if await read_link(self.driver, path) != digest:
            await self.driver.put_content(path, str(digest).encode())

    async def unlink(self, digest: Digest) -> bool:
        try:
            await self.driver.delete(paths.layer_link(self.name, digest).rsplit("/", 1)[0])
        except PathNotFound:
            return False
        return True
