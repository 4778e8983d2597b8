"""Filesystem storage driver: distribution's `filesystem` driver, key for key.

Durability: `put_content` and `move` make a file visible by `os.replace` of a fsynced file,
followed by a fsync of the directory; new directories are fsynced into their parents. A crash
leaves the old file or the new one. Temporary files are named `.tmp-*`; a crash can leave them
behind, never under a real name, and listings never show them. A writer (uploads) writes in place,
as distribution's does: its file has no meaning until the upload is committed and moved.

Event loop: calls that may wait on the disk (writes, fsync, directory walks, large reads) run in
threads. Reads of small files that are almost always in the page cache (links, manifests) and
`stat` run inline: a thread hop costs more than the syscall.

The root's contents are trusted: paths are checked against the driver's grammar, symlinks placed
inside the root by its administrator are followed (e.g. to put blobs on another volume).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ctypes
import errno
import os
import shutil
import stat as stat_mod
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import TypeVar

from pyreg.oci.layout import sync_dir
from pyreg.registry.storage.driver import (
    FileInfo,
    InvalidPath,
    PathNotFound,
    StorageError,
    StorageUnavailable,
    check_path,
)

T = TypeVar("T")

READ_CHUNK = 1 << 20  # bytes per read when streaming a file out
WRITEBACK_STEP = 8 << 20  # start the disk writing an upload every this many bytes
# Bytes per write(2). Larger writes are no faster, and on some VMs much slower: the kernel copies
# a multi-MiB write into freshly faulted huge pages (bench/profile.md, "Client pull").
WRITE_PIECE = 256 << 10
SMALL_FILE = 4096  # files up to this size (links) are cached, checked by one stat per read
_SMALL_CACHE_ENTRIES = 16384
_FULL = (errno.ENOSPC, errno.EDQUOT)


async def _in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    """Map OS errors onto the driver's: missing → PathNotFound, disk full → StorageUnavailable."""
    try:
        yield
    except StorageError:
        raise
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotFound(path) from None
    except OSError as e:
        if e.errno in _FULL:
            raise StorageUnavailable(f"{path}: {e.strerror}", retry_after=60) from e
        raise StorageError(f"{path}: {e.strerror or e}") from e


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(2): start writeback of a range without waiting for it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    write = 2  # SYNC_FILE_RANGE_WRITE

    def start_writeback(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, write)  # advisory: an error only means no head start

    return start_writeback


# Without it, the fsync at the end of a large upload would wait for the whole blob to reach the
# disk after the last byte arrived; with it, receiving and writeback overlap.
_start_writeback = _load_sync_file_range()


def _makedirs(directory: str) -> None:
    """Create missing directories, each fsynced into its parent so that a crash keeps it."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    _makedirs(parent)
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return
    sync_dir(parent)


class FilesystemWriter:
    def __init__(self, path: str, full: str, fd: int, size: int, created: bool) -> None:
        self._path = path
        self._full = full
        self._fd = fd
        self._size = size
        self._created = created
        self._synced_to = size  # writeback has been started up to here

    @property
    def size(self) -> int:
        return self._size

    def write_sync(self, data: bytes | bytearray | memoryview) -> int:
        """Blocking write, for callers already in a worker thread."""
        view = memoryview(data)
        with _errors(self._path):
            while view:
                n = os.write(self._fd, view[:WRITE_PIECE])
                view = view[n:]
                self._size += n
        if _start_writeback is not None and self._size - self._synced_to >= WRITEBACK_STEP:
            _start_writeback(self._fd, self._synced_to, self._size - self._synced_to)
            self._synced_to = self._size
        return len(data)

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        return await _in_thread(partial(self.write_sync, data))

    def _commit(self) -> None:
        with _errors(self._path):
            os.fsync(self._fd)
            if self._created:
                sync_dir(os.path.dirname(self._full))
                self._created = False

    async def commit(self) -> None:
        await _in_thread(self._commit)

    async def cancel(self) -> None:
        await self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._full)

    async def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        # Small files by full path, with the identity they had when read. Every write of a file
        # is a rename of a new inode, so an unchanged (inode, mtime, size) means unchanged bytes,
        # whichever process wrote it: one stat replaces open/read/close on the hot path.
        self._small: dict[str, tuple[int, int, int, bytes]] = {}

    def full_path(self, path: str) -> str:
        return self.root + check_path(path)

    def _rel(self, full: str) -> str:
        return full[len(self.root) :] or "/"

    async def get_content(self, path: str) -> bytes:
        full = self.full_path(path)
        cached = self._small.get(full)
        if cached is not None:
            try:
                st = os.stat(full)
            except OSError:
                st = None
            if st is not None and (st.st_ino, st.st_mtime_ns, st.st_size) == cached[:3]:
                return cached[3]
            del self._small[full]
        with _errors(path):
            try:
                fd = os.open(full, os.O_RDONLY)
            except IsADirectoryError:
                raise PathNotFound(path) from None
            try:
                # One read answers links and most manifests; os.* avoids open()'s extra syscalls.
                data = os.read(fd, 65536)
                if len(data) <= SMALL_FILE:
                    st = os.fstat(fd)
                    if stat_mod.S_ISREG(st.st_mode) and st.st_size == len(data):
                        if len(self._small) >= _SMALL_CACHE_ENTRIES:
                            self._small.clear()
                        self._small[full] = (st.st_ino, st.st_mtime_ns, st.st_size, data)
                    return data
                if len(data) < 65536:
                    return data
                parts = [data]
                while chunk := os.read(fd, 1 << 20):
                    parts.append(chunk)
                return b"".join(parts)
            except IsADirectoryError:
                raise PathNotFound(path) from None
            finally:
                os.close(fd)

    def _put(self, path: str, data: bytes) -> None:
        full = self.full_path(path)
        directory = os.path.dirname(full)
        with _errors(path):
            _makedirs(directory)
            tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, full)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            sync_dir(directory)

    async def put_content(self, path: str, data: bytes) -> None:
        await _in_thread(partial(self._put, path, data))

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        full = self.full_path(path)
        with _errors(path):
            fd = os.open(full, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if stat_mod.S_ISDIR(st.st_mode):
                raise PathNotFound(path)
            remaining = length if length is not None else st.st_size - offset
            pos = offset
            loop = asyncio.get_running_loop()
            while remaining > 0:
                chunk = await loop.run_in_executor(
                    None, os.pread, fd, min(READ_CHUNK, remaining), pos
                )
                if not chunk:
                    break
                pos += len(chunk)
                remaining -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def _open_writer(self, path: str, append: bool) -> FilesystemWriter:
        full = self.full_path(path)
        with _errors(path):
            _makedirs(os.path.dirname(full))
            created = not os.path.exists(full)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            fd = os.open(full, flags, 0o644)
            return FilesystemWriter(path, full, fd, os.fstat(fd).st_size, created)

    async def writer(self, path: str, append: bool = False) -> FilesystemWriter:
        return await _in_thread(partial(self._open_writer, path, append))

    async def stat(self, path: str) -> FileInfo:
        with _errors(path):
            st = os.stat(self.full_path(path))
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    def _list(self, path: str) -> builtins.list[str]:
        with _errors(path):
            names = os.listdir(self.full_path(path))
        base = path.rstrip("/")
        return [f"{base}/{n}" for n in names if not n.startswith(".tmp-")]

    async def list(self, path: str) -> builtins.list[str]:
        return await _in_thread(partial(self._list, path))

    def _move(self, source: str, dest: str) -> None:
        src_full, dst_full = self.full_path(source), self.full_path(dest)
        src_dir, dst_dir = os.path.dirname(src_full), os.path.dirname(dst_full)
        with _errors(source):
            try:
                os.replace(src_full, dst_full)
            except FileNotFoundError:
                if not os.path.exists(src_full):
                    raise
                _makedirs(dst_dir)
                os.replace(src_full, dst_full)
            sync_dir(dst_dir)
            if src_dir != dst_dir:
                sync_dir(src_dir)

    async def move(self, source: str, dest: str) -> None:
        await _in_thread(partial(self._move, source, dest))

    def _delete(self, path: str) -> None:
        full = self.full_path(path)
        if full == self.root:
            raise InvalidPath(path)
        with _errors(path):
            if os.path.isdir(full) and not os.path.islink(full):
                # Rename first so that readers never see a half-deleted tree.
                doomed = os.path.join(os.path.dirname(full), f".tmp-{uuid.uuid4().hex}")
                os.replace(full, doomed)
                shutil.rmtree(doomed)
            else:
                os.unlink(full)

    async def delete(self, path: str) -> None:
        await _in_thread(partial(self._delete, path))

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    def _walk(self, path: str) -> builtins.list[FileInfo]:
        full = self.full_path(path)
        if not os.path.isdir(full):
            raise PathNotFound(path)
        out: builtins.list[FileInfo] = []
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
            for name in dirnames:
                p = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    out.append(FileInfo(self._rel(p), 0, os.stat(p).st_mtime, True))
            for name in sorted(f for f in filenames if not f.startswith(".tmp-")):
                p = os.path.join(dirpath, name)
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    continue
                out.append(FileInfo(self._rel(p), st.st_size, st.st_mtime, False))
        return out

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        for info in await _in_thread(partial(self._walk, path)):
            yield info
