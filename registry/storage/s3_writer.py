"""The S3 driver's file writer: an S3 multipart upload that any process can continue.

S3 has no append, and the bytes of an upload must survive the request, the process and the
replica that received them. A file being written is therefore kept in the bucket as:

- a multipart upload at the file's own key, whose parts are all at least 5 MiB (S3's minimum for
  every part but the last); client writes are buffered until a part is full;
- a *state object* at the file's key itself, written by `close`: its body is the tail of the file
  that did not fill a part (under 5 MiB), its metadata names the multipart upload, how many of its
  parts belong to the file and how many bytes they hold. One HeadObject answers `stat` with the
  file's size (bytes in parts + tail), one GetObject reopens it for appending. Parts beyond the
  recorded count (a writer that died before its `close`) are ignored and overwritten.

`commit` uploads the tail as the last part and completes the upload: the object at the key is then
the whole file, and the state object is gone (it is replaced by the completed object). A file
under 5 MiB never starts a multipart upload; it is committed with one PutObject.

Until it is committed a file has no readable bytes: `get_content` and `reader` answer PathNotFound,
`stat` gives its size, `list` and `walk` show it with the size of its tail. Appending to a committed
file turns the object into the upload's first parts by server-side copies (UploadPartCopy), or
reads it back when it is under 5 MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from pyreg.registry.storage.driver import PathNotFound, StorageError
from pyreg.registry.storage.s3_bucket import MIN_PART, S3Bucket

CONTENT_TYPE = "application/octet-stream"  # distribution's, for every object it writes
MAX_IN_FLIGHT = 2  # parts uploaded at once per writer: overlaps receiving and sending, bounds memory

# Metadata of a state object (S3 returns user metadata keys in lower case).
META_STATE = "pyreg-writer"  # present on every state object, never on a committed file
META_UPLOAD = "pyreg-upload-id"
META_PARTS = "pyreg-parts"
META_OFFSET = "pyreg-offset"


@dataclass
class PendingState:
    upload_id: str | None
    parts: int
    offset: int  # bytes in those parts


def pending_state(metadata: dict[str, str] | None) -> PendingState | None:
    """The writer state an object's metadata describes, or None for a committed file."""
    if not metadata or META_STATE not in metadata:
        return None
    return PendingState(
        metadata.get(META_UPLOAD) or None,
        int(metadata.get(META_PARTS) or 0),
        int(metadata.get(META_OFFSET) or 0),
    )


@dataclass
class _Part:
    number: int
    size: int
    etag: str | None  # None: uploaded by an earlier writer, or still in flight
    durable: bool


class S3Writer:
    def __init__(self, bucket: S3Bucket, path: str) -> None:
        self._bucket = bucket
        self._path = path
        self._key = bucket.key(path)
        self._chunk = bucket.options.chunksize
        self._upload_id: str | None = None
        self._parts: list[_Part] = []
        self._offset = 0  # bytes in `_parts`
        self._inherited = 0  # bytes in the parts of earlier writers (their sizes are not listed)
        self._base = 0  # a committed object at the key, to become the first parts if appended to
        self._buf = bytearray()  # bytes not yet in a part
        self._state_object = False  # the key holds a state object (the file is uncommitted)
        self._dirty = False  # the bucket does not yet hold what this writer holds
        self._in_flight: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._closed = False

    @classmethod
    async def open(cls, bucket: S3Bucket, path: str, append: bool) -> S3Writer:
        w = cls(bucket, path)
        if not append:
            head = await bucket.head(path)
            state = pending_state(head.get("Metadata")) if head is not None else None
            if state is not None and state.upload_id is not None:
                await w._abort(state.upload_id)
            w._dirty = True  # the file is replaced, as a truncating open does
            return w
        try:
            obj = await bucket.call(path, "get_object", Key=w._key)
        except PathNotFound:
            w._dirty = True  # the file exists, empty, from now on (O_CREAT)
            return w
        body = obj["Body"]
        try:
            state = pending_state(obj.get("Metadata"))
            size = int(obj["ContentLength"])
            if state is None and size >= MIN_PART:
                w._base = size  # copied server-side into parts only if something is appended
                return w
            w._buf = bytearray(await bucket.run(path, body.read))
        finally:
            body.close()
        if state is not None:
            w._state_object = True
            w._upload_id = state.upload_id
            w._parts = [_Part(n, 0, None, True) for n in range(1, state.parts + 1)]
            w._offset = w._inherited = state.offset
        return w

    @property
    def size(self) -> int:
        return self._base + self._offset + len(self._buf)

    def _check(self) -> None:
        if self._closed:
            raise StorageError(f"writer for {self._path} is closed")
        if self._failure is not None:
            raise self._failure

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._check()
        n = len(data)
        if n == 0:
            return 0
        self._buf += data
        self._dirty = True
        while len(self._buf) >= self._chunk:
            upload_id = await self._ensure_upload()
            self._launch(upload_id, self._take(self._chunk))
            await self._throttle()
        return n

    # -- parts ---------------------------------------------------------------------------------
    # At every await, each byte written is either in `_buf` or in a part of `_parts`: a failure
    # or a cancellation never loses track of one.

    async def _ensure_upload(self) -> str:
        if self._upload_id is not None:
            return self._upload_id
        created = await self._bucket.call(
            self._path, "create_multipart_upload", Key=self._key, ContentType=CONTENT_TYPE
        )
        upload_id: str = created["UploadId"]
        if self._base:
            await self._copy_base(upload_id)
        self._upload_id = upload_id  # only now: a failed copy leaves the base to copy again
        return upload_id

    async def _copy_base(self, upload_id: str) -> None:
        """Make the committed object the first parts, by copies inside S3, each ≥ 5 MiB."""
        size, step = self._base, self._bucket.options.copy_chunksize
        count = max(1, size // step)  # ranges of at least `step` bytes, the last one longer
        bounds = [size * i // count for i in range(count + 1)]
        source = {"Bucket": self._bucket.name, "Key": self._key}

        async def copy(number: int) -> _Part:
            first, end = bounds[number - 1], bounds[number]
            done = await self._bucket.call(
                self._path, "upload_part_copy", Key=self._key, UploadId=upload_id,
                PartNumber=number, CopySource=source, CopySourceRange=f"bytes={first}-{end - 1}",
            )
            return _Part(number, end - first, done["CopyPartResult"]["ETag"], True)

        self._parts = list(await asyncio.gather(*(copy(n) for n in range(1, count + 1))))
        self._offset, self._base = size, 0

    def _take(self, n: int) -> bytes:
        with memoryview(self._buf) as view:
            data = bytes(view[:n])
        del self._buf[:n]
        return data

    def _launch(self, upload_id: str, data: bytes) -> None:
        """Start uploading the next part in the background; its task holds its bytes."""
        part = _Part(len(self._parts) + 1, len(data), None, False)
        self._parts.append(part)
        self._offset += len(data)
        self._in_flight.add(asyncio.create_task(self._upload_part(upload_id, part, data)))

    async def _throttle(self) -> None:
        """Wait while too many parts are in flight: overlap, with bounded memory."""
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            done, self._in_flight = await asyncio.wait(
                self._in_flight, return_when=asyncio.FIRST_COMPLETED
            )
            self._collect(done)
            self._check()

    async def _upload_part(self, upload_id: str, part: _Part, data: bytes) -> None:
        done = await self._bucket.call(
            self._path, "upload_part", Key=self._key, UploadId=upload_id,
            PartNumber=part.number, Body=data,
        )
        part.etag, part.durable = done["ETag"], True

    def _collect(self, done: set[asyncio.Task[None]]) -> None:
        for task in done:
            exc = task.exception()
            if exc is not None and self._failure is None:
                self._failure = exc

    async def _drain(self) -> None:
        """Wait for every part in flight; a failure is kept in `_failure`."""
        if self._in_flight:
            done, _ = await asyncio.wait(self._in_flight)
            self._in_flight = set()
            self._collect(done)

    def _keep_durable_prefix(self) -> None:
        """After a failed part: the file is what the bucket holds for sure, nothing after it."""
        durable = 0
        while durable < len(self._parts) and self._parts[durable].durable:
            durable += 1
        del self._parts[durable:]
        self._offset = self._inherited + sum(p.size for p in self._parts)
        self._buf.clear()

    async def _etags(self, upload_id: str) -> list[dict[str, Any]]:
        if any(p.etag is None for p in self._parts):
            known: dict[int, str] = {}
            for page in await self._bucket.pages(
                self._path, "list_parts", Key=self._key, UploadId=upload_id
            ):
                for listed in page.get("Parts", []):
                    known[int(listed["PartNumber"])] = listed["ETag"]
            for p in self._parts:
                if p.etag is None:
                    if p.number not in known:
                        raise StorageError(f"{self._path}: part {p.number} is missing from S3")
                    p.etag = known[p.number]
        return [{"PartNumber": p.number, "ETag": p.etag} for p in self._parts]

    # -- the FileWriter protocol -----------------------------------------------------------------

    async def commit(self) -> None:
        self._check()
        await self._drain()
        self._check()
        if not (self._dirty or self._state_object):
            return  # the object at the key is the whole file already
        if self._upload_id is None and not self._base:
            await self._bucket.call(self._path, "put_object", Key=self._key,
                                    Body=bytes(self._buf), ContentType=CONTENT_TYPE)
            # `_buf` stays: it is the whole file, should more be appended.
        else:
            upload_id = await self._ensure_upload()
            if self._buf or not self._parts:
                self._launch(upload_id, self._take(len(self._buf)))  # the last part: any size
                await self._drain()
                self._check()
            parts = await self._etags(upload_id)
            await self._bucket.call(
                self._path, "complete_multipart_upload", Key=self._key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            # The completed object is the base of anything appended later.
            self._base, self._offset, self._inherited = self.size, 0, 0
            self._parts, self._upload_id = [], None
        self._dirty = self._state_object = False

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._dirty or self._failure is not None:
                await self._persist()
        finally:
            self._closed = True

    async def _persist(self) -> None:
        """Leave in the bucket what a later `writer(path, append=True)` continues from."""
        failure: Exception | None = None
        try:
            await self._drain()
            self._check()
            if self._base or len(self._buf) >= MIN_PART:
                # A state object is about to replace the committed object: make it parts first.
                upload_id = await self._ensure_upload()
                if len(self._buf) >= MIN_PART:
                    self._launch(upload_id, self._take(len(self._buf)))
                    await self._drain()
                    self._check()
        except Exception as exc:  # S3 failed a part
            failure = exc
            await self._drain()
            if self._base:
                raise  # the committed object at the key is still the whole file: keep it
            self._keep_durable_prefix()
        # If this fails too, the bucket keeps the previous state, consistent with its parts.
        await self._put_state()
        if failure is not None:
            raise failure

    async def _put_state(self) -> None:
        metadata = {META_STATE: "1"}
        if self._upload_id is not None:
            metadata |= {META_UPLOAD: self._upload_id, META_PARTS: str(len(self._parts)),
                         META_OFFSET: str(self._offset)}
        await self._bucket.call(self._path, "put_object", Key=self._key, Body=bytes(self._buf),
                                ContentType=CONTENT_TYPE, Metadata=metadata)
        self._dirty, self._state_object = False, True

    async def cancel(self) -> None:
        await self._drain()
        self._failure = None
        self._closed = True
        if self._upload_id is not None:
            await self._abort(self._upload_id)
        # Uploads of writers that died before writing their state are found by listing.
        await self._bucket.abort_uploads(self._path, self._key, exact=True)
        await self._bucket.call(self._path, "delete_object", Key=self._key)

    async def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(PathNotFound):  # already aborted or completed
            await self._bucket.call(self._path, "abort_multipart_upload", Key=self._key,
                                    UploadId=upload_id)
