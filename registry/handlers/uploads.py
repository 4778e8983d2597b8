"""Blob upload endpoints: `POST /v2/<name>/blobs/uploads/` and `…/uploads/<id>`.

Monolithic (`POST ?digest=`, or `POST` then `PUT` with the body), chunked (`PATCH` with
`Content-Range`), Docker's streaming `PATCH` (no `Content-Range`), status, cancel, and
cross-repository mounts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from pyreg.oci.reference import is_valid_name
from pyreg.registry.auth.scopes import can_read
from pyreg.registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
)
from pyreg.registry.handlers.common import (
    Registry,
    content_length,
    parse_digest,
    registry_of,
    repository_name,
)
from pyreg.registry.services.uploads import valid_upload_id

_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def _upload_headers(reg: Registry, name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": reg.url(f"/v2/{name}/blobs/uploads/{upload_id}"),
        # distribution's form: "0-0" also for an empty upload.
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
    }


def _blob_created(reg: Registry, name: str, digest: str) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": reg.url(f"/v2/{name}/blobs/{digest}"),
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


def _has_body(request: Request) -> bool:
    length = content_length(request)
    if length is not None:
        return length > 0
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _upload_id(request: Request) -> str:
    upload_id: str = request.path_params["upload_id"]
    if not valid_upload_id(upload_id):
        raise BlobUploadUnknown(detail={"upload": upload_id[:100]})
    return upload_id


async def start_upload(request: Request) -> Response:
    name = repository_name(request)
    reg = registry_of(request)
    params = request.query_params

    mount = params.get("mount")
    if mount:
        digest = parse_digest(mount)
        source = params.get("from", "")
        # A source the caller may not pull from is treated as absent: no leak through mounts.
        readable = source and is_valid_name(source) and can_read(request.scope, source)
        if readable and await reg.repository_blobs(source).stat(digest):
            await reg.repository_blobs(name).link(digest)
            return _blob_created(reg, name, str(digest))
        # Not mountable from there: answer with an ordinary upload session, as the spec says.

    digest_param = params.get("digest")
    if digest_param is not None and not mount:
        digest = parse_digest(digest_param)
        upload_id = await reg.uploads.create(name)
        expected = content_length(request)
        size = await reg.uploads.append(name, upload_id, _body(request), 0)
        if expected is not None and size != expected:
            await reg.uploads.cancel(name, upload_id)
            raise SizeInvalid(detail={"expected": expected, "received": size})
        await reg.uploads.commit(name, upload_id, digest)
        return _blob_created(reg, name, str(digest))

    upload_id = await reg.uploads.create(name)
    return Response(status_code=202, headers=_upload_headers(reg, name, upload_id, 0))


async def upload_status(request: Request) -> Response:
    name = repository_name(request)
    upload_id = _upload_id(request)
    reg = registry_of(request)
    async with reg.uploads.lock(upload_id):  # not mid-way through a PATCH of this process
        size = await reg.uploads.size(name, upload_id)
    return Response(status_code=204, headers=_upload_headers(reg, name, upload_id, size))


async def _append_chunk(reg: Registry, request: Request, name: str, upload_id: str) -> int:
    """Append the request body as the next chunk, checking Content-Range and Content-Length."""
    size = await reg.uploads.size(name, upload_id)
    length = content_length(request)
    content_range = request.headers.get("content-range")
    if content_range is not None:
        m = _CONTENT_RANGE_RE.fullmatch(content_range.strip())
        if m is None:
            raise RangeInvalid(
                "invalid Content-Range", headers=_upload_headers(reg, name, upload_id, size)
            )
        start, end = int(m.group(1)), int(m.group(2))
        if start != size or end < start:
            # Out of order or overlapping: refuse, and leave the upload as it was.
            raise RangeInvalid(
                f"range {start}-{end} does not continue the upload at {size}",
                headers=_upload_headers(reg, name, upload_id, size),
            )
        if length is not None and length != end - start + 1:
            raise SizeInvalid(
                "Content-Length does not match Content-Range",
                detail={"content-length": length, "content-range": content_range},
            )
    new_size = await reg.uploads.append(name, upload_id, _body(request), size)
    if length is not None and new_size - size != length:
        raise BlobUploadInvalid(detail={"expected": length, "received": new_size - size})
    return new_size


async def patch_upload(request: Request) -> Response:
    name = repository_name(request)
    upload_id = _upload_id(request)
    reg = registry_of(request)
    async with reg.uploads.lock(upload_id):
        size = await _append_chunk(reg, request, name, upload_id)
    return Response(status_code=202, headers=_upload_headers(reg, name, upload_id, size))


async def finish_upload(request: Request) -> Response:
    name = repository_name(request)
    upload_id = _upload_id(request)
    reg = registry_of(request)
    raw = request.query_params.get("digest")
    if raw is None:
        raise DigestInvalid("digest parameter missing")
    digest = parse_digest(raw)
    async with reg.uploads.lock(upload_id):
        if _has_body(request):
            await _append_chunk(reg, request, name, upload_id)
        else:
            await reg.uploads.size(name, upload_id)  # BLOB_UPLOAD_UNKNOWN when absent
        await reg.uploads.commit(name, upload_id, digest)
    return _blob_created(reg, name, str(digest))


async def cancel_upload(request: Request) -> Response:
    name = repository_name(request)
    upload_id = _upload_id(request)
    reg = registry_of(request)
    async with reg.uploads.lock(upload_id):
        await reg.uploads.size(name, upload_id)
        await reg.uploads.cancel(name, upload_id)
    return Response(status_code=204, headers={"Content-Length": "0"})
