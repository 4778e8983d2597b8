"""The token dance and Basic auth: against distribution behind a Docker-Hub-like token server, with
htpasswd, and in-process for the rules about where credentials may go."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyreg.client import errors
from pyreg.client.auth import DockerTokenAuth, parse_challenges, scopes_for
from pyreg.client.config import Endpoint
from pyreg.client.connect import connect
from pyreg.client.credentials import Credentials
from pyreg.client.retry import RetryPolicy
from pyreg.oci.digest import Digest
from tests.client.servers import TokenServer, htpasswd_registry, token_registry
from tests.conftest import RegistryServer

USERS = {"alice": "wonderland"}
ALICE = Credentials("alice", "wonderland")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, TokenServer]]:
    with token_registry(tmp_path_factory.mktemp("hub"), USERS) as pair:
        yield pair


def endpoint(server: RegistryServer) -> Endpoint:
    return Endpoint(server.host, ("http",))


async def push_blob(server: RegistryServer, creds: Credentials | None, name: str, data: bytes) -> Digest:
    conn = await connect(endpoint(server), creds)
    try:
        digest = Digest.from_bytes(data)
        state = await conn.api.start_upload(name)
        await conn.api.put_upload(state, digest, data)
        return digest
    finally:
        await conn.aclose()


def test_parse_challenges() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push", Basic realm="x"'
    bearer, basic = parse_challenges(header)
    assert bearer.scheme == "bearer" and bearer.params == {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:a/b:pull,push"}
    assert basic.scheme == "basic" and basic.params == {"realm": "x"}


@pytest.mark.parametrize(("method", "path", "scopes"), [
    ("GET", "/v2/a/b/manifests/latest", ("repository:a/b:pull",)),
    ("HEAD", "/v2/a/blobs/blobs/sha256:00", ("repository:a/blobs:pull",)),
    ("PATCH", "/v2/x/blobs/uploads/u-1", ("repository:x:pull,push",)),
    ("DELETE", "/v2/x/manifests/sha256:00", ("repository:x:delete",)),
    ("POST", "/v2/x/blobs/uploads/?mount=sha256:00&from=y/z", ("repository:x:pull,push", "repository:y/z:pull")),
    ("GET", "/v2/_catalog", ("registry:catalog:*",)),
    ("GET", "/v2/", ()),
])
def test_scopes(method: str, path: str, scopes: tuple[str, ...]) -> None:
    assert scopes_for(httpx.Request(method, f"http://h{path}")) == scopes


async def test_token_flow_push_pull_cache_and_scopes(hub: tuple[RegistryServer, TokenServer]) -> None:
    server, tokens = hub
    name = f"alice/r{uuid.uuid4().hex[:8]}"
    tokens.requests.clear()
    conn = await connect(endpoint(server), ALICE)
    try:
        assert conn.ping.status_code == 200  # the ping's 401 was answered with a token
        digests = []
        for _ in range(3):
            state = await conn.api.start_upload(name)
            data = os.urandom(100)
            await conn.api.put_upload(state, Digest.from_bytes(data), data)
            digests.append(Digest.from_bytes(data))
        for d in digests:
            assert await conn.api.head_blob(name, d) == 100
        # ping (no scope), push scope once, pull scope once: the cache serves the rest
        assert [r.scopes for r in tokens.requests] == [[], [f"repository:{name}:pull,push"],
                                                       [f"repository:{name}:pull"]]
        # the password goes out once; the refresh token it bought serves the later scopes
        assert [(r.user, r.grant) for r in tokens.requests] == [
            ("alice", "basic"), ("alice", "refresh_token"), ("alice", "refresh_token")]
        # a mount needs the source repository too: one token for both scopes
        other = f"alice/r{uuid.uuid4().hex[:8]}"
        assert await conn.api.mount_blob(other, digests[0], name) is None
        assert sorted(tokens.requests[-1].scopes) == sorted([f"repository:{name}:pull", f"repository:{other}:pull,push"])
    finally:
        await conn.aclose()


async def test_anonymous_pull_only(hub: tuple[RegistryServer, TokenServer]) -> None:
    server, tokens = hub
    name = f"alice/r{uuid.uuid4().hex[:8]}"
    digest = await push_blob(server, ALICE, name, b"public bytes")
    conn = await connect(endpoint(server), None)
    try:
        assert await conn.api.head_blob(name, digest) == len(b"public bytes")
        assert tokens.requests[-1].grant == "anonymous"
        with pytest.raises(errors.Unauthorized, match="401"):
            await conn.api.start_upload(name)
    finally:
        await conn.aclose()


async def test_refresh_token_uses_oauth2_post(hub: tuple[RegistryServer, TokenServer]) -> None:
    server, tokens = hub
    name = f"alice/r{uuid.uuid4().hex[:8]}"
    tokens.refresh_tokens["identity-1"] = "alice"
    tokens.requests.clear()
    conn = await connect(endpoint(server), Credentials(identity_token="identity-1"))
    try:
        await conn.api.start_upload(name)
        assert [(r.method, r.grant) for r in tokens.requests] == [("POST", "refresh_token")] * 2
    finally:
        await conn.aclose()


async def test_wrong_password_is_unauthorized(hub: tuple[RegistryServer, TokenServer]) -> None:
    server, _ = hub
    conn = await connect(endpoint(server), Credentials("alice", "wrong"))
    try:
        assert conn.ping.status_code == 401
        with pytest.raises(errors.Unauthorized):
            await conn.api.start_upload("alice/x")
    finally:
        await conn.aclose()


async def test_expired_token_is_renewed() -> None:
    now = [0.0]
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            tokens.append(f"t{len(tokens)}")
            return httpx.Response(200, json={"token": tokens[-1], "expires_in": 100})
        if request.headers.get("authorization") == f"Bearer {tokens[-1] if tokens else ''}":
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://reg.test/token",service="s"'})

    auth = DockerTokenAuth("reg.test", monotonic=lambda: now[0])
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(handler)) as client:
        url = "https://reg.test/v2/a/manifests/x"
        assert (await client.get(url)).status_code == 200
        assert (await client.get(url)).status_code == 200
        assert tokens == ["t0"]
        now[0] = 95.0  # past 90% of the lifetime
        assert (await client.get(url)).status_code == 200
        assert tokens == ["t0", "t1"]


async def test_credentials_never_over_plain_http_to_a_remote_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    auth = DockerTokenAuth("reg.example", ALICE)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(errors.CredentialsError, match="plain HTTP"):
            await client.get("http://reg.example/v2/a/manifests/x")
        with pytest.raises(errors.CredentialsError, match=r"to other\.example"):
            await client.get("https://other.example/v2/a/manifests/x")
    insecure = DockerTokenAuth("reg.example", ALICE, insecure=True)
    seen: list[str] = []

    def handler2(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(401 if len(seen) == 1 else 200, headers={"WWW-Authenticate": 'Basic realm="x"'})

    async with httpx.AsyncClient(auth=insecure, transport=httpx.MockTransport(handler2)) as client:
        assert (await client.get("http://reg.example/v2/a/manifests/x")).status_code == 200
        assert seen == ["", ALICE.basic_header()]


async def test_htpasswd_basic(tmp_path: Path) -> None:
    with htpasswd_registry(tmp_path, USERS) as server:
        digest = await push_blob(server, ALICE, "alice/basic", b"x" * 10)
        conn = await connect(endpoint(server), Credentials("alice", "nope"), retry=RetryPolicy(attempts=1))
        try:
            with pytest.raises(errors.Unauthorized):
                await conn.api.head_blob("alice/basic", digest)
        finally:
            await conn.aclose()
