"""The local image store: one OCI image layout that skopeo, podman and crane read (`oci:<root>`).

    <root>/oci-layout, index.json, blobs/sha256/<hex>   the layout; each blob once
    <root>/ingest/<alg>-<hex>                           downloads in progress (resumable)
    <root>/sources.json                                 where each blob was seen on which registry
    <root>/.lock, .gc.lock                              flock(2) locks

Each `index.json` entry is one name for one manifest: `org.opencontainers.image.ref.name` holds the
full normalised reference (`docker.io/library/busybox:latest`, which the OCI annotation grammar
allows and `skopeo copy oci:<root>:docker.io/library/busybox:latest` reads), and
`io.containerd.image.name` the same, which docker and containerd read. Tag-less entries (pulled by
digest) carry the name only.

Concurrency: blobs appear by rename, complete and verified, so readers never see a part;
`index.json` and `sources.json` are read-modify-written under `.lock`. Garbage collection (rmi,
prune) deletes unreferenced blobs, which would race with a pull that has written blobs but not yet
its index entry: transfers hold `.gc.lock` shared, collection holds it exclusive.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pyreg.client.errors import ImageNotFound, IntegrityError, StoreError
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest, DigestError
from pyreg.oci.imageref import ImageReference, InvalidReference, parse_reference
from pyreg.oci.layout import (
    IMAGE_NAME,
    REF_NAME,
    atomic_write,
    blob_path,
    init_layout,
    read_index,
    sync_dir,
    write_index,
)
from pyreg.oci.manifest import Descriptor, Manifest, ManifestError, parse_manifest

if TYPE_CHECKING:
    from pyreg.client.ingest import BlobIngest

REPO_DIGEST = "io.pyreg.image.repo-digest"


def default_root(environ: Mapping[str, str]) -> Path:
    if environ.get("PYREG_ROOT"):
        return Path(environ["PYREG_ROOT"])
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "pyreg"


class StoredImage(NamedTuple):
    """One `index.json` entry: a name (or none) for a manifest."""

    descriptor: Descriptor
    name: ImageReference | None

    @property
    def tag(self) -> str | None:
        return self.name.tag if self.name else None

    @property
    def repo_digest(self) -> Digest:
        """The digest the registry knows the image by (an index's when pulled through one)."""
        ann = self.descriptor.annotations or {}
        try:
            return Digest.parse(ann[REPO_DIGEST])
        except (KeyError, DigestError):
            return self.descriptor.digest


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class ImageStore:
    def __init__(self, root: Path, default_domain: str = "docker.io") -> None:
        self.root = root
        self.default_domain = default_domain
        try:
            init_layout(root)
            for name in (".lock", ".gc.lock"):
                (root / name).touch(exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot use {root} as the image store: {e.strerror or e}") from None

    # -- locks --------------------------------------------------------------------------------

    def locked(self) -> Any:
        """Exclusive lock for read-modify-write of index.json and sources.json."""
        return _flock(self.root / ".lock", fcntl.LOCK_EX)

    def transfer(self) -> Any:
        """Held (shared) by every pull, push and load, so that no collection runs meanwhile."""
        return _flock(self.root / ".gc.lock", fcntl.LOCK_SH)

    # -- blobs --------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return blob_path(self.root, digest)

    def has_blob(self, digest: Digest, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def read_blob(self, digest: Digest) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is missing from the store") from None

    def ingest(self, digest: Digest, size: int, wait: bool = True) -> BlobIngest:
        from pyreg.client.ingest import BlobIngest  # only transfers write blobs this way

        path = self.root / "ingest" / f"{digest.algorithm}-{digest.encoded}"
        return BlobIngest(path, self.blob_path(digest), digest, size, wait)

    def sync_blobs(self) -> None:
        """Make the names of blobs committed with `sync_dir=False` durable (one fsync per
        algorithm's directory, however many blobs)."""
        for directory in (self.root / "blobs").iterdir():
            sync_dir(directory)

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
        """Store bytes already in memory (manifests, configs), verified when `digest` is given."""
        actual = Digest.from_bytes(data, digest.algorithm if digest else "sha256")
        if digest is not None and actual != digest:
            raise IntegrityError(f"{digest}: digest mismatch, got {actual}")
        if not self.has_blob(actual, len(data)):
            atomic_write(self.blob_path(actual), data)
        return actual

    # -- manifests ----------------------------------------------------------------------------

    def manifest(self, descriptor: Descriptor) -> Manifest:
        try:
            return parse_manifest(self.read_blob(descriptor.digest), descriptor.media_type)
        except ManifestError as e:
            raise StoreError(f"manifest {descriptor.digest}: {e}") from None

    def config(self, manifest: Manifest) -> dict[str, Any]:
        if manifest.config is None:
            return {}
        try:
            doc = json.loads(self.read_blob(manifest.config.digest))
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    # -- names --------------------------------------------------------------------------------

    def images(self) -> list[StoredImage]:
        out = []
        for entry in read_index(self.root):
            ann = entry.annotations or {}
            text = ann.get(IMAGE_NAME) or ann.get(REF_NAME)
            name = None
            if text:
                try:
                    name = parse_reference(text, default_tag=None)
                except InvalidReference:
                    # A bare tag written by another tool: not a name pyreg can show.
                    name = None
            out.append(StoredImage(entry, name))
        return out

    def add(self, name: ImageReference, descriptor: Descriptor, repo_digest: Digest | None = None) -> None:
        """Point `name` at the manifest `descriptor`. What the name pointed at before stays, without
        a name, when nothing else names it: docker's dangling image, until `image prune`."""
        ann = {IMAGE_NAME: str(name)}
        if name.tag:
            ann[REF_NAME] = str(name)
        if repo_digest is not None and repo_digest != descriptor.digest:
            ann[REPO_DIGEST] = str(repo_digest)
        entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, annotations=ann)
        with self.locked():
            entries = read_index(self.root)
            replaced = [e for e in entries if self._same_name(e, name) and e.digest != descriptor.digest]
            kept = [e for e in entries if not self._same_name(e, name)
                    and not (e.digest == descriptor.digest and not e.annotations)]
            kept.append(entry)
            for old in replaced:
                if not any(e.digest == old.digest for e in kept):
                    kept.append(Descriptor(old.media_type, old.digest, old.size))
            write_index(self.root, kept)

    def keep(self, descriptor: Descriptor) -> None:
        """Hold a manifest without a name (an untagged `load`), addressable by its image ID until
        `image prune`; nothing changes when an entry already holds it."""
        with self.locked():
            entries = read_index(self.root)
            if not any(e.digest == descriptor.digest for e in entries):
                entries.append(Descriptor(descriptor.media_type, descriptor.digest, descriptor.size))
                write_index(self.root, entries)

    def remove(self, name: ImageReference) -> bool:
        with self.locked():
            entries = read_index(self.root)
            kept = [e for e in entries if not self._same_name(e, name)]
            if len(kept) == len(entries):
                return False
            write_index(self.root, kept)
        return True

    def remove_entry(self, image: StoredImage) -> None:
        """Remove exactly this index entry (other names of the same manifest stay)."""
        with self.locked():
            entries = read_index(self.root)
            write_index(self.root, [e for e in entries if e != image.descriptor])

    def remove_digest(self, digest: Digest) -> int:
        with self.locked():
            entries = read_index(self.root)
            kept = [e for e in entries if e.digest != digest]
            write_index(self.root, kept)
        return len(entries) - len(kept)

    @staticmethod
    def _same_name(entry: Descriptor, name: ImageReference) -> bool:
        ann = entry.annotations or {}
        if name.tag:
            return ann.get(REF_NAME) == str(name) or ann.get(IMAGE_NAME) == str(name)
        return ann.get(IMAGE_NAME) == str(name) and REF_NAME not in ann

    def named_by_id(self, text: str, image: StoredImage) -> bool:
        """Whether `text` named `image` by (a prefix of) its ID rather than by a name."""
        ident = text.removeprefix("sha256:")
        return len(ident) >= 3 and all(c in "0123456789abcdef" for c in ident) and (
            self.image_id(image).encoded.startswith(ident) or image.descriptor.digest.encoded.startswith(ident))

    def resolve(self, text: str) -> StoredImage:
        """An image by name (`busybox`, `host/x:tag`, `x@sha256:…`), image ID or ID prefix."""
        images = self.images()
        ident = text.removeprefix("sha256:")
        if 3 <= len(ident) <= 64 and all(c in "0123456789abcdef" for c in ident):
            matches = {i.descriptor.digest: i for i in images
                       if self.image_id(i).encoded.startswith(ident) or i.descriptor.digest.encoded.startswith(ident)}
            if len(matches) == 1:
                return next(iter(matches.values()))
            if len(matches) > 1 and len(ident) < 64:
                raise StoreError(f"{text}: ambiguous image ID prefix")
        ref = parse_reference(text, self.default_domain)
        for image in images:
            if image.name is None:
                continue
            if ref.digest is not None:
                if image.name.repository == ref.repository and ref.digest in (
                        image.descriptor.digest, image.repo_digest):
                    return image
            elif image.name == ref:
                return image
        raise ImageNotFound(f"No such image: {text}")

    def image_id(self, image: StoredImage) -> Digest:
        """docker's image ID: the digest of the config (of the manifest for an index)."""
        if image.descriptor.media_type in mediatypes.INDEX_TYPES:
            return image.descriptor.digest
        try:
            manifest = self.manifest(image.descriptor)
        except StoreError:
            return image.descriptor.digest
        return manifest.config.digest if manifest.config else image.descriptor.digest

    # -- reachability and collection ----------------------------------------------------------

    def reachable(self, roots: list[Descriptor]) -> set[Digest]:
        seen: set[Digest] = set()
        stack = list(roots)
        while stack:
            desc = stack.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            if desc.media_type not in mediatypes.MANIFEST_TYPES or not self.has_blob(desc.digest):
                continue
            try:
                manifest = self.manifest(desc)
            except StoreError:
                continue
            stack.extend(manifest.manifests)
            if manifest.config is not None:
                seen.add(manifest.config.digest)
            seen.update(layer.digest for layer in manifest.layers)
        return seen

    def collect(self) -> list[Digest]:
        """Delete every blob no index entry reaches; returns what was deleted."""
        deleted: list[Digest] = []
        with _flock(self.root / ".gc.lock", fcntl.LOCK_EX), self.locked():
            keep = self.reachable(read_index(self.root))
            blobs = self.root / "blobs"
            for algorithm in sorted(os.listdir(blobs)):
                for encoded in sorted(os.listdir(blobs / algorithm)):
                    try:
                        digest = Digest.parse(f"{algorithm}:{encoded}")
                    except DigestError:
                        continue
                    if digest not in keep:
                        (blobs / algorithm / encoded).unlink(missing_ok=True)
                        deleted.append(digest)
            self._forget_sources(set(deleted))
        return deleted

    # -- where blobs live remotely (for cross-repository mounts) ------------------------------

    def _read_sources(self) -> dict[str, dict[str, list[str]]]:
        try:
            doc = json.loads((self.root / "sources.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def record_sources(self, registry: str, repository: str, digests: list[Digest]) -> None:
        with self.locked():
            doc = self._read_sources()
            for digest in digests:
                repos = doc.setdefault(str(digest), {}).setdefault(registry, [])
                if repository in repos:
                    repos.remove(repository)
                repos.insert(0, repository)  # most recent first
                del repos[8:]
            atomic_write(self.root / "sources.json", json.dumps(doc).encode(), durable=False)

    def forget_source(self, registry: str, repository: str, digest: Digest) -> None:
        """`repository` of `registry` is no longer a source of `digest` (a mount from it failed)."""
        with self.locked():
            doc = self._read_sources()
            repos = doc.get(str(digest), {}).get(registry, [])
            if repository in repos:
                repos.remove(repository)
                atomic_write(self.root / "sources.json", json.dumps(doc).encode(), durable=False)

    def sources(self, registry: str, digest: Digest) -> list[str]:
        return list(self._read_sources().get(str(digest), {}).get(registry, []))

    def _forget_sources(self, digests: set[Digest]) -> None:
        if not digests:
            return
        doc = self._read_sources()
        for digest in digests:
            doc.pop(str(digest), None)
        atomic_write(self.root / "sources.json", json.dumps(doc).encode(), durable=False)
