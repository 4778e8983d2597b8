"""`RegistryClient`: the distribution API, one async method per endpoint.

Auth and transport are injected as in httpx (`auth=DockerTokenAuth(...)`,
`transport=httpx.ASGITransport(app)`), so the same class talks to a remote registry, to an app
in-process in tests, and serves the registry's pull-through cache. Idempotent requests are retried
on transient failures (see `retry.py`); error statuses become `ResponseError`s carrying the first
distribution error code of the body.

    async with RegistryClient("https://registry-1.docker.io", auth=auth) as api:
        got = await api.get_manifest("library/busybox", "latest")
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import httpx

from pyreg.client import blobget, errors
from pyreg.client.auth import DockerTokenAuth
from pyreg.client.retry import NO_RETRY, RETRY_STATUSES, RetryPolicy, is_transient, retry_after
from pyreg.client.tls import trust
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest, DigestError

# The largest manifest accepted, as registries accept them (distribution: 4 MiB): a registry cannot
# make the client hold more than this in memory.
MAX_MANIFEST_SIZE = 4 << 20

# Everything pyreg can read, most preferred first (an index lets us choose the platform).
MANIFEST_ACCEPT = ", ".join([
    mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST,
    mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST,
])
USER_AGENT = "pyreg"
HTTPX_BATCH = 1 << 20  # bytes gathered into one batch of a blob body read through httpx


class FetchedManifest(NamedTuple):
    data: bytes
    media_type: str
    digest: Digest  # computed from the bytes, never taken from the server's word


class UploadState(NamedTuple):
    """Where an upload continues (`Location`) and how many bytes the registry holds."""

    location: str
    offset: int


class HttpxBlobBody:
    """A blob body read through httpx, in batches of about `HTTPX_BATCH` bytes (lists of the
    pieces as they came). A connection that breaks first hands out what came, then raises."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._pieces = response.aiter_raw()
        self._error: httpx.TransportError | None = None

    def __aiter__(self) -> HttpxBlobBody:
        return self

    async def __anext__(self) -> list[bytes]:
        if self._error is not None:
            raise self._error
        batch: list[bytes] = []
        size = 0
        while size < HTTPX_BATCH:
            try:
                piece = await self._pieces.__anext__()
            except StopAsyncIteration:
                break
            except httpx.TransportError as e:
                if not batch:
                    raise
                self._error = e
                break
            batch.append(piece)
            size += len(piece)
        if not batch:
            raise StopAsyncIteration
        return batch


BlobBody = blobget.BlobResponse | HttpxBlobBody


def _unverified_context() -> ssl.SSLContext:
    """What httpx makes of `verify=False`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _environment_proxy() -> bool:
    """Whether the environment names a proxy, which httpx (trust_env) would use."""
    from urllib.request import getproxies  # loaded by httpx already

    return any(scheme in getproxies() for scheme in ("http", "https", "all"))


def _error_code(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = json.loads(response.content or b"{}")
        first = body["errors"][0]
        return str(first.get("code")), str(first.get("message") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, ""


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Turn an error status into the matching `ResponseError`, with a one-line message."""
    status = response.status_code
    if status < 400:
        return
    code, message = _error_code(response)
    # distribution's (and docker's) wording of an error code: "manifest unknown: …", "denied: …"
    spoken = code.lower().replace("_", " ") if code else None
    detail = f"{spoken}: {message}" if spoken and message else spoken or message or response.reason_phrase
    text = f"{what}: {detail} ({status})"
    kind: type[errors.ResponseError] = {
        401: errors.Unauthorized, 403: errors.Denied, 404: errors.NotFound, 429: errors.TooManyRequests,
    }.get(status, errors.ResponseError)
    raise kind(text, status, code, retry_after(response) if status in RETRY_STATUSES else None)


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def transport_error(error: httpx.TransportError, url: str) -> errors.TransportError:
    cause = _ssl_cause(error)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return errors.TLSFailure(
            f"{url}: tls: failed to verify certificate: {cause.verify_message or cause.reason}"
            " (list the registry as insecure to skip verification)")
    if cause is not None or "certificate" in str(error).lower() or "ssl" in str(error).lower():
        return errors.TLSFailure(f"{url}: TLS handshake failed: {getattr(cause, 'reason', None) or error}")
    if isinstance(error, httpx.TimeoutException):
        return errors.Unreachable(f"{url}: timed out")
    return errors.Unreachable(f"cannot reach {url}: {error or type(error).__name__}")


class RegistryClient:
    """The registry API at `base_url` (scheme, host and an optional path prefix)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._verify = trust(verify)
        self._unverified: ssl.SSLContext | None = None
        self._timeout = timeout
        # Blob bodies go around httpx (blobget.py) when nothing else must see them: no transport
        # of the caller's, no proxy, an auth whose tokens can be read.
        self._token_auth = auth if isinstance(auth, DockerTokenAuth) else None
        self.direct_blobs = transport is None and (auth is None or self._token_auth is not None) \
            and not _environment_proxy()
        self._http = httpx.AsyncClient(
            auth=auth, transport=transport, verify=self._verify, follow_redirects=True,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}/v2/{path}"

    async def request(
        self, method: str, url: str, *, what: str, retry: RetryPolicy | None = None,
        ok: Iterable[int] = (), limit: int | None = None, **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; statuses in `ok` are returned as they are, other errors raised.
        With `limit`, a body larger than that many bytes is refused before it is all read."""
        policy = retry or self.retry
        allowed = set(ok)
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            try:
                if limit is None:
                    response = await self._http.request(method, url, **kwargs)
                else:
                    response = await self._limited(method, url, limit, what, **kwargs)
            except httpx.TransportError as e:
                if last or not is_transient(e):
                    raise transport_error(e, url) from e
                await policy.sleep(policy.delay(attempt))
                continue
            if response.status_code in RETRY_STATUSES and response.status_code not in allowed and not last:
                await policy.sleep(policy.delay(attempt, response))
                continue
            if response.status_code not in allowed:
                raise_for_status(response, what)
            return response
        raise AssertionError("unreachable")  # the loop always returns or raises on its last attempt

    async def _limited(self, method: str, url: str, limit: int, what: str, **kwargs: Any) -> httpx.Response:
        async with self._http.stream(method, url, **kwargs) as response:
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise errors.ResponseTooLarge(f"{what}: the registry sent {int(length)} bytes, more than {limit}")
            pieces: list[bytes] = []
            size = 0
            async for piece in response.aiter_bytes():
                size += len(piece)
                if size > limit:
                    raise errors.ResponseTooLarge(f"{what}: the registry sent more than {limit} bytes")
                pieces.append(piece)
        # The body as read (decoded): a response of its own, without the headers of the encoding.
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(pieces),
                              request=response.request, extensions=response.extensions)

    # -- base ---------------------------------------------------------------------------------

    async def ping(self) -> httpx.Response:
        """`GET /v2/`: is this a registry, and which auth does it want (401 is an answer)."""
        return await self.request("GET", f"{self.base_url}/v2/", what="ping", ok=(200, 401))

    # -- manifests ----------------------------------------------------------------------------

    async def get_manifest(self, name: str, reference: str, accept: str = MANIFEST_ACCEPT) -> FetchedManifest:
        """The manifest's exact bytes; a digest reference is verified against them."""
        response = await self.request(
            "GET", self.url(f"{name}/manifests/{reference}"), headers={"Accept": accept},
            what=f"manifest {name}:{reference}" if ":" not in reference else f"manifest {name}@{reference}",
            limit=MAX_MANIFEST_SIZE,
        )
        data = response.content
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if not media_type or media_type in ("application/json", "text/plain"):
            media_type = mediatypes.OCI_INDEX if b'"manifests"' in data else mediatypes.OCI_MANIFEST
        algorithm = "sha256"
        expected: Digest | None = None
        if reference.count(":") == 1 and not reference.startswith(":"):
            try:
                expected = Digest.parse(reference)
                algorithm = expected.algorithm
            except DigestError:
                expected = None
        digest = Digest.from_bytes(data, algorithm)
        if expected is not None and digest != expected:
            raise errors.IntegrityError(f"manifest {name}@{expected}: the registry sent content with digest {digest}")
        return FetchedManifest(data, media_type, digest)

    async def head_manifest(self, name: str, reference: str, accept: str = MANIFEST_ACCEPT) -> tuple[Digest, str, int] | None:
        """(digest, media type, size) from the headers, None when there is no such manifest."""
        response = await self.request("HEAD", self.url(f"{name}/manifests/{reference}"),
                                      headers={"Accept": accept}, what=f"manifest {name}:{reference}", ok=(200, 404))
        if response.status_code == 404:
            return None
        digest = Digest.parse(response.headers["docker-content-digest"])
        return digest, response.headers.get("content-type", ""), int(response.headers.get("content-length", 0))

    async def put_manifest(self, name: str, reference: str, data: bytes, media_type: str) -> Digest:
        await self.request("PUT", self.url(f"{name}/manifests/{reference}"), content=data,
                           headers={"Content-Type": media_type}, what=f"push manifest {name}:{reference}")
        return Digest.from_bytes(data)

    async def delete_manifest(self, name: str, digest: Digest) -> None:
        await self.request("DELETE", self.url(f"{name}/manifests/{digest}"), what=f"delete {name}@{digest}",
                           ok=(202,))

    # -- blobs --------------------------------------------------------------------------------

    async def head_blob(self, name: str, digest: Digest) -> int | None:
        """The blob's size when the repository has it, else None."""
        response = await self.request("HEAD", self.url(f"{name}/blobs/{digest}"), what=f"blob {digest}",
                                      ok=(200, 404))
        if response.status_code == 404:
            return None
        return int(response.headers.get("content-length", "0"))

    @asynccontextmanager
    async def get_blob(self, name: str, digest: Digest, start: int = 0) -> AsyncIterator[httpx.Response]:
        """A streaming response for the blob from byte `start` on (206 when the registry honours
        the range, 200 when it sends everything again: the caller must look)."""
        # Byte ranges are of the blob itself: no transfer compression that would shift them.
        headers = {"Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        url = self.url(f"{name}/blobs/{digest}")
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for_status(response, f"blob {name}@{digest}")
                yield response
        except httpx.TransportError as e:
            if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
                raise transport_error(e, url) from e
            raise  # a stream cut mid-way: the caller resumes

    @asynccontextmanager
    async def blob_body(self, name: str, digest: Digest, start: int = 0) -> AsyncIterator[BlobBody]:
        """The blob from byte `start` on, read with `async for batch in body`: each batch a
        sequence of bytes-like pieces, valid until the next batch is asked for. `status_code` is
        206 when the registry honoured the range, 200 when it sends everything again.

        The body skips httpx (`blobget`) when `direct_blobs` allows and the auth holds what the
        request needs; any answer but a body goes through httpx again (`get_blob`)."""
        direct = await self._direct_blob(name, digest, start) if self.direct_blobs else None
        if direct is not None:
            try:
                yield direct
            finally:
                direct.close()
            return
        async with self.get_blob(name, digest, start) as response:
            yield HttpxBlobBody(response)

    def _tls(self) -> ssl.SSLContext:
        """The SSL context httpx verifies with."""
        if isinstance(self._verify, ssl.SSLContext):
            return self._verify
        if self._unverified is None:
            self._unverified = _unverified_context()
        return self._unverified

    async def _direct_blob(self, name: str, digest: Digest, start: int) -> blobget.BlobResponse | None:
        url = self.url(f"{name}/blobs/{digest}")
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        if self._token_auth is not None:
            request = httpx.Request("GET", url)
            if not self._token_auth.authorize_cached(request):
                return None  # a token to fetch first: httpx's auth flow does that
            if "authorization" in request.headers:
                headers["Authorization"] = request.headers["authorization"]
        try:
            return await blobget.get(httpx.URL(url), headers, tls=self._tls, timeout=self._timeout,
                                     connect_timeout=min(self._timeout, 15.0))
        except blobget.NotHandled:
            return None
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise transport_error(e, url) from e

    async def delete_blob(self, name: str, digest: Digest) -> None:
        await self.request("DELETE", self.url(f"{name}/blobs/{digest}"), what=f"delete blob {digest}", ok=(202,))

    # -- uploads ------------------------------------------------------------------------------

    def _state(self, response: httpx.Response, expected: int = 0) -> UploadState:
        location = str(response.url.join(response.headers["location"]))
        offset = 0
        rng = response.headers.get("range", "").removeprefix("bytes=")
        if rng:
            offset = int(rng.rsplit("-", 1)[1]) + 1
            # Registries answer "0-0" for an empty upload as for a one-byte one: trust what we sent.
            if rng == "0-0" and expected != 1:
                offset = 0
        return UploadState(location, offset)

    async def start_upload(self, name: str) -> UploadState:
        response = await self.request("POST", self.url(f"{name}/blobs/uploads/"), what=f"upload to {name}",
                                      retry=NO_RETRY, headers={"Content-Length": "0"})
        return self._state(response)

    async def mount_blob(self, name: str, digest: Digest, source: str) -> UploadState | None:
        """Mount `digest` from repository `source`: None when mounted, else the upload session
        the registry opened instead (it may not have the blob there, or not allow mounts)."""
        response = await self.request(
            "POST", self.url(f"{name}/blobs/uploads/"), params={"mount": str(digest), "from": source},
            what=f"mount {digest} from {source}", retry=NO_RETRY, headers={"Content-Length": "0"},
        )
        return None if response.status_code == 201 else self._state(response)

    async def patch_upload(self, state: UploadState, data: bytes | AsyncIterable[bytes],
                           size: int | None = None) -> UploadState:
        """Append `data` (bytes, or a stream of `size` bytes) at the upload's offset."""
        length = len(data) if isinstance(data, bytes) else size
        if length is None:
            raise ValueError("a streamed chunk needs its size")
        end = state.offset + length - 1
        response = await self.request(
            "PATCH", state.location, content=data, retry=NO_RETRY, what="upload chunk",
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"{state.offset}-{end}",
                     "Content-Length": str(length)},
        )
        return self._state(response, expected=end + 1)

    async def put_upload(self, state: UploadState, digest: Digest, data: bytes | AsyncIterable[bytes] = b"",
                         size: int | None = None) -> None:
        """Complete the upload, with its last bytes if any (a stream needs its `size`)."""
        # The location may carry the registry's own state in its query: add to it, never replace.
        url = str(httpx.URL(state.location).copy_merge_params({"digest": str(digest)}))
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        await self.request("PUT", url, content=data, retry=NO_RETRY, headers=headers, what=f"upload {digest}")

    async def upload_status(self, location: str) -> UploadState:
        response = await self.request("GET", location, what="upload status", ok=(204,))
        return self._state(response)

    async def cancel_upload(self, location: str) -> None:
        await self.request("DELETE", location, what="cancel upload", ok=(204, 404))

    # -- listings -----------------------------------------------------------------------------

    async def _paged(self, url: str, key: str, what: str, page_size: int | None) -> list[str]:
        out: list[str] = []
        params = {"n": str(page_size)} if page_size else None
        next_url: str | None = url
        while next_url:
            response = await self.request("GET", next_url, params=params, what=what)
            params = None  # the Link URL carries them on
            out.extend(response.json().get(key) or [])
            link = response.links.get("next")
            next_url = str(response.url.join(link["url"])) if link and link.get("url") else None
        return out

    async def list_tags(self, name: str, page_size: int | None = None) -> list[str]:
        """Every tag, following `Link: <…>; rel="next"` pages."""
        return await self._paged(self.url(f"{name}/tags/list"), "tags", f"tags of {name}", page_size)

    async def catalog(self, page_size: int | None = None) -> list[str]:
        return await self._paged(self.url("_catalog"), "repositories", "catalog", page_size)

    async def referrers(self, name: str, digest: Digest, artifact_type: str | None = None) -> dict[str, Any]:
        params = {"artifactType": artifact_type} if artifact_type else None
        response = await self.request("GET", self.url(f"{name}/referrers/{digest}"), params=params,
                                      what=f"referrers of {digest}")
        doc: dict[str, Any] = response.json()
        return doc
