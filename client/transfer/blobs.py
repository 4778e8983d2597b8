"""Moving one blob: download into the store (verified, resumable) or upload to a registry.

Download: stream into the store's ingest file, hashing as bytes arrive (in batches, in a worker
thread, while the next batch arrives; the body itself mostly skips httpx, see `blobget`); a broken
connection resumes with `Range` from what the file holds (a registry that ignores the range sends
everything again, and the file restarts); the blob is published only when size and digest match.

Upload, in order of cost: `HEAD` (the registry has it), a cross-repository mount from where the
store remembers seeing it (a refused mount is not a failure: the bytes go up instead), then the
bytes — one PUT for small blobs, sent again from a new upload after a transient failure; for large
ones one streamed PATCH and a PUT, resumed after a failure from the offset the upload-status
endpoint reports. Waits between attempts are what `Retry-After` asks, else backoff.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import httpx

from pyreg.client import errors
from pyreg.client.api import RegistryClient, UploadState, transport_error
from pyreg.client.ingest import BlobIngest
from pyreg.client.progress import Reporter, short
from pyreg.client.retry import RETRY_STATUSES, RetryPolicy
from pyreg.client.store import ImageStore
from pyreg.oci.manifest import Descriptor

MONOLITHIC_MAX = 32 << 20  # larger blobs go by PATCH, which can resume
MOUNT_ATTEMPTS = 3  # sources tried for a cross-repository mount (docker's maxMountAttempts)
CHUNK_SIZE = 0  # bytes per PATCH; 0: the whole blob in one streamed PATCH, as docker does
STREAM_CHUNK = 1 << 20


async def download_blob(api: RegistryClient, name: str, desc: Descriptor, store: ImageStore,
                        progress: Reporter, retry: RetryPolicy, slot: asyncio.Semaphore | None = None) -> bool:
    """Fetch `desc` into the store; False when it was already there. The blob's name is made
    durable by the caller (`store.sync_blobs()`), once for all the blobs of a pull. `slot`, when
    given, is held while the bytes come, and handed on before the final sync."""
    key = short(desc.digest)
    ingest: BlobIngest | None = None
    try:
        async with slot or nullcontext():
            if store.has_blob(desc.digest, desc.size):
                progress.done(key, "Already exists")
                return False
            # Another pyreg may be downloading the same blob: its lock makes us wait, then we find it.
            ingest = await _open_ingest(store, desc)
            if store.has_blob(desc.digest, desc.size):
                progress.done(key, "Already exists")
                return False
            progress.start(key, desc.size, "Downloading")
            progress.advance(key, ingest.offset)
            await _receive(api, name, desc, ingest, progress, key, retry)
        # The final sync runs in a thread while the other downloads go on.
        await asyncio.to_thread(ingest.commit, False)
        progress.done(key, "Pull complete")
        return True
    finally:
        if ingest is not None:
            ingest.close()


async def _receive(api: RegistryClient, name: str, desc: Descriptor, ingest: BlobIngest,
                   progress: Reporter, key: str, retry: RetryPolicy) -> None:
    """The blob's bytes into `ingest`, resuming with `Range` after a broken connection."""
    failures = 0
    while ingest.offset < desc.size or desc.size == 0:
        before = ingest.offset
        try:
            async with api.blob_body(name, desc.digest, start=ingest.offset) as body:
                if ingest.offset and body.status_code != 206:
                    progress.advance(key, -ingest.offset)
                    ingest.reset()
                # Each batch is hashed and written in a thread while the next one arrives (what
                # came before a failure is written too: the resume starts after it).
                async for batch in body:
                    await asyncio.to_thread(ingest.write_chunks, batch)
                    progress.advance(key, sum(len(piece) for piece in batch))
            if ingest.offset < desc.size:
                raise errors.IntegrityError(
                    f"{desc.digest}: the registry sent {ingest.offset} of {desc.size} bytes")
            return
        except (httpx.TransportError, errors.TransportError, errors.ResponseError) as e:
            transient = not isinstance(e, (errors.TLSFailure, errors.ResponseError)) or (
                isinstance(e, errors.ResponseError) and e.status in RETRY_STATUSES)
            # Progress made means the connection works: count only failures in a row.
            failures = 0 if ingest.offset > before else failures + 1
            if not transient or failures >= retry.attempts:
                if isinstance(e, httpx.TransportError):
                    raise transport_error(e, api.url(f"{name}/blobs/{desc.digest}")) from e
                raise
            await retry.sleep(retry.delay(failures, asked=getattr(e, "retry_after", None)))


async def _open_ingest(store: ImageStore, desc: Descriptor) -> BlobIngest:
    """Open and lock the blob's ingest file. Not in a thread: a thread cannot be cancelled, and
    a file it opened after a Ctrl-C would leak; poll the lock instead."""
    while True:
        try:
            return store.ingest(desc.digest, desc.size, wait=False)
        except BlockingIOError:
            await asyncio.sleep(0.1)


class UploadOutcome(NamedTuple):
    status: str  # "Pushed", "Layer already exists", "Mounted from <repo>"
    uploaded: int  # bytes sent


async def upload_blob(api: RegistryClient, name: str, desc: Descriptor, store: ImageStore,
                      registry: str, progress: Reporter, retry: RetryPolicy,
                      chunk_size: int = CHUNK_SIZE, monolithic_max: int = MONOLITHIC_MAX) -> UploadOutcome:
    key = short(desc.digest)
    if await api.head_blob(name, desc.digest) is not None:
        return _finish(progress, key, UploadOutcome("Layer already exists", 0))
    state: UploadState | None = None
    candidates = [source for source in store.sources(registry, desc.digest) if source != name]
    for source in candidates[:MOUNT_ATTEMPTS]:
        try:
            state = await api.mount_blob(name, desc.digest, source)
        except errors.ResponseError as e:
            # Refused (no pull access to the source any more, mounts not allowed…): as docker
            # does, try the next source, then upload; a real refusal to push shows there.
            if isinstance(e, (errors.Unauthorized, errors.Denied, errors.NotFound)):
                store.forget_source(registry, source, desc.digest)  # not worth asking again
            continue
        if state is None:
            store.record_sources(registry, name, [desc.digest])
            return _finish(progress, key, UploadOutcome(f"Mounted from {source}", 0))
        # The registry opened an upload instead (the source no longer has the blob): use it.
        store.forget_source(registry, source, desc.digest)
        break
    progress.start(key, desc.size, "Pushing")
    path = store.blob_path(desc.digest)
    if desc.size <= monolithic_max:
        await _monolithic(api, name, desc, path, state, progress, retry)
    else:
        await _patched(api, name, desc, path, state, progress, retry, chunk_size)
    store.record_sources(registry, name, [desc.digest])
    return _finish(progress, key, UploadOutcome("Pushed", desc.size))


async def _read_range(path: Path, start: int, end: int, progress: Reporter, key: str) -> AsyncIterator[bytes]:
    """Bytes `start` to `end` of the file, in pieces read off the event loop: one large write
    would make asyncio copy the unsent rest, again and again, for as long as the socket is full."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        offset = start
        while offset < end:
            chunk = await asyncio.to_thread(os.pread, fd, min(STREAM_CHUNK, end - offset), offset)
            if not chunk:
                raise errors.StoreError(f"{path}: shorter than its descriptor says")
            offset += len(chunk)
            yield chunk
            progress.advance(key, len(chunk))
    finally:
        os.close(fd)


def _finish(progress: Reporter, key: str, outcome: UploadOutcome) -> UploadOutcome:
    progress.done(key, outcome.status)
    return outcome


class _Tally(Reporter):
    """Passes progress on, counting it: a failed request's bytes are taken back."""

    def __init__(self, inner: Reporter) -> None:
        self.inner, self.total = inner, 0

    def advance(self, key: str, amount: int) -> None:
        self.total += amount
        self.inner.advance(key, amount)

    def rewind(self, key: str, to: int) -> None:
        self.advance(key, to - self.total)


def _transient(error: errors.TransportError | errors.ResponseError) -> bool:
    """Worth another attempt: a broken or refused connection, 429 or 5xx (not TLS, not 4xx)."""
    if isinstance(error, errors.ResponseError):
        return error.status in RETRY_STATUSES
    return not isinstance(error, errors.TLSFailure)


async def _monolithic(api: RegistryClient, name: str, desc: Descriptor, path: Path, state: UploadState | None,
                      progress: Reporter, retry: RetryPolicy) -> None:
    """The blob in one PUT (after the POST that opens the upload, unless a refused mount opened
    one). A transient failure starts a new upload: the registry keeps nothing of a failed PUT."""
    key = short(desc.digest)
    tally = _Tally(progress)
    failures = 0
    while True:
        try:
            state = state or await api.start_upload(name)
            await api.put_upload(state, desc.digest, _read_range(path, 0, desc.size, tally, key), size=desc.size)
            return
        except (errors.TransportError, errors.ResponseError) as e:
            failures += 1
            if failures >= retry.attempts or not _transient(e):
                raise
            tally.rewind(key, 0)
            state = None
            await retry.sleep(retry.delay(failures, asked=getattr(e, "retry_after", None)))


async def _patched(api: RegistryClient, name: str, desc: Descriptor, path: Path, state: UploadState | None,
                   progress: Reporter, retry: RetryPolicy, chunk_size: int) -> None:
    """PATCH the blob (in one streamed request, or in `chunk_size` pieces), then PUT the digest.
    After a failure, the upload-status endpoint says how much the registry kept: go on from there."""
    key = short(desc.digest)
    tally = _Tally(progress)
    state = state or await api.start_upload(name)
    failures = 0
    while True:
        try:
            while state.offset < desc.size:
                end = desc.size if chunk_size <= 0 else min(desc.size, state.offset + chunk_size)
                body = _read_range(path, state.offset, end, tally, key)
                state = await api.patch_upload(state, body, end - state.offset)
                tally.rewind(key, state.offset)
                failures = 0
            await api.put_upload(state, desc.digest)
            return
        except (errors.TransportError, errors.ResponseError) as e:
            failures += 1
            if failures >= retry.attempts or (
                    isinstance(e, errors.ResponseError) and e.status not in (*RETRY_STATUSES, 416)):
                raise
            await retry.sleep(retry.delay(failures, asked=getattr(e, "retry_after", None)))
            # Ask the registry how much it kept, and go on from there.
            state = await api.upload_status(state.location)
            tally.rewind(key, state.offset)
