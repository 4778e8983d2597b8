"""Content digests (`<algorithm>:<encoded>`), as the OCI image spec defines them.

A `Digest` is a value type: parsed and validated once at the boundary, then passed around.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from pyreg.oci import OCIError


class DigestError(OCIError):
    """A digest that does not parse, or one whose algorithm pyreg does not support."""


# Registered algorithms and the exact shape of their encoded part (lowercase hex only).
_ENCODED = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}
# The image spec's general grammar, used to tell "malformed" from "unsupported".
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

ALGORITHMS = tuple(_ENCODED)


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not _GRAMMAR.fullmatch(value):
            raise DigestError(f"invalid digest {value!r}")
        algorithm, _, encoded = value.partition(":")
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        if not pattern.fullmatch(encoded):
            raise DigestError(f"invalid {algorithm} digest {value!r}")
        return cls(algorithm, encoded)

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
    if algorithm not in _ENCODED:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    h: Hasher = hashlib.new(algorithm, data)
    return h
