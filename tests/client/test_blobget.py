"""Blob bodies read around httpx (`blobget`): against pyreg's registry and distribution behind the
token server, and against small HTTP(S) servers that redirect, cut, stall or chunk their answers.
Whatever the path, the bytes and the errors are those of the httpx path."""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from pyreg.client import blobget, errors
from pyreg.client.api import BlobBody, HttpxBlobBody, RegistryClient
from pyreg.client.auth import Challenge, DockerTokenAuth, _Token, scopes_for
from pyreg.client.blobget import BlobResponse
from pyreg.client.config import ClientConfig, Endpoint
from pyreg.client.connect import connect
from pyreg.client.credentials import Credentials
from pyreg.client.retry import RetryPolicy
from pyreg.client.session import RegistrySession
from pyreg.client.store import ImageStore
from pyreg.client.transfer.pull import pull
from pyreg.client.transfer.push import push
from pyreg.oci.digest import Digest
from pyreg.oci.imageref import parse_reference
from tests.client.conftest import FAST_RETRY, put_image
from tests.client.images import SampleImage, make_layer
from tests.client.servers import TokenServer, token_registry
from tests.conftest import RegistryServer
from tests.test_cli import self_signed

USERS = {"alice": "wonderland"}
ALICE = Credentials("alice", "wonderland")
BLOB = os.urandom(9 << 20 | 12345)  # more than two body buffers, not a multiple of one
BLOB_DIGEST = Digest.from_bytes(BLOB)
BLOB_PATH = f"/v2/lib/app/blobs/{BLOB_DIGEST}"


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def both_loops(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on asyncio's loop and on uvloop's, which `pyreg` runs on: their
    transports (plain and TLS) call a BufferedProtocol each in its own way."""

    def run(*args: Any, loop: str, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            runner.run(test(*args, **kwargs))

    signature = inspect.signature(test)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), inspect.Parameter("loop", inspect.Parameter.KEYWORD_ONLY)])
    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return pytest.mark.parametrize("loop", list(LOOPS))(run)


def repo() -> str:
    return f"blobget/r{uuid.uuid4().hex[:10]}"


async def read_all(body: BlobBody, delay: float = 0.0) -> bytes:
    out = bytearray()
    async for batch in body:
        for piece in batch:
            out += piece
        if delay:
            await asyncio.sleep(delay)  # a slow writer: the reader pauses, then goes on
    return bytes(out)


async def upload(api: RegistryClient, name: str, data: bytes) -> Digest:
    digest = Digest.from_bytes(data)
    await api.put_upload(await api.start_upload(name), digest, data)
    return digest


# -- pyreg's registry -------------------------------------------------------------------------


@both_loops
async def test_body_range_and_errors_against_pyreg(shared_registry: RegistryServer) -> None:
    name = repo()
    async with RegistryClient(shared_registry.url) as api:
        assert api.direct_blobs
        digest = await upload(api, name, BLOB)
        async with api.blob_body(name, digest) as body:
            assert isinstance(body, BlobResponse) and body.status_code == 200
            assert await read_all(body) == BLOB
        async with api.blob_body(name, digest, start=5_000_000) as body:
            assert isinstance(body, BlobResponse) and body.status_code == 206
            assert await read_all(body) == BLOB[5_000_000:]
        # An error status is httpx's to read and report.
        with pytest.raises(errors.NotFound, match="blob unknown"):
            async with api.blob_body(name, Digest.from_bytes(b"missing")):
                pass
        empty = await upload(api, name, b"")
        async with api.blob_body(name, empty) as body:
            assert isinstance(body, BlobResponse) and await read_all(body) == b""


@both_loops
async def test_slow_reader_with_small_buffers(shared_registry: RegistryServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading pauses when every buffer waits for the caller, and resumes when one comes back.
    monkeypatch.setattr(blobget, "BUFFER_SIZE", 256 << 10)
    monkeypatch.setattr(blobget, "_pool", [])
    resumed = []
    real_resume = blobget._Reader._resume

    def resume(reader: blobget._Reader) -> None:
        resumed.append(reader.paused)
        real_resume(reader)

    monkeypatch.setattr(blobget._Reader, "_resume", resume)
    name = repo()
    data = BLOB[:3 << 20]
    async with RegistryClient(shared_registry.url) as api:
        digest = await upload(api, name, data)
        for _ in range(2):  # the second time from the buffers the first one left
            async with api.blob_body(name, digest) as body:
                assert isinstance(body, BlobResponse)
                assert await read_all(body, delay=0.005) == data
            assert 0 < len(blobget._pool) <= blobget.POOL_MAX
            assert resumed.count(True) > 1  # after the head, and after the caller fell behind
            resumed.clear()


@both_loops
async def test_pull_goes_around_httpx(shared_registry: RegistryServer, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: HttpxBlobBody, response: httpx.Response) -> None:
        raise AssertionError("a blob body read through httpx")

    monkeypatch.setattr(HttpxBlobBody, "__init__", refuse)
    image = SampleImage([make_layer(300_000), make_layer(5_000_000)])
    ref = parse_reference(f"{shared_registry.host}/{repo()}:v1")
    source = ImageStore(tmp_path / "source")
    put_image(source, image, str(ref))
    session = RegistrySession(ClientConfig(), retry=FAST_RETRY)
    try:
        await push(session, source, ref)
        target = ImageStore(tmp_path / "target")
        result = await pull(session, target, ref)
    finally:
        await session.aclose()
    assert result.downloaded == 3  # config and layers
    for digest, data in image.blobs().items():
        assert target.read_blob(digest) == data


# -- the token server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, TokenServer]]:
    with token_registry(tmp_path_factory.mktemp("hub"), USERS) as pair:
        yield pair


@both_loops
async def test_token_from_the_auth_flow(hub: tuple[RegistryServer, TokenServer]) -> None:
    server, tokens = hub
    name = f"alice/r{uuid.uuid4().hex[:8]}"
    conn = await connect(Endpoint(server.host, ("http",)), ALICE)
    try:
        data = BLOB[:1 << 20]
        digest = await upload(conn.api, name, data)
        # No token for the pull scope yet: httpx asks, its auth flow fetches one.
        async with conn.api.blob_body(name, digest) as body:
            assert isinstance(body, HttpxBlobBody) and await read_all(body) == data
        asked = len(tokens.requests)
        # Then the body goes around httpx, with that token.
        async with conn.api.blob_body(name, digest) as body:
            assert isinstance(body, BlobResponse) and await read_all(body) == data
        assert len(tokens.requests) == asked
        # A token the registry refuses: its 401 goes to httpx's auth flow, whose answer stands.
        scopes = scopes_for(httpx.Request("GET", conn.api.url(f"{name}/blobs/{digest}")))
        conn.auth._tokens[scopes] = _Token("not-a-token", time.monotonic() + 3600)
        with pytest.raises(errors.Unauthorized):
            async with conn.api.blob_body(name, digest):
                pass
    finally:
        await conn.aclose()
    # An auth that has seen no challenge yet sends nothing: the 401 goes through httpx's auth
    # flow, which answers the challenge.
    auth = DockerTokenAuth(server.host, ALICE)
    async with RegistryClient(server.url, auth=auth) as api:
        async with api.blob_body(name, digest) as body:
            assert isinstance(body, HttpxBlobBody) and await read_all(body) == data
        assert auth.token_requests == 1
        async with api.blob_body(name, digest) as body:
            assert isinstance(body, BlobResponse) and await read_all(body) == data
        assert auth.token_requests == 1


# -- small servers ----------------------------------------------------------------------------

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP/1.1 server whose GETs `handler` answers: (base URL, headers of each request)."""
    seen: list[dict[str, str]] = []

    class Serve(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
            handler(self)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def send_blob(h: BaseHTTPRequestHandler, data: bytes = BLOB) -> None:
    """A blob server with ranges, as object storage behind a registry's redirect."""
    start = 0
    rng = h.headers.get("Range")
    if rng:
        start = int(rng.removeprefix("bytes=").rstrip("-"))
    h.send_response(206 if rng else 200)
    if rng:
        h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    h.send_header("Content-Length", str(len(data) - start))
    h.end_headers()
    h.wfile.write(data[start:])


def registry_redirecting_to(target: str) -> Handler:
    """A registry that wants Basic credentials and sends blob GETs to `target`."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") != ALICE.basic_header():
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="test"')
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif h.path == "/v2/":
            h.send_response(200)
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            h.send_response(307)
            h.send_header("Location", f"{target}/storage{h.path}?signature=x")
            h.send_header("Content-Length", "0")
            h.end_headers()

    return handle


async def basic_client(url: str, verify: ssl.SSLContext | bool = True) -> RegistryClient:
    auth = DockerTokenAuth(url.split("://")[1], ALICE)
    api = RegistryClient(url, auth=auth, retry=RetryPolicy(attempts=1), verify=verify)
    assert (await api.ping()).status_code == 200  # the auth flow learns the Basic challenge
    assert auth._challenge == Challenge("basic", {"realm": "test"})
    return api


@both_loops
async def test_redirect_to_storage_over_tls_without_the_registry_credentials(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serve(send_blob, tls) as (storage, storage_seen), \
            serve(registry_redirecting_to(storage)) as (registry, registry_seen):
        api = await basic_client(registry, verify=ssl.create_default_context(cafile=str(cert)))
        try:
            async with api.blob_body("lib/app", BLOB_DIGEST, start=1000) as body:
                assert isinstance(body, BlobResponse) and body.status_code == 206
                assert str(body.url).startswith(f"{storage}/storage{BLOB_PATH}?signature=x")
                assert await read_all(body) == BLOB[1000:]
        finally:
            await api.aclose()
        assert registry_seen[-1]["authorization"] == ALICE.basic_header()
        assert storage_seen[-1]["range"] == "bytes=1000-" and "authorization" not in storage_seen[-1]
        # The storage's certificate is verified as the registry's would be.
        api = await basic_client(registry)
        try:
            with pytest.raises(errors.TLSFailure, match="certificate"):
                async with api.blob_body("lib/app", BLOB_DIGEST):
                    pass
        finally:
            await api.aclose()


@both_loops
async def test_redirect_within_the_registry_keeps_the_credentials() -> None:
    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/storage/") and h.headers.get("Authorization") == ALICE.basic_header():
            send_blob(h)
        else:
            registry_redirecting_to("")(h)  # Location: /storage/..., the same origin

    with serve(handle) as (url, seen):
        api = await basic_client(url)
        try:
            async with api.blob_body("lib/app", BLOB_DIGEST) as body:
                assert isinstance(body, BlobResponse) and await read_all(body) == BLOB
        finally:
            await api.aclose()
    assert seen[-1][":path"].startswith("/storage/") and seen[-1]["authorization"] == ALICE.basic_header()


def chunked(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for i in range(0, len(BLOB), 1 << 20):
        piece = BLOB[i:i + (1 << 20)]
        h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    h.wfile.write(b"0\r\n\r\n")


def until_close(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(BLOB)
    h.close_connection = True


@pytest.mark.parametrize("handler", [chunked, until_close])
@both_loops
async def test_bodies_without_a_length_go_through_httpx(handler: Handler) -> None:
    with serve(handler) as (url, seen):
        async with RegistryClient(url) as api:
            async with api.blob_body("lib/app", BLOB_DIGEST) as body:
                assert isinstance(body, HttpxBlobBody) and await read_all(body) == BLOB
    assert len(seen) == 2  # asked around httpx, then through it


def unavailable(h: BaseHTTPRequestHandler) -> None:
    body = b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}'
    h.send_response(503)
    h.send_header("Retry-After", "1")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@both_loops
async def test_an_error_status_is_read_and_reported_by_httpx() -> None:
    with serve(unavailable) as (url, seen):
        async with RegistryClient(url) as api:
            with pytest.raises(errors.ResponseError, match="unavailable: try later") as failure:
                async with api.blob_body("lib/app", BLOB_DIGEST):
                    pass
    assert failure.value.status == 503  # transient: download_blob retries it, with its policy
    assert len(seen) == 2  # asked around httpx, then through it


def cut(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(BLOB)))
    h.end_headers()
    h.wfile.write(BLOB[:5_000_000])
    h.close_connection = True


@both_loops
async def test_a_cut_body_hands_out_what_came_then_fails() -> None:
    with serve(cut) as (url, _):
        async with RegistryClient(url) as api:
            got = bytearray()
            with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
                async with api.blob_body("lib/app", BLOB_DIGEST) as body:
                    assert isinstance(body, BlobResponse)
                    async for batch in body:
                        for piece in batch:
                            got += piece
            assert bytes(got) == BLOB[:5_000_000]  # for the resume to start after


def stall(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(BLOB)))
    h.end_headers()
    h.wfile.write(BLOB[:1000])
    h.wfile.flush()
    time.sleep(2)


@both_loops
async def test_a_silent_server_times_out() -> None:
    with serve(stall) as (url, _):
        async with RegistryClient(url, timeout=0.3) as api:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                async with api.blob_body("lib/app", BLOB_DIGEST) as body:
                    await read_all(body)
            assert time.monotonic() - started < 1.5


@both_loops
async def test_proxies_and_transports_keep_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    async with RegistryClient("http://127.0.0.1:9", transport=httpx.MockTransport(lambda r: httpx.Response(200))) as api:
        assert not api.direct_blobs
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with RegistryClient("https://registry.example") as api:
        assert not api.direct_blobs


def test_parse_head() -> None:
    head = blobget.parse_head(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2")
    assert head == blobget.Head(206, {"content-length": "5", "x-a": "1, 2"})
    assert blobget.body_length(head) == 5
    for header in ("Transfer-Encoding: chunked", "Content-Encoding: gzip", "Content-Length: 5, 5"):
        assert blobget.body_length(blobget.parse_head(b"HTTP/1.1 200 OK\r\n" + header.encode())) is None
    for bad in (b"ICY 200 OK", b"HTTP/1.1 2x0 OK", b"HTTP/1.1 200 OK\r\n folded"):
        with pytest.raises(blobget.NotHandled):  # httpx's to judge
            blobget.parse_head(bad)
