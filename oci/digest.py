"""Content digests (`<algorithm>:<encoded>`), as the OCI image spec defines them.

A `Digest` is a value type: parsed and validated once at the boundary, then passed around.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

from pyreg.oci import OCIError


class DigestError(OCIError):
    """A digest that does not parse, or one whose algorithm pyreg does not support."""


# Registered algorithms and the length of their encoded part (lowercase hex only).
_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX = "0123456789abcdef"
# The image spec's general grammar, used to tell "malformed" from "unsupported".
_GRAMMAR = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"

ALGORITHMS = tuple(_LENGTHS)


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


class Digest(NamedTuple):
    """Immutable, hashable and ordered (by algorithm, then encoded)."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        algorithm, _, encoded = value.partition(":")
        length = _LENGTHS.get(algorithm)
        if length is not None and len(encoded) == length and not encoded.strip(_HEX):
            return cls(algorithm, encoded)
        # Not a valid digest: say why.
        if not re.fullmatch(_GRAMMAR, value):
            raise DigestError(f"invalid digest {value!r}")
        if length is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        raise DigestError(f"invalid {algorithm} digest {value!r}")

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, new_hasher(algorithm, data).hexdigest())

    def hasher(self) -> Hasher:
        """A fresh hasher of this digest's algorithm."""
        return new_hasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    def __repr__(self) -> str:
        return f"Digest('{self}')"


def new_hasher(algorithm: str, data: bytes = b"") -> Hasher:
    if algorithm not in _LENGTHS:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    import hashlib  # only when hashing: its import (OpenSSL) costs 2.5 ms of start-up

    h: Hasher = hashlib.new(algorithm, data)
    return h
