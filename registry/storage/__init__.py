"""Storage drivers: byte stores keyed by slash-separated paths.

    StorageError
     ├── PathNotFound        nothing at that path
     ├── InvalidPath         a path outside the driver's grammar (never reaches the disk)
     └── StorageUnavailable  the backend failed or timed out; the request may be retried
"""

from __future__ import annotations

from pyreg.registry.storage.driver import (
    FileInfo,
    FileWriter,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "FileInfo",
    "FileWriter",
    "InvalidPath",
    "PathNotFound",
    "StorageDriver",
    "StorageError",
    "StorageUnavailable",
]
