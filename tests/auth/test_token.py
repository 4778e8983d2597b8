"""Token verification: every way to forge or misuse a token, at the verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pyreg.registry.auth.keys import jwk_thumbprint, libtrust_key_id
from pyreg.registry.auth.token import (
    InvalidToken,
    MalformedToken,
    TokenVerifier,
    TrustStore,
    build_trust,
)
from tests.auth.conftest import ISSUER, SERVICE, Signer, b64der, certificate, repo_access, unsigned


@pytest.fixture
def verifier(bundle: Path) -> TokenVerifier:
    return TokenVerifier(ISSUER, SERVICE, build_trust(str(bundle), None))


def test_libtrust_key_id_shape_and_known_value() -> None:
    # A fixed P-256 key: the ID follows libtrust's recipe, recomputed here independently.
    key = ec.derive_private_key(42, ec.SECP256R1()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    expected = ":".join(b32[i:i + 4] for i in range(0, 48, 4))
    assert libtrust_key_id(key) == expected
    assert len(expected.split(":")) == 12 and all(len(g) == 4 for g in expected.split(":"))


def test_a_good_token_grants_its_access(verifier: TokenVerifier, signer: Signer) -> None:
    grant = verifier.verify(signer.mint([repo_access("a/b", "pull", "push")]))
    assert grant.subject == "alice"
    assert grant.allows("repository", "a/b", "push")
    assert not grant.allows("repository", "a/b", "delete")
    assert not grant.allows("repository", "a/c", "pull")


def test_key_found_by_thumbprint_x5c_and_jwks(tmp_path: Path, bundle: Path, signer: Signer) -> None:
    verifier = TokenVerifier(ISSUER, SERVICE, build_trust(str(bundle), None))
    claims = signer.claims()
    by_thumbprint = jwt.encode(claims, signer.key, "RS256", headers={"kid": jwk_thumbprint(signer.key.public_key())})
    by_chain = jwt.encode(claims, signer.key, "RS256", headers={"x5c": [b64der(signer.cert)]})
    for token in (by_thumbprint, by_chain):
        assert verifier.verify(token).subject == "alice"
    # A JWKS file, as distribution 3 takes it.
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "my-key", "use": "sig"}]}))
    verifier = TokenVerifier(ISSUER, SERVICE, build_trust(None, str(jwks)))
    assert verifier.verify(jwt.encode(claims, key, "ES256", headers={"kid": "my-key"})).subject == "alice"


def test_x5c_through_an_intermediate(tmp_path: Path, signer: Signer) -> None:
    verifier = TokenVerifier(ISSUER, SERVICE, TrustStore())
    verifier.trust.add_root(signer.cert)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = certificate("intermediate", inter_key, signer.key, issuer="external token server")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("leaf", leaf_key, inter_key, issuer="intermediate", ca=False)
    token = jwt.encode(signer.claims(), leaf_key, "ES256", headers={"x5c": [b64der(leaf), b64der(inter)]})
    assert verifier.verify(token).subject == "alice"
    # Without the intermediate, or with a leaf acting as an intermediate, the chain breaks.
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(signer.claims(), leaf_key, "ES256", headers={"x5c": [b64der(leaf)]}))
    fake_key = ec.generate_private_key(ec.SECP256R1())
    fake = certificate("fake", fake_key, leaf_key, issuer="leaf", ca=False)
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(signer.claims(), fake_key, "ES256",
                                   headers={"x5c": [b64der(fake), b64der(leaf), b64der(inter)]}))


def test_self_signed_x5c_that_is_not_a_root(verifier: TokenVerifier, other_signer: Signer) -> None:
    token = jwt.encode(other_signer.claims(), other_signer.key, "RS256", headers={"x5c": [b64der(other_signer.cert)]})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_audience_may_be_a_list(verifier: TokenVerifier, signer: Signer) -> None:
    assert verifier.verify(signer.mint(aud=["other", SERVICE])).subject == "alice"
    with pytest.raises(InvalidToken):
        verifier.verify(signer.mint(aud=["other", "another"]))


@pytest.mark.parametrize("overrides", [
    {"exp": int(time.time()) - 120},  # expired beyond the leeway
    {"nbf": int(time.time()) + 120},  # not yet valid
    {"iat": int(time.time()) + 120},  # issued in the future
    {"aud": "another-service"},
    {"aud": None},
    {"iss": "someone-else"},
    {"iss": None},
    {"exp": None},
    {"iss": ISSUER[:-1]},  # a prefix is no match
])
def test_claims_that_fail(verifier: TokenVerifier, signer: Signer, overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(signer.mint(**overrides))


def test_leeway_covers_small_clock_skew(verifier: TokenVerifier, signer: Signer) -> None:
    assert verifier.verify(signer.mint(exp=int(time.time()) - 30)).subject == "alice"
    assert verifier.verify(signer.mint(nbf=int(time.time()) + 30)).subject == "alice"


def test_bad_signature_and_forged_access(verifier: TokenVerifier, signer: Signer) -> None:
    token = signer.mint([repo_access("a", "pull")])
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"] = [repo_access("a", "*"), repo_access("b", "*")]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{forged}.{signature}")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{payload}.{flipped}")


def test_untrusted_key_with_a_trusted_kid(verifier: TokenVerifier, signer: Signer, other_signer: Signer) -> None:
    token = jwt.encode(signer.claims([repo_access("a", "*")]), other_signer.key, "RS256",
                       headers={"kid": signer.kid})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_alg_none(verifier: TokenVerifier, signer: Signer) -> None:
    claims = signer.claims([repo_access("a", "*")])
    for alg in ("none", "None", "NONE"):
        with pytest.raises(InvalidToken):
            verifier.verify(unsigned({"alg": alg, "typ": "JWT", "kid": signer.kid}, claims))


def test_hs256_signed_with_the_public_key(verifier: TokenVerifier, signer: Signer) -> None:
    """Algorithm confusion: an HMAC keyed with the trusted public key (PEM or DER)."""
    claims = signer.claims([repo_access("a", "*")])
    pub = signer.key.public_key()
    for secret in (pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
                   pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
                   signer.cert.public_bytes(serialization.Encoding.PEM)):
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            header = {"alg": alg, "typ": "JWT", "kid": signer.kid}
            body = unsigned(header, claims).rsplit(".", 1)[0]
            mac = hmac.new(secret, body.encode(), digest).digest()
            with pytest.raises(InvalidToken):
                verifier.verify(body + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode())


def test_algorithm_must_fit_the_key(verifier: TokenVerifier, signer: Signer) -> None:
    claims = signer.claims()
    with pytest.raises(InvalidToken):  # an RSA key does not verify ES256
        verifier.verify(jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256",
                                   headers={"kid": signer.kid}))
    restricted = TokenVerifier(ISSUER, SERVICE, verifier.trust, algorithms=["ES256"])
    with pytest.raises(InvalidToken):  # signingalgorithms excludes RS256
        restricted.verify(signer.mint())


def test_eddsa(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    trust = TrustStore()
    trust.add_key(key.public_key())
    verifier = TokenVerifier(ISSUER, SERVICE, trust)
    claims = {"iss": ISSUER, "aud": SERVICE, "exp": int(time.time()) + 60, "sub": "e"}
    token = jwt.encode(claims, key, "EdDSA", headers={"kid": libtrust_key_id(key.public_key())})
    assert verifier.verify(token).subject == "e"


def test_embedded_jwk_must_be_trusted(verifier: TokenVerifier, signer: Signer, other_signer: Signer) -> None:
    def with_jwk(key: rsa.RSAPrivateKey) -> str:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return jwt.encode(signer.claims(), key, "RS256", headers={"jwk": jwk})

    assert verifier.verify(with_jwk(signer.key)).subject == "alice"
    with pytest.raises(InvalidToken):
        verifier.verify(with_jwk(other_signer.key))


@pytest.mark.parametrize("raw", ["", "abc", "a.b", "a.b.c.d", "!!!.???.***", "e30.e30.", "x" * 20000 + ".a.b"])
def test_malformed_tokens(verifier: TokenVerifier, raw: str) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(raw)


def test_no_key_at_all(verifier: TokenVerifier, signer: Signer) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(signer.claims(), signer.key, "RS256"))
    with pytest.raises(MalformedToken):
        verifier.verify("a.b.c")


def test_cached_tokens_still_expire(verifier: TokenVerifier, signer: Signer) -> None:
    token = signer.mint(exp=int(time.time()) + 5)
    assert verifier.verify(token).subject == "alice"
    assert verifier.verify(token).subject == "alice"  # from the cache
    with pytest.raises(InvalidToken):
        verifier.verify(token, now=time.time() + 5 + 61)


def test_trust_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_trust(None, None)
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(ValueError):
        build_trust(str(empty), None)


def test_unsupported_key_types_are_refused_not_crashed(verifier: TokenVerifier, signer: Signer) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    token = jwt.encode(signer.claims(), key, "ES256K", headers={"jwk": jwk})
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    for header in ({"kid": ["x"]}, {"x5c": "notalist"}, {"x5c": ["!!"]}, {"jwk": "x"}, {"jwk": {"kty": "EC"}}):
        with pytest.raises(InvalidToken):
            verifier.verify(unsigned({"alg": "RS256", **header}, signer.claims(), b"sig"))


def test_mutated_tokens_only_ever_fail_cleanly(verifier: TokenVerifier, signer: Signer) -> None:
    import random

    rng = random.Random(6)
    token = signer.mint([repo_access("a", "pull")])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \"{}"
    for _ in range(400):
        chars = list(token)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        mutated = "".join(chars)
        try:
            grant = verifier.verify(mutated)
        except InvalidToken:
            continue
        # Only a change in the unused low bits of the signature's last base64 character can
        # leave the token valid: then it grants exactly what the original did.
        assert mutated.rsplit(".", 1)[0] == token.rsplit(".", 1)[0]
        assert grant.claim() == [repo_access("a", "pull")]
