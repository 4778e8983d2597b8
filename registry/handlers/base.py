"""`GET /v2/` and `GET /v2/_catalog`."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from pyreg.registry.handlers.common import paginate, registry_of
from pyreg.registry.services.repositories import catalog


async def version_check(request: Request) -> Response:
    return Response(b"{}", status_code=200, headers={"Content-Type": "application/json"})


async def get_catalog(request: Request) -> Response:
    names = await catalog(registry_of(request).driver)
    page, headers = paginate(names, request, "/v2/_catalog")
    data = json.dumps({"repositories": page}, separators=(",", ":")).encode()
    return Response(data, status_code=200, headers={**headers, "Content-Type": "application/json"})
