"""When and how long to wait before trying a request again.

Transient failures are: a connection that breaks or cannot be made, 429 (waiting what
`Retry-After` asks, within reason) and 5xx. Everything else is an answer, not a failure.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryPolicy(NamedTuple):  # not a dataclass: start-up time counts
    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    # Injected so that tests do not wait for real.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, attempt: int, response: httpx.Response | None = None, asked: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (0-based): what the response's
        `Retry-After` (or `asked`, the `retry_after` of a `ResponseError`) says, else backoff."""
        if asked is None and response is not None:
            asked = retry_after(response)
        if asked is not None:
            # A registry may ask for minutes; honour it, but not beyond a sane bound.
            return min(asked, 60.0)
        return float(min(self.max_delay, self.base_delay * 2**attempt))


NO_RETRY = RetryPolicy(attempts=1)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError):  # neither seconds nor an HTTP date: no advice
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())


def is_transient(error: BaseException) -> bool:
    # TLS and name-resolution failures will not fix themselves between two attempts.
    if isinstance(error, httpx.ConnectError):
        text = str(error).lower()
        return not ("certificate" in text or "ssl" in text or "name or service" in text)
    return isinstance(error, httpx.TransportError) and not isinstance(error, httpx.UnsupportedProtocol)
