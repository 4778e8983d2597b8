"""Layer blobs: decompression, verification while streaming, and the unpacked-layer cache.

A layer is read once: the compressed bytes are hashed against the manifest's digest, the
uncompressed bytes against the config's diff_id, while the tar stream is applied. The compression
is taken from the blob's magic bytes (gzip, zstd, or none), whatever the media type claims, as
containerd does.

    <runtime root>/layers/<alg>/<hex>/     one unpacked layer, in overlayfs' format, by diff_id
    <runtime root>/layers/.tmp-<hex>-*     extraction in progress, under .lock-<hex> (deleted on
                                           error; what a killed extraction left, by `prune`)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from pyreg.oci.digest import Digest, Hasher
from pyreg.runtime import ContainerError, LayerError

if TYPE_CHECKING:
    from pyreg.runtime.unpack import LayerApplier

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


class HashingReader:
    """A read-only stream that hashes everything read through it."""

    def __init__(self, raw: IO[bytes], hasher: Hasher) -> None:
        self.raw = raw
        self.hasher = hasher
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read what the consumer left (tar padding after the end-of-archive blocks)."""
        while self.read(1 << 20):
            pass


def _decompressed(raw: IO[bytes], magic: bytes) -> IO[bytes]:
    if magic.startswith(_GZIP):
        import gzip  # here, as zstandard: a container of cached layers reads no blob

        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if magic.startswith(_ZSTD):
        import zstandard  # here: only zstd layers need it (and a rootless Python may lack it)

        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader
    return raw


def apply_blob(applier: LayerApplier, blob: Path, digest: Digest, diff_id: Digest) -> None:
    """Apply one layer blob, checking its digest and its diff_id as it streams."""
    try:
        f = open(blob, "rb")
    except FileNotFoundError:
        raise LayerError(f"layer {digest}: blob missing from the image layout") from None
    with f:
        magic = f.read(4)
        f.seek(0)
        compressed = HashingReader(f, digest.hasher())
        try:
            plain = HashingReader(_decompressed(cast(IO[bytes], compressed), magic),
                                  diff_id.hasher())
            applier.apply(cast(IO[bytes], plain), str(digest))
            plain.drain()
            compressed.drain()
        except ContainerError:
            raise
        except Exception as e:
            # OSError, EOFError (gzip), zstandard.ZstdError (imported only for zstd layers).
            if not isinstance(e, OSError | EOFError) and type(e).__name__ != "ZstdError":
                raise
            raise LayerError(f"layer {digest}: cannot decompress: {e}") from e
    if compressed.hasher.hexdigest() != digest.encoded:
        raise LayerError(f"layer {digest}: blob content does not match its digest")
    if plain.hasher.hexdigest() != diff_id.encoded:
        raise LayerError(f"layer {digest}: uncompressed content does not match diff_id {diff_id}")


def unpack_layers(target: Path, layers: Sequence[tuple[Path, Digest, Digest]]) -> None:
    """Apply layers into `target` (a per-container copy); nothing is left at `target` on error."""
    import tempfile

    from pyreg.runtime.unpack import LayerApplier  # here: tarfile only when there is unpacking

    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        applier = LayerApplier(tmp)
        try:
            for blob, digest, diff_id in layers:
                apply_blob(applier, blob, digest, diff_id)
        finally:
            applier.finish()
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LayerCache:
    """Unpacked layers by diff_id, each in its own directory, for overlayfs' lowerdir."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, diff_id: Digest) -> Path:
        return self.root / diff_id.algorithm / diff_id.encoded

    def ensure(self, layers: Sequence[tuple[Path, Digest, Digest]]) -> list[Path]:
        """Unpack the layers missing from the cache (bottom first); their paths, bottom first."""
        paths: list[Path] = []
        for blob, digest, diff_id in layers:
            final = self.path(diff_id)
            if not final.is_dir():
                with self._lock(diff_id):
                    if not final.is_dir():
                        self._unpack(final, blob, digest, diff_id, lowers=paths[::-1])
            paths.append(final)
        return paths

    def _unpack(self, final: Path, blob: Path, digest: Digest, diff_id: Digest,
                lowers: list[Path]) -> None:
        import tempfile

        from pyreg.runtime.unpack import LayerApplier

        final.parent.mkdir(parents=True, exist_ok=True)
        # Named after the layer: `prune` collects it, under the layer's lock, if this process is
        # killed before it is complete.
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{diff_id.encoded}-", dir=self.root))
        try:
            os.chmod(tmp, 0o755)
            applier = LayerApplier(tmp, overlay=True, lowers=lowers)
            try:
                apply_blob(applier, blob, digest, diff_id)
            finally:
                applier.finish()
            os.rename(tmp, final)  # atomic: a layer directory is complete or absent
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @contextlib.contextmanager
    def _lock(self, diff_id: Digest, wait: bool = True) -> Iterator[bool]:
        # Two containers of one image may start together: one unpacks, the other waits.
        # Without `wait`: whether the lock was free (and is now held).
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f".lock-{diff_id.encoded}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
            else:
                yield True
        finally:
            os.close(fd)  # the lock file stays: unlinking it would race with a waiter

    def _collect_partial(self) -> None:
        """Remove what extractions killed half-way left (`.tmp-<hex>-*` whose lock is free)."""
        for tmp in self.root.glob(".tmp-*"):
            encoded = tmp.name[len(".tmp-"):].rpartition("-")[0]
            if not encoded or encoded.strip("0123456789abcdef"):
                continue  # not one of ours
            # The lock is named by the encoded part alone, whatever the algorithm.
            with self._lock(Digest("sha256", encoded), wait=False) as free:
                if free:  # else an extraction is in progress
                    shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, diff_id: Digest) -> None:
        shutil.rmtree(self.path(diff_id), ignore_errors=True)

    def prune(self, in_use: set[str], keep: set[str]) -> list[str]:
        """Remove every cached layer whose directory is not in `in_use` and whose diff_id is not
        in `keep`; the diff_ids removed. Each under its lock, so an unpacking in progress is
        never cut short (the lock files stay, as in `_lock`)."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        self._collect_partial()
        for algorithm in sorted(p for p in self.root.iterdir() if p.is_dir()
                                and not p.name.startswith(".")):
            for layer in sorted(algorithm.iterdir()):
                name = f"{algorithm.name}:{layer.name}"
                if str(layer) in in_use or name in keep:
                    continue
                try:
                    diff_id = Digest.parse(name)
                except ValueError:
                    continue
                with self._lock(diff_id):
                    shutil.rmtree(layer, ignore_errors=True)
                removed.append(name)
        return removed
