"""Request authentication: JWS in the flattened JSON serialization (RFC 8555 §6.2).

Sans-I/O: ``parse_jws`` reads the body, ``parse_jwk`` the account key, ``verify_signature``
checks the signature with the key it is given. ``protocols.acme.requests`` joins them to the
nonce and account stores.

Account keys are ES256, ES384, RS256 (josepy) and EdDSA with Ed25519 (RFC 8037, which josepy
lacks, so the OKP key is read here with cryptography). "none" and MAC algorithms are refused:
RFC 8555 §6.2: the "alg" "MUST NOT be "none"" and "MUST NOT be a Message Authentication Code
(MAC)-based algorithm". MACs are used only inside External Account Binding (``eab_verify``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from josepy import errors as jose_errors
from josepy.jwa import ES256, ES384, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from protocols.acme.problems import ACMEProblem, ProblemType, unauthorized
from server.web.jsonreader import read_json, read_json_object

ALGORITHMS = ("ES256", "ES384", "RS256", "EdDSA")
_JOSEPY_ALGS: dict[str, JWASignature] = {"ES256": ES256, "ES384": ES384, "RS256": RS256}
_EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
_EAB_ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*\Z")


def b64decode(text: object, what: str) -> bytes:
    """RFC 7515 §2: base64url "with all trailing '=' characters omitted ... and without the
    inclusion of any line breaks, whitespace, or other additional characters"; anything else
    is malformed. Strict, so that each octet string has one spelling: only the alphabet, and
    the last character's unused bits zero (decoded and encoded again, it must be the text).
    A lax decoder skipped other characters and ignored those bits, so a used nonce, or an
    account key, spelled otherwise passed for a new one."""
    if not isinstance(text, str) or not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise ACMEProblem(ProblemType.MALFORMED, f"{what} is not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64encode(data) != text:
        raise ACMEProblem(ProblemType.MALFORMED, f"{what} is not canonical base64url")
    return data


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class AccountKey:
    """A public key as a JWK, with its RFC 7638 thumbprint (base64url)."""

    jwk: dict[str, Any]  # the public members only
    key: PublicKey
    thumbprint: str

    def allows(self, alg: str) -> bool:
        match self.key:
            case ec.EllipticCurvePublicKey():
                curve = _EC_CURVES.get(alg)
                return curve is not None and isinstance(self.key.curve, curve)
            case rsa.RSAPublicKey():
                return alg == "RS256"
            case ed25519.Ed25519PublicKey():
                return alg == "EdDSA"


def parse_jwk(obj: object) -> AccountKey:
    """An account public key from a JWK: EC P-256/P-384, RSA (2048 bits or more), Ed25519.

    Every request parses its account's key, so parsed keys are cached by their JSON text
    (an AccountKey is immutable; a refused key raises again each time)."""
    if not isinstance(obj, dict):
        raise ACMEProblem(ProblemType.MALFORMED, '"jwk" must be a JSON object')
    try:
        text = json.dumps(obj, sort_keys=True)
    except (TypeError, ValueError):
        raise ACMEProblem(ProblemType.MALFORMED, '"jwk" must be a JSON object') from None
    return _parse_jwk_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_jwk_text(text: str) -> AccountKey:
    obj = json.loads(text)
    if "d" in obj or "p" in obj or "k" in obj:
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, '"jwk" must be a public key')
    if obj.get("kty") == "OKP":
        return _parse_okp(obj)
    if obj.get("kty") not in ("EC", "RSA"):
        raise ACMEProblem(
            ProblemType.BAD_PUBLIC_KEY, f"key type {obj.get('kty')!r} is not EC, RSA or OKP"
        )
    # josepy decodes the key's members with str methods: any other JSON type would be an
    # AttributeError inside it, not one of the errors below.
    members = ("n", "e") if obj["kty"] == "RSA" else ("crv", "x", "y")
    if not all(isinstance(obj.get(m), str) for m in members):
        raise ACMEProblem(
            ProblemType.BAD_PUBLIC_KEY, f"the JWK members {', '.join(members)} must be strings"
        )
    # josepy's decoder skips characters outside the alphabet: read the members strictly first.
    for member in ("x", "y") if obj["kty"] == "EC" else ("n", "e"):
        b64decode(obj.get(member), f'the JWK "{member}"')
    try:
        parsed = JWK.from_json(obj)
        assert isinstance(parsed, JWK)  # noqa: S101 - from_json of the base class
        key = parsed.key._wrapped
    except (jose_errors.Error, ValueError, TypeError, KeyError) as exc:
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, "the JWK is not a valid public key") from exc
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, f"RSA keys need {MIN_RSA_BITS} bits or more")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(
        key.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, "EC keys must be on P-256 or P-384")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, "the JWK is not a public key")
    # RFC 7638 §3: the thumbprint is over the key's members as josepy encodes them again from
    # the key (EC coordinates at the curve's size, RSA integers in their fewest octets), so
    # one key has one thumbprint however the JWK spelled it. An RSA "n" or "e" with leading
    # zero octets is accepted thus re-encoded: RFC 7518 §6.3.1.1 notes libraries that add
    # one, and refusing it would refuse their users for no gain once the thumbprint is one.
    public = parsed.public_key().to_partial_json()
    return AccountKey(public, key, b64encode(parsed.thumbprint()))


def _parse_okp(obj: dict[str, Any]) -> AccountKey:
    if obj.get("crv") != "Ed25519":
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, "OKP keys must be Ed25519")
    raw = b64decode(obj.get("x"), 'the JWK "x"')
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ACMEProblem(ProblemType.BAD_PUBLIC_KEY, "the Ed25519 key is malformed") from exc
    # RFC 8037 §2: the thumbprint's required members are "crv", "kty" and "x"; "x" encoded
    # again from the key's octets, so that one key has one thumbprint (RFC 7638 §3).
    public = {"crv": "Ed25519", "kty": "OKP", "x": b64encode(raw)}
    return AccountKey(public, key, _okp_thumbprint(public))


def _okp_thumbprint(public: dict[str, str]) -> str:
    canonical = json.dumps(public, separators=(",", ":"), sort_keys=True).encode()
    return b64encode(hashlib.sha256(canonical).digest())


def thumbprint_of(key: object) -> str | None:
    """The RFC 7638 thumbprint an account with this public key has (as ``parse_jwk`` computes
    it), or None for a key no account can have (DSA, X25519...)."""
    match key:
        case rsa.RSAPublicKey():
            return b64encode(JWKRSA(key=key).thumbprint())
        case ec.EllipticCurvePublicKey():
            return b64encode(JWKEC(key=key).thumbprint())
        case ed25519.Ed25519PublicKey():
            raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            return _okp_thumbprint({"crv": "Ed25519", "kty": "OKP", "x": b64encode(raw)})
        case _:
            return None


@dataclass(frozen=True, slots=True)
class JWS:
    """A flattened JWS: the decoded protected header, the payload and the signature."""

    protected: dict[str, Any]
    protected_b64: str
    payload_b64: str
    payload: bytes
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode()

    @property
    def alg(self) -> str:
        return str(self.protected.get("alg"))

    def payload_json(self) -> dict[str, Any]:
        return read_json_object(self.payload, what="the JWS payload")


def parse_jws(body: bytes | object) -> JWS:
    """RFC 8555 §6.2: flattened JSON serialization only; no unprotected header; one
    signature; no unencoded payload."""
    if isinstance(body, bytes | str):
        body = read_json(body)
    if not isinstance(body, dict):
        raise ACMEProblem(ProblemType.MALFORMED, "the body must be a flattened JWS object")
    if "signatures" in body:
        raise ACMEProblem(ProblemType.MALFORMED, "the JWS MUST NOT have multiple signatures")
    if "header" in body:
        raise ACMEProblem(ProblemType.MALFORMED, "the JWS Unprotected Header MUST NOT be used")
    extra = set(body) - {"protected", "payload", "signature"}
    if extra or not {"protected", "payload", "signature"} <= set(body):
        raise ACMEProblem(
            ProblemType.MALFORMED, "a JWS has exactly protected, payload and signature"
        )
    # RFC 7515 §4: "JWS parsers MUST either reject JWSs with duplicate Header Parameter
    # names or use a JSON parser that returns only the lexically last": read_json rejects.
    protected = read_json_object(
        b64decode(body["protected"], '"protected"'), what="the protected header"
    )
    if protected.get("b64") is False or "crit" in protected:
        raise ACMEProblem(ProblemType.MALFORMED, "the unencoded payload option MUST NOT be used")
    return JWS(
        protected=protected,
        protected_b64=body["protected"],
        payload_b64=body["payload"],
        payload=b64decode(body["payload"], '"payload"'),
        signature=b64decode(body["signature"], '"signature"'),
    )


def check_algorithm(jws: JWS) -> None:
    if jws.alg not in ALGORITHMS:
        raise ACMEProblem(
            ProblemType.BAD_SIGNATURE_ALGORITHM,
            f"algorithm {jws.alg!r} is not accepted for account keys",
            extra={"algorithms": list(ALGORITHMS)},
        )


def verify_signature(jws: JWS, key: AccountKey) -> None:
    """The signature must verify with ``key`` under the header's algorithm, which must suit
    the key (ES256 with P-256...). Raises malformed on failure."""
    check_algorithm(jws)
    if not key.allows(jws.alg):
        raise ACMEProblem(
            ProblemType.BAD_SIGNATURE_ALGORITHM,
            f"algorithm {jws.alg} does not match the account key",
            extra={"algorithms": list(ALGORITHMS)},
        )
    if isinstance(key.key, ed25519.Ed25519PublicKey):
        try:
            key.key.verify(jws.signature, jws.signing_input)
            is_valid = True
        except InvalidSignature:
            is_valid = False
    else:
        is_valid = _JOSEPY_ALGS[jws.alg].verify(key.key, jws.signing_input, jws.signature)
    if not is_valid:
        raise ACMEProblem(ProblemType.MALFORMED, "JWS verification error: bad signature")


def eab_verify(jws: JWS, hmac_key: bytes) -> None:
    """RFC 8555 §7.3.4: the binding is a JWS MACed with the EAB key (HS256/384/512)."""
    digest = _EAB_ALGS.get(jws.alg)
    if digest is None:
        raise ACMEProblem(
            ProblemType.BAD_SIGNATURE_ALGORITHM,
            f"externalAccountBinding algorithm {jws.alg!r} is not HS256, HS384 or HS512",
        )
    expected = hmac.new(hmac_key, jws.signing_input, digest).digest()
    if not hmac.compare_digest(expected, jws.signature):
        raise unauthorized("the externalAccountBinding MAC does not verify")
