"""PKCS#10 certificate requests (RFC 2986): parse, verify, and read what the engine needs.

``verify_csr`` is the engine's first step. It raises, following the cryptography rule that
verification APIs raise rather than return False, and nothing is recorded for a request
that fails it:

- ``BadCSR``: not DER PKCS#10, a signature that does not verify (RFC 2986 §3: the signature
  proves possession of the private key), a malformed or duplicated extension, or a subject
  alternative name of a type certforge does not issue;
- ``BadSignatureAlgorithm``: MD5 or SHA-1 (CA/Browser Forum BR §7.1.3.2 allows neither), or an
  algorithm not on the list below;
- ``BadPublicKey``: see ``server.ca.goodkey``.

Deliberately not handled: the extensionRequest's other extensions (key usage, basic
constraints...). The profile and policy decide what the certificate says; the CSR only
contributes its key, its subject and its subject alternative names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AttributeOID, SignatureAlgorithmOID

from server.ca.build import check_subject
from server.ca.goodkey import check_public_key
from server.errors import BadCSR, BadPublicKey, BadSignatureAlgorithm, Malformed
from server.model import Identifier, SubjectAttrs, subject_attrs

_ALLOWED_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSASSA_PSS,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        SignatureAlgorithmOID.ED25519,
    }
)
_BROKEN_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_MD5,
        SignatureAlgorithmOID.RSA_WITH_SHA1,
        SignatureAlgorithmOID.ECDSA_WITH_SHA1,
        SignatureAlgorithmOID.DSA_WITH_SHA1,
    }
)
_PSS_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

_PEM_CSR = re.compile(
    rb"-----BEGIN (NEW )?CERTIFICATE REQUEST-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)\s*"
    rb"-----END (NEW )?CERTIFICATE REQUEST-----"
)


@dataclass(frozen=True, slots=True)
class ParsedCSR:
    """A verified request: its key (already judged by goodkey), subject and SANs."""

    der: bytes  # the request as received
    csr: x509.CertificateSigningRequest
    public_key: CertificatePublicKeyTypes
    key_type: str
    subject: SubjectAttrs
    subject_text: str  # RFC 4514, for search
    one_attribute_per_rdn: bool  # then a certificate of ``subject`` spells it as subject_text
    sans: tuple[Identifier, ...]
    key_sha256: str  # hex SHA-256 of the DER SubjectPublicKeyInfo


# A request with an ML-DSA-87 key and a hundred names is under 12 KiB; a larger one is padding
# (it would be kept whole while it waits for an administrator).
MAX_CSR_BYTES = 32 * 1024


def verify_csr(csr_der: bytes) -> ParsedCSR:
    """Parse and verify a DER PKCS#10 request, or raise the typed error naming its defect."""
    if len(csr_der) > MAX_CSR_BYTES:
        raise BadCSR(f"a certificate request is at most {MAX_CSR_BYTES // 1024} KiB here")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        with warnings.catch_warnings():
            # cryptography warns of a CN over 64 characters as it reads one: check_subject
            # below says what is wrong with it (or lets the profile drop it).
            warnings.simplefilter("ignore", UserWarning)
            name = csr.subject  # each access builds the Name again
        subject = subject_attrs(name)
    except ValueError as exc:
        raise BadCSR("the certificate request is not a DER PKCS#10 request") from exc
    # Boulder's order: the key first, since a refused key makes the rest moot.
    public_key = _public_key(csr)
    key_type = check_public_key(public_key)
    _check_signature_algorithm(csr)
    _check_signature(csr, public_key)
    sans = requested_identifiers(csr)
    check_subject(subject, sans=sans)
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ParsedCSR(
        der=csr_der,
        csr=csr,
        public_key=public_key,
        key_type=key_type,
        subject=subject,
        subject_text=name.rfc4514_string(),
        one_attribute_per_rdn=all(len(rdn) == 1 for rdn in name.rdns),
        sans=sans,
        key_sha256=hashlib.sha256(spki).hexdigest(),
    )


def csr_der_from_bytes(data: bytes) -> bytes:
    """A request as front ends receive it: DER as sent, PEM (either label RFC 7468 §7 and older
    tools use), or base64 of the DER with line breaks allowed (RFC 8951 §3.1, EST's bodies).
    Raises ``BadCSR`` saying which it is not; the DER is not verified here."""
    if data[:1] == b"\x30":
        # A DER SEQUENCE, taken as sent: stripping it could cut a signature that ends in a
        # byte strip() takes for whitespace. (Base64 of a DER request starts with "M".)
        return data
    stripped = data.strip()
    if not stripped:
        raise BadCSR("the body is empty; send a PKCS#10 request (DER, PEM or base64 DER)")
    if stripped.startswith(b"-----BEGIN"):
        match = _PEM_CSR.search(stripped)
        if match is None:
            raise BadCSR("PEM data is not a CERTIFICATE REQUEST")
        try:
            return base64.b64decode(b"".join(match.group("body").split()), validate=True)
        except binascii.Error as exc:
            raise BadCSR("the PEM certificate request is not valid base64") from exc
    try:
        return base64.b64decode(b"".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadCSR(
            "the certificate request is neither DER, PEM nor base64 DER (RFC 8951 §3.1)"
        ) from None


def challenge_password(csr: x509.CertificateSigningRequest) -> str | None:
    """Return the PKCS#9 challengePassword attribute (RFC 2985 §5.4.1), if the request has one.

    SCEP (RFC 8894 §2.3) and EST (RFC 7030 §3.5) carry their enrollment secret here.
    """
    try:
        attribute = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
    except x509.AttributeNotFound:
        return None
    except ValueError as exc:
        raise BadCSR("the certificate request's attributes are malformed") from exc
    # DirectoryString: BMPString (tag 30) is UTF-16; the other choices are UTF-8 compatible.
    encoding = "utf-16-be" if attribute._type == 30 else "utf-8"  # no public accessor for the tag
    try:
        return attribute.value.decode(encoding)
    except UnicodeDecodeError as exc:
        raise BadCSR("the challengePassword is not valid text") from exc


def _check_signature_algorithm(csr: x509.CertificateSigningRequest) -> None:
    oid = csr.signature_algorithm_oid
    if oid in _BROKEN_SIGNATURES:
        # CA/Browser Forum BR §7.1.3.2: only SHA-256, SHA-384 and SHA-512 are permitted.
        raise BadSignatureAlgorithm("MD5 and SHA-1 signatures are not accepted")
    if oid not in _ALLOWED_SIGNATURES:
        raise BadSignatureAlgorithm(f"signature algorithm {oid.dotted_string} is not supported")
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        try:
            digest = csr.signature_hash_algorithm
        except UnsupportedAlgorithm as exc:
            raise BadSignatureAlgorithm("RSASSA-PSS with this hash is not supported") from exc
        if not isinstance(digest, _PSS_HASHES):
            raise BadSignatureAlgorithm("RSASSA-PSS must use SHA-256, SHA-384 or SHA-512")


def _public_key(csr: x509.CertificateSigningRequest) -> CertificatePublicKeyTypes:
    try:
        return csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadPublicKey("the request's public key is malformed or of an unknown type") from exc


def _check_signature(
    csr: x509.CertificateSigningRequest, public_key: CertificatePublicKeyTypes
) -> None:
    """RFC 2986 §3: the signature over certificationRequestInfo, checked with the key already
    parsed (``is_signature_valid`` parses the key again, a third of the cost of an ECDSA check).
    """
    try:
        signature, tbs = csr.signature, csr.tbs_certrequest_bytes
        params = csr.signature_algorithm_parameters
        match public_key:
            case ec.EllipticCurvePublicKey() if isinstance(params, ec.ECDSA):
                public_key.verify(signature, tbs, params)
            case rsa.RSAPublicKey() if isinstance(params, padding.PKCS1v15 | padding.PSS):
                digest = csr.signature_hash_algorithm
                if digest is None:
                    raise BadCSR("the certificate request's signature names no hash")
                public_key.verify(signature, tbs, params, digest)
            case ed25519.Ed25519PublicKey() if params is None:
                public_key.verify(signature, tbs)
            case _:
                raise BadCSR("the request's signature algorithm does not match its key")
    except InvalidSignature:
        raise BadCSR("the certificate request's signature does not verify") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadCSR("the certificate request's signature cannot be checked") from exc


def requested_identifiers(csr: x509.CertificateSigningRequest) -> tuple[Identifier, ...]:
    """The names a request's subjectAltName asks for, each once, or ``BadCSR``."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    except x509.DuplicateExtension as exc:
        # RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a
        # particular extension"; a request asking for two is as malformed.
        raise BadCSR("the certificate request repeats an extension") from exc
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        raise BadCSR("the certificate request's extensions are malformed") from exc
    identifiers: list[Identifier] = []
    for name in extension.value:
        if isinstance(name, x509.IPAddress) and not isinstance(
            name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
        ):
            # An address range (8 or 32 octets) belongs in name constraints, not in a SAN.
            raise BadCSR("an IP address subject alternative name holds a range")
        try:
            identifiers.append(Identifier.from_general_name(name))
        except Malformed as exc:
            raise BadCSR(exc.detail) from exc
    return tuple(dict.fromkeys(identifiers))
