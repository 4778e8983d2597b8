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


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("sha256:" + "A" * 64, "invalid sha256 digest"),
        ("sha512:" + "a" * 64, "invalid sha512 digest"),
        ("sha256:../../etc/passwd", "invalid digest"),
        ("sha256", "invalid digest"),
    ],
)
def test_errors_say_why(value: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        Digest.parse(value)


def test_digests_are_ordered_immutable_values() -> None:
    a, b = Digest.parse(SHA256), Digest.parse("sha256:" + "b" * 64)
    assert sorted([b, a]) == [a, b] and {a: 1}[Digest("sha256", "a" * 64)] == 1
    assert repr(a) == f"Digest('{SHA256}')"
    with pytest.raises(AttributeError):
        a.encoded = "b" * 64  # type: ignore[misc]
