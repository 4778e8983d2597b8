"""Manifest, tag-list and referrers endpoints."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.reference import is_valid_tag
from pyreg.registry.errors import ManifestInvalid, PayloadTooLarge
from pyreg.registry.handlers.common import (
    content_length,
    paginate,
    parse_digest,
    registry_of,
    repository_name,
)
from pyreg.registry.services.manifests import MAX_MANIFEST_SIZE


def _reference(request: Request) -> tuple[str | None, Digest | None]:
    """(tag, None) or (None, digest) from the `<reference>` path component."""
    reference: str = request.path_params["reference"]
    if ":" in reference:
        return None, parse_digest(reference)
    if not is_valid_tag(reference):
        raise ManifestInvalid("invalid tag", detail={"tag": reference[:200]})
    return reference, None


async def get_manifest(request: Request) -> Response:
    name = repository_name(request)
    tag, digest = _reference(request)
    store = registry_of(request).manifests(name)
    if digest is None:
        assert tag is not None
        digest = await store.resolve_tag(tag)
    stored = await store.get(digest)
    etag = f'"{digest}"'
    headers = {
        "Content-Type": stored.media_type,
        "Docker-Content-Digest": str(digest),
        "ETag": etag,
        "Content-Length": str(len(stored.data)),
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return Response(stored.data, status_code=200, headers=headers)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"manifest larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"manifest larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def put_manifest(request: Request) -> Response:
    name = repository_name(request)
    tag, digest = _reference(request)
    data = await _read_limited(request, MAX_MANIFEST_SIZE)
    store = registry_of(request).manifests(name)
    actual, manifest = await store.put(data, request.headers.get("content-type"), tag, digest)
    headers = {
        "Location": registry_of(request).url(f"/v2/{name}/manifests/{actual}"),
        "Docker-Content-Digest": str(actual),
        "Content-Length": "0",
    }
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject.digest)
    return Response(status_code=201, headers=headers)


async def delete_manifest(request: Request) -> Response:
    name = repository_name(request)
    tag, digest = _reference(request)
    reg = registry_of(request)
    reg.check_delete_enabled()
    store = reg.manifests(name)
    if tag is not None:
        await store.untag(tag)
    else:
        assert digest is not None
        await store.delete(digest)
    return Response(status_code=202, headers={"Content-Length": "0"})


def _json(body: object, headers: dict[str, str], media_type: str = "application/json") -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = {**headers, "Content-Type": media_type, "Content-Length": str(len(data))}
    return Response(data, status_code=200, headers=headers)


async def list_tags(request: Request) -> Response:
    name = repository_name(request)
    tags = await registry_of(request).manifests(name).tags()
    page, headers = paginate(tags, request, f"/v2/{name}/tags/list")
    return _json({"name": name, "tags": page}, headers)


async def list_referrers(request: Request) -> Response:
    name = repository_name(request)
    subject = parse_digest(request.path_params["digest"])
    referrers = await registry_of(request).manifests(name).referrers(subject)
    headers: dict[str, str] = {}
    wanted = request.query_params.get("artifactType")
    if wanted:
        referrers = [d for d in referrers if d.artifact_type == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [d.to_json() for d in referrers],
    }
    return _json(index, headers, mediatypes.OCI_INDEX)

