from __future__ import annotations

import os
from pathlib import Path

import bcrypt
import httpx
import pytest

from pyreg.registry.app import create_app
from pyreg.registry.auth.htpasswd import HtpasswdError, parse_htpasswd
from pyreg.registry.config import Config


def entry(user: str, password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed.replace('$2b$', '$2y$', 1)}\n"  # as `htpasswd -B` writes it


def client(tmp_path: Path, htpasswd: Path) -> httpx.AsyncClient:
    config = Config()
    config.storage.filesystem_root = str(tmp_path / "data")
    config.auth = {"htpasswd": {"realm": "test-realm", "path": str(htpasswd)}}
    app = create_app(config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r")


async def test_basic_auth_against_htpasswd(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(entry("alice", "s3cret"))
    async with client(tmp_path, htpasswd) as c:
        r = await c.get("/v2/")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="test-realm"'
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert (await c.get("/v2/", auth=("alice", "wrong"))).status_code == 401
        assert (await c.get("/v2/", auth=("mallory", "s3cret"))).status_code == 401
        assert (await c.get("/v2/", auth=("alice", "s3cret"))).status_code == 200
        assert (await c.get("/v2/_catalog", auth=("alice", "s3cret"))).status_code == 200
        # The file is re-read when it changes: a new password replaces the old one.
        htpasswd.write_text(entry("alice", "n3w") + entry("bob", "pw"))
        os.utime(htpasswd, (1, 1))
        assert (await c.get("/v2/", auth=("alice", "s3cret"))).status_code == 401
        assert (await c.get("/v2/", auth=("alice", "n3w"))).status_code == 200
        assert (await c.get("/v2/", auth=("bob", "pw"))).status_code == 200


def test_only_bcrypt_entries_are_accepted() -> None:
    with pytest.raises(HtpasswdError):
        parse_htpasswd("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    with pytest.raises(HtpasswdError):
        parse_htpasswd("no-separator\n")
    assert list(parse_htpasswd("# comment\n\n" + entry("a", "b"))) == ["a"]
