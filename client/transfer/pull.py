"""Pull: registry → local store, for one reference.

    manifest (verified) ─► index? choose the platform, fetch that manifest (verified)
                       ─► config + layers in a bounded pool, each digest once, skipping what the
                          store has ─► manifest blob ─► the name in index.json, last

An index is resolved like docker does: only the chosen platform's manifest (and its blobs) is
stored, under the name, with the index's digest kept as the image's repo digest (what `images
--digests` shows and `pull NAME@DIGEST` finds). Pulling the same name for another platform
replaces it, leaving the previous one dangling until `image prune`. A push of such an image pushes
that one manifest, not the index.

Mirrors of the registry are tried in order, then the registry itself; a mirror that fails in any
way (down, missing the image, bad content) hands over to the next. Nothing enters the store
unverified, and the name is written only when every blob is in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar

from pyreg.client import errors
from pyreg.client.api import RegistryClient
from pyreg.client.connect import Connection
from pyreg.client.progress import Reporter
from pyreg.client.session import RegistrySession
from pyreg.client.store import ImageStore
from pyreg.client.transfer.blobs import download_blob
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.imageref import ImageReference
from pyreg.oci.manifest import Descriptor, ManifestError, parse_manifest
from pyreg.oci.platform import Platform, choose, host_platform

T = TypeVar("T")
CONCURRENCY = 3  # docker's max-concurrent-downloads
MAX_CONFIG_SIZE = 8 << 20  # an image config read into memory (to check its platform)


class PullResult(NamedTuple):
    name: ImageReference  # the name the store now holds the image under
    digest: Digest  # what the registry knows it by (the index's when there is one)
    manifest: Descriptor  # the platform manifest stored
    downloaded: int  # blobs fetched, the rest were already here
    up_to_date: bool  # the name already pointed at this manifest


@asynccontextmanager
async def transfer_lock(store: ImageStore) -> AsyncIterator[None]:
    """Hold the store's shared transfer lock (waiting off the event loop if a collection runs)."""
    lock = store.transfer()
    await asyncio.to_thread(lock.__enter__)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


async def pull(session: RegistrySession, store: ImageStore, ref: ImageReference, *,
               platform: Platform | None = None, progress: Reporter | None = None,
               concurrency: int = CONCURRENCY) -> PullResult:
    progress = progress or Reporter()
    endpoints = session.config.pull_endpoints(ref.domain)
    async with transfer_lock(store):
        for i, endpoint in enumerate(endpoints):
            try:
                conn = await session.connection(endpoint)
                return await _pull_from(conn, store, ref, platform or host_platform(), progress, concurrency,
                                        explicit=platform is not None)
            except (errors.TransportError, errors.ResponseError, errors.IntegrityError) as e:
                if i == len(endpoints) - 1:
                    raise
                progress.line(f"mirror {endpoint.host} failed ({e}); trying the next")
    raise AssertionError("no endpoints")  # pull_endpoints always includes the registry


async def _pull_from(conn: Connection, store: ImageStore, ref: ImageReference, platform: Platform,
                     progress: Reporter, concurrency: int, explicit: bool = False) -> PullResult:
    api, name = conn.api, ref.path
    if ref.tag and not ref.digest:
        progress.line(f"{ref.tag}: Pulling from {ref.path.removeprefix('library/') if ref.domain == 'docker.io' else ref.path}")
    top = await api.get_manifest(name, ref.reference)
    fetched = top
    if top.media_type not in mediatypes.MANIFEST_TYPES:
        raise errors.ClientError(f"{ref}: unsupported manifest type {top.media_type}")
    try:
        manifest = parse_manifest(top.data, top.media_type)
    except ManifestError as e:
        raise errors.ClientError(f"{ref}: {e}") from None
    if manifest.is_index:
        chosen = choose([m.platform for m in manifest.manifests], platform)
        if chosen is None:
            available = ", ".join(sorted({str(Platform.from_json(m.platform)) for m in manifest.manifests if m.platform}))
            raise errors.PlatformNotFound(
                f"{ref}: no image for platform {platform} (available: {available or 'none'})")
        child = manifest.manifests[chosen]
        fetched = await api.get_manifest(name, str(child.digest))
        if fetched.media_type not in mediatypes.IMAGE_TYPES:
            fetched = type(fetched)(fetched.data, child.media_type, fetched.digest)
        manifest = parse_manifest(fetched.data, fetched.media_type)
        if manifest.is_index:
            raise errors.ClientError(f"{ref}: nested indexes are not supported")
    elif explicit and manifest.config is not None:
        # A single-platform image and a platform asked for: as docker, refuse one of another.
        actual = await _config_platform(api, name, manifest.config)
        if actual is not None and not actual.matches(platform):
            raise errors.PlatformNotFound(f"image with reference {ref} was found but does not match "
                                          f"the specified platform: wanted {platform}, actual: {actual}")
    blobs: dict[Digest, Descriptor] = {}
    for desc in ([manifest.config] if manifest.config else []) + list(manifest.layers):
        blobs.setdefault(desc.digest, desc)
    config_digest = manifest.config.digest if manifest.config else None
    quiet = Reporter()
    pool = asyncio.Semaphore(concurrency)

    async def fetch(desc: Descriptor) -> bool:
        # docker reports layers, not the config.
        report = quiet if desc.digest == config_digest else progress
        return await download_blob(api, name, desc, store, report, api.retry, slot=pool)

    results = await gather_all([fetch(d) for d in blobs.values()])
    if any(results):
        store.sync_blobs()  # the new blobs' names, durable before the index names them
    store.put_blob(fetched.data, fetched.digest)
    descriptor = Descriptor(fetched.media_type, fetched.digest, len(fetched.data))
    store_name = ref if ref.tag is None else ImageReference(ref.domain, ref.path, ref.tag)
    previous = [i for i in store.images() if i.name == store_name]
    store.add(store_name, descriptor, top.digest)
    store.record_sources(conn.endpoint.host, name, [*blobs, fetched.digest])
    up_to_date = bool(previous) and previous[0].descriptor.digest == fetched.digest
    return PullResult(store_name, top.digest, descriptor, sum(results), up_to_date)


async def _config_platform(api: RegistryClient, name: str, config: Descriptor) -> Platform | None:
    """The platform an image config names (None when it names none), read and verified in memory."""
    if config.size > MAX_CONFIG_SIZE:
        raise errors.ResponseTooLarge(f"config {config.digest}: {config.size} bytes, more than {MAX_CONFIG_SIZE}")
    data = b""
    async with api.get_blob(name, config.digest) as response:
        async for piece in response.aiter_bytes():
            data += piece
            if len(data) > config.size:
                break
    if len(data) != config.size or Digest.from_bytes(data, config.digest.algorithm) != config.digest:
        raise errors.IntegrityError(f"config {config.digest}: the registry sent other content")
    try:
        fields = json.loads(data)
        return Platform.from_json(fields) if fields.get("os") and fields.get("architecture") else None
    except (ValueError, AttributeError):
        raise errors.ClientError(f"config {config.digest}: not an image configuration") from None


async def gather_all(jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the jobs; on the first failure cancel the rest and raise it (not a group of errors)."""
    tasks = [asyncio.ensure_future(j) for j in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

