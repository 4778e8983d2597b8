"""Token authentication of registry requests (distribution's `auth.token`), as ASGI middleware.

Every request needs a valid bearer token (`/v2/` included, so clients discover the realm), and
the token must grant the scopes the route needs (`scopes.needs`). Without a token, or with a bad
one, the answer is 401 with `WWW-Authenticate: Bearer realm,service,scope` for this endpoint;
with a good token lacking access, 401 with `error="insufficient_scope"` as distribution does, so
that a client can fetch a better token, and `DENIED` in the body for the message it shows when
it cannot. The rejection happens before the app runs: nothing is read or written.

The granted access goes into `scope["state"]["access"]` (a `Grant`), so that a handler can check
optional access itself (`scopes.can_read` for a cross-repository mount).

With `auth.token.server`, the built-in token server answers at its path in the same process and
its keys are trusted without further configuration.

    RegistryError
     ├── Unauthorized           UNAUTHORIZED    401   no token, or not a valid one
     └── Denied                 DENIED          403
          └── InsufficientScope DENIED          401   a valid token without the access needed
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from pyreg.registry.auth.htpasswd import authorization, passed_through, send_error
from pyreg.registry.auth.scopes import Access, Grant, challenge, needs
from pyreg.registry.auth.token import InvalidToken, TokenVerifier, build_trust
from pyreg.registry.auth.tokenserver import DEFAULT_PATH, TokenServer
from pyreg.registry.config import Config
from pyreg.registry.errors import Denied, NameInvalid, Unauthorized


class InsufficientScope(Denied):
    """A valid token without the access needed: 401 so the client can ask for more, DENIED for
    the message it shows when it cannot get it."""

    status = 401


_HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


class BearerAuth:
    """ASGI middleware: a bearer token with the route's scopes, or a 401 challenge."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, realm: str, service: str,
                 prefix: str = "", autoredirect_path: str | None = None,
                 token_server: TokenServer | None = None) -> None:
        self.app = app
        self.verifier = verifier
        self.realm = realm
        self.service = service
        self.prefix = prefix
        self.autoredirect_path = autoredirect_path
        self.token_server = token_server
        self.token_path = prefix + token_server.settings.path if token_server else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await passed_through(self.app, scope, receive, send):
            return
        path = scope["path"]
        if self.token_server is not None and path == self.token_path:
            await self.token_server(scope, receive, send)
            return
        route = path[len(self.prefix):] if path.startswith(self.prefix + "/") else ""
        query = _query(scope)
        need = needs(scope["method"], route, query)
        scheme, _, raw = authorization(scope).partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            await self._challenge(scope, send, need.challenge, None)
            return
        try:
            grant = self.verifier.verify(raw.strip())
        except InvalidToken:
            # Why a token failed goes nowhere: logs must not help forge the next one.
            await self._challenge(scope, send, need.challenge, "invalid_token")
            return
        missing = [m for m in (_missing(grant, a) for a in need.required) if m.actions]
        if missing:
            await self._challenge(scope, send, need.challenge, "insufficient_scope", missing)
            return
        if need.invalid_name:
            await send_error(send, NameInvalid(detail={"name": route[4:304]}))
            return
        state = scope.setdefault("state", {})
        state["access"], state["user"] = grant, grant.subject
        await self.app(scope, receive, send)

    def realm_for(self, scope: Scope) -> str:
        """The configured realm, or with `autoredirect` the token path on the host the client
        used (only a well-formed Host: the value goes into a header)."""
        if self.autoredirect_path is None:
            return self.realm
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").lower()
        if proto not in ("http", "https"):
            proto = str(scope.get("scheme", "https"))
        if not _HOST_RE.fullmatch(host):
            return self.realm
        return f"{proto}://{host}{self.autoredirect_path}"

    async def _challenge(self, scope: Scope, send: Send, scopes: Sequence[Access], error: str | None,
                         missing: Sequence[Access] = ()) -> None:
        header = {"WWW-Authenticate": challenge(self.realm_for(scope), self.service, scopes, error)}
        if missing:
            detail = [{"Type": a.type, "Class": "", "Name": a.name, "Action": action}
                      for a in missing for action in sorted(a.actions)]
            await send_error(send, InsufficientScope(detail=detail, headers=header))
        else:
            await send_error(send, Unauthorized(headers=header))


def _missing(grant: Grant, access: Access) -> Access:
    lacking = frozenset(a for a in access.actions if not grant.allows(access.type, access.name, a))
    return Access(access.type, access.name, lacking)


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def bearer_auth(app: ASGIApp, config: Config) -> BearerAuth:
    """The middleware for `auth.token` (with the built-in server when `server` is set)."""
    section: dict[str, Any] = config.auth.get("token") or {}
    for key in ("realm", "service", "issuer"):
        if not isinstance(section.get(key), str) or not section[key]:
            raise ValueError(f"auth.token.{key}: required by token auth")
    server = TokenServer.from_config(config) if section.get("server") else None
    keys = [*server.trust.keys.values()] if server else []
    trust = build_trust(_opt_str(section, "rootcertbundle"), _opt_str(section, "jwks"), keys)
    algorithms = section.get("signingalgorithms") or None
    if algorithms is not None and not (isinstance(algorithms, list) and all(isinstance(a, str) for a in algorithms)):
        raise ValueError("auth.token.signingalgorithms: expected a list of algorithm names")
    verifier = TokenVerifier(section["issuer"], section["service"], trust, algorithms)
    redirect = None
    if section.get("autoredirect") is True:
        redirect = config.http.prefix + str(section.get("autoredirectpath") or
                                            (server.settings.path if server else DEFAULT_PATH))
    return BearerAuth(app, verifier, section["realm"], section["service"], config.http.prefix,
                      redirect, server)


def _opt_str(section: dict[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"auth.token.{key}: expected a file name")
    return value or None

