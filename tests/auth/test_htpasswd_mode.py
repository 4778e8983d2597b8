"""The registry in htpasswd mode: Basic credentials on every request, and the attacks on them."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from pyreg.registry.app import create_app
from pyreg.registry.config import Config
from tests.auth.conftest import RecordingDriver, digest, htpasswd_entry

BLOB = b"htpasswd blob"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[httpx.AsyncClient, RecordingDriver]:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_entry("alice", "a:b:c") + htpasswd_entry("bob", "bob-pw"))
    config = Config()
    config.storage.driver = "inmemory"
    config.storage.uploadpurging.enabled = False
    config.http.prefix = "/reg"
    config.auth = {"htpasswd": {"realm": "pyreg-test", "path": str(htpasswd)}}
    driver = RecordingDriver()
    app = create_app(config, driver)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://r"), driver


async def test_password_with_colons(setup: tuple[httpx.AsyncClient, RecordingDriver]) -> None:
    client, driver = setup
    async with client:
        r = await client.post("/reg/v2/alice/app/blobs/uploads/", params={"digest": digest(BLOB)},
                              content=BLOB, headers=basic("alice", "a:b:c"))
        assert r.status_code == 201
        driver.calls.clear()
        for creds in (("alice", "a"), ("alice", "a:b"), ("alice", "a:b:c:"), ("alice", "")):
            r = await client.get(f"/reg/v2/alice/app/blobs/{digest(BLOB)}", headers=basic(*creds))
            assert r.status_code == 401 and BLOB not in r.content
        assert driver.calls == []
        # The user-id ends at the first colon (RFC 7617): the rest, colons and all, is the password.
        r = await client.get(f"/reg/v2/alice/app/blobs/{digest(BLOB)}", headers=basic("alice:a", "b:c"))
        assert r.status_code == 200 and r.content == BLOB


@pytest.mark.parametrize("header", [None, "", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"alice").decode(),
                                    "Bearer x.y.z", "Basic " + base64.b64encode(b"\xff:\xfe").decode()])
async def test_missing_or_malformed_authorization(setup: tuple[httpx.AsyncClient, RecordingDriver],
                                                  header: str | None) -> None:
    client, driver = setup
    async with client:
        headers = {"Authorization": header} if header is not None else {}
        r = await client.put("/reg/v2/alice/app/manifests/v1", content=b"{}", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="pyreg-test"'
        assert driver.calls == []


async def test_every_path_is_protected(setup: tuple[httpx.AsyncClient, RecordingDriver]) -> None:
    client, driver = setup
    async with client:
        for path in ("/reg/v2/", "/v2/", "/reg/v2/_catalog", "/other"):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.get("/reg/v2/", headers=basic("bob", "bob-pw"))).status_code == 200
        assert driver.calls == []


async def test_failed_logins_answer_429_for_that_account_and_address(
        setup: tuple[httpx.AsyncClient, RecordingDriver]) -> None:
    client, _ = setup
    async with client:
        for _ in range(6):
            assert (await client.get("/reg/v2/", headers=basic("bob", "guess"))).status_code == 401
        r = await client.get("/reg/v2/", headers=basic("bob", "bob-pw"))
        assert r.status_code == 429 and r.headers["retry-after"]
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert (await client.get("/reg/v2/", headers=basic("alice", "a:b:c"))).status_code == 200
