"""Which hosts are loopback: docker lets them use plain HTTP, and skip TLS verification, unasked."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """`localhost[:port]`, `127.x.y.z[:port]`, `[::1][:port]`."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
