"""Image archives: what `docker save`/`docker load` and `podman save`/`podman load` exchange.

Saved (`--format docker`, the default) like docker 25 does: an OCI image layout
(`oci-layout`, `index.json`, `blobs/sha256/…`) plus docker's `manifest.json`
(`[{"Config", "RepoTags", "Layers"}]`, paths into `blobs/`), which older docker and podman read.
`oci-archive` is the layout alone as a tar, `oci` the layout as a directory.

Loaded: any of these, and the legacy docker archive (`<id>.json` configs, `<id>/layer.tar`
layers, `manifest.json` only), plain or gzip-compressed. Every blob is verified against its
digest on the way in; legacy layers, which have none, get an OCI manifest built for them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pyreg.client.errors import ClientError
from pyreg.client.store import ImageStore, StoredImage
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest, DigestError
from pyreg.oci.imageref import ImageReference, InvalidReference, parse_reference
from pyreg.oci.layout import IMAGE_NAME, REF_NAME, index_bytes
from pyreg.oci.manifest import Descriptor, ManifestError, parse_manifest
from pyreg.oci.platform import choose, host_platform

FORMATS = ("docker", "oci-archive", "oci")


class ArchiveError(ClientError):
    """An archive that cannot be read as any of the supported formats."""


# -- save -------------------------------------------------------------------------------------


def _image_manifest(store: ImageStore, image: StoredImage) -> Descriptor:
    """The single-platform manifest docker's manifest.json describes for an index."""
    desc = image.descriptor
    manifest = store.manifest(desc)
    if not manifest.is_index:
        return desc
    present = [c for c in manifest.manifests if store.has_blob(c.digest)]
    chosen = choose([c.platform for c in present], host_platform())
    if chosen is None and not present:
        raise ArchiveError(f"{image.name}: no platform of this index is in the store")
    return present[chosen or 0]


def save(store: ImageStore, images: list[tuple[StoredImage, ImageReference | None]],
         dest: Path | IO[bytes], fmt: str = "docker") -> None:
    """Write the images (each with the name to save it under) to `dest`: a file, atomically, or
    a stream (a tar only)."""
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "oci" and not isinstance(dest, Path):
        raise ArchiveError("--format oci writes a directory: name it with -o")
    entries: list[Descriptor] = []
    legacy: list[dict[str, Any]] = []
    digests: set[Digest] = set()
    for image, name in images:
        ann = {IMAGE_NAME: str(name)} if name else {}
        if name and name.tag:
            ann[REF_NAME] = name.tag  # docker's own archives keep the bare tag here
        desc = image.descriptor
        entries.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations=ann or None))
        digests |= store.reachable([desc])
        one = store.manifest(_image_manifest(store, image))
        if one.config is not None:
            repo_tags = [name.familiar()] if name and name.tag else []
            existing = next((e for e in legacy if e["Config"] == f"blobs/sha256/{one.config.digest.encoded}"), None)
            if existing is not None:
                existing["RepoTags"] += repo_tags
            else:
                legacy.append({"Config": f"blobs/{one.config.digest.algorithm}/{one.config.digest.encoded}",
                               "RepoTags": repo_tags,
                               "Layers": [f"blobs/{d.digest.algorithm}/{d.digest.encoded}" for d in one.layers]})
    files: dict[str, bytes | Path] = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": index_bytes(entries),
    }
    if fmt == "docker":
        files["manifest.json"] = json.dumps(legacy).encode()
    for digest in sorted(digests):
        path = store.blob_path(digest)
        if path.exists():
            files[f"blobs/{digest.algorithm}/{digest.encoded}"] = path
    if fmt == "oci":
        assert isinstance(dest, Path)
        _write_directory(dest, files)
    else:
        _write_tar(dest, files)


def _write_tar(dest: Path | IO[bytes], files: dict[str, bytes | Path]) -> None:
    """A file is written atomically (temp file, rename); a stream (stdout) as it goes."""
    if not isinstance(dest, Path):
        _tar_into(dest, files)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as raw:
            _tar_into(raw, files)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tar_into(raw: IO[bytes], files: dict[str, bytes | Path]) -> None:
    with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for arcname, content in files.items():
            if isinstance(content, Path):
                tar.add(content, arcname=arcname, recursive=False)
            else:
                info = tarfile.TarInfo(arcname)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))


def _write_directory(dest: Path, files: dict[str, bytes | Path]) -> None:
    for arcname, content in files.items():
        path = dest / arcname
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            if not path.exists():
                shutil.copyfile(content, path)
        else:
            path.write_bytes(content)


# -- load -------------------------------------------------------------------------------------


class _Source:
    """Files of an archive by name, from a directory or a (maybe gzipped) tar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if not path.is_dir():
            try:
                self.tar = tarfile.open(path, "r:*")
                self.members = {m.name.removeprefix("./"): m for m in self.tar.getmembers() if m.isfile()}
            except (tarfile.TarError, EOFError, gzip.BadGzipFile) as e:
                raise ArchiveError(f"{path}: not an image archive ({e})") from None

    def has(self, name: str) -> bool:
        return (self.path / name).is_file() if self.tar is None else name in self.members

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self.tar is None:
            with open(self.path / name, "rb") as plain:
                yield plain
            return
        member = self.members.get(name)
        f = self.tar.extractfile(member) if member else None
        if f is None:
            raise ArchiveError(f"{self.path}: {name} is missing")
        with f:
            yield f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


@dataclass
class Loaded:
    names: list[ImageReference]
    image_ids: list[Digest]


def _copy_blob(source: _Source, store: ImageStore, name: str, digest: Digest, size: int | None) -> None:
    if store.has_blob(digest, size):
        return
    with source.open(name) as f:
        data_size = size if size is not None else _measure(source, name)
        ingest = store.ingest(digest, data_size)
        try:
            ingest.reset()
            while chunk := f.read(1 << 20):
                ingest.write(chunk)
            ingest.commit()
        finally:
            ingest.close()


def _measure(source: _Source, name: str) -> int:
    if source.tar is None:
        return (source.path / name).stat().st_size
    return source.members[name].size


def _digest_of(source: _Source, name: str) -> Digest:
    h = hashlib.sha256()
    with source.open(name) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return Digest("sha256", h.hexdigest())


def _layer_type(source: _Source, name: str) -> str:
    with source.open(name) as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return mediatypes.OCI_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return mediatypes.OCI_LAYER_ZSTD
    return mediatypes.OCI_LAYER


def load(store: ImageStore, path: Path) -> Loaded:
    source = _Source(path)
    try:
        if source.has("index.json"):
            return _load_layout(store, source)
        if source.has("manifest.json"):
            return _load_legacy(store, source)
        raise ArchiveError(f"{path}: neither an OCI layout nor a docker archive (no index.json or manifest.json)")
    finally:
        source.close()


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded}"


def _load_tree(store: ImageStore, source: _Source, desc: Descriptor) -> None:
    """Copy a manifest and everything it reaches, children before parents."""
    data = source.read(_blob_name(desc.digest))
    if Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise ArchiveError(f"{desc.digest}: digest mismatch in the archive")
    try:
        manifest = parse_manifest(data, desc.media_type)
    except ManifestError as e:
        raise ArchiveError(f"{desc.digest}: {e}") from None
    for child in manifest.manifests:
        if source.has(_blob_name(child.digest)):  # an archive may hold some platforms only
            _load_tree(store, source, child)
    for blob in ([manifest.config] if manifest.config else []) + list(manifest.layers):
        _copy_blob(source, store, _blob_name(blob.digest), blob.digest, blob.size)
    store.put_blob(data, desc.digest)


def _load_layout(store: ImageStore, source: _Source) -> Loaded:
    try:
        doc = json.loads(source.read("index.json"))
        entries = [Descriptor.from_json(m) for m in doc.get("manifests", [])]
    except (ValueError, ManifestError, AttributeError) as e:
        raise ArchiveError(f"{source.path}: invalid index.json ({e})") from None
    legacy_tags: dict[str, list[str]] = {}
    if source.has("manifest.json"):
        for item in json.loads(source.read("manifest.json")):
            legacy_tags[item.get("Config", "")] = item.get("RepoTags") or []
    out = Loaded([], [])
    for entry in entries:
        _load_tree(store, source, entry)
        ann = entry.annotations or {}
        names: list[ImageReference] = []
        # io.containerd.image.name is a full name; ref.name may be one, or a bare tag (docker's).
        ref_name = ann.get(REF_NAME, "")
        for text in (ann.get(IMAGE_NAME), ref_name if "/" in ref_name else None):
            if not text:
                continue
            try:
                ref = parse_reference(text, store.default_domain, default_tag=None)
            except InvalidReference:
                continue
            if ref.tag is not None:
                names.append(ref)
                break
        if not names:
            manifest = store.manifest(entry)
            config = manifest.config.digest if manifest.config else None
            for tag in legacy_tags.get(_blob_name(config), []) if config else []:
                names.append(parse_reference(tag, store.default_domain))
        for name in names:
            store.add(name, Descriptor(entry.media_type, entry.digest, entry.size))
        out.names += names
        if not names:
            store.keep(Descriptor(entry.media_type, entry.digest, entry.size))
            out.image_ids.append(store.image_id(StoredImage(entry, None)))
    return out


def _load_legacy(store: ImageStore, source: _Source) -> Loaded:
    try:
        items = json.loads(source.read("manifest.json"))
    except ValueError as e:
        raise ArchiveError(f"{source.path}: invalid manifest.json ({e})") from None
    out = Loaded([], [])
    for item in items:
        config_name = item["Config"]
        config = source.read(config_name)
        config_digest = store.put_blob(config)
        layers = []
        for layer_name in item.get("Layers", []):
            try:
                digest = Digest.parse(layer_name.removeprefix("blobs/").replace("/", ":", 1))
                if not source.has(_blob_name(digest)):
                    raise DigestError("not a blob path")
            except DigestError:
                digest = _digest_of(source, layer_name)
            size = _measure(source, layer_name)
            _copy_blob(source, store, layer_name, digest, size)
            layers.append(Descriptor(_layer_type(source, layer_name), digest, size))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
            "config": Descriptor(mediatypes.OCI_CONFIG, config_digest, len(config)).to_json(),
            "layers": [layer.to_json() for layer in layers],
        }).encode()
        digest = store.put_blob(manifest)
        desc = Descriptor(mediatypes.OCI_MANIFEST, digest, len(manifest))
        tags = [parse_reference(t, store.default_domain) for t in item.get("RepoTags") or []]
        for name in tags:
            store.add(name, desc)
        out.names += tags
        if not tags:
            store.keep(desc)
            out.image_ids.append(config_digest)
    return out
