"""Running the registry test suites with token auth switched on (`PYREG_TEST_AUTH=token`).

`auth_yaml(base)` is the `auth` section a test registry gets (the built-in token server, one
account allowed everything); `BearerFlow` is the `httpx.Auth` the suites' clients use to answer
the Bearer challenges: it speaks only the wire protocol (challenge → token request → retry),
sharing no code with the server under test.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from collections.abc import Generator
from pathlib import Path

import bcrypt
import httpx

AUTH_ENV = "PYREG_TEST_AUTH"
USER, PASSWORD = "suite", "suite-pw"


def token_auth_on() -> bool:
    return os.environ.get(AUTH_ENV, "") == "token"


def auth_yaml(base: Path) -> str:
    """`auth.token` with the built-in token server; the realm follows the Host header."""
    base.mkdir(parents=True, exist_ok=True)
    htpasswd = base / "suite-htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    key = base / "suite-token" / "signing.key"
    # The certificate is named as a rootcertbundle too: harmless, and needed by configuration
    # checks that predate `auth.token.server`.
    from pyreg.registry.auth.keys import certificate_path, load_signing_key

    load_signing_key(str(key))
    return f"""auth:
  token:
    realm: http://realm.invalid/auth/token
    autoredirect: true
    service: pyreg-suite
    issuer: pyreg-suite
    rootcertbundle: {certificate_path(str(key))}
    server:
      htpasswd: {htpasswd}
      signingkey: {key}
      expiration: 1h
      rules:
        - account: {USER}
          repository: "*"
          actions: ["*"]
        - account: {USER}
          catalog: true
"""


def token_server_yaml(base: Path, users: dict[str, str], service: str) -> str:
    """`auth.token` with the built-in token server for `users` (name → password): `admin` may do
    everything, every account owns its namespace, `reader` pulls everything, anonymous callers
    pull `public/*`."""
    from pyreg.registry.auth.keys import load_signing_key
    from tests.auth.conftest import htpasswd_entry

    base.mkdir(parents=True, exist_ok=True)
    htpasswd = base / "htpasswd"
    htpasswd.write_text("".join(htpasswd_entry(u, p) for u, p in users.items()))
    key = base / "token" / "signing.key"
    load_signing_key(str(key))  # made up front, so that the file names its certificate as trusted
    return f"""auth:
  token:
    realm: http://realm.invalid/auth/token
    autoredirect: true
    service: {service}
    issuer: {service}-issuer
    rootcertbundle: {base / "token" / "signing.crt"}
    server:
      htpasswd: {htpasswd}
      signingkey: {key}
      rules:
        - account: admin
          repository: "*"
          actions: ["*"]
        - account: "*"
          repository: "{{account}}/*"
          actions: [pull, push, delete]
        - account: reader
          repository: "*"
          actions: [pull]
        - account: anonymous
          repository: "public/*"
          actions: [pull]
"""


_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


class BearerFlow(httpx.Auth):
    """Answers `WWW-Authenticate: Bearer` challenges with a token for the challenged scope, and
    sends the latest token on later requests so that most requests need no retry."""

    requires_request_body = True  # a request is sent twice when challenged
    requires_response_body = True

    def __init__(self, username: str = USER, password: str = PASSWORD) -> None:
        creds = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.basic = f"Basic {creds}"
        self.token: str | None = None
        self.scopes: list[str] = []  # recent scopes, so one token serves a test's repositories

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        explicit = "authorization" in request.headers
        if self.token and not explicit:
            request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if explicit or response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        params = dict(_PARAM_RE.findall(challenge))
        for scope in params.get("scope", "").split(" "):
            if scope and scope not in self.scopes:
                self.scopes = [*self.scopes[-15:], scope]
        query = {"service": params.get("service", ""), "scope": " ".join(self.scopes)}
        token_response = yield httpx.Request("GET", params["realm"], params=query,
                                             headers={"Authorization": self.basic})
        if token_response.status_code != 200:
            return
        self.token = str(token_response.json()["token"])
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


_login_tokens: dict[str, str] = {}


def suite_headers(host: str) -> dict[str, str]:
    """An `Authorization` header for requests sent without httpx (raw sockets), when token auth
    is on: a token with all access, fetched once per registry."""
    if not token_auth_on():
        return {}
    if host not in _login_tokens:
        with httpx.Client(base_url=f"http://{host}", auth=None) as client:
            challenge = client.get("/v2/").headers.get("www-authenticate", "")
            params = dict(_PARAM_RE.findall(challenge))
            r = client.get(params["realm"], params={"service": params["service"]}, auth=(USER, PASSWORD))
            _login_tokens[host] = str(r.json()["token"])
    return {"Authorization": f"Bearer {_login_tokens[host]}"}


def suite_auth() -> BearerFlow | None:
    """The auth a suite client needs: a `BearerFlow` when token auth is on, else none."""
    return BearerFlow() if token_auth_on() else None


def pytest_configure(config: object) -> None:
    """As a pytest plugin (`-p tests.auth.suite`, with PYREG_TEST_AUTH=token): every pyreg the
    suite starts gets token auth, and every httpx client answers its challenges."""
    if not token_auth_on():
        return
    import tests.conftest as shared

    original_start = shared.start_pyreg

    def start_pyreg(root: Path, config: Path | None = None, workers: int = 1,
                    extra: str = "") -> shared.RegistryServer:
        if config is None and "auth:" not in extra:
            # Outside the test's directory, whose contents some tests check file by file.
            extra += auth_yaml(Path(tempfile.mkdtemp(prefix="pyreg-suite-auth-")))
        return original_start(root, config, workers, extra)

    shared.start_pyreg = start_pyreg  # type: ignore[assignment]
    for cls in (httpx.Client, httpx.AsyncClient):
        original_init = cls.__init__

        def init(self: object, *args: object, __init: object = original_init, **kwargs: object) -> None:
            kwargs.setdefault("auth", BearerFlow())
            __init(self, *args, **kwargs)  # type: ignore[operator]

        cls.__init__ = init  # type: ignore[method-assign,assignment]
