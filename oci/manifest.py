"""Descriptors, image manifests and indexes: parsing and validation.

The registry keeps the exact bytes it was given; this module only reads them to find what they
reference (blobs, child manifests, the subject) and to check they are of their media type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from pyreg.oci import OCIError, mediatypes
from pyreg.oci.digest import Digest, DigestError


class ManifestError(OCIError):
    """A manifest that is not valid JSON or not of its media type."""


class Descriptor(NamedTuple):
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, value: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: expected an object")
        media_type = value.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{where}: mediaType missing")
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}: size must be a non-negative integer")
        raw_digest = value.get("digest")
        try:
            digest = Digest.parse(raw_digest if isinstance(raw_digest, str) else "")
        except DigestError as e:
            raise ManifestError(f"{where}: {e}") from None
        annotations = value.get("annotations")
        if annotations is not None and not (
            isinstance(annotations, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
        ):
            raise ManifestError(f"{where}: annotations must map strings to strings")
        urls = value.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ManifestError(f"{where}: urls must be a list of strings")
        artifact_type = value.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise ManifestError(f"{where}: artifactType must be a string")
        platform = value.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise ManifestError(f"{where}: platform must be an object")
        return cls(media_type, digest, size, artifact_type, annotations, tuple(urls), platform)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.urls:
            out["urls"] = list(self.urls)
        if self.platform:
            out["platform"] = self.platform
        return out


class Manifest(NamedTuple):
    """An image manifest or an index, as far as a registry needs to know it; `raw` is the whole
    document."""

    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    raw: Mapping[str, Any] = MappingProxyType({})

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEX_TYPES

    @property
    def effective_artifact_type(self) -> str | None:
        """What the referrers API reports: artifactType, else the config's media type."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None:
            return self.config.media_type
        return None

    def __repr__(self) -> str:
        # Without `raw` (the last field): large, and what the other fields say again.
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields[:-1])
        return f"Manifest({fields})"


def infer_media_type(doc: dict[str, Any]) -> str:
    """The media type of a manifest whose `mediaType` field may be absent (OCI allows it)."""
    media_type = doc.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return mediatypes.OCI_INDEX if "manifests" in doc else mediatypes.OCI_MANIFEST


def parse_manifest(data: bytes, content_type: str | None) -> Manifest:
    """Parse and check a manifest pushed with the given Content-Type."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest must be a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType must be a string")
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in mediatypes.MANIFEST_TYPES:
        # Some clients send no or a generic Content-Type: the document then decides.
        if ctype not in ("", "application/json", "application/octet-stream"):
            raise ManifestError(f"unsupported manifest media type {ctype!r}")
        ctype = infer_media_type(doc)
        if ctype not in mediatypes.MANIFEST_TYPES:
            raise ManifestError(f"unsupported manifest media type {ctype!r}")
    if declared and declared != ctype:
        raise ManifestError(f"mediaType {declared!r} does not match Content-Type {ctype!r}")
    if not declared:
        if ctype not in (mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX):
            raise ManifestError(f"a {ctype} manifest must carry its mediaType")
        if infer_media_type(doc) != ctype:
            raise ManifestError(f"manifest does not have the structure of {ctype}")
    if doc.get("schemaVersion") != 2:
        raise ManifestError("schemaVersion must be 2")

    subject = None
    if doc.get("subject") is not None:
        subject = Descriptor.from_json(doc["subject"], "subject")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError("artifactType must be a string")
    annotations = doc.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise ManifestError("annotations must be an object")

    if ctype in mediatypes.INDEX_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestError("manifests must be a list")
        return Manifest(
            ctype,
            manifests=tuple(
                Descriptor.from_json(c, f"manifests[{i}]") for i, c in enumerate(children)
            ),
            subject=subject,
            artifact_type=artifact_type,
            annotations=annotations,
            raw=doc,
        )
    if "config" not in doc:
        raise ManifestError("config missing")
    layers = doc.get("layers", [])
    if not isinstance(layers, list):
        raise ManifestError("layers must be a list")
    return Manifest(
        ctype,
        config=Descriptor.from_json(doc["config"], "config"),
        layers=tuple(Descriptor.from_json(v, f"layers[{i}]") for i, v in enumerate(layers)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
        raw=doc,
    )
