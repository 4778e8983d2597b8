"""The storage driver interface every backend implements (distribution's, made async).

Paths are absolute, slash-separated and made of `[A-Za-z0-9._-]` components, e.g.
`/docker/registry/v2/blobs/sha256/ab/ab12.../data`. A driver never sees a path from the network:
the registry's services build every path from validated names and digests, and drivers check the
grammar again so that no path can escape the root.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """Base of every storage-driver error."""


class PathNotFound(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPath(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"invalid storage path: {path!r}")
        self.path = path


class StorageUnavailable(StorageError):
    """The backend failed or timed out; nothing committed was lost and the call may be retried."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._-]+)+")


def check_path(path: str) -> str:
    if not _PATH_RE.fullmatch(path) or any(c in (".", "..") for c in path.split("/")):
        raise InvalidPath(path)
    return path


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    is_dir: bool


class FileWriter(Protocol):
    """An append-only writer. Nothing written is guaranteed durable before `commit`."""

    @property
    def size(self) -> int: ...

    async def write(self, data: bytes | bytearray | memoryview) -> int: ...

    async def commit(self) -> None:
        """Make everything written so far durable (fsync, or the last part uploaded)."""

    async def cancel(self) -> None:
        """Discard the file."""

    async def close(self) -> None:
        """Release resources; the bytes written stay for a later `writer(path, append=True)`."""


class StorageDriver(Protocol):
    name: str

    async def get_content(self, path: str) -> bytes: ...

    async def put_content(self, path: str, data: bytes) -> None:
        """Write atomically: readers see the old content or the new one, never a part."""

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (all by default) from `offset`; PathNotFound on first use."""
        ...

    async def writer(self, path: str, append: bool = False) -> FileWriter: ...

    async def stat(self, path: str) -> FileInfo: ...

    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of a directory."""
        ...

    async def move(self, source: str, dest: str) -> None:
        """Atomically move a file, replacing `dest`."""

    async def delete(self, path: str) -> None:
        """Delete a file or a whole directory tree."""

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch the content from directly, or None."""
        ...

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file and directory under `path`, depth first."""
        ...
