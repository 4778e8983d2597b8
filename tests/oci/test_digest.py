from __future__ import annotations

import hashlib

import pytest

from pyreg.oci.digest import Digest, DigestError

SHA256 = "sha256:" + "a" * 64
SHA512 = "sha512:" + "b" * 128


def test_parse_round_trips() -> None:
    for value in (SHA256, SHA512):
        d = Digest.parse(value)
        assert str(d) == value
        assert Digest.parse(str(d)) == d


def test_from_bytes_matches_hashlib() -> None:
    assert Digest.from_bytes(b"abc").encoded == hashlib.sha256(b"abc").hexdigest()
    assert Digest.from_bytes(b"abc", "sha512").encoded == hashlib.sha512(b"abc").hexdigest()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "A" * 64,  # uppercase hex is not canonical
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,  # well-formed but unsupported
        "sha256:../../etc/passwd",
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_invalid_digests_are_rejected(value: str) -> None:
    with pytest.raises(DigestError):
        Digest.parse(value)


def test_hasher_is_of_the_digest_algorithm() -> None:
    d = Digest.parse(SHA512)
    h = d.hasher()
    h.update(b"x")
    assert h.hexdigest() == hashlib.sha512(b"x").hexdigest()
