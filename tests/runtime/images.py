"""Test images: tar layers made with tarfile, written into OCI image layouts."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import zstandard

from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest

Entry = tuple[tarfile.TarInfo, bytes | None]
BUSYBOX = Path("/bin/busybox")


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = 1_700_000_000
          ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    return info


def file(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
         xattrs: dict[str, str] | None = None) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, uid, gid)
    info.size = len(data)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info, data


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, uid, gid), None


def symlink(name: str, target: str) -> Entry:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Entry:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, None


def whiteout(path: str) -> Entry:
    parent, _, name = path.rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", mode=0o600)


def opaque(directory_path: str) -> Entry:
    return file(f"{directory_path.rstrip('/')}/.wh..wh..opq", mode=0o600)


def layer(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_layer(extra: Sequence[Entry] = ()) -> bytes:
    """A root filesystem with /bin/busybox, a symlink per applet, /etc/passwd and /etc/group."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    entries: list[Entry] = [directory("bin"), file("bin/busybox", BUSYBOX.read_bytes(), 0o755)]
    entries += [symlink(f"bin/{a}", "busybox") for a in applets if a != "busybox"]
    entries += [
        directory("etc"),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
             b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
             b"app:x:1000:1000:app:/home/app:/bin/sh\n"
             b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        file("etc/group", b"root:x:0:\ndaemon:x:1:\nwheel:x:10:app\napp:x:1000:\n"
             b"audio:x:29:app,daemon\nnogroup:x:65534:\n"),
        directory("root", 0o700), directory("home"), directory("home/app", 0o755, 1000, 1000),
        directory("tmp", 0o1777),
    ]
    return layer([*entries, *extra])


def write_layout(path: Path, layers: Sequence[bytes], config: dict[str, Any] | None = None,
                 tag: str = "latest", compression: str = "gzip", architecture: str = "amd64"
                 ) -> Digest:
    """Write an OCI image layout holding one image; returns the manifest digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> Digest:
        digest = Digest.from_bytes(data)
        (blobs / digest.encoded).write_bytes(data)
        return digest

    descriptors = []
    for raw in layers:
        if compression == "gzip":
            data, media_type = gzip.compress(raw, mtime=0), mediatypes.OCI_LAYER_GZIP
        elif compression == "zstd":
            data, media_type = zstandard.ZstdCompressor().compress(raw), mediatypes.OCI_LAYER_ZSTD
        else:
            data, media_type = raw, mediatypes.OCI_LAYER
        descriptors.append({"mediaType": media_type, "digest": str(put(data)), "size": len(data)})
    image_config = {
        "architecture": architecture, "os": "linux",
        "config": config if config is not None else {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers",
                   "diff_ids": [str(Digest.from_bytes(raw)) for raw in layers]},
    }
    config_bytes = json.dumps(image_config).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": str(put(config_bytes)),
                   "size": len(config_bytes)},
        "layers": descriptors,
    }).encode()
    digest = put(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index_path = path / "index.json"
    index: dict[str, Any] = json.loads(index_path.read_text()) if index_path.exists() else {
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({
        "mediaType": mediatypes.OCI_MANIFEST, "digest": str(digest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    index_path.write_text(json.dumps(index))
    return digest


def have_busybox() -> bool:
    return BUSYBOX.exists() and shutil.which(str(BUSYBOX)) is not None
