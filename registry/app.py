"""The registry's ASGI application: routes, error rendering, storage and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyreg.registry.config import Config
from pyreg.registry.errors import RegistryError, Unavailable, Unsupported
from pyreg.registry.handlers import base, blobs, manifests, uploads
from pyreg.registry.handlers.common import Registry
from pyreg.registry.storage import StorageDriver, StorageUnavailable

log = logging.getLogger("pyreg.registry")

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


def build_driver(config: Config) -> StorageDriver:
    storage = config.storage
    if storage.driver == "filesystem":
        from pyreg.registry.storage.filesystem import FilesystemDriver

        return FilesystemDriver(storage.filesystem_root)
    if storage.driver == "inmemory":
        from pyreg.registry.storage.memory import InMemoryDriver

        return InMemoryDriver()
    if storage.driver == "s3":
        from pyreg.registry.storage.s3 import S3Driver  # boto3 is imported only for this driver

        return S3Driver.from_config(storage.s3)
    raise ValueError(f"storage.{storage.driver}: this storage driver is not supported yet")


def _error_response(err: RegistryError) -> Response:
    headers = {k: v for k, v in err.headers.items() if k.lower() != "content-length"}
    headers["Content-Type"] = "application/json"
    return Response(err.body(), status_code=err.status, headers=headers)


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return _error_response(exc)


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageUnavailable)
    log.warning("storage unavailable: %s", exc)
    headers = {"Retry-After": str(exc.retry_after or 1)}
    return _error_response(Unavailable(str(exc), headers=headers))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _error_response(Unsupported("method not allowed", headers=dict(exc.headers or {})))
    err = Unsupported("no such endpoint")
    return Response(err.body(), status_code=exc.status_code, headers={"Content-Type": "application/json"})


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    # The client is gone; nothing will read this.
    return Response(status_code=400)


class APIVersionHeader:
    """Adds `Docker-Distribution-API-Version` to every response (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), API_VERSION_HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)


class ReadOnly:
    """`storage.maintenance.readonly`: reads are served, every write is refused (405)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            response = _error_response(Unsupported("the registry is in read-only mode"))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def routes(prefix: str = "") -> list[Route]:
    name = prefix + "/v2/{name:path}"
    return [
        Route(prefix + "/v2/", base.version_check, methods=["GET"]),
        Route(prefix + "/v2/_catalog", base.get_catalog, methods=["GET"]),
        Route(f"{name}/tags/list", manifests.list_tags, methods=["GET"]),
        Route(
            f"{name}/manifests/{{reference}}",
            manifests.get_manifest,
            methods=["GET"],
        ),
        Route(f"{name}/manifests/{{reference}}", manifests.put_manifest, methods=["PUT"]),
        Route(f"{name}/manifests/{{reference}}", manifests.delete_manifest, methods=["DELETE"]),
        Route(f"{name}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
        Route(f"{name}/blobs/uploads/{{upload_id}}", uploads.upload_status, methods=["GET"]),
        Route(f"{name}/blobs/uploads/{{upload_id}}", uploads.patch_upload, methods=["PATCH"]),
        Route(f"{name}/blobs/uploads/{{upload_id}}", uploads.finish_upload, methods=["PUT"]),
        Route(f"{name}/blobs/uploads/{{upload_id}}", uploads.cancel_upload, methods=["DELETE"]),
        Route(f"{name}/blobs/{{digest}}", blobs.get_blob, methods=["GET"]),
        Route(f"{name}/blobs/{{digest}}", blobs.delete_blob, methods=["DELETE"]),
        Route(f"{name}/referrers/{{digest}}", manifests.list_referrers, methods=["GET"]),
    ]


async def _purge_uploads(reg: Registry) -> None:
    purging = reg.config.storage.uploadpurging
    # As distribution: a random delay before the first purge, so that replicas and workers
    # started together do not all walk the store at once.
    await asyncio.sleep(random.uniform(0, min(3600.0, purging.interval)))
    while True:
        try:
            purged = await reg.uploads.purge(purging.age, purging.dryrun)
            if purged:
                verb = "would purge" if purging.dryrun else "purged"
                log.info("%s %d stale uploads", verb, len(purged))
        except Exception:
            log.exception("upload purging failed")
        await asyncio.sleep(purging.interval)


def create_app(config: Config, driver: StorageDriver | None = None) -> ASGIApp:
    if config.proxy:
        raise ValueError("proxy: the pull-through cache is not supported yet")
    reg = Registry.build(config, driver or build_driver(config))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if config.storage.uploadpurging.enabled:
            task = asyncio.create_task(_purge_uploads(reg))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            close = getattr(reg.driver, "close", None)
            if close is not None:
                close()  # e.g. the S3 driver's connection pool and threads

    app = Starlette(
        routes=routes(config.http.prefix),
        exception_handlers={
            RegistryError: _registry_error,
            StorageUnavailable: _storage_unavailable,
            HTTPException: _http_exception,
            ClientDisconnect: _client_disconnect,
        },
        lifespan=lifespan,
    )
    app.state.registry = reg
    inner: ASGIApp = ReadOnly(app) if config.storage.readonly else app
    return APIVersionHeader(with_auth(inner, config))


def with_auth(app: ASGIApp, config: Config) -> ASGIApp:
    """Wrap the app in the configured authentication; never serve openly what should be closed."""
    if not config.auth:
        return app
    if "htpasswd" in config.auth:
        from pyreg.registry.auth.htpasswd import HtpasswdAuth

        section = config.auth["htpasswd"] or {}
        path = str(section.get("path", ""))
        if not os.path.isfile(path):
            raise ValueError(f"auth.htpasswd.path: no such file {path!r}")
        return HtpasswdAuth(app, str(section.get("realm", "pyreg")), path)
    if "token" in config.auth:
        from pyreg.registry.auth.bearer import bearer_auth

        return bearer_auth(app, config)
    schemes = ", ".join(sorted(config.auth))
    raise ValueError(f"auth: {schemes} is not supported (htpasswd and token are)")
