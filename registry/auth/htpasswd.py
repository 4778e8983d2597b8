"""HTTP Basic authentication against a bcrypt htpasswd file (distribution's `auth.htpasswd`).

bcrypt is slow by design (tens of milliseconds), so a successful check is remembered, keyed by
a hash of the credentials, for as long as the file is unchanged; the file is re-read when its
modification time or size changes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

from pyreg.registry.errors import Unauthorized

log = logging.getLogger("pyreg.registry.auth")


class HtpasswdError(ValueError):
    pass


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

    async def verify(self, user: str, password: str) -> bool:
        try:
            self._reload()
        except (OSError, HtpasswdError) as e:
            log.error("htpasswd file %s unusable: %s", self.path, e)
            return False
        hashed = self._users.get(user)
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if hashed is None:
            # Spend the same time as for a real user, so timing does not reveal accounts.
            hashed = b"$2b$10$" + b"." * 53
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


class HtpasswdAuth:
    """ASGI middleware: every `/v2/` request needs valid Basic credentials."""

    def __init__(self, app: ASGIApp, realm: str, path: str) -> None:
        self.app = app
        self.realm = realm
        self.file = HtpasswdFile(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return
        header = ""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        creds = basic_credentials(header) if header else None
        if creds is not None and await self.file.verify(*creds):
            scope.setdefault("state", {})["user"] = creds[0]
            await self.app(scope, receive, send)
            return
        err = Unauthorized(detail=None)
        body = err.body()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", f'Basic realm="{self.realm}"'.encode()),
                    (b"docker-distribution-api-version", b"registry/2.0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


