from __future__ import annotations

import json
from typing import Any

import pytest

from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.manifest import Manifest, ManifestError, infer_media_type, parse_manifest

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def image(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": D2, "size": 20}],
    }
    doc.update(extra)
    return {k: v for k, v in doc.items() if v is not None}


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_image_manifest_references() -> None:
    m = parse_manifest(raw(image()), mediatypes.OCI_MANIFEST)
    assert m.media_type == mediatypes.OCI_MANIFEST
    assert m.config is not None and m.config.digest == Digest.parse(D1)
    assert [d.digest for d in m.layers] == [Digest.parse(D2)]
    assert not m.is_index
    assert m.effective_artifact_type == mediatypes.OCI_CONFIG


def test_index_children() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [{"mediaType": mediatypes.OCI_MANIFEST, "digest": D1, "size": 3,
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }
    m = parse_manifest(raw(doc), "application/vnd.oci.image.index.v1+json; charset=utf-8")
    assert m.is_index
    assert m.manifests[0].platform == {"os": "linux", "architecture": "amd64"}


def test_media_type_may_be_absent_in_oci_documents() -> None:
    doc = image(mediaType=None)
    assert parse_manifest(raw(doc), mediatypes.OCI_MANIFEST).media_type == mediatypes.OCI_MANIFEST
    assert infer_media_type(doc) == mediatypes.OCI_MANIFEST
    assert infer_media_type({"manifests": []}) == mediatypes.OCI_INDEX


def test_artifact_with_subject() -> None:
    doc = image(
        artifactType="application/vnd.example.sbom",
        subject={"mediaType": mediatypes.OCI_MANIFEST, "digest": D2, "size": 5},
        annotations={"k": "v"},
    )
    m = parse_manifest(raw(doc), mediatypes.OCI_MANIFEST)
    assert m.subject is not None and m.subject.digest == Digest.parse(D2)
    assert m.effective_artifact_type == "application/vnd.example.sbom"
    assert m.annotations == {"k": "v"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", mediatypes.OCI_MANIFEST),
        (b"[]", mediatypes.OCI_MANIFEST),
        (raw(image()), mediatypes.DOCKER_MANIFEST),  # mediaType disagrees with Content-Type
        (raw(image(mediaType=None)), mediatypes.DOCKER_MANIFEST),  # Docker types carry mediaType
        (raw(image(mediaType=None)), mediatypes.OCI_INDEX),  # structure is not an index
        (raw(image(schemaVersion=1)), mediatypes.OCI_MANIFEST),
        (raw(image(config=None)), mediatypes.OCI_MANIFEST),
        (raw(image(layers={"x": 1})), mediatypes.OCI_MANIFEST),
        (raw(image(config={"mediaType": "x", "digest": "sha256:zz", "size": 1})), mediatypes.OCI_MANIFEST),
        (raw(image(config={"mediaType": "x", "digest": D1, "size": -1})), mediatypes.OCI_MANIFEST),
        (raw(image(config={"mediaType": "x", "digest": D1, "size": True})), mediatypes.OCI_MANIFEST),
        (raw(image(config={"digest": D1, "size": 1})), mediatypes.OCI_MANIFEST),
        (raw(image()), "application/vnd.example.unknown+json"),
    ],
)
def test_invalid_manifests(body: bytes, content_type: str) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(body, content_type)


def test_generic_content_type_falls_back_to_the_document() -> None:
    m = parse_manifest(raw(image(mediaType=mediatypes.DOCKER_MANIFEST)), "application/json")
    assert m.media_type == mediatypes.DOCKER_MANIFEST


def test_the_document_is_kept_but_not_repeated_by_repr() -> None:
    m = parse_manifest(raw(image()), mediatypes.OCI_MANIFEST)
    assert m.raw == image()
    assert repr(m).startswith("Manifest(media_type=") and "schemaVersion" not in repr(m)
    assert Manifest(mediatypes.OCI_INDEX).raw == {}
