"""The image-building helper makes valid OCI layouts that skopeo reads back as built."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.interop.clients import Skopeo
from tests.interop.images import (
    APPLETS,
    BUSYBOX,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Layout,
    build_image,
    host_arch,
    reachable,
    read_layout,
    sha256,
)

pytestmark = pytest.mark.interop


def _members(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        return {m.name: m for m in tar.getmembers()}


def _file(layer: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def test_layout_blobs_are_content_addressed(image: Layout) -> None:
    assert json.loads((image.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    top, blobs = read_layout(image.path, image.tag)
    assert top.digest == image.top.digest and top.annotations[REF_NAME] == "v1"
    for digest, data in blobs.items():
        assert sha256(data) == digest
    assert reachable(top.digest, blobs) == image.all_digests()


def test_image_layers_and_config(image: Layout) -> None:
    (img,) = image.images
    manifest = json.loads(image.blob(img.manifest.digest))
    assert manifest["mediaType"] == OCI_MANIFEST and len(manifest["layers"]) == 3
    config = json.loads(image.blob(manifest["config"]["digest"]))
    layers = [image.blob(layer["digest"]) for layer in manifest["layers"]]
    # diff_ids are the digests of the uncompressed tars, in layer order.
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(layer)) for layer in layers]
    assert config["architecture"] == host_arch() and config["os"] == "linux"
    assert config["config"]["Entrypoint"] == ["/bin/busybox"]
    assert config["config"]["Cmd"] == ["cat", "/etc/pyreg-test"]

    base = _members(layers[0])
    assert _file(layers[0], "bin/busybox") == BUSYBOX.read_bytes()
    assert base["bin/busybox"].mode & 0o111
    for applet in APPLETS:
        assert base[f"bin/{applet}"].issym() and base[f"bin/{applet}"].linkname == "busybox"
    assert _file(layers[1], "etc/pyreg-test").decode() == img.marker
    assert ".wh.pyreg-removed" in {Path(n).name for n in _members(layers[2])}


def test_builds_share_the_base_layer_and_differ_in_the_marker(
    image: Layout, tmp_path: Path
) -> None:
    again = build_image(tmp_path / "again", tag="v1")
    (a,), (b,) = image.images, again.images
    assert a.layers[0] == b.layers[0]  # byte-identical busybox layer: pushes dedup it
    assert a.layers[1].digest != b.layers[1].digest and a.marker != b.marker
    assert a.manifest.digest != b.manifest.digest


def test_index_has_two_platforms(index_image: Layout) -> None:
    index = json.loads(index_image.blob(index_image.top.digest))
    assert index_image.top.media_type == OCI_INDEX == index["mediaType"]
    platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    amd64, arm64 = index_image.images
    assert amd64.layers[0].digest == arm64.layers[0].digest
    assert amd64.config.digest != arm64.config.digest


def test_skopeo_reads_the_layouts(skopeo: Skopeo, image: Layout, index_image: Layout) -> None:
    assert skopeo.inspect_raw(image.ref) == image.blob(image.top.digest)
    info = skopeo.inspect(image.ref)
    assert info["Digest"] == image.top.digest
    assert info["Layers"] == [layer.digest for layer in image.images[0].layers]
    assert skopeo.inspect_raw(index_image.ref) == index_image.blob(index_image.top.digest)
    # Without --raw skopeo picks one platform out of the index: the arm64 image, when asked.
    picked = json.loads(skopeo("inspect", "--override-arch", "arm64", index_image.ref).stdout)
    assert picked["Architecture"] == "arm64"
    assert picked["Layers"] == [layer.digest for layer in index_image.images[1].layers]
