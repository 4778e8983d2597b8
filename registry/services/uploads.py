"""Upload sessions: state in storage, so any worker process can continue any upload.

An upload is `_uploads/<id>/data` (the bytes so far) and `_uploads/<id>/startedat`. The running
hash cannot be serialised in Python, so each process keeps the hashers of the uploads it has
seen, keyed by id and valid for one offset; when it is missing or stale (another worker took a
chunk, the server restarted) the stored bytes are hashed again at commit. Correct first, fast in
the common case: one client, one connection, one worker.

A blob becomes visible only after its digest is verified: the upload's file is fsynced, moved
under `blobs/` by an atomic rename, and only then linked into the repository.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pyreg.oci.digest import Digest, Hasher, new_hasher
from pyreg.registry.errors import BlobUploadUnknown, DigestInvalid
from pyreg.registry.services import paths
from pyreg.registry.services.blobs import BlobInfo, BlobStore, RepositoryBlobs
from pyreg.registry.storage import FileWriter, PathNotFound, StorageDriver

# Client chunks are gathered into batches this large before a thread hashes and writes them:
# few thread hops, few syscalls, and the event loop keeps receiving meanwhile.
BATCH = 4 << 20
DEFAULT_ALGORITHM = "sha256"
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_HASHERS = 4096


def valid_upload_id(upload_id: str) -> bool:
    return _ID_RE.fullmatch(upload_id) is not None


@dataclass
class _Progress:
    hasher: Hasher
    offset: int


class UploadStore:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.driver: StorageDriver = store.driver
        self._progress: OrderedDict[str, _Progress] = OrderedDict()
        # Weak: a lock lives while a request holds it, so ids that never existed leave nothing.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- session state -------------------------------------------------------------------------

    async def create(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.driver.put_content(paths.upload_startedat(name, upload_id), started.encode())
        self._remember(upload_id, _Progress(new_hasher(DEFAULT_ALGORITHM), 0))
        return upload_id

    async def size(self, name: str, upload_id: str) -> int:
        """Bytes received so far; BLOB_UPLOAD_UNKNOWN when there is no such upload."""
        if not valid_upload_id(upload_id):
            raise BlobUploadUnknown()
        try:
            await self.driver.stat(paths.upload_startedat(name, upload_id))
        except PathNotFound:
            raise BlobUploadUnknown() from None
        try:
            return (await self.driver.stat(paths.upload_data(name, upload_id))).size
        except PathNotFound:
            return 0

    def lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    def _remember(self, upload_id: str, progress: _Progress) -> None:
        self._progress[upload_id] = progress
        self._progress.move_to_end(upload_id)
        while len(self._progress) > _MAX_HASHERS:
            self._progress.popitem(last=False)

    def _forget(self, upload_id: str) -> None:
        self._progress.pop(upload_id, None)

    # -- data ----------------------------------------------------------------------------------

    async def append(self, name: str, upload_id: str, body: AsyncIterator[bytes], offset: int) -> int:
        """Append the body at `offset` (the current size, checked by the caller under the lock).

        Returns the new size. When the body stops early (client gone), what arrived is kept and
        the upload stays consistent: its status tells the client where to resume.
        """
        progress = self._progress.get(upload_id)
        hasher: Hasher | None = None
        if progress is not None and progress.offset == offset:
            hasher = progress.hasher
        elif offset == 0:
            hasher = new_hasher(DEFAULT_ALGORITHM)
        # Drop the entry while the hasher is being advanced: if anything fails half-way it must
        # not be trusted again.
        self._progress.pop(upload_id, None)
        writer = await self.driver.writer(paths.upload_data(name, upload_id), append=True)
        try:
            await _pump(body, writer, hasher)
            size = writer.size
        finally:
            await writer.close()
        if hasher is not None:
            self._remember(upload_id, _Progress(hasher, size))
        return size

    async def commit(self, name: str, upload_id: str, digest: Digest) -> BlobInfo:
        """Verify the upload against `digest`, then make the blob visible in the repository."""
        data = paths.upload_data(name, upload_id)
        try:
            size = (await self.driver.stat(data)).size
        except PathNotFound:
            size = 0
        if size > 0:
            # Durable, and readable as one file, before it is hashed or moved: an S3 writer's
            # bytes are parts of a multipart upload until it is committed.
            writer = await self.driver.writer(data, append=True)
            try:
                await writer.commit()
            finally:
                await writer.close()
        progress = self._progress.get(upload_id)
        if (
            progress is not None
            and progress.offset == size
            and digest.algorithm == DEFAULT_ALGORITHM
        ):
            actual = progress.hasher.hexdigest()
        else:
            actual = await self._rehash(data, digest.algorithm, size)
        if actual != digest.encoded:
            await self.cancel(name, upload_id)
            raise DigestInvalid(detail={"digest": str(digest)})
        if await self.store.stat(digest) is None:
            if size == 0:
                await self.driver.put_content(paths.blob_data(digest), b"")
            else:
                await self.driver.move(data, paths.blob_data(digest))
        await RepositoryBlobs(self.store, name).link(digest)
        await self._delete(name, upload_id)
        return BlobInfo(digest, size)

    async def cancel(self, name: str, upload_id: str) -> None:
        await self._delete(name, upload_id)

    async def _delete(self, name: str, upload_id: str) -> None:
        self._forget(upload_id)
        try:
            await self.driver.delete(paths.upload_dir(name, upload_id))
        except PathNotFound:
            pass

    async def _rehash(self, path: str, algorithm: str, size: int) -> str:
        hasher = new_hasher(algorithm)
        if size == 0:
            return hasher.hexdigest()
        loop = asyncio.get_running_loop()
        async for chunk in self.driver.reader(path):
            await loop.run_in_executor(None, hasher.update, chunk)
        return hasher.hexdigest()

    # -- maintenance ---------------------------------------------------------------------------

    async def purge(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Delete uploads started more than `older_than` seconds ago (distribution's uploadpurging)."""
        cutoff = time.time() - older_than
        purged: list[str] = []
        try:
            walker = self.driver.walk(paths.REPOSITORIES)
            async for info in walker:
                if info.is_dir or not info.path.endswith("/startedat"):
                    continue
                upload_dir = info.path.rsplit("/", 1)[0]
                if "/_uploads/" not in upload_dir:
                    continue
                started = await _started_at(self.driver, info.path, info.mtime)
                if started < cutoff:
                    purged.append(upload_dir)
                    if not dry_run:
                        try:
                            await self.driver.delete(upload_dir)
                        except PathNotFound:
                            pass
        except PathNotFound:
            pass
        return purged


async def _started_at(driver: StorageDriver, path: str, fallback: float) -> float:
    try:
        raw = (await driver.get_content(path)).decode().strip()
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except (PathNotFound, ValueError, UnicodeDecodeError):
        return fallback


async def _pump(body: AsyncIterator[bytes], writer: FileWriter, hasher: Hasher | None) -> None:
    """Copy the body to the writer (and hasher) in large batches, overlapping receive and I/O."""
    loop = asyncio.get_running_loop()

    def consume(batch: bytes | bytearray) -> asyncio.Future[object]:
        if hasher is None:
            return asyncio.ensure_future(writer.write(batch))
        return asyncio.ensure_future(
            asyncio.gather(writer.write(batch), loop.run_in_executor(None, hasher.update, batch))
        )

    pending: asyncio.Future[object] | None = None
    buf = bytearray()
    try:
        async for chunk in body:
            buf += chunk
            if len(buf) >= BATCH:
                if pending is not None:
                    await pending
                pending, buf = consume(buf), bytearray()
    finally:
        # Whatever arrived is written, so that the data and the hasher stay in step.
        if pending is not None:
            await pending
        if buf:
            await consume(buf)
