"""Fixtures of the auth tests: an external token signer, token minting, apps in token mode.

`Signer` plays an external token server (docker_auth, Harbor): an RSA key with a self-signed root
certificate written to a `rootcertbundle`. `TokenApp` is the registry in token mode with the
built-in token server, on a storage driver that records every call, so that a test can show a
refused request read and wrote nothing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pyreg.registry.app import create_app
from pyreg.registry.auth.keys import libtrust_key_id
from pyreg.registry.config import Config
from pyreg.registry.storage.memory import InMemoryDriver

SERVICE = "pyreg-test"
ISSUER = "test-issuer"
REALM = "http://registry.test/auth/token"


def htpasswd_entry(user: str, password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed.replace('$2b$', '$2y$', 1)}\n"


def certificate(subject: str, key: Any, issuer_key: Any, issuer: str | None = None, ca: bool = True,
                days: int = 365) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def b64der(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@dataclass
class Signer:
    """An external token server's key and root certificate."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def kid(self) -> str:
        return libtrust_key_id(self.key.public_key())

    def claims(self, access: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300,
                                  "nbf": now, "iat": now, "jti": "x", "access": access or []}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, access: list[dict[str, Any]] | None = None, headers: dict[str, Any] | None = None,
             **overrides: Any) -> str:
        return jwt.encode(self.claims(access, **overrides), self.key, algorithm="RS256",
                          headers={"kid": self.kid, **(headers or {})})


def repo_access(name: str, *actions: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": list(actions)}


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS with any header and claims, for the tokens no honest library would produce."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    import json

    return ".".join([part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)])


@pytest.fixture(scope="session")
def signer() -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Signer(key, certificate("external token server", key, key))


@pytest.fixture(scope="session")
def other_signer() -> Signer:
    """A key nobody trusts."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Signer(key, certificate("mallory", key, key))


@pytest.fixture
def bundle(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "rootcerts.pem"
    path.write_bytes(signer.cert.public_bytes(serialization.Encoding.PEM))
    return path


class RecordingDriver:
    """The in-memory driver, with a log of every call: a refused request must leave it empty."""

    def __init__(self) -> None:
        self.inner = InMemoryDriver()
        self.calls: list[str] = []
        self.recording = True

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.recording:
                self.calls.append(name)
            return attr(*args, **kwargs)

        return call


DEFAULT_RULES: list[dict[str, Any]] = [
    {"account": "admin", "repository": "*", "actions": ["*"]},
    {"account": "admin", "catalog": True},
    {"account": "reader", "repository": "*", "actions": ["pull"]},
    {"account": "pusher", "repository": "team/*", "actions": ["pull", "push"]},
    {"account": "*", "repository": "{account}/*", "actions": ["pull", "push", "delete"]},
    {"account": "anonymous", "repository": "public/*", "actions": ["pull"]},
]
USERS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw", "reader": "reader-pw",
         "pusher": "pusher-pw", "colon": "pa:ss:word"}


@dataclass
class TokenApp:
    client: httpx.AsyncClient
    driver: RecordingDriver
    config: Config
    htpasswd: Path
    tokens: dict[tuple[str | None, str], str] = field(default_factory=dict)

    async def token(self, account: str | None, *scopes: str) -> str:
        key = (account, " ".join(scopes))
        if key not in self.tokens:
            auth = (account, USERS[account]) if account else None
            r = await self.client.get("/auth/token", params={"service": SERVICE, "scope": list(scopes)},
                                      auth=auth)
            assert r.status_code == 200, r.text
            self.tokens[key] = r.json()["token"]
        return self.tokens[key]

    async def as_user(self, account: str | None, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(account, *scopes)}"}


def token_config(tmp_path: Path, bundle: Path | None = None, server: dict[str, Any] | None = None,
                 **token: Any) -> Config:
    htpasswd = tmp_path / "htpasswd"
    if not htpasswd.exists():
        htpasswd.write_text("".join(htpasswd_entry(u, p) for u, p in USERS.items()))
    config = Config()
    config.storage.driver = "inmemory"
    config.storage.delete_enabled = True
    config.storage.uploadpurging.enabled = False
    section: dict[str, Any] = {"realm": REALM, "service": SERVICE, "issuer": ISSUER}
    if bundle is not None:
        section["rootcertbundle"] = str(bundle)
    section["server"] = {"htpasswd": str(htpasswd), "signingkey": str(tmp_path / "keys" / "signing.key"),
                         "rules": DEFAULT_RULES, **(server or {})}
    section.update(token)
    config.auth = {"token": section}
    return config


@pytest.fixture
async def token_app(tmp_path: Path, bundle: Path) -> AsyncIterator[TokenApp]:
    config = token_config(tmp_path, bundle)
    driver = RecordingDriver()
    app = create_app(config, driver)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client:
        yield TokenApp(client, driver, config, tmp_path / "htpasswd")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def ec_key() -> Iterator[ec.EllipticCurvePrivateKey]:
    yield ec.generate_private_key(ec.SECP256R1())
