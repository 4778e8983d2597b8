"""Small test images built in memory: random gzipped tar layers, an OCI config and manifest."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.manifest import Descriptor
from pyreg.oci.platform import host_platform


def make_layer(size: int, name: str = "data") -> tuple[bytes, str]:
    """A gzipped tar holding `size` random bytes, and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = size, 1_700_000_000
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()


@dataclass
class SampleImage:
    layers: list[tuple[bytes, str]]
    arch: str = field(default_factory=lambda: host_platform().architecture)
    os: str = "linux"
    docker: bool = False  # Docker media types instead of OCI

    @property
    def config(self) -> bytes:
        return json.dumps({
            "architecture": self.arch, "os": self.os, "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in self.layers]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(self.layers))],
        }, sort_keys=True).encode()

    @property
    def layer_descriptors(self) -> list[Descriptor]:
        media = mediatypes.DOCKER_LAYER_GZIP if self.docker else mediatypes.OCI_LAYER_GZIP
        return [Descriptor(media, Digest.from_bytes(data), len(data)) for data, _ in self.layers]

    @property
    def media_type(self) -> str:
        return mediatypes.DOCKER_MANIFEST if self.docker else mediatypes.OCI_MANIFEST

    @property
    def manifest(self) -> bytes:
        config_type = mediatypes.DOCKER_CONFIG if self.docker else mediatypes.OCI_CONFIG
        return json.dumps({
            "schemaVersion": 2, "mediaType": self.media_type,
            "config": Descriptor(config_type, Digest.from_bytes(self.config), len(self.config)).to_json(),
            "layers": [d.to_json() for d in self.layer_descriptors],
        }).encode()

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.manifest)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.manifest),
                          platform={"os": self.os, "architecture": self.arch})

    def blobs(self) -> dict[Digest, bytes]:
        out = {Digest.from_bytes(data): data for data, _ in self.layers}
        out[Digest.from_bytes(self.config)] = self.config
        return out

    def total(self) -> int:
        return sum(len(d) for d, _ in self.layers) + len(self.config)


def index_of(images: list[SampleImage], docker: bool = False) -> tuple[bytes, str]:
    media = mediatypes.DOCKER_MANIFEST_LIST if docker else mediatypes.OCI_INDEX
    doc = {"schemaVersion": 2, "mediaType": media, "manifests": [i.descriptor().to_json() for i in images]}
    return json.dumps(doc).encode(), media
