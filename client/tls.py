"""The TLS trust of registry connections: httpx's (certifi, or `$SSL_CERT_FILE` / `$SSL_CERT_DIR`),
loaded when the first TLS connection needs it.

httpx builds and loads a verifying context for every client it makes, TLS or not: about 25 ms of
CA bundle parsing, a tenth of a small pull, spent for nothing when the registry is plain HTTP
(loopback, insecure). One context per process, whose certificates are loaded by the first
handshake, costs nothing until then and verifies exactly as httpx's would after.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

_lock = threading.Lock()
_shared: ssl.SSLContext | None = None


class LazyTrustContext(ssl.SSLContext):
    """A verifying client context that loads its CA certificates at the first handshake."""

    _loaded = False

    def _load(self) -> None:
        with _lock:
            if self._loaded:
                return
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._loaded = True

    # Every way a handshake starts: asyncio and anyio wrap BIOs, blocking code wraps sockets.
    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return super().wrap_socket(*args, **kwargs)


def verifying_context() -> ssl.SSLContext:
    """The process's verifying context, as `ssl.create_default_context()` sets one up."""
    global _shared
    with _lock:
        if _shared is None:
            # PROTOCOL_TLS_CLIENT: hostname checked, certificate required, as create_default_context
            _shared = LazyTrustContext(ssl.PROTOCOL_TLS_CLIENT)
        return _shared


def trust(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    """What to give httpx as `verify`: the shared lazy context for the default trust."""
    return verifying_context() if verify is True else verify
