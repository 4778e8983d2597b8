"""Verification of registry bearer tokens (JWTs), as distribution's `auth.token` does it.

The signing key is found from the token header, in this order: `kid` among the trusted keys
(libtrust key IDs and RFC 7638 thumbprints of the `rootcertbundle` certificates, JWKS key IDs,
the built-in token server's keys), an `x5c` certificate chain that leads to a `rootcertbundle`
certificate, or an embedded `jwk` that is itself trusted or carries such a chain. The algorithm
must be one the key's type can verify (so `none` and HS256-keyed-with-the-public-key never pass),
then pyjwt checks the signature, `iss`, `aud` (a string or a list naming the service), and
`exp`/`nbf`/`iat` with a leeway for clock skew. The `access` claim becomes a `Grant`.

    InvalidToken (ValueError)       any reason a token is not accepted; the message is for logs
     └── MalformedToken             not even a JWS: bad encoding or header
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from pyreg.registry.auth.keys import (
    PublicKey,
    algorithms_for,
    key_ids,
    load_certificates,
    public_key,
    spki,
)
from pyreg.registry.auth.scopes import Grant

log = logging.getLogger("pyreg.registry.auth")

LEEWAY = 60.0  # seconds, as distribution: clocks of token server and registry differ
MAX_TOKEN_BYTES = 16384
MAX_CHAIN = 5
_CACHE_SIZE = 4096


class InvalidToken(ValueError):
    pass


class MalformedToken(InvalidToken):
    pass


@dataclass
class TrustStore:
    """The keys and root certificates tokens may be signed under."""

    roots: list[x509.Certificate] = field(default_factory=list)
    keys: dict[str, PublicKey] = field(default_factory=dict)

    def add_key(self, key: PublicKey, kid: str | None = None) -> None:
        for name in (*key_ids(key), *([kid] if kid else [])):
            self.keys[name] = key

    def add_root(self, cert: x509.Certificate) -> None:
        self.roots.append(cert)
        self.add_key(public_key(cert.public_key()))

    def load_rootcertbundle(self, path: str) -> None:
        certs = load_certificates(path)
        if not certs:
            raise ValueError(f"{path}: no certificate in the bundle")
        for cert in certs:
            self.add_root(cert)

    def load_jwks(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                keyset = jwt.PyJWKSet.from_json(f.read())
        except (OSError, ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as e:
            raise ValueError(f"{path}: not a usable JWKS ({e})") from None
        for jwk in keyset.keys:
            if jwk.key_id and jwk.public_key_use in (None, "sig"):
                self.keys[jwk.key_id] = public_key(jwk.key)

    def key_by_id(self, kid: str) -> PublicKey | None:
        return self.keys.get(kid)

    def chain_key(self, x5c: Any, now: float) -> PublicKey:
        """The leaf key of an `x5c` chain that leads to one of the roots."""
        if not isinstance(x5c, list) or not 0 < len(x5c) <= MAX_CHAIN or not all(isinstance(c, str) for c in x5c):
            raise InvalidToken("malformed x5c chain")
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        except (ValueError, binascii.Error):
            raise InvalidToken("undecodable certificate in x5c") from None
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        root_ders = {r.public_bytes(serialization.Encoding.DER) for r in self.roots}
        current, pool = certs[0], certs[1:]
        for _ in range(MAX_CHAIN + 1):
            _check_validity(current, moment)
            if current.public_bytes(serialization.Encoding.DER) in root_ders:
                return public_key(certs[0].public_key())
            for root in self.roots:
                if _issued_by(current, root):
                    _check_validity(root, moment)
                    return public_key(certs[0].public_key())
            # Only CA certificates may sign the next link down, as x509 path validation demands.
            issuer = next((c for c in pool if _is_ca(c) and _issued_by(current, c)), None)
            if issuer is None:
                break
            current = issuer
        raise InvalidToken("x5c chain does not lead to a trusted root certificate")

    def embedded_key(self, jwk: Any, now: float) -> PublicKey:
        """The key in a `jwk` header: trusted only if known, or vouched for by its own x5c."""
        if not isinstance(jwk, dict):
            raise InvalidToken("malformed jwk header")
        try:
            key = public_key(jwt.PyJWK(jwk).key)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("unusable jwk header") from None
        trusted = self.keys.get(key_ids(key)[0])
        if trusted is not None and spki(trusted) == spki(key):
            return trusted
        if "x5c" in jwk and spki(self.chain_key(jwk["x5c"], now)) == spki(key):
            return key
        raise InvalidToken("untrusted jwk without a certificate chain")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_validity(cert: x509.Certificate, moment: datetime.datetime) -> None:
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise InvalidToken("a certificate in the chain is outside its validity period")


class TokenVerifier:
    """Verifies bearer tokens for one service; remembers recent good ones, as clients resend the
    same token on every request and a signature check costs more than the request itself."""

    def __init__(self, issuer: str, service: str, trust: TrustStore,
                 algorithms: Sequence[str] | None = None, leeway: float = LEEWAY) -> None:
        self.issuer = issuer
        self.service = service
        self.trust = trust
        self.algorithms = frozenset(algorithms) if algorithms else None
        self.leeway = leeway
        self._cache: dict[str, tuple[Grant, float]] = {}

    def verify(self, raw: str, now: float | None = None) -> Grant:
        now = time.time() if now is None else now
        cached = self._cache.get(raw)
        if cached is not None:
            grant, expires = cached
            if now <= expires + self.leeway:
                return grant
            del self._cache[raw]
            raise InvalidToken("token expired")
        claims = self.decode(raw, now)
        subject = claims.get("sub")
        grant = Grant.from_claim(subject if isinstance(subject, str) else "", claims.get("access"))
        if len(self._cache) >= _CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[raw] = (grant, float(claims["exp"]))
        return grant

    def decode(self, raw: str, now: float | None = None) -> dict[str, Any]:
        """The claims of a token that passes every check (uncached)."""
        now = time.time() if now is None else now
        if len(raw) > MAX_TOKEN_BYTES or raw.count(".") != 2:
            raise MalformedToken("not a compact JWS")
        try:
            header = jwt.get_unverified_header(raw)
        except (jwt.PyJWTError, ValueError):
            raise MalformedToken("undecodable header") from None
        alg = header.get("alg")
        try:
            key = self._signing_key(header, now)
        except (jwt.PyJWTError, ValueError, TypeError) as e:  # a key type or curve pyreg lacks
            raise InvalidToken(f"unusable signing key: {type(e).__name__}") from None
        allowed = algorithms_for(key)
        if self.algorithms is not None:
            allowed = tuple(a for a in allowed if a in self.algorithms)
        if not isinstance(alg, str) or alg not in allowed:
            raise InvalidToken(f"algorithm {str(alg)[:20]!r} not accepted for this key")
        try:
            claims: dict[str, Any] = jwt.decode(
                raw, key=key, algorithms=[alg], audience=self.service, issuer=[self.issuer],
                leeway=self.leeway, options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise InvalidToken(f"{type(e).__name__}: {e}") from None
        if now > float(claims["exp"]) + self.leeway:  # pyjwt reads the clock itself; so do we
            raise InvalidToken("token expired")
        return claims

    def _signing_key(self, header: dict[str, Any], now: float) -> PublicKey:
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            key = self.trust.key_by_id(kid)
            if key is not None:
                return key
        if "x5c" in header:
            return self.trust.chain_key(header["x5c"], now)
        if "jwk" in header:
            return self.trust.embedded_key(header["jwk"], now)
        raise InvalidToken("token signed by an unknown key")


def build_trust(rootcertbundle: str | None, jwks: str | None, keys: Iterable[PublicKey] = ()) -> TrustStore:
    trust = TrustStore()
    if rootcertbundle:
        trust.load_rootcertbundle(rootcertbundle)
    if jwks:
        trust.load_jwks(jwks)
    for key in keys:
        trust.add_key(key)
    if not trust.keys:
        raise ValueError("token auth needs at least one signing key (rootcertbundle, jwks or server)")
    return trust
