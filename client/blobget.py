"""A lean HTTP/1.1 GET for large blob bodies: the socket is read straight into reusable buffers.

httpx reads a response body through httpcore, anyio and h11: every read (64 KiB to 1 MiB) is a
fresh `bytes` (which glibc maps and unmaps, page faults included, above 128 KiB), copied into
h11's receive buffer and out again, and walked through h11's state machine. For a 250 MiB pull
that was a third of the client's CPU. Here an `asyncio.BufferedProtocol` lets the event loop
`recv_into` a few preallocated `BUFFER_SIZE` buffers; each full buffer is handed to the caller as a
memoryview (hashed and written by a worker thread) while the loop fills the next, and reading
pauses when the caller falls behind by `BUFFERS` buffers.

Only the body of a plain `200`/`206` with a `Content-Length` takes this path; `RegistryClient`
decides when it may (`blob_body`) and everything else stays httpx's:

- auth: the caller sends the Authorization the auth flow holds for the request's scope. Any
  response other than a body or a redirect (a 401 above all, an error status, a body without a
  Content-Length or with a transfer or content encoding) raises `NotHandled`, and the caller
  sends the request again through httpx, whose auth flow answers a challenge;
- redirects (301, 302, 303, 307, 308) are followed here, as httpx does, up to `MAX_REDIRECTS`:
  the Authorization goes only to the origin it was meant for, never to another host;
- TLS with the caller's `ssl.SSLContext`, the one its httpx client verifies with;
- one connection per request (`Connection: close`), not pooled: a blob is large next to a
  handshake, and nothing can be left half-read on a connection another request then reuses;
- failures are httpx's exceptions (`ConnectError`, `ConnectTimeout`, `ReadError`, `ReadTimeout`,
  `RemoteProtocolError`), so retries and error messages work as for httpx. A body cut midway
  first hands out every byte that came, then raises: the caller resumes with `Range`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple, cast

import httpx

BUFFER_SIZE = 2 << 20
BUFFERS = 3  # per response: one being filled, one being written by the caller, one spare
POOL_MAX = 3 * BUFFERS  # buffers kept for the next responses (transfer/pull.py: 3 at a time)
_pool: list[bytearray] = []  # buffers of responses read to the end, for the next ones
HEAD_MAX = 64 << 10
MAX_REDIRECTS = 20  # httpx's default
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


class NotHandled(Exception):
    """The answer is one for httpx to handle: the request should be sent again through it."""


class Head(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


def parse_head(data: bytes) -> Head:
    """The status line and headers of a response (without the blank line that ends them). A head
    this strict parser does not take is left to httpx, which takes it or fails as it would."""
    status_line, *lines = data.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise NotHandled(f"status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():  # includes obsolete folded lines
            raise NotHandled(f"header line {line[:80]!r}")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Head(int(code), headers)


def body_length(head: Head) -> int | None:
    """The body's length when it can be read here: plain bytes, delimited by Content-Length."""
    headers = head.headers
    if "transfer-encoding" in headers or headers.get("content-encoding", "identity") != "identity":
        return None
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None  # absent, repeated ("5, 5") or malformed


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme)


class _Reader(asyncio.BufferedProtocol):
    """One response, read into the head buffer, then into the body buffers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop, self.timeout = loop, timeout
        self.transport: asyncio.Transport | None = None
        self.head = bytearray(HEAD_MAX)
        self.head_len = 0
        self.head_end = -1  # where the body starts in `head`, once the head is in
        self.in_body = False
        self.left = 0  # body bytes still to come
        self.buf: bytearray | None = None  # the buffer being filled
        self.fill = 0
        self.free: list[bytearray] = []
        self.allocated = 0
        self.ready: deque[tuple[bytearray, int]] = deque()  # full buffers for the caller
        self.error: BaseException | None = None
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last = loop.time()  # when bytes last came (or reading resumed)
        self.scratch: bytearray | None = None
        self.target = "head"  # where the bytes of the last `get_buffer` go
        self.lost = False

    # -- the event loop's side ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self.in_body:
            if self.head_len < HEAD_MAX:
                self.target = "head"
                return memoryview(self.head)[self.head_len:]
        elif self.left > 0 and self.error is None:
            if self.buf is None:
                self.buf = self.free.pop() if self.free else self._allocate()
                self.fill = 0
            self.target = "body"
            return memoryview(self.buf)[self.fill:min(len(self.buf), self.fill + self.left)]
        # Bytes past the response, or while a failure closes the connection: discarded.
        self.target = "scratch"
        if self.scratch is None:
            self.scratch = bytearray(HEAD_MAX)
        return memoryview(self.scratch)

    def buffer_updated(self, nbytes: int) -> None:
        self.last = self.loop.time()
        if self.target == "head":
            start = max(0, self.head_len - 3)
            self.head_len += nbytes
            if self.head_end < 0:
                end = self.head.find(b"\r\n\r\n", start, self.head_len)
                if end >= 0:
                    self.head_end = end + 4
                    self._pause()  # until the caller has decided what to do with the body
                    self._wake()
                elif self.head_len >= HEAD_MAX:
                    self._fail(NotHandled("a response head larger than 64 KiB"))
        elif self.target == "body":
            assert self.buf is not None
            self.fill += nbytes
            self.left -= nbytes
            if self.fill == len(self.buf) or self.left == 0:
                self.ready.append((self.buf, self.fill))
                self.buf = None
                if self.left == 0 or (not self.free and self.allocated >= BUFFERS):
                    self._pause()
                self._wake()
        elif not self.in_body and self.error is None:
            # More than 64 KiB arrived before the caller took the body: never lose bytes silently.
            self._fail(httpx.RemoteProtocolError("too much data before the body was read"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.error is None and (self.head_end < 0 or (self.in_body and self.left > 0)):
            if exc is not None:
                error: httpx.TransportError = httpx.ReadError(str(exc) or type(exc).__name__)
                error.__cause__ = exc
            else:
                error = self._closed_early()
            self._fail(error)
        self._wake()

    def _closed_early(self) -> httpx.RemoteProtocolError:
        if self.head_end < 0:
            return httpx.RemoteProtocolError("server disconnected without sending a response")
        return httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body ({self.left} bytes missing)")

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost tells whether the response was complete

    # -- the caller's side ----------------------------------------------------------------------

    def _allocate(self) -> bytearray:
        self.allocated += 1
        return _pool.pop() if _pool else bytearray(BUFFER_SIZE)

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.last = self.loop.time()  # time spent paused is not the server's silence
            self.transport.resume_reading()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            if self.buf is not None and self.fill:  # what came before the failure is kept
                self.ready.append((self.buf, self.fill))
                self.buf = None
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _check_idle(self) -> None:
        self.timer = None
        if self.waiter is None or self.waiter.done():
            return
        if self.loop.time() - self.last >= self.timeout:
            self._fail(httpx.ReadTimeout("timed out reading the response"))
        else:
            self.timer = self.loop.call_at(self.last + self.timeout, self._check_idle)

    async def wait(self) -> None:
        """Until something happens: the head, a full buffer, the end, a failure."""
        self.waiter = self.loop.create_future()
        self.timer = self.loop.call_at(self.last + self.timeout, self._check_idle)
        try:
            await self.waiter
        finally:
            self.waiter = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

    def start_body(self, length: int) -> None:
        """Read a body of `length` bytes; the part that came with the head is in it already."""
        self.in_body, self.left = True, length
        early = memoryview(self.head)[self.head_end:self.head_len][:length]
        if len(early):
            self.buf = self._allocate()
            self.buf[:len(early)] = early
            self.fill, self.left = len(early), length - len(early)
            if self.left == 0:
                self.ready.append((self.buf, self.fill))
                self.buf = None
        if self.left > 0 and self.lost:
            self._fail(self._closed_early())
        elif self.left > 0:
            self._resume()

    def release(self, buf: bytearray) -> None:
        self.free.append(buf)
        if self.left > 0 and self.error is None:
            self._resume()

    def close(self, complete: bool = False) -> None:
        """Close the connection; `complete`: the caller is done with every buffer, which go back
        to the pool (never after a failure: a worker thread may still be reading one)."""
        if self.transport is not None:
            self.transport.abort()  # unread bytes would only be discarded: no graceful close
        if self.timer is not None:
            self.timer.cancel()
        if complete and self.left == 0 and self.error is None:
            _pool.extend(self.free[:POOL_MAX - len(_pool)])
        self.free.clear()


class BlobResponse:
    """A `200`/`206` whose body is read by `async for view in response`: each item is a tuple of
    one memoryview, valid until the next item is asked for (its buffer is then refilled).

    A connection that breaks first yields what it received, then raises the failure."""

    def __init__(self, reader: _Reader, url: httpx.URL, head: Head, length: int) -> None:
        self._reader = reader
        self.url = url
        self.status_code = head.status
        self.headers = head.headers
        self.length = length
        self._lent: bytearray | None = None

    def __aiter__(self) -> BlobResponse:
        return self

    async def __anext__(self) -> tuple[memoryview]:
        reader = self._reader
        if self._lent is not None:
            reader.release(self._lent)
            self._lent = None
        while not reader.ready:
            if reader.error is not None:
                raise reader.error
            if reader.left <= 0:
                raise StopAsyncIteration
            await reader.wait()
        buf, size = reader.ready.popleft()
        self._lent = buf
        return (memoryview(buf)[:size],)

    def close(self) -> None:
        # Read to the end, every buffer back (StopAsyncIteration took the last one back).
        self._reader.close(complete=self._lent is None)


async def _request(url: httpx.URL, headers: Mapping[str, str], tls: ssl.SSLContext | None,
                   timeout: float, connect_timeout: float) -> tuple[_Reader, Head]:
    """Connect, send the GET, and read the response head."""
    loop = asyncio.get_running_loop()
    reader = _Reader(loop, timeout)
    host, port = url.host, url.port or DEFAULT_PORTS[url.scheme]
    try:
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(lambda: reader, host, port, ssl=tls,
                                         server_hostname=host if tls is not None else None)
    except TimeoutError:
        reader.close()
        raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
    except (OSError, ssl.SSLError) as e:  # ssl.SSLError is an OSError; named for the reader
        reader.close()
        raise httpx.ConnectError(str(e) or type(e).__name__) from e
    try:
        lines = [b"GET " + url.raw_path + b" HTTP/1.1", b"Host: " + url.netloc]
        for name, value in headers.items():
            line = f"{name}: {value}"
            if "\r" in line or "\n" in line or not line.isascii():
                raise NotHandled(f"header {name}")  # httpx's to refuse
            lines.append(line.encode())
        lines.append(b"Connection: close")
        assert reader.transport is not None
        reader.transport.write(b"\r\n".join(lines) + b"\r\n\r\n")
        while reader.head_end < 0:
            if reader.error is not None:
                raise reader.error
            await reader.wait()
        return reader, parse_head(bytes(reader.head[:reader.head_end - 4]))
    except BaseException:
        reader.close()
        raise


async def get(url: httpx.URL, headers: Mapping[str, str], *, tls: Callable[[], ssl.SSLContext],
              timeout: float = 60.0, connect_timeout: float = 15.0) -> BlobResponse:
    """GET `url` and return the body to stream, following redirects; `NotHandled` when the final
    answer is anything but a `200`/`206` with a Content-Length (the caller asks httpx then).
    `tls` gives the SSL context of https URLs. The caller closes the response."""
    sent = dict(headers)
    for _ in range(MAX_REDIRECTS + 1):
        if url.scheme not in DEFAULT_PORTS or url.userinfo:
            raise NotHandled(f"{url.scheme} URL" + (" with credentials" if url.userinfo else ""))
        reader, head = await _request(url, sent, tls() if url.scheme == "https" else None,
                                      timeout, connect_timeout)
        location = head.headers.get("location")
        if head.status in REDIRECTS and location:
            reader.close()
            target = url.join(location)
            if _origin(target) != _origin(url):
                sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            url = target
            continue
        length = body_length(head)
        if head.status not in (200, 206) or length is None:
            reader.close()
            raise NotHandled(f"{head.status} from {url}")
        reader.start_body(length)
        return BlobResponse(reader, url, head, length)
    raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")
