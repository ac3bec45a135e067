"""PKIMessage protection (RFC 4210 §5.1.3, RFC 9481 §6): verify a request's, produce an
answer's.

- MAC-based, with a shared secret: PasswordBasedMac (RFC 4210 §5.1.3.1, RFC 9481 §6.1.1:
  what ``openssl cmp -secret`` sends) and PBMAC1 (RFC 9481 §6.1.2: PBKDF2 with an HMAC-SHA2
  PRF, then HMAC-SHA2). An answer to a MAC-protected request is protected with the same
  scheme and parameters, a fresh salt and the same secret.
- Signature-based (RFC 9481 §3): ECDSA, RSA PKCS #1 v1.5 and Ed25519 over the DER
  ProtectedPart, verified with the first certificate of extraCerts (RFC 9483 §3.3); whether
  that certificate is trusted is the caller's decision. Answers are signed with the CA-held
  response key.

Every refusal is a ``CMPFailure``: badAlg for an algorithm or parameter certforge does not
take, badMessageCheck for a MAC or signature that does not verify. MACs are compared in
constant time. Iteration counts are bounded: the sender chooses them, and an unbounded one
would let any client make the server hash for as long as it likes before the MAC is checked.

Deliberately not supported: DHBasedMac, KEM-based MAC (RFC 9481 §6.1.3), RSASSA-PSS and
SHA-1 in signatures.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc4210, rfc5280, rfc8018

from protocols.cmp.failinfo import CMPFailure, FailInfo
from protocols.cmp.messages import ASN1
from server import csprng

ID_PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13"  # noqa: S105 - an OID
ID_PBMAC1 = "1.2.840.113549.1.5.14"
ID_PBKDF2 = "1.2.840.113549.1.5.12"

# RFC 9481 §6.2.1 (HMAC-SHA2) and, for PasswordBasedMac only, hmac-sha1 (1.3.6.1.5.5.8.1.2),
# which is ``openssl cmp -mac``'s default: HMAC-SHA1 is still a sound MAC.
_HMACS: dict[str, str] = {
    "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
_PBM_MACS = {**_HMACS, "1.3.6.1.5.5.8.1.2": "sha1", "1.2.840.113549.2.7": "sha1"}
_HMAC_OID = {name: oid for oid, name in _HMACS.items()}
# RFC 9481 §2: SHA-2 one-way functions for PasswordBasedMac.
_OWFS: dict[str, str] = {
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_OWF_OID = {name: oid for oid, name in _OWFS.items()}

# RFC 9045 §4.4 (PBMParameter, shared by CMP): "The iterationCount MUST be a minimum of 100."
MIN_ITERATIONS = 100
# PasswordBasedMac runs one hash per iteration in Python: 10,000 is a few milliseconds, 100
# times openssl's 500. PBKDF2 runs in C, so its cap is ten times higher.
MAX_PBM_ITERATIONS = 10_000
MAX_PBKDF2_ITERATIONS = 100_000
SALT_BYTES = 16
MAX_SALT_BYTES = 64


@dataclass(frozen=True, slots=True)
class MACScheme:
    """How a request was MAC-protected, so that the answer is protected alike."""

    kind: Literal["pbm", "pbmac1"]
    owf: str  # PBM: the one-way function; PBMAC1: PBKDF2's PRF hash
    mac: str  # the HMAC hash
    iterations: int
    key_length: int = 32  # PBMAC1 only


# ------------------------------------------------------------------------ MAC
def mac_scheme_of(protection_alg: ASN1) -> tuple[MACScheme, bytes]:
    """The scheme and salt of a MAC protectionAlg. Raises badAlg for anything else."""
    oid = str(protection_alg["algorithm"])
    params = protection_alg["parameters"]
    if not params.isValue:
        raise CMPFailure(FailInfo.BAD_ALG, "the MAC algorithm has no parameters")
    try:
        if oid == ID_PASSWORD_BASED_MAC:
            return _pbm_scheme(params.asOctets())
        if oid == ID_PBMAC1:
            return _pbmac1_scheme(params.asOctets())
    except CMPFailure:
        raise
    except Exception as exc:  # pyasn1's assorted decoding errors
        raise CMPFailure(FailInfo.BAD_ALG, "the MAC parameters are malformed") from exc
    raise CMPFailure(FailInfo.BAD_ALG, f"MAC algorithm {oid} is not supported")


def _pbm_scheme(der: bytes) -> tuple[MACScheme, bytes]:
    p, _ = decoder.decode(der, asn1Spec=rfc4210.PBMParameter())
    owf = _OWFS.get(str(p["owf"]["algorithm"]))
    mac = _PBM_MACS.get(str(p["mac"]["algorithm"]))
    if owf is None or mac is None:
        raise CMPFailure(FailInfo.BAD_ALG, "PasswordBasedMac's owf or mac is not supported")
    scheme = MACScheme("pbm", owf, mac, _iterations(int(p["iterationCount"]), MAX_PBM_ITERATIONS))
    return scheme, _salt(p["salt"].asOctets())


def _pbmac1_scheme(der: bytes) -> tuple[MACScheme, bytes]:
    p, _ = decoder.decode(der, asn1Spec=rfc8018.PBMAC1_params())
    kdf = p["keyDerivationFunc"]
    mac = _HMACS.get(str(p["messageAuthScheme"]["algorithm"]))
    if str(kdf["algorithm"]) != ID_PBKDF2 or mac is None:
        raise CMPFailure(FailInfo.BAD_ALG, "PBMAC1 must use PBKDF2 and HMAC-SHA2")
    k, _ = decoder.decode(kdf["parameters"].asOctets(), asn1Spec=rfc8018.PBKDF2_params())
    if k["salt"].getName() != "specified":
        raise CMPFailure(FailInfo.BAD_ALG, "PBKDF2's salt must be specified")
    prf = _HMACS.get(str(k["prf"]["algorithm"])) if k["prf"].isValue else None
    if prf is None:
        # RFC 9481 §6.1.2: the PRF "SHALL" be HMAC-SHA2; PBKDF2's default, HMAC-SHA1, is not.
        raise CMPFailure(FailInfo.BAD_ALG, "PBKDF2's prf must be HMAC-SHA2")
    # RFC 9481 §6.1.2: keyLength "MUST be present" in PBKDF2-params.
    if not k["keyLength"].isValue or not 16 <= int(k["keyLength"]) <= 64:
        raise CMPFailure(FailInfo.BAD_ALG, "PBKDF2's keyLength must be 16 to 64 octets")
    iterations = _iterations(int(k["iterationCount"]), MAX_PBKDF2_ITERATIONS)
    scheme = MACScheme("pbmac1", prf, mac, iterations, int(k["keyLength"]))
    return scheme, _salt(k["salt"]["specified"].asOctets())


def _iterations(count: int, cap: int) -> int:
    if not MIN_ITERATIONS <= count <= cap:
        raise CMPFailure(
            FailInfo.BAD_ALG, f"the iteration count must be between {MIN_ITERATIONS} and {cap}"
        )
    return count


def _salt(salt: bytes) -> bytes:
    if not 8 <= len(salt) <= MAX_SALT_BYTES:
        raise CMPFailure(FailInfo.BAD_ALG, "the MAC salt must be 8 to 64 octets")
    return bytes(salt)


def compute_mac(scheme: MACScheme, salt: bytes, secret: bytes, data: bytes) -> bytes:
    if scheme.kind == "pbm":
        # RFC 4210 §5.1.3.1: BASEKEY = H(secret || salt) iterated iterationCount times in
        # all; the MAC key is BASEKEY itself.
        key = hashlib.new(scheme.owf, secret + salt).digest()
        for _ in range(scheme.iterations - 1):
            key = hashlib.new(scheme.owf, key).digest()
    else:
        key = hashlib.pbkdf2_hmac(scheme.owf, secret, salt, scheme.iterations, scheme.key_length)
    return hmac.digest(key, data, scheme.mac)


def verify_mac(protection_alg: ASN1, protection: bytes, secret: bytes, data: bytes) -> MACScheme:
    """Check a MAC protection; returns its scheme for the answer. Raises ``CMPFailure``."""
    scheme, salt = mac_scheme_of(protection_alg)
    expected = compute_mac(scheme, salt, secret, data)
    # Constant time, so that the comparison tells nothing of how much of a forgery was right.
    if not hmac.compare_digest(expected, protection):
        raise CMPFailure(FailInfo.BAD_MESSAGE_CHECK, "the MAC protection does not verify")
    return scheme


def mac_algorithm(scheme: MACScheme, salt: bytes | None = None) -> tuple[str, bytes, bytes]:
    """(protectionAlg OID, DER parameters, salt) for an answer, with a fresh salt."""
    salt = salt or csprng.token_bytes(SALT_BYTES)
    if scheme.kind == "pbm":
        p = rfc4210.PBMParameter()
        p["salt"] = salt
        p["owf"]["algorithm"] = rfc5280.univ.ObjectIdentifier(_OWF_OID[scheme.owf])
        p["iterationCount"] = scheme.iterations
        mac_oid = _HMAC_OID.get(scheme.mac, "1.3.6.1.5.5.8.1.2")  # sha1: openssl's hmac-sha1
        p["mac"]["algorithm"] = rfc5280.univ.ObjectIdentifier(mac_oid)
        return ID_PASSWORD_BASED_MAC, bytes(encoder.encode(p)), salt
    k = rfc8018.PBKDF2_params()
    k["salt"]["specified"] = salt
    k["iterationCount"] = scheme.iterations
    k["keyLength"] = scheme.key_length
    k["prf"]["algorithm"] = rfc5280.univ.ObjectIdentifier(_HMAC_OID[scheme.owf])
    p = rfc8018.PBMAC1_params()
    p["keyDerivationFunc"]["algorithm"] = rfc5280.univ.ObjectIdentifier(ID_PBKDF2)
    p["keyDerivationFunc"]["parameters"] = encoder.encode(k)
    p["messageAuthScheme"]["algorithm"] = rfc5280.univ.ObjectIdentifier(_HMAC_OID[scheme.mac])
    return ID_PBMAC1, bytes(encoder.encode(p)), salt


def is_mac(protection_alg: ASN1) -> bool:
    return str(protection_alg["algorithm"]) in (ID_PASSWORD_BASED_MAC, ID_PBMAC1)


# ------------------------------------------------------------------ signatures
ECDSA_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}
RSA_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}
ID_ED25519 = "1.3.101.112"

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def verify_signature(
    protection_alg: ASN1, protection: bytes, signer_der: bytes, data: bytes
) -> x509.Certificate:
    """Check a signature protection with the signer's certificate; returns the certificate.
    Raises badAlg for an algorithm certforge does not take, badMessageCheck otherwise."""
    oid = str(protection_alg["algorithm"])
    try:
        cert = x509.load_der_x509_certificate(signer_der)
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CMPFailure(
            FailInfo.BAD_MESSAGE_CHECK, "the protection certificate is malformed"
        ) from exc
    try:
        match key:
            case ec.EllipticCurvePublicKey() if oid in ECDSA_HASHES:
                key.verify(protection, data, ec.ECDSA(ECDSA_HASHES[oid]()))
            case rsa.RSAPublicKey() if oid in RSA_HASHES:
                key.verify(protection, data, padding.PKCS1v15(), RSA_HASHES[oid]())
            case ed25519.Ed25519PublicKey() if oid == ID_ED25519:
                key.verify(protection, data)
            case _:
                raise CMPFailure(
                    FailInfo.BAD_ALG, f"protection algorithm {oid} does not fit the signer's key"
                )
    except InvalidSignature as exc:
        raise CMPFailure(
            FailInfo.BAD_MESSAGE_CHECK, "the signature protection does not verify"
        ) from exc
    return cert


def signature_algorithm(key: SigningKey) -> str:
    """The protectionAlg OID certforge signs answers with: SHA-256 for P-256 and RSA, the
    curve's own hash for P-384 and P-521 (RFC 9481 §3.2)."""
    match key:
        case ec.EllipticCurvePrivateKey():
            size = key.curve.key_size
            return {384: "1.2.840.10045.4.3.3", 521: "1.2.840.10045.4.3.4"}.get(
                size, "1.2.840.10045.4.3.2"
            )
        case rsa.RSAPrivateKey():
            return "1.2.840.113549.1.1.11"
        case ed25519.Ed25519PrivateKey():
            return ID_ED25519


def sign(key: SigningKey, data: bytes) -> bytes:
    match key:
        case ec.EllipticCurvePrivateKey():
            digest = ECDSA_HASHES[signature_algorithm(key)]()
            return key.sign(data, ec.ECDSA(digest))
        case rsa.RSAPrivateKey():
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        case ed25519.Ed25519PrivateKey():
            return key.sign(data)
