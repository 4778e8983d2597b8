"""HTTP Basic authentication against a bcrypt htpasswd file (distribution's `auth.htpasswd`).

The file also holds the accounts of the built-in token server.

bcrypt is slow by design (tens of milliseconds), so a successful check is remembered, keyed by
a hash of the credentials, for as long as the file is unchanged; the file is re-read when its
modification time or size changes. An unknown account costs a bcrypt check all the same.
Failed logins are slowed down per account and address (`ratelimit`).

    HtpasswdError (ValueError)      a file pyreg cannot use
    RegistryError
     ├── Unauthorized               UNAUTHORIZED    401   no or wrong credentials
     └── TooManyRequests            TOOMANYREQUESTS 429   too many failures, for a while
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import math
import os

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

from pyreg.registry.auth.ratelimit import LoginLimiter
from pyreg.registry.errors import RegistryError, TooManyRequests, Unauthorized

log = logging.getLogger("pyreg.registry.auth")


class HtpasswdError(ValueError):
    """An htpasswd file pyreg cannot use: a line without `user:hash`, or not bcrypt."""


def parse_htpasswd(text: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise HtpasswdError(f"line {number}: expected user:hash")
        if not hashed.startswith(("$2y$", "$2a$", "$2b$")):
            raise HtpasswdError(f"line {number}: only bcrypt hashes are supported (htpasswd -B)")
        # bcrypt libraries differ on the $2y$ prefix; it is the same algorithm as $2b$.
        users[user] = ("$2b$" + hashed[4:]).encode()
    return users


class HtpasswdFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._users: dict[str, bytes] = {}
        self._verified: set[bytes] = set()
        self._dummy: bytes | None = None
        self._reload()

    def _reload(self) -> None:
        st = os.stat(self.path)
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        with open(self.path, encoding="utf-8") as f:
            self._users = parse_htpasswd(f.read())
        self._stamp = stamp
        self._verified = set()

    def fingerprint(self, user: str) -> str | None:
        """A digest of the user's password hash: changes when the password does (so refresh
        tokens bound to it die with the old password), reveals nothing about it."""
        if not self._fresh():
            return None
        hashed = self._users.get(user)
        return hashlib.sha256(hashed).hexdigest()[:32] if hashed is not None else None

    def _dummy_hash(self) -> bytes:
        # An unknown account costs as much as a known one: the same bcrypt cost as the file's
        # entries, so response times do not reveal which accounts exist.
        costs = [h[4:6] for h in self._users.values() if h[6:7] == b"$" and h[4:6].isdigit()]
        cost = max(4, min(int(max(costs)) if costs else 10, 31))
        if self._dummy is None or self._dummy[4:6] != b"%02d" % cost:
            self._dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=cost))
        return self._dummy

    def _fresh(self) -> bool:
        try:
            self._reload()
        except (OSError, HtpasswdError) as e:
            log.error("htpasswd file %s unusable: %s", self.path, e)
            return False
        return True

    async def verify(self, user: str, password: str) -> bool:
        if not self._fresh():
            return False
        hashed = self._users.get(user)
        # Length-prefixed, so no (user, password) pair can collide with another.
        key = hashlib.sha256(f"{len(user)}:{user}:{password}".encode()).digest()
        if hashed is None:
            hashed = self._dummy_hash()
        elif key in self._verified:
            return True
        loop = asyncio.get_running_loop()
        try:
            ok = await loop.run_in_executor(None, bcrypt.checkpw, password.encode(), hashed)
        except ValueError:
            ok = False
        if ok and user in self._users:
            self._verified.add(key)
            return True
        return False


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def authorization(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"authorization":
            return str(value.decode("latin-1"))
    return ""


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def passed_through(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> bool:
    """An auth middleware's first step: lifespan events go to the app, anything else but HTTP
    (a websocket) is closed. True when the event was handled here."""
    if scope["type"] == "lifespan":
        await app(scope, receive, send)
        return True
    if scope["type"] != "http":
        await send({"type": "websocket.close"})
        return True
    return False


async def send_error(send: Send, err: RegistryError) -> None:
    """The error as the app renders it, from middleware that answers before the app runs."""
    body = err.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HtpasswdAuth:
    """ASGI middleware: every request needs valid Basic credentials (no path is left open, so
    `http.prefix` or a new route cannot bypass it)."""

    def __init__(self, app: ASGIApp, realm: str, path: str, limiter: LoginLimiter | None = None) -> None:
        self.app = app
        self.realm = realm
        self.file = HtpasswdFile(path)
        self.limiter = limiter or LoginLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await passed_through(self.app, scope, receive, send):
            return
        header = authorization(scope)
        creds = basic_credentials(header) if header else None
        if creds is not None:
            address = client_address(scope)
            wait = self.limiter.retry_after(creds[0], address)
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                await send_error(send, TooManyRequests("too many failed logins, retry later",
                                                       headers={"Retry-After": retry}))
                return
            if await self.file.verify(*creds):
                self.limiter.succeeded(creds[0], address)
                scope.setdefault("state", {})["user"] = creds[0]
                await self.app(scope, receive, send)
                return
            self.limiter.failed(creds[0], address)
            log.warning("failed login for account %r from %s", creds[0][:100], address)
        await send_error(send, Unauthorized(headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'}))
