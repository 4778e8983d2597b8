"""The built-in token server, in-process: the token spec's GET, the OAuth2 POST, keys, limits."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from pyreg.registry.app import create_app
from pyreg.registry.auth.keys import certificate_path, load_signing_key
from pyreg.registry.auth.ratelimit import LoginLimiter
from pyreg.registry.auth.tokenserver import ServerSettings, TokenServer
from tests.auth.conftest import (
    ISSUER,
    SERVICE,
    USERS,
    RecordingDriver,
    TokenApp,
    htpasswd_entry,
    token_config,
)


def access_of(token: str) -> Any:
    return jwt.decode(token, options={"verify_signature": False})["access"]


async def get_token(app: TokenApp, auth: tuple[str, str] | None = None, **params: Any) -> httpx.Response:
    return await app.client.get("/auth/token", params={"service": SERVICE, **params}, auth=auth)


async def test_get_with_basic_credentials_and_several_scopes(token_app: TokenApp) -> None:
    r = await get_token(token_app, ("alice", "alice-pw"),
                        scope=["repository:alice/app:pull,push", "repository:public/base:pull"])
    assert r.status_code == 200
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    assert "refresh_token" not in body
    assert r.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, SERVICE, "alice")
    assert claims["exp"] - claims["iat"] == 300
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "public/base", "actions": ["pull"]},
    ]
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256" and len(header["kid"].split(":")) == 12 and header["x5c"]


async def test_partial_denial_gives_less_access_not_an_error(token_app: TokenApp) -> None:
    r = await get_token(token_app, ("alice", "alice-pw"),
                        scope="repository:bob/app:pull,push repository:alice/app:delete")
    assert r.status_code == 200
    assert access_of(r.json()["token"]) == [{"type": "repository", "name": "alice/app", "actions": ["delete"]}]


async def test_anonymous(token_app: TokenApp) -> None:
    r = await get_token(token_app, scope=["repository:public/x:pull,push", "repository:alice/x:pull"])
    assert r.status_code == 200
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "public/x", "actions": ["pull"]}]
    # Anonymous asks for no refresh token it could not be bound to.
    r = await get_token(token_app, offline_token="true")
    assert "refresh_token" not in r.json()


async def test_login_without_scope(token_app: TokenApp) -> None:
    """What `docker login` asks first: a token with no access, proving the password."""
    r = await get_token(token_app, ("bob", "bob-pw"), account="bob", client_id="docker")
    assert r.status_code == 200 and access_of(r.json()["token"]) == []


@pytest.mark.parametrize("auth", [("alice", "wrong"), ("nobody", "alice-pw"), ("alice", ""), ("", "")])
async def test_wrong_credentials_are_401(token_app: TokenApp, auth: tuple[str, str]) -> None:
    r = await get_token(token_app, auth, scope="repository:alice/app:pull")
    assert r.status_code == 401
    assert "token" not in r.json()
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("header", ["Basic", "Basic !!!", "Basic " + "YWxpY2U=", "Bearer abc", "Digest x"])
async def test_malformed_authorization_is_401(token_app: TokenApp, header: str) -> None:
    r = await token_app.client.get("/auth/token", params={"service": SERVICE}, headers={"Authorization": header})
    assert r.status_code == 401 and "token" not in r.json()


async def test_password_with_colons(token_app: TokenApp) -> None:
    r = await get_token(token_app, ("colon", "pa:ss:word"), scope="repository:colon/x:push")
    assert r.status_code == 200
    assert access_of(r.json()["token"]) == [{"type": "repository", "name": "colon/x", "actions": ["push"]}]
    assert (await get_token(token_app, ("colon", "pa"))).status_code == 401


@pytest.mark.parametrize("scope", ['repository:alice/x":pull', "repository:alice/x:pull\r\nX-Evil: 1",
                                   "repository:Alice/x:pull", "repository:alice/x", "system:all:*"])
async def test_injected_scope_characters_are_refused(token_app: TokenApp, scope: str) -> None:
    r = await get_token(token_app, ("alice", "alice-pw"), scope=scope)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope" and "token" not in r.json()


async def test_unknown_service(token_app: TokenApp) -> None:
    r = await token_app.client.get("/auth/token", params={"service": "elsewhere"})
    assert r.status_code == 400


async def test_oauth_password_and_refresh_grants(token_app: TokenApp) -> None:
    form = {"grant_type": "password", "username": "alice", "password": "alice-pw", "service": SERVICE,
            "client_id": "docker", "access_type": "offline", "scope": "repository:alice/app:pull"}
    r = await token_app.client.post("/auth/token", data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "repository:alice/app:pull"
    refresh = body["refresh_token"]
    assert access_of(body["access_token"]) == [{"type": "repository", "name": "alice/app", "actions": ["pull"]}]
    # The refresh token gets tokens for other scopes, for the same account.
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE, "client_id": "docker",
            "scope": "repository:alice/other:push repository:bob/x:pull"}
    r = await token_app.client.post("/auth/token", data=form)
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] == refresh
    assert access_of(r.json()["access_token"]) == [
        {"type": "repository", "name": "alice/other", "actions": ["push"]}]
    # A refresh token is no access token, and an access token is no refresh token.
    assert (await token_app.client.get("/v2/", headers={"Authorization": f"Bearer {refresh}"})).status_code == 401
    form["refresh_token"] = r.json()["access_token"]
    assert (await token_app.client.post("/auth/token", data=form)).status_code == 401
    # Changing the password revokes the refresh tokens issued under the old one.
    token_app.htpasswd.write_text("".join(htpasswd_entry(u, p) for u, p in USERS.items() if u != "alice")
                                  + htpasswd_entry("alice", "new-pw"))
    os.utime(token_app.htpasswd, (1, 1))
    form["refresh_token"] = refresh
    assert (await token_app.client.post("/auth/token", data=form)).status_code == 401


async def test_oauth_errors(token_app: TokenApp) -> None:
    bad = {"grant_type": "password", "username": "alice", "password": "nope", "service": SERVICE}
    r = await token_app.client.post("/auth/token", data=bad)
    assert r.status_code == 401 and r.json()["error"] == "invalid_grant"
    r = await token_app.client.post("/auth/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await token_app.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "x.y.z"})
    assert r.status_code == 401
    r = await token_app.client.put("/auth/token")
    assert r.status_code == 405


async def test_get_with_offline_token_returns_a_refresh_token(token_app: TokenApp) -> None:
    r = await get_token(token_app, ("alice", "alice-pw"), offline_token="true")
    assert r.status_code == 200 and r.json()["refresh_token"]


async def test_failed_logins_are_slowed_per_account_and_address(token_app: TokenApp) -> None:
    for _ in range(5):
        assert (await get_token(token_app, ("alice", "wrong"))).status_code == 401
    r = await get_token(token_app, ("alice", "wrong"))
    assert r.status_code == 401  # the sixth failure starts the lockout
    r = await get_token(token_app, ("alice", "alice-pw"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    # Others are not blocked: another account from the same address, the same account elsewhere.
    assert (await get_token(token_app, ("bob", "bob-pw"))).status_code == 200
    transport = httpx.ASGITransport(app=token_app.client._transport.app, client=("10.0.0.2", 1))  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as elsewhere:
        r = await elsewhere.get("/auth/token", params={"service": SERVICE}, auth=("alice", "alice-pw"))
        assert r.status_code == 200


def test_limiter_backs_off_and_forgets() -> None:
    now = [1000.0]
    limiter = LoginLimiter(free_attempts=2, base_delay=1, max_delay=8, forget_after=100, max_entries=3,
                           clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("a", "ip")
    assert limiter.retry_after("a", "ip") == 0
    delays = []
    for _ in range(5):
        limiter.failed("a", "ip")
        delays.append(limiter.retry_after("a", "ip"))
    assert delays == [1, 2, 4, 8, 8]
    now[0] += 101
    assert limiter.retry_after("a", "ip") == 0
    limiter.failed("a", "ip")
    limiter.succeeded("a", "ip")
    assert limiter.retry_after("a", "ip") == 0
    for n in range(10):  # bounded memory
        limiter.failed(f"user{n}", "ip")
    assert len(limiter._table) <= 3


def test_key_generated_on_first_start_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = token_config(tmp_path)
    key_path = tmp_path / "keys" / "signing.key"
    with caplog.at_level(logging.WARNING, logger="pyreg.registry.auth"):
        create_app(config, RecordingDriver())  # type: ignore[arg-type]
    assert key_path.exists() and (key_path.stat().st_mode & 0o777) == 0o600
    assert os.path.exists(certificate_path(str(key_path)))
    assert str(key_path) in caplog.text
    first = load_signing_key(str(key_path))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pyreg.registry.auth"):
        create_app(config, RecordingDriver())  # type: ignore[arg-type]
    assert "generated" not in caplog.text
    assert load_signing_key(str(key_path)).kid == first.kid


def test_default_key_location_is_under_the_storage_root(tmp_path: Path) -> None:
    config = token_config(tmp_path)
    del config.auth["token"]["server"]["signingkey"]
    config.storage.driver = "filesystem"
    config.storage.filesystem_root = str(tmp_path / "data")
    server = TokenServer.from_config(config)
    assert server.key.path == str(tmp_path / "data" / "pyreg" / "token" / "signing.key")


async def test_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    config = token_config(tmp_path)
    key = tmp_path / "keys" / "signing.key"

    async def session(cfg: Any) -> httpx.AsyncClient:
        app = create_app(cfg, RecordingDriver())
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test")

    async with await session(config) as c:
        r = await c.get("/auth/token", params={"service": SERVICE}, auth=("alice", "alice-pw"))
        old_token = r.json()["token"]
    # Rotate: the old key becomes a previous key, a new one is generated in its place.
    (tmp_path / "keys" / "old.key").write_bytes(key.read_bytes())
    key.unlink()
    os.unlink(certificate_path(str(key)))
    config.auth["token"]["server"]["previouskeys"] = [str(tmp_path / "keys" / "old.key")]
    async with await session(config) as c:
        headers = {"Authorization": f"Bearer {old_token}"}
        assert (await c.get("/v2/", headers=headers)).status_code == 200
        new = (await c.get("/auth/token", params={"service": SERVICE}, auth=("alice", "alice-pw"))).json()["token"]
        assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old_token)["kid"]
        assert (await c.get("/v2/", headers={"Authorization": f"Bearer {new}"})).status_code == 200
    # Once the previous key is dropped, its tokens stop working.
    del config.auth["token"]["server"]["previouskeys"]
    async with await session(config) as c:
        assert (await c.get("/v2/", headers={"Authorization": f"Bearer {old_token}"})).status_code == 401


@pytest.mark.parametrize(("server", "message"), [
    ({"bogus": 1}, "unknown keys bogus"),
    ({"expiration": "soon"}, "expiration"),
    ({"expiration": "-5m"}, "expiration"),
    ({"path": "token"}, "path"),
    ({"htpasswd": "/nonexistent"}, "htpasswd"),
    ({"previouskeys": "x"}, "previouskeys"),
    ({"rules": [{"account": "a", "repository": "*", "actions": ["fly"]}]}, r"rules\[0\]\.actions"),
])
def test_invalid_server_settings_name_the_key(tmp_path: Path, server: dict[str, Any], message: str) -> None:
    section = token_config(tmp_path).auth["token"]
    section["server"].update(server)
    with pytest.raises(ValueError, match=message):
        ServerSettings.parse(section, None)


def test_expiration_setting(tmp_path: Path) -> None:
    section = token_config(tmp_path, server={"expiration": "1h30m"}).auth["token"]
    assert ServerSettings.parse(section, None).expiration == 5400
    start = time.time()
    server = TokenServer(ServerSettings.parse(section, None), load_signing_key(str(tmp_path / "k.key")))
    token, _ = server.issue("alice", [], start)
    assert jwt.decode(token, options={"verify_signature": False})["exp"] == int(start + 5400)
