"""Push: local store → registry, for one stored name.

    for each image manifest (an index's children first):
        layers in a bounded pool, each digest once ─► config ─► the manifest, by digest
    the top manifest under its tag, last — so that the tag never names something incomplete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import NamedTuple

from pyreg.client.connect import Connection
from pyreg.client.progress import Reporter
from pyreg.client.session import RegistrySession
from pyreg.client.store import ImageStore
from pyreg.client.transfer.blobs import CHUNK_SIZE, MONOLITHIC_MAX, UploadOutcome, upload_blob
from pyreg.client.transfer.pull import gather_all, transfer_lock
from pyreg.oci.digest import Digest
from pyreg.oci.imageref import ImageReference
from pyreg.oci.manifest import Descriptor, Manifest

CONCURRENCY = 5  # docker's max-concurrent-uploads


class PushResult(NamedTuple):
    name: ImageReference
    digest: Digest
    size: int  # of the top manifest, as docker prints it
    uploaded: int  # blob bytes sent (not counting what was found or mounted)


class _Job(NamedTuple):
    conn: Connection
    store: ImageStore
    name: str
    progress: Reporter
    pool: asyncio.Semaphore
    chunk_size: int
    monolithic_max: int
    started: dict[Digest, asyncio.Future[UploadOutcome]]

    def blob(self, desc: Descriptor, report: Reporter) -> Awaitable[UploadOutcome]:
        """The upload of `desc`, started once however many manifests share it."""
        if desc.digest not in self.started:
            async def run() -> UploadOutcome:
                async with self.pool:
                    return await upload_blob(self.conn.api, self.name, desc, self.store, self.conn.endpoint.host,
                                             report, self.conn.api.retry, self.chunk_size, self.monolithic_max)
            self.started[desc.digest] = asyncio.ensure_future(run())
        return self.started[desc.digest]


async def push(session: RegistrySession, store: ImageStore, ref: ImageReference, *,
               progress: Reporter | None = None, concurrency: int = CONCURRENCY,
               chunk_size: int = CHUNK_SIZE, monolithic_max: int = MONOLITHIC_MAX,
               announce: bool = True) -> PushResult:
    progress = progress or Reporter()
    image = store.resolve(str(ref))
    if announce:
        progress.line(f"The push refers to repository [{ref.repository}]")
    async with transfer_lock(store):
        conn = await session.registry(ref.domain)
        job = _Job(conn, store, ref.path, progress, asyncio.Semaphore(concurrency), chunk_size,
                   monolithic_max, {})
        top = store.manifest(image.descriptor)
        try:
            if top.is_index:
                # Only the children this store holds (a pull keeps one platform of an index).
                children = [c for c in top.manifests if store.has_blob(c.digest)]
                await gather_all([_push_image(job, c, store.manifest(c), by_digest=True) for c in children])
            else:
                await _push_image(job, image.descriptor, top, by_digest=False)
        finally:
            for future in job.started.values():
                future.cancel()
        data = store.read_blob(image.descriptor.digest)
        await conn.api.put_manifest(ref.path, ref.tag or str(image.descriptor.digest), data,
                                    image.descriptor.media_type)
        store.record_sources(conn.endpoint.host, ref.path, [image.descriptor.digest])
    uploaded = sum(f.result().uploaded for f in job.started.values() if f.done() and not f.cancelled())
    return PushResult(ref, image.descriptor.digest, len(data), uploaded)


async def _push_image(job: _Job, desc: Descriptor, manifest: Manifest, *, by_digest: bool) -> None:
    await gather_all([_wait(job.blob(layer, job.progress)) for layer in manifest.layers])
    # The config after the layers, as docker does: docker reports layers only.
    if manifest.config is not None:
        await job.blob(manifest.config, Reporter())
    if by_digest:
        data = job.store.read_blob(desc.digest)
        await job.conn.api.put_manifest(job.name, str(desc.digest), data, desc.media_type)


async def _wait(awaitable: Awaitable[UploadOutcome]) -> UploadOutcome:
    return await awaitable
