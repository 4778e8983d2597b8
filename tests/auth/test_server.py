"""Auth over a real socket: pyreg-registry processes in token and htpasswd mode, the standalone
token server, and Debian's docker-registry (distribution 2.8) as the oracle for key IDs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from pyreg.registry.auth.keys import certificate_path, load_signing_key
from tests.auth.conftest import digest, htpasswd_entry
from tests.conftest import RegistryServer, free_port, start_distribution, start_pyreg, wait_for_http

BLOB = b"socket blob " * 1000
USERS = {"alice": "alice-pw", "reader": "reader-pw"}


def token_yaml(base: Path, trust: bool = True) -> str:
    """`auth.token` with the built-in server. The realm follows the Host (`autoredirect`), so it
    need not know the port. `rootcertbundle` names the server's own certificate, made up front."""
    htpasswd = base / "htpasswd"
    htpasswd.write_text("".join(htpasswd_entry(u, p) for u, p in USERS.items()))
    key = base / "token" / "signing.key"
    load_signing_key(str(key))
    bundle = f"\n    rootcertbundle: {certificate_path(str(key))}" if trust else ""
    return f"""auth:
  token:
    realm: http://realm.invalid/auth/token
    service: pyreg-socket
    issuer: pyreg-socket-issuer
    autoredirect: true{bundle}
    server:
      htpasswd: {htpasswd}
      signingkey: {key}
      expiration: 10m
      rules:
        - account: alice
          repository: "alice/*"
          actions: [pull, push, delete]
        - account: "*"
          repository: "*"
          actions: [pull]
        - account: anonymous
          repository: "public/*"
          actions: [pull]
"""


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_pyreg(tmp_path / "data", workers=2, extra=token_yaml(tmp_path))
    yield server
    server.stop()


def fetch_token(challenge: str, auth: tuple[str, str] | None, scope: str | None = None) -> str:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    query = {"service": params["service"], **({"scope": scope} if scope else {})}
    r = httpx.get(params["realm"], params=query, auth=auth)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def repositories(root: Path) -> list[str]:
    base = root / "docker" / "registry" / "v2" / "repositories"
    return sorted(str(p.relative_to(base)) for p in base.glob("*/*")) if base.exists() else []


def test_token_dance_push_and_pull(token_registry: RegistryServer) -> None:
    url = token_registry.url
    with httpx.Client(base_url=url) as c:
        r = c.get("/v2/")
        assert r.status_code == 401
        challenge = r.headers["www-authenticate"]
        assert challenge == f'Bearer realm="{url}/auth/token",service="pyreg-socket"'
        login = fetch_token(challenge, ("alice", "alice-pw"))
        assert c.get("/v2/", headers={"Authorization": f"Bearer {login}"}).status_code == 200
        r = c.post("/v2/alice/app/blobs/uploads/", params={"digest": digest(BLOB)}, content=BLOB)
        assert r.status_code == 401
        scope = 'scope="repository:alice/app:pull,push"'
        assert scope in r.headers["www-authenticate"]
        token = fetch_token(r.headers["www-authenticate"], ("alice", "alice-pw"), "repository:alice/app:pull,push")
        headers = {"Authorization": f"Bearer {token}"}
        # Two workers: both trust the key the parent generated.
        for _ in range(4):
            assert c.get("/v2/", headers=headers).status_code == 200
        r = c.post("/v2/alice/app/blobs/uploads/", params={"digest": digest(BLOB)}, content=BLOB, headers=headers)
        assert r.status_code == 201
        r = c.get(f"/v2/alice/app/blobs/{digest(BLOB)}", headers=headers)
        assert r.status_code == 200 and r.content == BLOB
        # reader may pull everything and push nothing; nothing lands on disk.
        token = fetch_token(challenge, ("reader", "reader-pw"), "repository:reader-app/x:pull,push")
        r = c.post("/v2/reader-app/x/blobs/uploads/", params={"digest": digest(BLOB)}, content=BLOB,
                   headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
        assert repositories(token_registry.root) == ["alice/app"]
        # Wrong password: the token server says 401.
        params = {"service": "pyreg-socket"}
        assert httpx.get(f"{url}/auth/token", params=params, auth=("alice", "nope")).status_code == 401


def test_expired_token_over_the_socket(tmp_path: Path, token_registry: RegistryServer) -> None:
    key = load_signing_key(str(tmp_path / "token" / "signing.key"))
    now = int(time.time())
    claims = {"iss": "pyreg-socket-issuer", "aud": "pyreg-socket", "sub": "alice", "exp": now - 600,
              "nbf": now - 900, "iat": now - 900,
              "access": [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]}
    token = key.sign(claims)
    r = httpx.post(f"{token_registry.url}/v2/alice/app/blobs/uploads/", params={"digest": digest(BLOB)},
                   content=BLOB, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    claims["exp"] = now + 600
    r = httpx.post(f"{token_registry.url}/v2/alice/app/blobs/uploads/", params={"digest": digest(BLOB)},
                   content=BLOB, headers={"Authorization": f"Bearer {key.sign(claims)}"})
    assert r.status_code == 201


def test_htpasswd_mode_over_the_socket(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_entry("alice", "p:w"))
    server = start_pyreg(tmp_path / "data", extra=f"auth:\n  htpasswd:\n    realm: socket-realm\n    path: {htpasswd}\n")
    try:
        r = httpx.get(f"{server.url}/v2/")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="socket-realm"'
        r = httpx.post(f"{server.url}/v2/alice/x/blobs/uploads/", params={"digest": digest(BLOB)}, content=BLOB,
                       auth=("alice", "wrong"))
        assert r.status_code == 401 and repositories(server.root) == []
        r = httpx.post(f"{server.url}/v2/alice/x/blobs/uploads/", params={"digest": digest(BLOB)}, content=BLOB,
                       auth=("alice", "p:w"))
        assert r.status_code == 201
    finally:
        server.stop()


@pytest.mark.interop
def test_distribution_trusts_tokens_of_the_standalone_token_server(tmp_path: Path) -> None:
    """Debian's docker-registry (distribution 2.8) with `rootcertbundle` = our certificate takes
    our tokens, by x5c and by libtrust `kid` alone: the key IDs are computed the same way."""
    config = tmp_path / "token.yml"
    config.write_text("version: 0.1\n" + token_yaml(tmp_path))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pyreg.registry.cli", "token-server", str(config),
                             "--addr", f"127.0.0.1:{port}"])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/auth/token", proc)
        cert = certificate_path(str(tmp_path / "token" / "signing.key"))
        extra = f"""auth:
  token:
    realm: http://127.0.0.1:{port}/auth/token
    service: pyreg-socket
    issuer: pyreg-socket-issuer
    rootcertbundle: {cert}
"""
        dist = start_distribution(tmp_path / "dist-data", extra=extra)
        try:
            r = httpx.get(f"{dist.url}/v2/alice/app/tags/list")
            assert r.status_code == 401
            token = fetch_token(r.headers["www-authenticate"], ("alice", "alice-pw"), "repository:alice/app:pull,push")
            auth = {"Authorization": f"Bearer {token}"}
            r = httpx.post(f"{dist.url}/v2/alice/app/blobs/uploads/", headers=auth)
            assert r.status_code == 202, r.text
            location = str(httpx.URL(dist.url).join(r.headers["location"]))
            sep = "&" if "?" in location else "?"
            r = httpx.put(f"{location}{sep}digest={digest(BLOB)}", content=BLOB, headers=auth)
            assert r.status_code == 201, r.text
            # The same claims with `kid` alone (no x5c): distribution matches the libtrust ID.
            key = load_signing_key(str(tmp_path / "token" / "signing.key"))
            claims = jwt.decode(token, options={"verify_signature": False})
            kid_only = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
            r = httpx.get(f"{dist.url}/v2/alice/app/blobs/{digest(BLOB)}",
                          headers={"Authorization": f"Bearer {kid_only}"})
            assert r.status_code == 200 and r.content == BLOB
            # A token for reader, who may not push: distribution refuses it as pyreg does.
            challenge = f'Bearer realm="http://127.0.0.1:{port}/auth/token",service="pyreg-socket"'
            token = fetch_token(challenge, ("reader", "reader-pw"), "repository:alice/app:pull,push")
            r = httpx.post(f"{dist.url}/v2/alice/app/blobs/uploads/", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
        finally:
            dist.stop()
    finally:
        proc.terminate()
        proc.wait(10)
