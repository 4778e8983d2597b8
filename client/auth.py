"""`DockerTokenAuth`: the `WWW-Authenticate` dance of Docker Hub and distribution, as an httpx.Auth.

    request ──► 401 Bearer realm=…,service=…,scope=… ──► token from the realm ──► request again
                401 Basic realm=…                     ──► request again with Basic credentials

Tokens are cached per scope set until they expire; once a registry has challenged, later
requests fetch a token for their own scope before being sent, so a new repository or a push costs
one token request, not a 401 each. With an identity (refresh) token, tokens come from an OAuth2
POST (`grant_type=refresh_token`); with a password, from a GET with Basic credentials; without
credentials, anonymously. Credentials go only to the registry they belong to and its token realm,
and never over plain HTTP to a host that is neither loopback nor configured insecure.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import NamedTuple

import httpx

from pyreg.client.credentials import Credentials
from pyreg.client.errors import CredentialsError
from pyreg.client.hosts import is_loopback

CLIENT_ID = "pyreg"
# Token lifetime when the server does not say (the token spec's default).
DEFAULT_EXPIRY = 60
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_REPO_PATH = re.compile(
    r"/v2/(?P<name>.+?)/(?:manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+|tags/list|referrers/[^/]+)$"
)


class Challenge(NamedTuple):
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """`WWW-Authenticate` values: `Bearer realm="…",service="…",scope="…"`, `Basic realm="…"`."""
    out: list[Challenge] = []
    for m in re.finditer(r"(?:^|,)\s*(Bearer|Basic)\b((?:\s*,?\s*\w+\s*=\s*(?:\"(?:[^\"\\]|\\.)*\"|[^\s,]+))*)",
                         header, re.IGNORECASE):
        params = {k.lower(): (q if q or not u else u) for k, q, u in _CHALLENGE_PARAM.findall(m[2])}
        out.append(Challenge(m[1].lower(), params))
    return out


def scopes_for(request: httpx.Request) -> tuple[str, ...]:
    """The token scopes a distribution API request needs, from its method and path."""
    path = request.url.path
    if path.endswith("/v2/_catalog"):
        return ("registry:catalog:*",)
    m = _REPO_PATH.search(path)
    if m is None:
        return ()
    method = request.method
    actions = "pull" if method in ("GET", "HEAD") else "delete" if method == "DELETE" else "pull,push"
    scopes = [f"repository:{m['name']}:{actions}"]
    source = request.url.params.get("from")
    if source and request.url.params.get("mount"):
        scopes.append(f"repository:{source}:pull")
    return tuple(sorted(scopes))


class _Token(NamedTuple):
    value: str
    expires: float


class DockerTokenAuth(httpx.Auth):
    """Answers Bearer and Basic challenges for one registry host (`host[:port]`)."""

    # Bodies are read only where the flow needs them (401s, token responses): a blob response must
    # stay a stream, not be read into memory by the auth layer.
    requires_response_body = False

    def __init__(self, host: str, credentials: Credentials | None = None, *, insecure: bool = False,
                 oauth: bool = False, monotonic: Callable[[], float] = time.monotonic) -> None:
        """`oauth=True` (what `login` uses) exchanges a password with an OAuth2 POST
        (`grant_type=password`, offline access) for a token and an identity token, as docker login
        does; a token server without OAuth2 (404, 405) is asked with a GET instead."""
        self.host = host
        self.credentials = credentials
        self.insecure = insecure
        self.oauth = oauth
        self._now = monotonic
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._refresh_token = credentials.identity_token if credentials else ""
        self._token_request_ids: set[int] = set()
        self.token_requests = 0  # for tests and --debug: how many times the realm was asked

    def _needs_body(self, response: httpx.Response) -> bool:
        return response.status_code == 401 or id(response.request) in self._token_request_ids

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        request = next(flow)
        while True:
            response = yield request
            if self._needs_body(response):
                response.read()
            try:
                request = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        request = next(flow)
        while True:
            response = yield request
            if self._needs_body(response):
                await response.aread()
            try:
                request = flow.send(response)
            except StopIteration:
                return

    # -- where credentials may go -------------------------------------------------------------

    def _check_safe(self, url: httpx.URL, registry: bool) -> None:
        where = url.netloc.decode()
        if registry and where != self.host:
            raise CredentialsError(f"refusing to send credentials for {self.host} to {where}")
        if url.scheme != "https" and not self.insecure and not is_loopback(where):
            raise CredentialsError(
                f"refusing to send credentials for {self.host} over plain HTTP to {where}"
                " (configure the registry as insecure to allow it)"
            )

    # -- the flow -----------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = scopes_for(request)
        sent = yield from self._authorize(request, scopes, fetch=True)
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_challenges(response.headers.get("www-authenticate", ""))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        chosen = bearer or next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None:
            return
        self._challenge = chosen
        if chosen.scheme == "basic":
            if sent or self.credentials is None or not self.credentials.username:
                return  # the credentials we sent are wrong, or we have none: the 401 stands
            yield from self._authorize(request, scopes, fetch=False)
            yield request
            return
        wanted = set(scopes)
        if chosen.params.get("scope"):
            wanted.update(chosen.params["scope"].split(" "))
        token = yield from self._fetch_token(tuple(sorted(wanted)))
        if token is None or request.headers.get("authorization") == f"Bearer {token}":
            return
        self._tokens[scopes] = self._tokens[tuple(sorted(wanted))]
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _authorize(self, request: httpx.Request, scopes: tuple[str, ...], fetch: bool
                   ) -> Generator[httpx.Request, httpx.Response, bool]:
        """Add what the last challenge asked for; True when an Authorization header was added."""
        challenge = self._challenge
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self.credentials is None or not self.credentials.username:
                return False
            self._check_safe(request.url, registry=True)
            request.headers["Authorization"] = self.credentials.basic_header()
            return True
        cached = self._tokens.get(scopes)
        if cached is not None and cached.expires > self._now():
            request.headers["Authorization"] = f"Bearer {cached.value}"
            return True
        if not fetch:
            return False
        token = yield from self._fetch_token(scopes)
        if token is None:
            return False
        request.headers["Authorization"] = f"Bearer {token}"
        return True

    def authorize_cached(self, request: httpx.Request) -> bool:
        """Give `request` the Authorization that `auth_flow` would send it with first, from what
        this auth holds (the token cached for the request's scopes, or Basic credentials), without
        any request of its own. False when the flow would first ask the token realm: send such a
        request through httpx, whose flow fetches the token (later requests then find it here)."""
        flow = self._authorize(request, scopes_for(request), fetch=False)
        try:
            next(flow)
        except StopIteration as done:
            added: bool = done.value
        else:  # pragma: no cover - `_authorize` only yields when it may fetch
            raise AssertionError("a token request without fetch")
        return added or self._challenge is None or self._challenge.scheme != "bearer"

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        self._token_request_ids.add(id(request))
        return request

    def _fetch_token(self, scopes: tuple[str, ...]) -> Generator[httpx.Request, httpx.Response, str | None]:
        assert self._challenge is not None
        params = self._challenge.params
        realm = params.get("realm")
        if not realm:
            return None
        cached = self._tokens.get(scopes)
        if cached is not None and cached.expires > self._now():
            return cached.value
        url = httpx.URL(realm)
        creds = self.credentials
        service = params.get("service")
        self.token_requests += 1
        response: httpx.Response | None = None
        if self._refresh_token or (self.oauth and creds is not None and creds.username):
            self._check_safe(url, registry=False)
            form = {"client_id": CLIENT_ID, "access_type": "offline"}
            if self._refresh_token:
                form |= {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
            else:
                assert creds is not None
                form |= {"grant_type": "password", "username": creds.username, "password": creds.password}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            response = yield self._token_request(httpx.Request("POST", url, data=form))
            if response.status_code in (404, 405) and not self._refresh_token:
                self._token_request_ids.discard(id(response.request))
                response = None  # no OAuth2 here: the token spec's GET
        if response is None:
            query: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            headers = {}
            if creds is not None and creds.username:
                self._check_safe(url, registry=False)
                query += [("account", creds.username), ("client_id", CLIENT_ID), ("offline_token", "true")]
                headers["Authorization"] = creds.basic_header()
            response = yield self._token_request(
                httpx.Request("GET", url.copy_merge_params(query), headers=headers))
        self._token_request_ids.discard(id(response.request))
        if response.status_code != 200:
            return None
        try:
            doc = response.json()
        except ValueError:
            return None
        value = doc.get("token") or doc.get("access_token")
        if not isinstance(value, str) or not value:
            return None
        if isinstance(doc.get("refresh_token"), str) and doc["refresh_token"]:
            self._refresh_token = doc["refresh_token"]
        expires_in = doc.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else DEFAULT_EXPIRY
        # Renew a little early: a token that expires in flight makes a needless 401.
        self._tokens[scopes] = _Token(value, self._now() + lifetime * 0.9)
        return value

    @property
    def refresh_token(self) -> str:
        """The identity token the realm handed out, which `login` stores like docker does."""
        return self._refresh_token

