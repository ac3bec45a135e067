"""SCEP pkiMessages (RFC 8894 §3), sans I/O: read a signed request, write a signed CertRep.

A pkiMessage is CMS SignedData (RFC 5652) whose signerInfo carries the SCEP authenticated
attributes (§3.2.1): messageType, transactionID, senderNonce (requests), and pkiStatus,
failInfo, recipientNonce (CertRep). Its content is the pkcsPKIEnvelope (``envelope.py``).

``read_pki_message`` checks everything RFC 8894 and RFC 5652 require of the outer layer: one
signer whose certificate is in the message, the messageDigest and contentType attributes,
the signature over the DER of the signed attributes, allowed digest algorithms, and the
SCEP attributes. It raises ``BadHTTP`` when there is no pkiMessage to answer at all, and
``SCEPFailure`` once the transactionID, senderNonce and signer certificate are known, so a
CertRep FAILURE can be addressed to the requester.

The signature proves possession of the signer certificate's key, and nothing more: whether
that signer may ask what the message asks is ``operations.py``'s (a PKCSReq's signer holds
its CSR's key, a RenewalReq's is a certificate of this CA, a CertPoll's signed the request).

Deliberately not handled: detached or multiple signers, and the signer certificate's own
chain (certforge trusts no other CA to vouch for a signer).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from http import HTTPStatus

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import load_der_public_key

from protocols.scep.failinfo import BadHTTP, FailInfo, SCEPFailure


class MessageType(StrEnum):
    """RFC 8894 §3.2.1.2, a PrintableString of the decimal value."""

    CERT_REP = "3"
    RENEWAL_REQ = "17"
    PKCS_REQ = "19"
    CERT_POLL = "20"  # GetCertInitial in older drafts
    GET_CERT = "21"
    GET_CRL = "22"


class PKIStatus(StrEnum):
    """RFC 8894 §3.2.1.3."""

    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


# RFC 8894 §3.2.1: the SCEP attribute OIDs (id-VeriSign pki attributes).
_SCEP_ATTRIBUTES = {
    "2.16.840.1.113733.1.9.2": ("scep_message_type", "printable"),
    "2.16.840.1.113733.1.9.3": ("scep_pki_status", "printable"),
    "2.16.840.1.113733.1.9.4": ("scep_fail_info", "printable"),
    "2.16.840.1.113733.1.9.5": ("scep_sender_nonce", "octets"),
    "2.16.840.1.113733.1.9.6": ("scep_recipient_nonce", "octets"),
    "2.16.840.1.113733.1.9.7": ("scep_transaction_id", "printable"),
}


class _SetOfPrintableString(core.SetOf):  # type: ignore[misc] # asn1crypto is untyped
    _child_spec = core.PrintableString


def _register_scep_attributes() -> None:
    # asn1crypto's documented way to teach it new attribute types: extend its OID maps.
    specs = {"printable": _SetOfPrintableString, "octets": cms.SetOfOctetString}
    for oid, (name, kind) in _SCEP_ATTRIBUTES.items():
        cms.CMSAttributeType._map[oid] = name
        cms.CMSAttribute._oid_specs[name] = specs[kind]
    cms.CMSAttributeType._reverse_map = None  # rebuilt from _map on next use


_register_scep_attributes()

NONCE_BYTES = 16  # RFC 8894 §3.2.1.5: "a 16-byte random number"
MAX_TRANSACTION_ID = 128
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
LEGACY_DIGESTS = frozenset({"sha1"})
CLOCK_SKEW = timedelta(hours=24)  # beyond this, a signingTime is badTime


@dataclass(frozen=True, slots=True)
class PKIMessage:
    """A verified request pkiMessage: its SCEP attributes, signer and (still sealed) envelope."""

    message_type: str  # checked against MessageType by the caller: unknown -> badRequest
    transaction_id: str
    sender_nonce: bytes
    signer: asn1_x509.Certificate
    digest: str  # "sha256"...: the CertRep is signed with the same one
    envelope: bytes | None  # DER ContentInfo(EnvelopedData), the pkcsPKIEnvelope


@dataclass(frozen=True, slots=True)
class Addressee:
    """What a CertRep FAILURE needs when the message could be read but not accepted."""

    transaction_id: str
    sender_nonce: bytes
    digest: str


class SCEPMessageError(SCEPFailure):
    """A failure found after the attributes were read: the CertRep goes to ``addressee``."""

    def __init__(self, failure: SCEPFailure, addressee: Addressee) -> None:
        super().__init__(failure.fail_info, failure.detail)
        self.addressee = addressee


def read_pki_message(der: bytes, *, legacy: bool, now: datetime) -> PKIMessage:
    """Parse and verify a request pkiMessage (RFC 8894 §3.2)."""
    signed, signer_info = _signed_data(der)
    attrs = _attributes(signer_info)
    addressee = _addressee(attrs, signer_info, legacy)
    try:
        signer = _signer_certificate(signed, signer_info)
        content = _verify(signed, signer_info, signer, attrs, addressee.digest)
        _check_signing_time(attrs, now)
    except SCEPFailure as exc:
        raise SCEPMessageError(exc, addressee) from exc
    except _MALFORMED as exc:
        # asn1crypto parses lazily: a defect deep inside surfaces only when it is reached.
        failure = SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, f"malformed pkiMessage: {exc}")
        raise SCEPMessageError(failure, addressee) from exc
    message_type = _single(attrs, "scep_message_type")
    if message_type is None:
        raise SCEPMessageError(
            SCEPFailure(FailInfo.BAD_REQUEST, "messageType is missing"), addressee
        )
    return PKIMessage(
        message_type=message_type,
        transaction_id=addressee.transaction_id,
        sender_nonce=addressee.sender_nonce,
        signer=signer,
        digest=addressee.digest,
        envelope=content,
    )


# RecursionError: a last net for a structure nested deeper than asn1crypto's recursion.
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError)
_READ_ATTRIBUTES = frozenset(
    {name for name, _ in _SCEP_ATTRIBUTES.values()}
    | {"content_type", "message_digest", "signing_time"}
)


def _signed_data(der: bytes) -> tuple[cms.SignedData, cms.SignerInfo]:
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise BadHTTP(HTTPStatus.BAD_REQUEST, "the pkiMessage is not CMS SignedData")
        signed = info["content"]
        signer_infos = list(signed["signer_infos"])
    except _MALFORMED as exc:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "the message is not a DER pkiMessage") from exc
    if len(signer_infos) != 1:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "a pkiMessage has exactly one signerInfo")
    return signed, signer_infos[0]


def _attributes(signer_info: cms.SignerInfo) -> dict[str, list[object]]:
    """The signed attributes certforge reads, by name. The others are not parsed: they are
    read before the signature is checked, and asn1crypto parses a value recursively (an
    unknown attribute nesting SEQUENCEs 2000 deep raised RecursionError)."""
    try:
        attrs: dict[str, list[object]] = {}
        seen: set[str] = set()
        for attr in signer_info["signed_attrs"]:
            name = attr["type"].native
            if name in seen:
                raise BadHTTP(HTTPStatus.BAD_REQUEST, f"the attribute {name} appears twice")
            seen.add(name)
            if name in _READ_ATTRIBUTES:
                attrs[name] = [v.native if hasattr(v, "native") else v for v in attr["values"]]
    except _MALFORMED as exc:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "the signed attributes are malformed") from exc
    return attrs


def _single(attrs: dict[str, list[object]], name: str) -> str | None:
    values = attrs.get(name)
    if not values or len(values) != 1 or not isinstance(values[0], str):
        return None
    return values[0]


def _addressee(
    attrs: dict[str, list[object]], signer_info: cms.SignerInfo, legacy: bool
) -> Addressee:
    # RFC 8894 §3.2.1: transactionID and senderNonce "MUST be included" in every request.
    tid = _single(attrs, "scep_transaction_id")
    nonces = attrs.get("scep_sender_nonce") or []
    if not tid or len(tid) > MAX_TRANSACTION_ID:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "the pkiMessage has no usable transactionID")
    if len(nonces) != 1 or not isinstance(nonces[0], bytes) or len(nonces[0]) != NONCE_BYTES:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "the senderNonce must be 16 bytes")
    try:
        digest = signer_info["digest_algorithm"]["algorithm"].native
    except _MALFORMED as exc:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "the digest algorithm is malformed") from exc
    addressee = Addressee(tid, nonces[0], digest if _digest_ok(digest, legacy) else "sha256")
    if not _digest_ok(digest, legacy):
        failure = SCEPFailure(FailInfo.BAD_ALG, f"digest {digest} is not accepted")
        raise SCEPMessageError(failure, addressee)
    return addressee


def _digest_ok(name: str, legacy: bool) -> bool:
    return name in _DIGESTS and (legacy or name not in LEGACY_DIGESTS)


def _signer_certificate(
    signed: cms.SignedData, signer_info: cms.SignerInfo
) -> asn1_x509.Certificate:
    cert = _find_signer(signed, signer_info)
    # The certificate is outside what the signature covers: hold it to strict DER (the
    # CertRep is addressed to it), and read what is used of it now rather than lazily later.
    try:
        x509.load_der_x509_certificate(cert.dump())
        # ... and reach now what is read of it later (asn1crypto parses lazily).
        _ = (cert.serial_number, cert.issuer.dump(), cert.public_key.algorithm)
    except (*_MALFORMED, x509.InvalidVersion) as exc:
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "the signer's certificate is malformed") from exc
    return cert


def _find_signer(signed: cms.SignedData, signer_info: cms.SignerInfo) -> asn1_x509.Certificate:
    sid = signer_info["sid"]
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if (
                ias["serial_number"].native == cert.serial_number
                and ias["issuer"].dump() == cert.issuer.dump()
            ):
                return cert
        elif sid.chosen.native == cert.key_identifier:
            return cert
    raise SCEPFailure(FailInfo.BAD_CERT_ID, "the signer's certificate is not in the message")


def _verify(
    signed: cms.SignedData,
    signer_info: cms.SignerInfo,
    signer: asn1_x509.Certificate,
    attrs: dict[str, list[object]],
    digest: str,
) -> bytes | None:
    encap = signed["encap_content_info"]
    content = encap["content"].native if encap["content"].native is not None else b""
    if not isinstance(content, bytes):
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the signed content is not octets")
    # RFC 5652 §5.3: with signed attributes, contentType and messageDigest MUST be present,
    # and §5.4: the message digest is of the eContent octets.
    if attrs.get("content_type") != [encap["content_type"].native]:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "contentType does not match the content")
    h = hashlib.new(digest, content).digest()
    if attrs.get("message_digest") != [h]:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "messageDigest does not match the content")
    _verify_signature(signer_info, signer, digest)
    return content or None


def _verify_signature(
    signer_info: cms.SignerInfo, signer: asn1_x509.Certificate, digest: str
) -> None:
    # RFC 5652 §5.4: the signature is over the DER of the SET OF signed attributes (the
    # IMPLICIT [0] tag of the signerInfo field replaced by the SET tag).
    signed_attrs = b"\x31" + signer_info["signed_attrs"].dump()[1:]
    signature = signer_info["signature"].native
    hash_alg = _DIGESTS[digest]()
    try:
        key = load_der_public_key(signer["tbs_certificate"]["subject_public_key_info"].dump())
        algo = signer_info["signature_algorithm"].signature_algo
        if isinstance(key, rsa.RSAPublicKey) and algo == "rsassa_pkcs1v15":
            key.verify(signature, signed_attrs, PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo == "ecdsa":
            key.verify(signature, signed_attrs, ec.ECDSA(hash_alg))
        else:
            raise SCEPFailure(FailInfo.BAD_ALG, f"signature algorithm {algo} is not supported")
    except InvalidSignature:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the signature does not verify") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SCEPFailure(FailInfo.BAD_ALG, "the signer's key cannot be used") from exc


def _check_signing_time(attrs: dict[str, list[object]], now: datetime) -> None:
    times = attrs.get("signing_time")
    if not times:
        return
    when = times[0]
    if isinstance(when, datetime) and abs(when - now) > CLOCK_SKEW:
        raise SCEPFailure(FailInfo.BAD_TIME, "signingTime is too far from the CA's time")
