"""Opening a `RegistryClient` for a registry host: scheme, credentials, auth.

An endpoint lists the schemes to try (https only, unless the host is loopback or configured
insecure); the first that answers `GET /v2/` wins. As in docker, an insecure registry's HTTPS
certificate is not verified: "insecure" means both that and the plain-HTTP fallback. The ping also lets the auth learn the
registry's challenge, so the next request carries a token at once.
"""

from __future__ import annotations

import ssl
from typing import NamedTuple

import httpx

from pyreg.client.api import RegistryClient
from pyreg.client.auth import DockerTokenAuth
from pyreg.client.config import Endpoint
from pyreg.client.credentials import Credentials
from pyreg.client.errors import TransportError
from pyreg.client.retry import RetryPolicy


class Connection(NamedTuple):
    api: RegistryClient
    auth: DockerTokenAuth
    endpoint: Endpoint
    ping: httpx.Response

    async def aclose(self) -> None:
        await self.api.aclose()


async def connect(
    endpoint: Endpoint,
    credentials: Credentials | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    verify: ssl.SSLContext | bool = True,
    oauth: bool = False,
) -> Connection:
    """Ping `endpoint` over each scheme in turn and return the first client that answered."""
    last: TransportError | None = None
    for scheme in endpoint.schemes:
        auth = DockerTokenAuth(endpoint.host, credentials, insecure=endpoint.insecure, oauth=oauth)
        # A scheme that does not answer is not retried: the next scheme is the retry.
        probe_retry = RetryPolicy(attempts=1) if len(endpoint.schemes) > 1 else retry
        api = RegistryClient(f"{scheme}://{endpoint.host}", auth=auth, transport=transport,
                             retry=probe_retry, verify=False if endpoint.insecure else verify)
        try:
            response = await api.ping()
        except TransportError as e:
            await api.aclose()
            last = e
            continue
        api.retry = retry or RetryPolicy()
        return Connection(api, auth, endpoint, response)
    assert last is not None
    raise last
