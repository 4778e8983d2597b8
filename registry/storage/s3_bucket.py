"""One S3 bucket under a key prefix: the client, its options and a thread pool for boto3's calls.

boto3 blocks, so every call runs in a pool of threads of its own (a boto3 client is thread-safe;
its connection pool is sized to match), never on the event loop, and concurrent requests overlap.
boto3 and botocore are imported here, and this module only by the s3 driver: a registry on the
filesystem never pays their import time or memory. They ship no type information (their stubs are
separate packages), so the client is `Any` and each use is checked by the driver's tests.

Errors become the driver's: a missing key → PathNotFound; throttling, 5xx answers, timeouts and a
server that is down → StorageUnavailable (the registry answers 503 with Retry-After). Timeouts are
short and retries few so that a dead S3 answers quickly instead of hanging the request.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from pyreg.registry.storage.driver import PathNotFound, StorageError, StorageUnavailable

T = TypeVar("T")

MiB = 1 << 20
MIN_PART = 5 * MiB  # S3's smallest part, except the last one of an upload
MAX_COPY_PART = 5 << 30  # S3's largest UploadPartCopy range
THREADS = 32  # concurrent S3 calls per driver; boto3's connection pool is sized to match
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
ATTEMPTS = 3  # botocore's "standard" retry mode: a few quick retries with jittered backoff
THROTTLED_RETRY_AFTER = 2  # seconds a client is asked to wait when S3 throttles us
DOWN_RETRY_AFTER = 5  # ... when S3 does not answer or fails

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
_THROTTLED = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
     "503", "ServiceUnavailable", "RequestTimeout"}
)


class RangeNotSatisfiable(StorageError):
    """A ranged read that starts at or past the end of an object (S3's InvalidRange, 416)."""


def _boolean(value: object, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _integer(value: object, default: int) -> int:
    if value is None or value == "" or value == 0:
        return default
    return int(str(value))


@dataclass(frozen=True)
class S3Options:
    """Distribution's `storage.s3` keys, with distribution's defaults."""

    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None  # regionendpoint, with its scheme
    accesskey: str | None = None
    secretkey: str | None = None
    sessiontoken: str | None = None
    forcepathstyle: bool = False
    rootdirectory: str = ""
    skipverify: bool = False
    chunksize: int = 10 * MiB
    copy_threshold: int = 32 * MiB  # multipartcopythresholdsize
    copy_chunksize: int = 32 * MiB  # multipartcopychunksize
    copy_concurrency: int = 100  # multipartcopymaxconcurrency (bounded by THREADS)
    useragent: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> S3Options:
        bucket = str(params.get("bucket") or "")
        if not bucket:
            raise ValueError("storage.s3.bucket: required by the s3 driver")
        endpoint = str(params.get("regionendpoint") or "") or None
        if endpoint is not None and "://" not in endpoint:
            scheme = "https" if _boolean(params.get("secure"), True) else "http"
            endpoint = f"{scheme}://{endpoint}"
        chunksize = _integer(params.get("chunksize"), 10 * MiB)
        if chunksize < MIN_PART:
            raise ValueError(f"storage.s3.chunksize: must be at least {MIN_PART}")
        copy_chunksize = min(max(_integer(params.get("multipartcopychunksize"), 32 * MiB),
                                 MIN_PART), MAX_COPY_PART)
        return cls(
            bucket=bucket,
            region=str(params.get("region") or "us-east-1"),
            endpoint=endpoint,
            accesskey=str(params.get("accesskey") or "") or None,
            secretkey=str(params.get("secretkey") or "") or None,
            sessiontoken=str(params.get("sessiontoken") or "") or None,
            # S3-compatible servers rarely have per-bucket DNS names: path style is their default.
            forcepathstyle=_boolean(params.get("forcepathstyle"), endpoint is not None),
            rootdirectory=str(params.get("rootdirectory") or ""),
            skipverify=_boolean(params.get("skipverify"), False),
            chunksize=chunksize,
            copy_threshold=_integer(params.get("multipartcopythresholdsize"), 32 * MiB),
            copy_chunksize=copy_chunksize,
            copy_concurrency=max(1, _integer(params.get("multipartcopymaxconcurrency"), 100)),
            useragent=str(params.get("useragent") or "") or None,
        )


def build_client(options: S3Options) -> Any:
    boto3 = importlib.import_module("boto3")
    config_mod = importlib.import_module("botocore.config")
    config = config_mod.Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": ATTEMPTS},
        max_pool_connections=THREADS,
        signature_version="s3v4",
        s3={"addressing_style": "path" if options.forcepathstyle else "auto"},
        # Checksums only where S3 requires them: the default trailing CRC32 (aws-chunked bodies)
        # is refused by several S3-compatible servers, and TLS already protects the bytes.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra=options.useragent,
    )
    # A session of our own: boto3's default session is shared process state, not thread-safe.
    session = boto3.session.Session(
        aws_access_key_id=options.accesskey,
        aws_secret_access_key=options.secretkey,
        aws_session_token=options.sessiontoken,
        region_name=options.region,
    )
    # verify=None lets botocore apply AWS_CA_BUNDLE, which it reads only for https endpoints.
    client = session.client(
        "s3", endpoint_url=options.endpoint, config=config,
        verify=False if options.skipverify else None,
    )
    client.meta.events.register("before-send.s3", _no_expect_without_body)
    return client


def _no_expect_without_body(request: Any, **kwargs: Any) -> None:
    """Send an empty PUT without `Expect: 100-continue`.

    With it, some servers (SeaweedFS) answer at once, as HTTP allows when there is no body, and
    the connection then stalls on the next request until the read timeout.
    """
    if request.headers.get("Content-Length") in ("0", b"0"):
        request.headers.pop("Expect", None)


def translate(path: str, exc: BaseException) -> BaseException:
    """The driver's error for an exception raised by boto3 (others are returned unchanged)."""
    if isinstance(exc, StorageError):
        return exc
    botocore = importlib.import_module("botocore.exceptions")
    urllib3 = importlib.import_module("urllib3.exceptions")
    if isinstance(exc, botocore.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _NOT_FOUND:
            return PathNotFound(path)
        if code == "InvalidRange" or status == 416:
            return RangeNotSatisfiable(f"{path}: range not satisfiable")
        if code in _THROTTLED or status == 429:
            return StorageUnavailable(f"{path}: S3 is busy ({code})", THROTTLED_RETRY_AFTER)
        if status >= 500:
            return StorageUnavailable(f"{path}: S3 failed ({code or status})", DOWN_RETRY_AFTER)
        return StorageError(f"{path}: S3 refused the request: {code} {error.get('Message', '')}")
    connection_errors = (
        botocore.ConnectionError, botocore.HTTPClientError, botocore.IncompleteReadError,
        urllib3.HTTPError, ConnectionError, TimeoutError,
    )
    if isinstance(exc, connection_errors):
        return StorageUnavailable(f"{path}: S3 is unreachable ({exc})", DOWN_RETRY_AFTER)
    if isinstance(exc, botocore.BotoCoreError):
        return StorageError(f"{path}: {exc}")  # configuration: credentials, parameters
    return exc


class S3Bucket:
    """The bucket as the driver sees it: keys under `rootdirectory`, calls off the event loop."""

    def __init__(self, options: S3Options, client: Any | None = None) -> None:
        self.options = options
        self.name = options.bucket
        # Distribution's key for a path: the root without its slashes, then the path.
        self.prefix = options.rootdirectory.strip("/")
        # A client passed in is shared (tests give many drivers one) and stays open on close.
        self._owns_client = client is None
        self.client: Any = client if client is not None else build_client(options)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="s3")

    def key(self, path: str) -> str:
        return (self.prefix + path).lstrip("/")

    def path(self, key: str) -> str:
        return key[len(self.prefix) :] if self.prefix else "/" + key

    async def run(self, path: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call in the pool, its errors translated for `path`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))
        except Exception as exc:
            raise translate(path, exc) from exc

    async def call(self, path: str, operation: str, **params: Any) -> Any:
        """One S3 API call (boto3's snake_case name) on this bucket."""
        return await self.run(path, partial(getattr(self.client, operation), Bucket=self.name,
                                            **params))

    async def head(self, path: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = await self.call(path, "head_object", Key=self.key(path))
        except PathNotFound:
            return None
        return head

    async def pages(self, path: str, operation: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a listing (ListObjectsV2, ListMultipartUploads, ListParts)."""
        paginator = self.client.get_paginator(operation)

        def fetch() -> list[dict[str, Any]]:
            return list(paginator.paginate(Bucket=self.name, **params))

        return await self.run(path, fetch)

    async def abort_uploads(self, path: str, prefix: str, exact: bool = False) -> None:
        """Abort the multipart uploads of keys under `prefix` (or of that one key)."""
        for page in await self.pages(path, "list_multipart_uploads", Prefix=prefix):
            for upload in page.get("Uploads", []):
                if exact and upload["Key"] != prefix:
                    continue
                try:
                    await self.call(path, "abort_multipart_upload", Key=upload["Key"],
                                    UploadId=upload["UploadId"])
                except PathNotFound:
                    pass  # aborted or completed meanwhile

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            self.client.close()
