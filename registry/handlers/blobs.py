"""Blob endpoints: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from pyreg.registry.errors import BlobUnknown, RangeInvalid
from pyreg.registry.handlers.common import parse_digest, registry_of, repository_name

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a `Range` header asks for, None to send everything.

    Raises RangeInvalid (416) when the range cannot be satisfied. Multiple ranges are not
    supported and are answered with the whole blob, which RFC 9110 allows.
    """
    m = _RANGE_RE.fullmatch(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
        return max(0, size - suffix), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def get_blob(request: Request) -> Response:
    name = repository_name(request)
    digest = parse_digest(request.path_params["digest"])
    reg = registry_of(request)
    info = await reg.repository_blobs(name).stat(digest)
    if info is None:
        raise BlobUnknown(detail={"digest": str(digest)})
    headers = {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
        "Content-Type": "application/octet-stream",
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return Response(status_code=200, headers=headers)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if not reg.config.storage.redirect_disable:
        url = await reg.blobs.redirect_url(digest)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Docker-Content-Digest": str(digest)})

    status, offset, length = 200, 0, info.size
    range_header = request.headers.get("range")
    if range_header:
        wanted = parse_range(range_header, info.size)
        if wanted is not None:
            start, end = wanted
            status, offset, length = 206, start, end - start + 1
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(length)
    return StreamingResponse(reg.blobs.reader(digest, offset, length), status_code=status, headers=headers)


async def delete_blob(request: Request) -> Response:
    name = repository_name(request)
    digest = parse_digest(request.path_params["digest"])
    reg = registry_of(request)
    reg.check_delete_enabled()
    blobs = reg.repository_blobs(name)
    if await blobs.stat(digest) is None or not await blobs.unlink(digest):
        raise BlobUnknown(detail={"digest": str(digest)})
    return Response(status_code=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})
