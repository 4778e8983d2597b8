"""A blob being written into the store: appended, hashed, verified, then published by rename.

    <root>/ingest/<alg>-<hex>     the partial file, locked (flock) by its writer

Durability without waiting: every `WRITEBACK` bytes the kernel is asked to start writing the
range to disk (`sync_file_range`, Linux), so that the `fdatasync` at commit finds little left to
do; the rename that publishes the blob comes after that sync, so a crash can never leave a blob
visible but half-written. The directory holding the new name is synced once per batch of blobs
by the caller (`commit(sync_dir=False)`), not once per blob.

`write_chunks` is meant to run in a worker thread while the event loop receives the next bytes:
hashlib and `os.write` release the GIL. `close` waits for a write in flight, so that a cancelled
download never leaves a thread writing into a closed (and maybe reused) file descriptor.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pyreg.client.errors import IntegrityError
from pyreg.oci.digest import Digest, Hasher
from pyreg.oci.layout import sync_dir

WRITEBACK = 8 << 20
READ_SIZE = 1 << 20
# Bytes per pwrite, however large the batch. Larger writes make Linux (6.x, ext4 with large folios)
# put them in large page-cache folios, and on this project's VMs copying into those was at times
# many times slower: a 1 GiB pull spent 2.2-2.6 s of system time in copy_folio_from_iter_atomic
# with 1 MiB writes, 0.55-0.65 s with 256 KiB ones (bench/profile.md, "Client pull").
WRITE_PIECE = 256 << 10


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writeback, do not wait."""
    import ctypes  # when the first writeback is due, in a worker thread: start-up time counts

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, 2)  # advisory: a failure only means no head start

    return start_writeback


_writeback: list[Callable[[int, int, int], None] | None] = []  # loaded once, when first needed


def _start_writeback(fd: int, offset: int, nbytes: int) -> None:
    if not _writeback:
        _writeback.append(_load_sync_file_range())
    if _writeback[0] is not None:
        _writeback[0](fd, offset, nbytes)


class BlobIngest:
    """Append, then `commit` verifies and publishes. After an interruption the partial file stays,
    so that a later attempt resumes from `offset` (the hasher is rebuilt by re-reading it)."""

    def __init__(self, path: Path, final: Path, digest: Digest, size: int, wait: bool = True) -> None:
        """`wait=False` raises BlockingIOError when another process holds the blob's lock."""
        self.path, self.final, self.digest, self.size = path, final, digest, size
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BaseException:
            os.close(self._fd)
            raise
        self.hasher: Hasher = digest.hasher()
        self.offset = 0
        while chunk := os.pread(self._fd, READ_SIZE, self.offset):
            self.hasher.update(chunk)
            self.offset += len(chunk)
        self._unsynced = 0  # where the range not yet handed to writeback starts
        if self.offset > size:  # a stale partial of something else: start over
            self.reset()

    def reset(self) -> None:
        with self._lock:
            os.ftruncate(self._fd, 0)
            self.hasher = self.digest.hasher()
            self.offset = self._unsynced = 0

    def write(self, data: bytes) -> None:
        self.write_chunks((data,))

    def write_chunks(self, chunks: Sequence[bytes | memoryview]) -> None:
        """Append and hash; safe to run in a thread (one call at a time)."""
        with self._lock:
            total = sum(len(c) for c in chunks)
            if self.offset + total > self.size:
                raise IntegrityError(f"{self.digest}: more than the expected {self.size} bytes")
            for chunk in chunks:
                self.hasher.update(chunk)
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(self._fd, view[:WRITE_PIECE], self.offset)
                    view = view[written:]
                    self.offset += written
            if self.offset - self._unsynced >= WRITEBACK:
                _start_writeback(self._fd, self._unsynced, self.offset - self._unsynced)
                self._unsynced = self.offset

    def commit(self, sync_dir: bool = True) -> None:
        """Publish the blob if it is complete and correct; on a mismatch, discard it."""
        actual = f"{self.digest.algorithm}:{self.hasher.hexdigest()}"
        if self.offset != self.size or actual != str(self.digest):
            self.reset()
            got = f"{self.offset} bytes" if self.offset != self.size else actual
            raise IntegrityError(f"{self.digest}: digest mismatch, expected {self.size} bytes, got {got}")
        os.fchmod(self._fd, 0o644)
        os.fdatasync(self._fd)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, self.final)
        if sync_dir:
            sync_blob_dir(self.final)

    def close(self) -> None:
        with self._lock:  # a write in flight finishes first
            if self._fd < 0:
                return
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.close()


def sync_blob_dir(blob: Path) -> None:
    """Make the names of blobs renamed into `blob`'s directory durable (one fsync for many)."""
    sync_dir(blob.parent)
