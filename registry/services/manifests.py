"""Manifests, tags and referrers of one repository.

Manifest bytes are blobs in the global store; a repository owns a manifest through its revision
link. A tag is a `current` link plus an index of every digest it ever named (distribution's
layout). Referrers are links from a subject digest to the manifests that name it.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass

from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.manifest import Descriptor, Manifest, ManifestError, infer_media_type, parse_manifest
from pyreg.registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
)
from pyreg.registry.services import paths
from pyreg.registry.services.blobs import BlobStore, RepositoryBlobs, read_link
from pyreg.registry.storage import PathNotFound

MAX_MANIFEST_SIZE = 4 << 20


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes


class ManifestCache:
    """Manifest bytes by digest. Content-addressed, so never stale: only ownership (the
    repository's revision link) must be read from storage on every request."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self._items: OrderedDict[Digest, tuple[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, digest: Digest) -> tuple[str, bytes] | None:
        item = self._items.get(digest)
        if item is not None:
            self._items.move_to_end(digest)
        return item

    def put(self, digest: Digest, media_type: str, data: bytes) -> None:
        if digest in self._items or len(data) > self._max // 8:
            return
        self._items[digest] = (media_type, data)
        self._bytes += len(data)
        while self._bytes > self._max:
            _, (_, old) = self._items.popitem(last=False)
            self._bytes -= len(old)


class ManifestStore:
    def __init__(self, store: BlobStore, name: str, cache: ManifestCache) -> None:
        self.store = store
        self.driver = store.driver
        self.name = name
        self.cache = cache

    # -- reading -------------------------------------------------------------------------------

    async def resolve_tag(self, tag: str) -> Digest:
        digest = await read_link(self.driver, paths.tag_current_link(self.name, tag))
        if digest is None:
            await self._check_repository()
            raise ManifestUnknown(detail={"tag": tag})
        return digest

    async def exists(self, digest: Digest) -> bool:
        return await read_link(self.driver, paths.revision_link(self.name, digest)) == digest

    async def get(self, digest: Digest) -> StoredManifest:
        if not await self.exists(digest):
            await self._check_repository()
            raise ManifestUnknown(detail={"digest": str(digest)})
        cached = self.cache.get(digest)
        if cached is not None:
            return StoredManifest(digest, cached[0], cached[1])
        try:
            data = await self.store.get(digest)
        except PathNotFound:
            raise ManifestUnknown(detail={"digest": str(digest)}) from None
        try:
            doc = json.loads(data)
            media_type = infer_media_type(doc) if isinstance(doc, dict) else mediatypes.OCI_MANIFEST
        except ValueError:
            media_type = mediatypes.OCI_MANIFEST
        self.cache.put(digest, media_type, data)
        return StoredManifest(digest, media_type, data)

    async def _check_repository(self) -> None:
        try:
            await self.driver.stat(paths.repository(self.name))
        except PathNotFound:
            raise NameUnknown(detail={"name": self.name}) from None

    # -- writing -------------------------------------------------------------------------------

    async def put(
        self, data: bytes, content_type: str | None, tag: str | None, digest: Digest | None
    ) -> tuple[Digest, Manifest]:
        """Validate and store a manifest, then point the tag at it. Returns its digest."""
        actual = Digest.from_bytes(data, digest.algorithm if digest else "sha256")
        if digest is not None and actual != digest:
            raise DigestInvalid(detail={"digest": str(digest), "actual": str(actual)})
        try:
            manifest = parse_manifest(data, content_type)
        except ManifestError as e:
            raise ManifestInvalid(str(e)) from None
        await self._check_references(manifest)

        await self.store.put(actual, data)
        await self.driver.put_content(paths.revision_link(self.name, actual), str(actual).encode())
        if manifest.subject is not None:
            await self.driver.put_content(
                paths.referrer_link(self.name, manifest.subject.digest, actual),
                str(actual).encode(),
            )
        if tag is not None:
            await self.tag(tag, actual)
        self.cache.put(actual, manifest.media_type, data)
        return actual, manifest

    async def _check_references(self, manifest: Manifest) -> None:
        blobs = RepositoryBlobs(self.store, self.name)
        unknown: list[str] = []

        async def check_blob(d: Descriptor) -> None:
            if d.urls:
                return  # non-distributable: the bytes live elsewhere
            if await blobs.stat(d.digest) is None:
                unknown.append(str(d.digest))

        async def check_child(d: Descriptor) -> None:
            if await self.exists(d.digest):
                return
            if d.media_type not in mediatypes.MANIFEST_TYPES and await blobs.stat(d.digest):
                return
            unknown.append(str(d.digest))

        checks = [check_blob(d) for d in ((manifest.config,) if manifest.config else ())]
        checks += [check_blob(d) for d in manifest.layers]
        checks += [check_child(d) for d in manifest.manifests]
        await asyncio.gather(*checks)
        if unknown:
            raise ManifestBlobUnknown(detail={"digests": unknown})

    async def tag(self, tag: str, digest: Digest) -> None:
        # The index link first: the tag's history always holds what `current` names.
        index = paths.tag_index_link(self.name, tag, digest)
        if await read_link(self.driver, index) != digest:
            await self.driver.put_content(index, str(digest).encode())
        current = paths.tag_current_link(self.name, tag)
        if await read_link(self.driver, current) != digest:
            await self.driver.put_content(current, str(digest).encode())

    async def untag(self, tag: str) -> None:
        if await read_link(self.driver, paths.tag_current_link(self.name, tag)) is None:
            await self._check_repository()
            raise ManifestUnknown(detail={"tag": tag})
        try:
            await self.driver.delete(paths.tag_dir(self.name, tag))
        except PathNotFound:
            raise ManifestUnknown(detail={"tag": tag}) from None

    async def delete(self, digest: Digest) -> None:
        """Delete a manifest from the repository, with the tags that name it (as distribution)."""
        stored = await self.get(digest)
        try:
            manifest = parse_manifest(stored.data, stored.media_type)
        except ManifestError:
            manifest = None
        for tag in await self.tags():
            if await read_link(self.driver, paths.tag_current_link(self.name, tag)) == digest:
                try:
                    await self.driver.delete(paths.tag_dir(self.name, tag))
                except PathNotFound:
                    pass
        if manifest is not None and manifest.subject is not None:
            try:
                await self.driver.delete(
                    paths.referrer_link(self.name, manifest.subject.digest, digest).rsplit("/", 1)[0]
                )
            except PathNotFound:
                pass
        try:
            await self.driver.delete(paths.revision_dir(self.name, digest))
        except PathNotFound:
            raise ManifestUnknown(detail={"digest": str(digest)}) from None

    # -- listing -------------------------------------------------------------------------------

    async def tags(self) -> list[str]:
        try:
            entries = await self.driver.list(paths.tags(self.name))
        except PathNotFound:
            await self._check_repository()
            return []
        return sorted(e.rsplit("/", 1)[1] for e in entries)

    async def referrers(self, subject: Digest) -> list[Descriptor]:
        base = paths.referrers(self.name, subject)
        found: list[Descriptor] = []
        try:
            algorithms = await self.driver.list(base)
        except PathNotFound:
            return found
        for alg_dir in algorithms:
            try:
                entries = await self.driver.list(alg_dir)
            except PathNotFound:
                continue
            for entry in entries:
                digest = await read_link(self.driver, f"{entry}/link")
                if digest is None or not await self.exists(digest):
                    continue
                try:
                    stored = await self.get(digest)
                    manifest = parse_manifest(stored.data, stored.media_type)
                except (ManifestUnknown, ManifestError, NameUnknown):
                    continue
                found.append(
                    Descriptor(
                        stored.media_type,
                        digest,
                        len(stored.data),
                        artifact_type=manifest.effective_artifact_type,
                        annotations=manifest.annotations,
                    )
                )
        found.sort(key=lambda d: str(d.digest))
        return found
