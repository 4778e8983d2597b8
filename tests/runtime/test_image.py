"""Reading images from an OCI layout: references, indexes and platforms, digests checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.runtime import ImageError
from pyreg.runtime.image import host_platform, load_image
from tests.runtime.images import file, layer, write_layout


def test_tag_digest_and_the_only_image(tmp_path: Path) -> None:
    digest = write_layout(tmp_path, [layer([file("a")])], {"Cmd": ["x"], "User": "1:2",
                                                            "ExposedPorts": {"80/tcp": {}}})
    image = load_image(tmp_path, "latest")
    assert image.digest == digest
    assert (image.config.cmd, image.config.user, image.config.exposed_ports) == (
        ("x",), "1:2", ("80/tcp",))
    assert load_image(tmp_path, str(digest)).digest == digest
    assert load_image(tmp_path, None).digest == digest
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path, "other")


def test_an_index_is_narrowed_to_the_platform(tmp_path: Path) -> None:
    amd = write_layout(tmp_path, [layer([file("amd")])], tag="amd")
    arm = write_layout(tmp_path, [layer([file("arm")])], tag="arm")
    index_path = tmp_path / "index.json"
    top = json.loads(index_path.read_text())
    sizes = {m["digest"]: m["size"] for m in top["manifests"]}
    os_name, arch = host_platform()
    other = "arm64" if arch != "arm64" else "amd64"
    child = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": str(arm), "size": sizes[str(arm)],
         "platform": {"os": "linux", "architecture": other}},
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": str(amd), "size": sizes[str(amd)],
         "platform": {"os": os_name, "architecture": arch}},
    ]}).encode()
    digest = Digest.from_bytes(child)
    (tmp_path / "blobs/sha256" / digest.encoded).write_bytes(child)
    top["manifests"].append({"mediaType": mediatypes.OCI_INDEX, "digest": str(digest),
                             "size": len(child),
                             "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    index_path.write_text(json.dumps(top))
    assert load_image(tmp_path, "multi").digest == amd
    assert load_image(tmp_path, "multi", f"linux/{other}").digest == arm
    with pytest.raises(ImageError, match="no variant"):
        load_image(tmp_path, "multi", "windows/amd64")


def test_a_tampered_config_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path, [layer([file("a")])])
    image = load_image(tmp_path, "latest")
    manifest = json.loads(image.blob_path(image.digest).read_bytes())
    config = tmp_path / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]
    config.write_bytes(config.read_bytes().replace(b'"Cmd"', b'"CMD"'))
    with pytest.raises(ImageError, match="does not match its digest"):
        load_image(tmp_path, "latest")
    with pytest.raises(ImageError, match="not an OCI image layout"):
        load_image(tmp_path / "nowhere", "latest")


def test_a_single_image_of_another_platform_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path, [layer([file("a")])])  # linux/amd64
    assert load_image(tmp_path, "latest", "linux/amd64").config.diff_ids
    with pytest.raises(ImageError, match="image with reference bb was found but does not match "
                       "the specified platform: wanted linux/arm64, actual: linux/amd64"):
        load_image(tmp_path, "latest", "linux/arm64", name="bb")
