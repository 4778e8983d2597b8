"""The built-in token server: Docker's registry token specification, served by pyreg itself.

`GET <path>?service=…&scope=…` with Basic credentials or none (anonymous), and with
`offline_token=true` a refresh token as well; `POST <path>` with an OAuth2 form,
`grant_type=password` (`access_type=offline` asks for a refresh token) or
`grant_type=refresh_token`, as `docker login` uses. The answer carries `token` and
`access_token` (the same JWT), `expires_in`, `issued_at`. The token grants the intersection of
the scopes asked for and what the rules allow; a partly denied request gets a token with less
access, never an error. Wrong credentials are 401; repeated failures for one account from one
address are 429 for a while (see `ratelimit`).

Refresh tokens are JWTs signed with the same key, for a different audience (so one can never be
used as an access token), and bound to a digest of the account's password hash (so changing the
password revokes them). Any worker, and the process after a restart, can check them.

Configured under `auth.token.server`; runnable on its own with
`python -m pyreg.registry.auth.tokenserver CONFIG`.

    ValueError      an invalid `auth.token.server` section (the message names the key)
"""

from __future__ import annotations

import argparse
import datetime
import hmac
import json
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from starlette.types import Receive, Scope, Send

from pyreg.registry.auth.htpasswd import (
    HtpasswdFile,
    authorization,
    basic_credentials,
    client_address,
)
from pyreg.registry.auth.keys import (
    SigningKey,
    ephemeral_signing_key,
    load_public_keys,
    load_signing_key,
)
from pyreg.registry.auth.ratelimit import LoginLimiter
from pyreg.registry.auth.rules import AccessRules
from pyreg.registry.auth.scopes import Access, Grant, ScopeError, parse_scope
from pyreg.registry.auth.token import InvalidToken, TokenVerifier, TrustStore
from pyreg.registry.config import Config, parse_duration

log = logging.getLogger("pyreg.registry.auth")

DEFAULT_PATH = "/auth/token"
MAX_FORM_BYTES = 65536
_SERVER_KEYS = ("path", "htpasswd", "signingkey", "previouskeys", "expiration", "refreshexpiration",
                "anonymouspull", "rules")


@dataclass
class ServerSettings:
    """`auth.token.server`, interpreted; `issuer`, `service` and `realm` come from `auth.token`."""

    issuer: str
    service: str
    path: str = DEFAULT_PATH
    htpasswd: str | None = None
    signingkey: str | None = None
    previouskeys: list[str] = field(default_factory=list)
    expiration: float = 300.0
    refreshexpiration: float = 30 * 86400.0
    rules: AccessRules = field(default_factory=AccessRules)

    @classmethod
    def parse(cls, token: dict[str, Any], storage_root: str | None, key: str = "auth.token.server") -> ServerSettings:
        raw = token.get("server")
        raw = {} if raw is True else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{key}: expected a mapping")
        unknown = [str(k) for k in raw if k not in _SERVER_KEYS]
        if unknown:
            raise ValueError(f"{key}: unknown keys {', '.join(unknown)} (known: {', '.join(_SERVER_KEYS)})")
        out = cls(issuer=str(token.get("issuer", "")), service=str(token.get("service", "")))
        for name in ("path", "htpasswd", "signingkey"):
            value = raw.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key}.{name}: expected a string")
            if value:
                setattr(out, name, value)
        if not out.path.startswith("/"):
            raise ValueError(f"{key}.path: expected a path starting with '/'")
        if out.htpasswd and not os.path.isfile(out.htpasswd):
            raise ValueError(f"{key}.htpasswd: no such file {out.htpasswd!r}")
        if out.signingkey is None and storage_root is not None:
            out.signingkey = os.path.join(storage_root, "pyreg", "token", "signing.key")
        previous = raw.get("previouskeys") or []
        if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
            raise ValueError(f"{key}.previouskeys: expected a list of file names")
        out.previouskeys = list(previous)
        for name in ("expiration", "refreshexpiration"):
            value = raw.get(name)
            if value is None:
                continue
            try:
                seconds = parse_duration(str(value)) if not isinstance(value, int | float) else float(value)
            except ValueError:
                raise ValueError(f"{key}.{name}: expected a duration such as '5m'") from None
            if seconds <= 0:
                raise ValueError(f"{key}.{name}: must be more than 0")
            setattr(out, name, seconds)
        out.rules = AccessRules.from_config(raw.get("rules"), raw.get("anonymouspull", False), f"{key}.rules")
        return out


class TokenServer:
    """An ASGI app answering token requests at one path (anything else is 404)."""

    def __init__(self, settings: ServerSettings, key: SigningKey, trusted_previous: Sequence[Any] = (),
                 limiter: LoginLimiter | None = None) -> None:
        self.settings = settings
        self.key = key
        self.users = HtpasswdFile(settings.htpasswd) if settings.htpasswd else None
        self.limiter = limiter or LoginLimiter()
        trust = TrustStore()
        for public in (key.public, *trusted_previous):
            trust.add_key(public)
        self.trust = trust  # what a registry in the same process trusts
        self._refresh = TokenVerifier(settings.issuer, self._refresh_audience, trust)

    @classmethod
    def from_config(cls, config: Config) -> TokenServer:
        token = config.auth.get("token") or {}
        root = config.storage.filesystem_root if config.storage.driver == "filesystem" else None
        settings = ServerSettings.parse(token, root)
        if settings.signingkey is not None:
            key = load_signing_key(settings.signingkey)
        elif config.storage.driver == "inmemory":
            key = ephemeral_signing_key()
            log.warning("token signing key kept in memory: tokens die with the process")
        else:
            raise ValueError("auth.token.server.signingkey: required unless storage is filesystem")
        previous = [k for path in settings.previouskeys for k in load_public_keys(path)]
        return cls(settings, key, previous)

    @property
    def _refresh_audience(self) -> str:
        return f"{self.settings.service}#refresh"

    # -- issuing --

    def issue(self, account: str | None, requested: Sequence[Access], now: float | None = None) -> tuple[str, Grant]:
        now = time.time() if now is None else now
        grant = self.settings.rules.grant(account, requested)
        claims = {
            "iss": self.settings.issuer, "sub": account or "", "aud": self.settings.service,
            "exp": int(now + self.settings.expiration), "nbf": int(now), "iat": int(now),
            "jti": secrets.token_urlsafe(16), "access": grant.claim(),
        }
        return self.key.sign(claims), grant

    def refresh_token(self, account: str, now: float) -> str:
        assert self.users is not None
        claims = {
            "iss": self.settings.issuer, "sub": account, "aud": self._refresh_audience,
            "exp": int(now + self.settings.refreshexpiration), "iat": int(now),
            "jti": secrets.token_urlsafe(16), "pwh": self.users.fingerprint(account),
        }
        return self.key.sign(claims)

    def refresh_account(self, raw: str) -> str | None:
        """The account a refresh token was issued to, if it is still good for that account."""
        if self.users is None:
            return None
        try:
            claims = self._refresh.decode(raw)
        except InvalidToken:
            return None
        account, bound = claims.get("sub"), claims.get("pwh")
        if not isinstance(account, str) or not isinstance(bound, str):
            return None
        current = self.users.fingerprint(account)
        if current is None or not hmac.compare_digest(current, bound):
            return None
        return account

    # -- the endpoint --

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            status, body, headers = await self._get(scope)
        elif method == "POST":
            status, body, headers = await self._post(scope, receive)
        else:
            status, body, headers = 405, _error(405, "unsupported", "GET or POST"), {"Allow": "GET, POST"}
        payload = json.dumps(body).encode()
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
        out += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    async def _get(self, scope: Scope) -> tuple[int, dict[str, Any], dict[str, str]]:
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        header = authorization(scope)
        account = None
        if header:
            creds = basic_credentials(header)
            if creds is None:
                return 401, _error(401, "invalid_client", "malformed Authorization header"), {}
            failure = await self._login(scope, *creds)
            if failure is not None:
                return failure
            account = creds[0]
        offline = account is not None and params.get("offline_token", [""])[0].lower() == "true"
        return self._answer(account, params, offline=offline, oauth=False)

    async def _post(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any], dict[str, str]]:
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return 400, _error(400, "invalid_request", "request aborted"), {}
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM_BYTES:
                return 413, _error(413, "invalid_request", "form too large"), {}
        params: dict[str, list[str]] = {}
        for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            params.setdefault(k, []).append(v)
        grant_type = params.get("grant_type", [""])[0]
        if grant_type == "password":
            user, password = params.get("username", [""])[0], params.get("password", [""])[0]
            failure = await self._login(scope, user, password)
            if failure is not None:
                return failure
            offline = params.get("access_type", [""])[0] == "offline"
            return self._answer(user, params, offline=offline, oauth=True)
        if grant_type == "refresh_token":
            raw = params.get("refresh_token", [""])[0]
            account = self.refresh_account(raw)
            if account is None:
                return 401, _error(401, "invalid_grant", "invalid or expired refresh token"), {}
            return self._answer(account, params, offline=False, oauth=True, refresh=raw)
        return 400, _error(400, "unsupported_grant_type", "grant_type is password or refresh_token"), {}

    async def _login(self, scope: Scope, user: str, password: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        address = client_address(scope)
        wait = self.limiter.retry_after(user, address)
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            return 429, _error(429, "too_many_requests", "too many failed logins, retry later"), {"Retry-After": retry}
        if self.users is not None and await self.users.verify(user, password):
            self.limiter.succeeded(user, address)
            return None
        self.limiter.failed(user, address)
        log.warning("failed login for account %r from %s", user[:100], address)
        return 401, _error(401, "invalid_grant", "incorrect username or password"), {}

    def _answer(self, account: str | None, params: dict[str, list[str]], *, offline: bool, oauth: bool,
                refresh: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        service = params.get("service", [self.settings.service])[0]
        if service != self.settings.service:
            return 400, _error(400, "invalid_request", "unknown service"), {}
        try:
            requested = [a for text in params.get("scope", []) for a in parse_scope(text)]
        except ScopeError as e:
            return 400, _error(400, "invalid_scope", str(e)), {}
        now = time.time()
        token, grant = self.issue(account, requested, now)
        issued = datetime.datetime.fromtimestamp(int(now), datetime.UTC).isoformat().replace("+00:00", "Z")
        body: dict[str, Any] = {"token": token, "access_token": token,
                                "expires_in": int(self.settings.expiration), "issued_at": issued}
        if oauth:
            body["scope"] = " ".join(str(Access(t, n, a)) for (t, n), a in grant.resources.items())
        if offline and account is not None:
            body["refresh_token"] = self.refresh_token(account, now)
        elif refresh is not None:
            body["refresh_token"] = refresh
        log.info("token for %s: %s", account or "anonymous", body.get("scope") or
                 " ".join(str(Access(t, n, a)) for (t, n), a in grant.resources.items()) or "no access")
        return 200, body, {}


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    """Every error shape token clients read: OAuth2's, distribution's and docker_auth's."""
    registry_code = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS"}.get(status, "UNSUPPORTED" if status == 405 else "DENIED")
    return {"error": code, "error_description": message, "details": message,
            "errors": [{"code": registry_code, "message": message}]}


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m pyreg.registry.auth.tokenserver"
) -> int:
    """Run the token server alone (its registries trust its certificate as `rootcertbundle`)."""
    import uvicorn

    from pyreg.registry.config import ConfigError, load_config, split_addr

    parser = argparse.ArgumentParser(prog=prog, description="pyreg's token server on its own")
    parser.add_argument("config", help="config.yml with auth.token and auth.token.server")
    parser.add_argument("--addr", default="127.0.0.1:5001", help="listen on HOST:PORT")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, os.environ)
        server = TokenServer.from_config(config)
        host, port = split_addr(args.addr)
    except (ConfigError, ValueError, OSError) as e:
        print(f"tokenserver: {e}", file=sys.stderr)
        return 2
    print(f"token server for {server.settings.service!r} on http://{host}:{port}{server.settings.path}, "
          f"key {server.key.path or '(in memory)'}", file=sys.stderr, flush=True)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != server.settings.path:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await server(scope, receive, send)

    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False, lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
