"""One command's registry connections: per host, opened on first use, with that host's login.

Holds what every transfer needs besides the store: pyreg's config (endpoints, mirrors), docker's
credentials, and — for tests — an injected transport and retry policy.
"""

from __future__ import annotations

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
        self._open: dict[str, Connection] = {}

    async def connection(self, endpoint: Endpoint) -> Connection:
        key = f"{','.join(endpoint.schemes)}://{endpoint.host}"
        if key not in self._open:
            creds = self.credentials.get(endpoint.host) if self.credentials else None
            self._open[key] = await connect(endpoint, creds, transport=self.transport,
                                            retry=self.retry, verify=self.verify)
        return self._open[key]

    async def registry(self, domain: str) -> Connection:
        """The registry itself (pushes, and pulls when no mirror answered)."""
        return await self.connection(self.config.endpoint(domain))

    async def aclose(self) -> None:
        for conn in self._open.values():
            await conn.aclose()
        self._open.clear()
