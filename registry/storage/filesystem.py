"""Filesystem storage driver: distribution's `filesystem` driver, key for key.

Durability: every file becomes visible by `os.replace` of a fsynced temporary file in the same
directory, followed by a fsync of the directory, so a crash leaves the old file or the new one.
Temporary files are named `.tmp-*`; a crash can leave them behind, never under a real name.

Event loop: calls that may wait on the disk (writes, fsync, directory walks, large reads) run in
threads. Reads of small files that are almost always in the page cache (links, manifests) and
`stat` run inline: a thread hop costs more than the syscall.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TypeVar

from pyreg.registry.storage.driver import (
    FileInfo,
    InvalidPath,
    PathNotFound,
    StorageError,
    check_path,
)

T = TypeVar("T")

READ_CHUNK = 1 << 20  # bytes per read when streaming a file out


async def _in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemWriter:
    def __init__(self, driver: FilesystemDriver, path: str, full: str, fd: int, size: int) -> None:
        self._driver = driver
        self._path = path
        self._full = full
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def _write_all(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        return len(data)

    def write_sync(self, data: bytes | bytearray | memoryview) -> int:
        """Blocking write, for callers already in a worker thread."""
        n = self._write_all(data)
        self._size += n
        return n

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        return await _in_thread(partial(self.write_sync, data))

    async def commit(self) -> None:
        await _in_thread(partial(os.fsync, self._fd))

    async def cancel(self) -> None:
        await self.close()
        await self._driver.delete(self._path)

    async def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def full_path(self, path: str) -> str:
        return self.root + check_path(path)

    def _rel(self, full: str) -> str:
        return full[len(self.root) :] or "/"

    async def get_content(self, path: str) -> bytes:
        full = self.full_path(path)
        try:
            fd = os.open(full, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        try:
            # One read answers links and most manifests; os.* avoids open()'s extra syscalls.
            data = os.read(fd, 65536)
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

    def _put(self, full: str, data: bytes) -> None:
        directory = os.path.dirname(full)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, full)
        except BaseException:
            with _suppress_missing():
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    async def put_content(self, path: str, data: bytes) -> None:
        await _in_thread(partial(self._put, self.full_path(path), data))

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        full = self.full_path(path)
        try:
            fd = os.open(full, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        try:
            remaining = length if length is not None else os.fstat(fd).st_size - offset
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

    def _open_writer(self, full: str, append: bool) -> tuple[int, int]:
        os.makedirs(os.path.dirname(full), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(full, flags, 0o644)
        return fd, os.fstat(fd).st_size

    async def writer(self, path: str, append: bool = False) -> FilesystemWriter:
        full = self.full_path(path)
        fd, size = await _in_thread(partial(self._open_writer, full, append))
        return FilesystemWriter(self, path, full, fd, size)

    async def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self.full_path(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        is_dir = os.path.isdir(self.full_path(path))
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    def _list(self, path: str) -> list[str]:
        full = self.full_path(path)
        try:
            names = os.listdir(full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        base = path.rstrip("/")
        return [f"{base}/{n}" for n in names if not n.startswith(".tmp-")]

    async def list(self, path: str) -> list[str]:
        return await _in_thread(partial(self._list, path))

    def _move(self, source: str, dest: str) -> None:
        src_full, dst_full = self.full_path(source), self.full_path(dest)
        directory = os.path.dirname(dst_full)
        os.makedirs(directory, exist_ok=True)
        try:
            os.replace(src_full, dst_full)
        except FileNotFoundError:
            raise PathNotFound(source) from None
        _fsync_dir(directory)

    async def move(self, source: str, dest: str) -> None:
        await _in_thread(partial(self._move, source, dest))

    def _delete(self, path: str) -> None:
        full = self.full_path(path)
        if full == self.root:
            raise InvalidPath(path)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                # Rename first so that readers never see a half-deleted tree.
                doomed = os.path.join(os.path.dirname(full), f".tmp-{uuid.uuid4().hex}")
                os.replace(full, doomed)
                shutil.rmtree(doomed)
            else:
                os.unlink(full)
        except FileNotFoundError:
            raise PathNotFound(path) from None
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise PathNotFound(path) from None
            raise StorageError(str(e)) from e

    async def delete(self, path: str) -> None:
        await _in_thread(partial(self._delete, path))

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    def _walk(self, path: str) -> list[FileInfo]:
        full = self.full_path(path)
        if not os.path.isdir(full):
            raise PathNotFound(path)
        out: list[FileInfo] = []
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
            for name in dirnames:
                p = os.path.join(dirpath, name)
                out.append(FileInfo(self._rel(p), 0, os.stat(p).st_mtime, True))
            for name in sorted(filenames):
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


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        return isinstance(exc, FileNotFoundError)
