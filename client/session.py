"""One command's registry connections: per host, opened on first use, with that host's login.

Holds what every transfer needs besides the store: pyreg's config (endpoints, mirrors), docker's
credentials, and — for tests — an injected transport and retry policy.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx

from pyreg.client.config import ClientConfig, Endpoint
from pyreg.client.connect import Connection, connect
from pyreg.client.credentials import DockerConfig
from pyreg.client.retry import RetryPolicy


class RegistrySession:
    def __init__(
        self,
        config: ClientConfig,
        credentials: DockerConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.transport = transport
        self.retry = retry
        self.verify = verify
        # One connection per host, shared by every concurrent transfer: the first caller opens
        # it (ping, scheme fallback, login); the others wait for that instead of each pinging.
        self._open: dict[str, asyncio.Future[Connection]] = {}

    async def connection(self, endpoint: Endpoint) -> Connection:
        key = f"{','.join(endpoint.schemes)}://{endpoint.host}"
        opening = self._open.get(key)
        if opening is None:
            creds = self.credentials.get(endpoint.host) if self.credentials else None
            opening = self._open[key] = asyncio.ensure_future(
                connect(endpoint, creds, transport=self.transport, retry=self.retry,
                        verify=self.verify)
            )
        return await asyncio.shield(opening)

    async def registry(self, domain: str) -> Connection:
        """The registry itself (pushes, and pulls when no mirror answered)."""
        return await self.connection(self.config.endpoint(domain))

    async def aclose(self) -> None:
        for opening in self._open.values():
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                await opening.result().aclose()
            elif not opening.done():
                opening.cancel()
        self._open.clear()
