"""Token signing keys: key IDs as token servers write them, generation, loading and rotation.

Token servers name their signing key in the JWT header. distribution 2.x and the servers built
for it (docker_auth, Harbor) use libtrust's key ID: SHA-256 of the DER SubjectPublicKeyInfo, first
240 bits, base32, in twelve groups of four joined by ':'. distribution 3 uses the RFC 7638 JWK
thumbprint. A key is known here under both, so either kind of token server works unchanged.

The built-in token server signs with one current key and keeps trusting the previous ones, so
tokens issued before a rotation stay valid until they expire. Each key has a self-signed
certificate beside it (`<key stem>.crt`) that an external registry can use as `rootcertbundle`.

    KeyFileError (ValueError)   an unreadable, unsupported or mismatched key or certificate file
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID

log = logging.getLogger("pyreg.registry.auth")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
PrivateKey = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
              | ed448.Ed448PrivateKey)
_CURVE_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class KeyFileError(ValueError):
    pass


def public_key(key: PublicKeyTypes | PrivateKeyTypes) -> PublicKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                  | ed448.Ed448PrivateKey):
        key = key.public_key()
    if not isinstance(key, PublicKey):
        raise KeyFileError(f"unsupported key type {type(key).__name__} (RSA, EC or Ed25519)")
    return key


def spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def libtrust_key_id(key: PublicKey) -> str:
    """libtrust's `keyIDFromCryptoKey`: `ABCD:EFGH:…`, 12 groups of 4."""
    encoded = base64.b32encode(hashlib.sha256(spki(key)).digest()[:30]).decode()
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638: SHA-256 of the required JWK members, sorted, without whitespace."""
    full: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[
        default_algorithm(key)].to_jwk(key))
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    members = {k: full[k] for k in required[full["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def key_ids(key: PublicKey) -> tuple[str, str]:
    return libtrust_key_id(key), jwk_thumbprint(key)


def algorithms_for(key: PublicKey) -> tuple[str, ...]:
    """The JWS algorithms this key can verify: the key's type decides, never the token, so a
    public key can never be mistaken for an HMAC secret."""
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALGS.get(key.curve.name)
        return (alg,) if alg else ()
    return ("EdDSA",)


def default_algorithm(key: PublicKey) -> str:
    algs = algorithms_for(key)
    if not algs:
        raise KeyFileError("unsupported elliptic curve (P-256, P-384 or P-521)")
    return algs[0]


@dataclass(frozen=True)
class SigningKey:
    """The token server's private key and the certificate that vouches for it."""

    private: PrivateKey
    certificate: x509.Certificate
    path: str | None = None

    @property
    def public(self) -> PublicKey:
        return public_key(self.private)

    @property
    def kid(self) -> str:
        return libtrust_key_id(self.public)

    @property
    def algorithm(self) -> str:
        return default_algorithm(self.public)

    def sign(self, claims: dict[str, Any]) -> str:
        # kid for distribution 2.x and libtrust-style verifiers, x5c for distribution 3 (which
        # keys its root certificates by thumbprint): both accept the token.
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        headers = {"typ": "JWT", "kid": self.kid, "x5c": [base64.b64encode(der).decode()]}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def generate_private_key() -> PrivateKey:
    # P-256: small tokens, fast signatures, and every registry implementation verifies ES256.
    return ec.generate_private_key(ec.SECP256R1())


def self_signed(key: PrivateKey) -> x509.Certificate:
    pub = public_key(key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pyreg token signer {libtrust_key_id(pub)[:14]}")])
    now = datetime.datetime.now(datetime.UTC)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, algorithm)
    )


def certificate_path(key_path: str) -> str:
    return os.path.splitext(key_path)[0] + ".crt"


def _write_new(path: str, data: bytes, mode: int) -> bool:
    """Create `path` with `data` atomically; False when it already exists (another worker won)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        # link() fails if the name exists: two workers starting at once never both write a key.
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)


def load_signing_key(path: str) -> SigningKey:
    """The key at `path`, generated (with its certificate) if the file does not exist yet."""
    if not os.path.exists(path):
        key = generate_private_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        if _write_new(path, pem, 0o600):
            log.warning("generated a token signing key in %s (kid %s)", path, libtrust_key_id(key.public_key()))
    try:
        with open(path, "rb") as f:
            loaded = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not a usable PEM private key ({type(e).__name__})") from None
    if not isinstance(loaded, PrivateKey):
        raise KeyFileError(f"{path}: unsupported key type {type(loaded).__name__} (RSA, EC or Ed25519)")
    default_algorithm(public_key(loaded))
    cert_path = certificate_path(path)
    if not os.path.exists(cert_path):
        _write_new(cert_path, self_signed(loaded).public_bytes(serialization.Encoding.PEM), 0o644)
    certs = load_certificates(cert_path)
    if not certs or spki(public_key(certs[0].public_key())) != spki(public_key(loaded)):
        raise KeyFileError(f"{cert_path}: the certificate is not for the key in {path}")
    return SigningKey(loaded, certs[0], path)


def ephemeral_signing_key() -> SigningKey:
    """A key that lives as long as the process (in-memory storage has nowhere to keep one)."""
    key = generate_private_key()
    return SigningKey(key, self_signed(key))


def load_certificates(path: str) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: not a PEM certificate bundle ({e})") from None


def load_public_keys(path: str) -> list[PublicKey]:
    """The public keys in a PEM file of certificates, public keys or private keys (rotation)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror}") from None
    if b"CERTIFICATE-----" in data:
        return [public_key(c.public_key()) for c in load_certificates(path)]
    try:
        if b"PRIVATE KEY-----" in data:
            return [public_key(serialization.load_pem_private_key(data, password=None))]
        return [public_key(serialization.load_pem_public_key(data))]
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not a PEM key ({type(e).__name__})") from None
