"""In-memory storage driver, for fast unit tests; behaves as the filesystem driver does.

Files live in a dict keyed by path. Directories are implicit, as in S3: a directory exists while a
file is under it, so deleting the last file under a directory removes the directory too (the
filesystem driver leaves the empty directory behind; tests must not rely on either).

Every operation runs without awaiting, so each is atomic with respect to other tasks. A reader
takes a snapshot at first use, as an open file descriptor keeps the old inode when the filesystem
driver replaces a file. A writer appends to its file object in place: what it writes is visible
before `commit`, and if the path is replaced or deleted meanwhile the writer keeps writing to the
orphaned object, as a writer holding a descriptor does.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator

from pyreg.registry.storage.driver import (
    FileInfo,
    PathNotFound,
    StorageError,
    check_path,
)

READ_CHUNK = 1 << 20  # bytes per chunk when streaming a file out, as the filesystem driver


def _parent(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name


class _File:
    __slots__ = ("data", "mtime")

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.mtime = time.time()


class InMemoryWriter:
    def __init__(self, driver: InMemoryDriver, path: str, file: _File) -> None:
        self._driver = driver
        self._path = path
        self._file: _File | None = file
        self._size = len(file.data)

    def _open_file(self) -> _File:
        if self._file is None:
            raise StorageError(f"writer for {self._path} is closed")
        return self._file

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        file = self._open_file()
        file.data += data
        file.mtime = time.time()
        self._size += len(data)
        return len(data)

    async def commit(self) -> None:
        self._open_file()

    async def cancel(self) -> None:
        await self.close()
        await self._driver.delete(self._path)

    async def close(self) -> None:
        self._file = None


class InMemoryDriver:
    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        # Directory path -> names of its direct children; "/" is the root.
        self._children: dict[str, set[str]] = {}
        self._dir_mtime: dict[str, float] = {}

    # Tree bookkeeping. A path is a directory iff it is a key of `_children`.

    def _check_creatable(self, path: str) -> None:
        """Raise unless a file may be stored at `path` (the filesystem fails likewise)."""
        if path in self._children:
            raise StorageError(f"cannot store a file at {path}: it is a directory")
        for ancestor in self._ancestors(path):
            if ancestor in self._files:
                raise StorageError(f"cannot store a file at {path}: {ancestor} is a file")

    def _link(self, path: str, file: _File) -> None:
        """Store `file` at `path`, creating the implicit parent directories."""
        self._check_creatable(path)
        self._files[path] = file
        now = time.time()
        while path != "/":
            parent, name = _parent(path)
            children = self._children.get(parent)
            self._dir_mtime[parent] = now
            if children is not None:
                children.add(name)
                return
            self._children[parent] = {name}
            path = parent

    def _unlink(self, path: str) -> _File:
        """Remove the file at `path`, and the implicit directories it leaves empty."""
        file = self._files.pop(path)
        now = time.time()
        while path != "/":
            parent, name = _parent(path)
            children = self._children[parent]
            children.discard(name)
            self._dir_mtime[parent] = now
            if children or parent == "/":
                break
            del self._children[parent]
            del self._dir_mtime[parent]
            path = parent
        return file

    @staticmethod
    def _ancestors(path: str) -> builtins.list[str]:
        parts = path.split("/")
        return ["/".join(parts[:i]) for i in range(2, len(parts))]

    def _files_under(self, directory: str) -> builtins.list[str]:
        out: builtins.list[str] = []
        for name in self._children[directory]:
            child = f"{directory}/{name}"
            if child in self._children:
                out.extend(self._files_under(child))
            else:
                out.append(child)
        return out

    # The driver interface.

    async def get_content(self, path: str) -> bytes:
        file = self._files.get(check_path(path))
        if file is None:
            raise PathNotFound(path)
        return bytes(file.data)

    async def put_content(self, path: str, data: bytes) -> None:
        check_path(path)
        file = _File(data)
        if path in self._files:
            self._files[path] = file
            self._dir_mtime[_parent(path)[0]] = file.mtime
        else:
            self._link(path, file)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        file = self._files.get(check_path(path))
        if file is None:
            raise PathNotFound(path)
        end = len(file.data) if length is None else offset + length
        snapshot = bytes(file.data[offset:end])
        for start in range(0, len(snapshot), READ_CHUNK):
            yield snapshot[start : start + READ_CHUNK]

    async def writer(self, path: str, append: bool = False) -> InMemoryWriter:
        check_path(path)
        file = self._files.get(path)
        if file is None:
            file = _File()
            self._link(path, file)
        elif not append:
            file.data.clear()
            file.mtime = time.time()
        return InMemoryWriter(self, path, file)

    async def stat(self, path: str) -> FileInfo:
        check_path(path)
        file = self._files.get(path)
        if file is not None:
            return FileInfo(path, len(file.data), file.mtime, False)
        if path in self._children:
            return FileInfo(path, 0, self._dir_mtime[path], True)
        raise PathNotFound(path)

    async def list(self, path: str) -> builtins.list[str]:
        check_path(path)
        children = self._children.get(path)
        if children is None:
            raise PathNotFound(path)
        return [f"{path}/{name}" for name in sorted(children)]

    async def move(self, source: str, dest: str) -> None:
        check_path(source)
        check_path(dest)
        if source in self._children:
            self._move_dir(source, dest)
            return
        if source not in self._files:
            raise PathNotFound(source)
        if source == dest:
            return
        self._check_creatable(dest)
        file = self._unlink(source)
        if dest in self._files:
            self._files[dest] = file
            self._dir_mtime[_parent(dest)[0]] = time.time()
        else:
            self._link(dest, file)

    def _move_dir(self, source: str, dest: str) -> None:
        # As rename(2): a directory moves only to a new name outside itself.
        if dest == source or dest.startswith(source + "/"):
            raise StorageError(f"cannot move {source} into itself")
        if dest in self._files or dest in self._children:
            raise StorageError(f"cannot move the directory {source} onto existing {dest}")
        if any(a in self._files for a in self._ancestors(dest)):
            raise StorageError(f"cannot move {source} to {dest}: a parent is a file")
        for path in self._files_under(source):
            file = self._unlink(path)
            self._link(dest + path[len(source) :], file)

    async def delete(self, path: str) -> None:
        check_path(path)
        if path in self._files:
            self._unlink(path)
        elif path in self._children:
            for file in self._files_under(path):
                self._unlink(file)
        else:
            raise PathNotFound(path)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        check_path(path)
        return None

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        check_path(path)
        if path not in self._children:
            raise PathNotFound(path)
        # The filesystem driver's order (os.walk, top down): a directory's subdirectories, then
        # its files, each sorted; then the same for each subdirectory in turn.
        for info in self._walk(path):
            yield info

    def _walk(self, directory: str) -> builtins.list[FileInfo]:
        names = sorted(self._children[directory])
        dirs = [f"{directory}/{n}" for n in names if f"{directory}/{n}" in self._children]
        files = [f"{directory}/{n}" for n in names if f"{directory}/{n}" in self._files]
        out = [FileInfo(d, 0, self._dir_mtime[d], True) for d in dirs]
        out += [FileInfo(f, len(self._files[f].data), self._files[f].mtime, False) for f in files]
        for d in dirs:
            out += self._walk(d)
        return out


__all__ = ["InMemoryDriver", "InMemoryWriter"]
