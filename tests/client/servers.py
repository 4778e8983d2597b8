"""Servers for the client tests, on real sockets: a Docker-Hub-like token server, a counting TCP proxy.

The token server issues JWTs (ES256, with the certificate in `x5c`) that distribution's
`auth.token` accepts, following Docker Hub's flow: anonymous GETs get pull-only tokens, GETs with
Basic credentials get what they ask for (and a refresh token with `offline_token=true`), and
OAuth2 POSTs exchange a refresh token or a password for a token.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import RegistryServer, start_distribution

SERVICE = "pyreg-test-registry"
ISSUER = "pyreg-test-token-issuer"


@dataclass
class TokenRequest:
    method: str
    scopes: list[str]
    user: str | None
    grant: str  # "anonymous", "basic", "refresh_token", "password"


@dataclass
class TokenServer:
    cert_path: Path
    users: dict[str, str]
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    url: str = ""
    _key: ec.EllipticCurvePrivateKey | None = None
    _cert_der: bytes = b""

    def issue(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        assert self._key is not None
        return jwt.encode(claims, self._key, algorithm="ES256",
                          headers={"x5c": [base64.b64encode(self._cert_der).decode()]})


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _basic_user(self) -> str | bool | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user if server.users.get(user) == password else False

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            scopes = query.get("scope", [])
            user = self._basic_user()
            if user is False:
                self._send(401, {"details": "incorrect username or password"})
                return
            assert user is None or isinstance(user, str)
            server.requests.append(TokenRequest("GET", scopes, user, "basic" if user else "anonymous"))
            doc: dict[str, Any] = {"token": server.issue(user, scopes), "expires_in": server.expires_in,
                                   "issued_at": datetime.datetime.now(datetime.UTC).isoformat()}
            if user and query.get("offline_token") == ["true"]:
                refresh = secrets.token_hex(16)
                server.refresh_tokens[refresh] = user
                doc["refresh_token"] = refresh
            self._send(200, doc)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            scopes = form.get("scope", "").split()
            grant = form.get("grant_type", "")
            user: str | None = None
            if grant == "refresh_token":
                user = server.refresh_tokens.get(form.get("refresh_token", ""))
            elif grant == "password" and server.users.get(form.get("username", "")) == form.get("password"):
                user = form["username"]
            if user is None:
                self._send(401, {"error": "invalid_grant"})
                return
            server.requests.append(TokenRequest("POST", scopes, user, grant))
            refresh = secrets.token_hex(16)
            server.refresh_tokens[refresh] = user
            self._send(200, {"access_token": server.issue(user, scopes), "expires_in": server.expires_in,
                             "refresh_token": refresh})

    return Handler


def make_cert(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / "token-cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER), path


@contextmanager
def token_server(directory: Path, users: dict[str, str], expires_in: int = 300) -> Iterator[TokenServer]:
    key, der, cert_path = make_cert(directory)
    state = TokenServer(cert_path, users, expires_in, _key=key, _cert_der=der)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def token_registry(directory: Path, users: dict[str, str], expires_in: int = 300
                   ) -> Iterator[tuple[RegistryServer, TokenServer]]:
    """distribution behind the token server: Docker Hub's protocol, locally."""
    with token_server(directory, users, expires_in) as tokens:
        extra = (f"auth:\n  token:\n    realm: {tokens.url}\n    service: {SERVICE}\n"
                 f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.cert_path}\n")
        server = start_distribution(directory / "data", extra=extra)
        try:
            yield server, tokens
        finally:
            server.stop()


@contextmanager
def htpasswd_registry(directory: Path, users: dict[str, str]) -> Iterator[RegistryServer]:
    path = directory / "htpasswd"
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for u, p in users.items()))
    server = start_distribution(directory / "data", extra=f"auth:\n  htpasswd:\n    realm: test\n    path: {path}\n")
    try:
        yield server
    finally:
        server.stop()


class CountingProxy:
    """A TCP proxy in front of a server that counts bytes each way, and can cut one download.

    `cut(marker, after)`: the next connection whose request bytes contain `marker` is closed
    after `after` response bytes — a download broken mid-way.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.sent = 0  # client → server
        self.received = 0  # server → client
        self.requests: list[bytes] = []
        self._cut: tuple[bytes, int] | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.sent = self.received = 0
            self.requests.clear()

    def cut(self, marker: bytes, after: int) -> None:
        self._cut = (marker, after)

    def close(self) -> None:
        self._stop = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            conn = {"cut_after": None}
            threading.Thread(target=self._pump, args=(client, upstream, True, conn), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False, conn), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool, conn: dict[str, Any]) -> None:
        down = 0
        try:
            while data := src.recv(65536):
                with self._lock:
                    if up:
                        self.sent += len(data)
                        self.requests.append(data)
                        if self._cut and self._cut[0] in data:
                            conn["cut_after"], self._cut = self._cut[1], None
                    else:
                        self.received += len(data)
                if not up and conn["cut_after"] is not None:
                    down += len(data)
                    if down >= conn["cut_after"]:
                        dst.sendall(data[: len(data) - (down - conn["cut_after"])])
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
