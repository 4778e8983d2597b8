"""The OCI image layout on disk: `oci-layout`, `index.json` and `blobs/<alg>/<encoded>`.

Plain reading and atomic writing only; locking and policy belong to whoever owns the directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pyreg.oci import OCIError, mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.manifest import Descriptor, ManifestError

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
# docker load and containerd name an image after this annotation.
IMAGE_NAME = "io.containerd.image.name"


class LayoutError(OCIError):
    """A directory that is not a readable OCI image layout."""


def blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.encoded


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `path` so that a reader sees the old or the new content, never a part: temp file in
    the same directory, rename. `durable` adds the fsyncs that make a crash leave one of the two
    (a cache that can be rebuilt does without them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # imported when a write needs it: the client's start-up time counts

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        sync_dir(path.parent)


def sync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory: its entries (a file created or renamed in it) survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def init_layout(root: Path) -> None:
    """Create an empty layout at `root`, or leave an existing one alone."""
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    if not (root / LAYOUT_FILE).exists():
        atomic_write(root / LAYOUT_FILE, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
    if not (root / INDEX_FILE).exists():
        write_index(root, [])


def read_index(root: Path) -> list[Descriptor]:
    try:
        doc: Any = json.loads((root / INDEX_FILE).read_bytes())
    except FileNotFoundError:
        raise LayoutError(f"{root}: not an OCI image layout (no index.json)") from None
    except ValueError as e:
        raise LayoutError(f"{root / INDEX_FILE}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise LayoutError(f"{root / INDEX_FILE}: not an image index")
    try:
        return [Descriptor.from_json(m, f"index.json manifests[{i}]") for i, m in enumerate(doc["manifests"])]
    except ManifestError as e:
        raise LayoutError(str(e)) from None


def index_bytes(entries: list[Descriptor]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [e.to_json() for e in entries]}
    return json.dumps(doc, indent=2).encode() + b"\n"


def write_index(root: Path, entries: list[Descriptor]) -> None:
    atomic_write(root / INDEX_FILE, index_bytes(entries))
