"""Build small OCI images on disk from the busybox-static binary, without any network.

The images are written as OCI image layouts (``oci-layout``, ``index.json``, ``blobs/sha256/…``)
so that skopeo and podman read them with ``oci:DIR:TAG``, and as an OCI archive (a tar of the
layout) that ``docker load`` accepts.

The multi-layer image, per platform:

- layer 1: ``/bin/busybox`` and applet symlinks (``/bin/sh``, ``/bin/echo``, …), base directories;
- layer 2: ``/etc/pyreg-test`` with random content (so every build is a new image), and
  ``/etc/pyreg-removed``;
- layer 3: ``/etc/passwd``, ``/etc/group``, ``/usr/share/pyreg/layer3`` and a whiteout that deletes
  ``/etc/pyreg-removed`` again.

``Entrypoint`` is ``/bin/busybox`` so that ``run IMAGE echo hello`` works; ``Cmd`` prints the marker.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import secrets
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "ls", "true", "test", "sleep", "env", "id")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
# docker load names the image after this annotation (graphdriver and containerd stores alike).
CONTAINERD_NAME = "io.containerd.image.name"

# Fixed timestamps make the busybox layer byte-identical across builds: pushes then share it.
EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"


def host_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass
class Image:
    """One single-platform image as built: its manifest, config and layers."""

    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    diff_ids: list[str]
    marker: str  # content of /etc/pyreg-test
    arch: str

    @property
    def blob_digests(self) -> list[str]:
        return [self.config.digest, *(layer.digest for layer in self.layers)]


@dataclass
class Layout:
    """An OCI image layout directory holding one tagged image or index."""

    path: Path
    tag: str
    top: Descriptor  # what index.json names for the tag: a manifest or an index
    images: list[Image]

    @property
    def ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"

    def blob(self, digest: str) -> bytes:
        algorithm, hex_ = digest.split(":", 1)
        return (self.path / "blobs" / algorithm / hex_).read_bytes()

    def all_digests(self) -> set[str]:
        """Every blob reachable from the tag: index, manifests, configs, layers."""
        out = {self.top.digest}
        for image in self.images:
            out.add(image.manifest.digest)
            out.update(image.blob_digests)
        return out


class BlobWriter:
    """Writes content-addressed blobs into ``<layout>/blobs/sha256/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str, **extra: object) -> Descriptor:
        digest = sha256(data)
        path = self.root / "blobs" / "sha256" / digest.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(data)
        return Descriptor(media_type, digest, len(data), **extra)  # type: ignore[arg-type]

    def put_json(self, doc: dict[str, object], media_type: str, **extra: object) -> Descriptor:
        return self.put(canonical_json(doc), media_type, **extra)


def canonical_json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- layers


@dataclass(frozen=True)
class Entry:
    """One tar member: a directory, a regular file or a symlink."""

    path: str
    data: bytes | None = None
    link: str | None = None
    mode: int | None = None

    def tarinfo(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.path)
        info.mtime = EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        if self.link is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = self.link
            info.mode = 0o777
        elif self.data is None:
            info.type = tarfile.DIRTYPE
            info.mode = self.mode if self.mode is not None else 0o755
        else:
            info.type = tarfile.REGTYPE
            info.size = len(self.data)
            info.mode = self.mode if self.mode is not None else 0o644
        return info


def make_layer(entries: Iterable[Entry]) -> tuple[bytes, str]:
    """A gzipped tar layer and its diff_id (the digest of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = entry.tarinfo()
            tar.addfile(info, io.BytesIO(entry.data) if entry.data is not None else None)
    tar_bytes = raw.getvalue()
    # mtime=0 and no file name: the same tar always gives the same gzip bytes.
    compressed = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return compressed, sha256(tar_bytes)


def busybox_entries() -> list[Entry]:
    binary = BUSYBOX.read_bytes()
    entries = [Entry(d) for d in ("bin", "etc", "dev", "proc", "sys", "usr", "var")]
    entries.append(Entry("tmp", mode=0o1777))
    entries.append(Entry("bin/busybox", binary, mode=0o755))
    entries += [Entry(f"bin/{name}", link="busybox") for name in APPLETS]
    return entries


def marker_entries(marker: str) -> list[Entry]:
    return [
        Entry("etc"),
        Entry("etc/pyreg-test", marker.encode()),
        Entry("etc/pyreg-removed", b"deleted by a whiteout in layer 3\n"),
    ]


def third_entries(arch: str) -> list[Entry]:
    return [
        Entry("etc"),
        Entry(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        Entry("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        Entry("etc/.wh.pyreg-removed", b""),
        Entry("root", mode=0o700),
        Entry("usr/share"),
        Entry("usr/share/pyreg"),
        Entry("usr/share/pyreg/layer3", f"third layer for {arch}\n".encode()),
    ]


# ---------------------------------------------------------------- images


def write_image(
    blobs: BlobWriter, arch: str, marker: str, annotations: dict[str, str] | None = None
) -> Image:
    layers: list[Descriptor] = []
    diff_ids: list[str] = []
    for entries in (busybox_entries(), marker_entries(marker), third_entries(arch)):
        data, diff_id = make_layer(entries)
        layers.append(blobs.put(data, OCI_LAYER_GZIP))
        diff_ids.append(diff_id)
    config_doc: dict[str, object] = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Entrypoint": ["/bin/busybox"],
            "Cmd": ["cat", "/etc/pyreg-test"],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": "pyreg interop test image"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": "pyreg tests: busybox"},
            {"created": CREATED, "created_by": "pyreg tests: marker"},
            {"created": CREATED, "created_by": "pyreg tests: third layer"},
        ],
    }
    if arch == "arm64":
        config_doc["variant"] = "v8"
    config = blobs.put_json(config_doc, OCI_CONFIG)
    manifest_doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest_doc["annotations"] = annotations
    plat = {"architecture": arch, "os": "linux"}
    if arch == "arm64":
        plat["variant"] = "v8"
    manifest = blobs.put_json(manifest_doc, OCI_MANIFEST, platform=plat)
    return Image(manifest, config, layers, diff_ids, marker, arch)


def write_index_json(root: Path, top: Descriptor, tag: str, name: str | None = None) -> None:
    annotations = {REF_NAME: tag}
    if name is not None:
        annotations[CONTAINERD_NAME] = f"{name}:{tag}"
    entry = Descriptor(top.media_type, top.digest, top.size, annotations)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry.to_json()]}
    (root / "index.json").write_text(json.dumps(index, indent=2))


def build_image(
    root: Path, tag: str = "latest", name: str | None = None, arch: str | None = None
) -> Layout:
    """A three-layer single-platform image (host architecture by default)."""
    blobs = BlobWriter(root)
    image = write_image(blobs, arch or host_arch(), f"pyreg-test {secrets.token_hex(16)}\n")
    top = Descriptor(image.manifest.media_type, image.manifest.digest, image.manifest.size)
    write_index_json(root, top, tag, name)
    return Layout(root, tag, top, [image])


def build_index(root: Path, tag: str = "multi", name: str | None = None) -> Layout:
    """A linux/amd64 + linux/arm64 image index; the arm64 image reuses the busybox bytes."""
    blobs = BlobWriter(root)
    marker = f"pyreg-test {secrets.token_hex(16)}\n"
    images = [write_image(blobs, arch, marker) for arch in ("amd64", "arm64")]
    index_doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest.to_json() for image in images],
        "annotations": {"org.opencontainers.image.description": "pyreg multi-platform test index"},
    }
    top = blobs.put_json(index_doc, OCI_INDEX)
    write_index_json(root, top, tag, name)
    return Layout(root, tag, top, images)


def oci_archive(layout: Path, dest: Path) -> Path:
    """A tar of the layout directory, which ``docker load`` accepts (Docker 25 and later)."""
    with tarfile.open(dest, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return dest


# ---------------------------------------------------------------- reading layouts back


def read_layout(root: Path, tag: str | None = None) -> tuple[Descriptor, dict[str, bytes]]:
    """The descriptor that index.json names for ``tag`` (or the only one) and every blob by digest."""
    index = json.loads((root / "index.json").read_text())
    entries = index["manifests"]
    if tag is not None:
        entries = [m for m in entries if m.get("annotations", {}).get(REF_NAME) == tag]
    if len(entries) != 1:
        raise LookupError(f"{root}: expected one manifest for tag {tag!r}, found {len(entries)}")
    m = entries[0]
    top = Descriptor(m["mediaType"], m["digest"], m["size"], m.get("annotations", {}))
    blobs: dict[str, bytes] = {}
    blob_dir = root / "blobs"
    for algorithm in os.listdir(blob_dir):
        for hex_ in os.listdir(blob_dir / algorithm):
            blobs[f"{algorithm}:{hex_}"] = (blob_dir / algorithm / hex_).read_bytes()
    return top, blobs


def reachable(top_digest: str, blobs: dict[str, bytes]) -> set[str]:
    """Every digest reachable from a manifest or index, found by reading the JSON in ``blobs``."""
    seen: set[str] = set()
    stack = [top_digest]
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        doc = json.loads(blobs[digest])
        for child in doc.get("manifests", []):
            stack.append(child["digest"])
        if "config" in doc:
            seen.add(doc["config"]["digest"])
        seen.update(layer["digest"] for layer in doc.get("layers", []))
    return seen


def assert_identical(built: Layout, pulled: Path, tag: str) -> None:
    """The layout at ``pulled`` holds exactly the image ``built`` under ``tag``, digest for digest."""
    top, blobs = read_layout(pulled, tag)
    assert top.digest == built.top.digest, f"pulled {top.digest}, pushed {built.top.digest}"
    assert top.media_type == built.top.media_type
    assert reachable(top.digest, blobs) == built.all_digests()
    for digest in built.all_digests():
        assert blobs[digest] == built.blob(digest), f"{digest}: bytes differ"
