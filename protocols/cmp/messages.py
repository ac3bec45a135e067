"""CMP messages, sans I/O: read a PKIMessage and build the answers (RFC 4210 as updated by
RFC 9480, within the Lightweight CMP Profile, RFC 9483).

``read_message`` decodes a DER PKIMessage (with pyasn1-alt-modules' ``rfc9480`` types) into a
``Message``: its header fields as Python values, the chosen body, the protection, the
extraCerts and the DER of the ProtectedPart the protection covers. ``check_header`` applies
the header rules RFC 9483 §3.1 gives a PKI management entity. The builders make the header,
the bodies certforge answers with (ip, cp, kup, rp, genp, pkiconf, pollRep, error) and the
final message; the protection itself is ``protocols.cmp.protection``'s.

Deliberately not read: nested messages (RFC 9483 §5.2, for RAs), encrypted certificates and
central key generation (RFC 9483 §4.1.6), krr and the announcement bodies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc4210, rfc5280, rfc9480

from protocols.cmp.failinfo import CMPFailure, FailInfo, NotAPKIMessage, PKIStatus
from server import csprng

# A PKIMessage is a request, a few certificates and a signature: a few KiB. Larger is padding.
MAX_MESSAGE_BYTES = 64 * 1024
# RFC 9483 §3.1: transactionID and senderNonce "MUST be 128 bits of (pseudo-)random data".
ID_BYTES = 16
# pvno 2 is cmp2000; 3 (cmp2021) is RFC 9480 §2.20's, for EnvelopedData and certConf hashAlg.
SUPPORTED_PVNO = (2, 3)

ID_IT_IMPLICIT_CONFIRM = str(rfc9480.id_it_implicitConfirm)

# Any: pyasn1 ships no type information; these aliases say what the object is.
ASN1 = Any


class Body(StrEnum):
    """The PKIBody choices certforge reads or writes, by their ASN.1 names (RFC 4210 §5.1.2)."""

    IR = "ir"
    IP = "ip"
    CR = "cr"
    CP = "cp"
    P10CR = "p10cr"
    KUR = "kur"
    KUP = "kup"
    RR = "rr"
    RP = "rp"
    PKICONF = "pkiconf"
    GENM = "genm"
    GENP = "genp"
    ERROR = "error"
    CERT_CONF = "certConf"
    POLL_REQ = "pollReq"
    POLL_REP = "pollRep"


# ip answers ir, cp answers cr and p10cr, kup answers kur (RFC 4210 §5.3.1-§5.3.6).
RESPONSE_TO = {Body.IR: Body.IP, Body.CR: Body.CP, Body.P10CR: Body.CP, Body.KUR: Body.KUP}


@dataclass(frozen=True, slots=True)
class Header:
    pvno: int
    sender_name: bytes | None  # DER Name when the sender is a directoryName
    message_time: datetime | None
    protection_alg: ASN1  # AlgorithmIdentifier, or None when unprotected
    sender_kid: bytes | None
    transaction_id: bytes | None
    sender_nonce: bytes | None
    recip_nonce: bytes | None
    implicit_confirm: bool
    raw: ASN1  # the PKIHeader, for answers that copy its sender


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    body_type: str  # a Body value, or another choice certforge refuses
    body: ASN1  # the chosen body's content
    protection: bytes | None
    extra_certs: tuple[bytes, ...]  # DER; RFC 9483 §3.3: the protection certificate first
    protected_part: bytes  # DER of ProtectedPart (RFC 4210 §5.1.3)


def read_message(der: bytes) -> Message:
    """Decode a DER PKIMessage. Raises ``NotAPKIMessage`` for anything that is not one."""
    if len(der) > MAX_MESSAGE_BYTES:
        raise NotAPKIMessage(f"a PKIMessage is at most {MAX_MESSAGE_BYTES // 1024} KiB here")
    try:
        msg, rest = decoder.decode(der, asn1Spec=rfc9480.PKIMessage())
        # DER only (RFC 4210 §5.1.3: the protection is computed over the DER encoding), so
        # that the ProtectedPart re-encoded below is the octets the sender protected.
        if rest or encoder.encode(msg) != der:
            raise NotAPKIMessage("the body is not a DER PKIMessage")
        return _message(msg)
    except NotAPKIMessage:
        raise
    except Exception as exc:
        # pyasn1 raises assorted exception types on hostile input (PyAsn1Error, but also
        # ValueError, TypeError, IndexError): every one means "not a PKIMessage".
        raise NotAPKIMessage("the body is not a DER PKIMessage") from exc


def _message(msg: ASN1) -> Message:
    raw_header, body = msg["header"], msg["body"]
    part = rfc9480.ProtectedPart()
    part["header"] = raw_header
    part["body"] = body
    protection = msg["protection"]
    extra = msg["extraCerts"]
    return Message(
        header=_header(raw_header),
        body_type=str(body.getName()),
        body=body.getComponent(),
        protection=protection.asOctets() if protection.isValue else None,
        extra_certs=tuple(encoder.encode(c) for c in extra) if extra.isValue else (),
        protected_part=encoder.encode(part),
    )


def _header(h: ASN1) -> Header:
    sender = h["sender"]
    time = h["messageTime"]
    info = h["generalInfo"]
    return Header(
        pvno=int(h["pvno"]),
        # A Name is an untagged CHOICE of RDNSequence: the RDNSequence's DER is the Name's.
        sender_name=bytes(encoder.encode(sender["directoryName"]["rdnSequence"]))
        if sender.getName() == "directoryName"
        else None,
        message_time=time.asDateTime.astimezone(UTC) if time.isValue else None,
        protection_alg=h["protectionAlg"] if h["protectionAlg"].isValue else None,
        sender_kid=_octets(h["senderKID"]),
        transaction_id=_octets(h["transactionID"]),
        sender_nonce=_octets(h["senderNonce"]),
        recip_nonce=_octets(h["recipNonce"]),
        implicit_confirm=info.isValue
        and any(str(i["infoType"]) == ID_IT_IMPLICIT_CONFIRM for i in info),
        raw=h,
    )


def _octets(value: ASN1) -> bytes | None:
    return bytes(value.asOctets()) if value.isValue else None


# ------------------------------------------------------------------ header checks
@dataclass(frozen=True, slots=True)
class HeaderRules:
    now: datetime
    max_skew: timedelta  # how far messageTime may be from ``now``, either way


def check_header(header: Header) -> None:
    """RFC 9483 §3.1's header rules for any request. Raises ``CMPFailure``."""
    if header.pvno not in SUPPORTED_PVNO:
        # RFC 9480 §2.20: a receiver that does not support the version answers
        # unsupportedVersion.
        raise CMPFailure(FailInfo.UNSUPPORTED_VERSION, f"pvno {header.pvno} is not supported")
    if header.transaction_id is None or len(header.transaction_id) != ID_BYTES:
        # RFC 9483 §3.1: transactionID "MUST be 128 bits of (pseudo-)random data".
        raise CMPFailure(FailInfo.BAD_DATA_FORMAT, "the transactionID must be 16 octets")
    if header.sender_nonce is None or len(header.sender_nonce) != ID_BYTES:
        # RFC 9483 §3.1: senderNonce "MUST be 128 bits of (pseudo-)random data".
        raise CMPFailure(FailInfo.BAD_SENDER_NONCE, "the senderNonce must be 16 octets")
    if header.recip_nonce is not None and len(header.recip_nonce) != ID_BYTES:
        raise CMPFailure(FailInfo.BAD_RECIPIENT_NONCE, "the recipNonce must be 16 octets")
    if header.sender_name is None:
        # RFC 9483 §3.1: the sender "MUST contain a name representing the originator".
        raise CMPFailure(FailInfo.BAD_DATA_FORMAT, "the sender must be a directoryName")


def check_time(header: Header, rules: HeaderRules) -> None:
    """Checked once the protection verified, so that the badTime answer is protected."""
    if header.message_time is not None and abs(header.message_time - rules.now) > rules.max_skew:
        # RFC 9483 §3.1: messageTime lets the receiver check the time; RFC 4210 §5.1.1: a
        # message too far off is answered badTime.
        raise CMPFailure(FailInfo.BAD_TIME, "the messageTime is too far from the server's time")


# ----------------------------------------------------------------------- builders
@dataclass(frozen=True, slots=True)
class Reply:
    """What an answer's header says, beyond what it copies from the request."""

    sender_name: bytes  # DER Name of the PKI management entity
    now: datetime
    sender_kid: bytes | None = None
    implicit_confirm: bool = False
    sender_nonce: bytes | None = None  # None: a fresh one


def new_header(request: Header, reply: Reply) -> ASN1:
    """The answer's PKIHeader (RFC 9483 §3.1): the request's pvno (2 or 3) and
    transactionID, its senderNonce as recipNonce, and a fresh senderNonce."""
    h = rfc9480.PKIHeader()
    h["pvno"] = request.pvno if request.pvno in SUPPORTED_PVNO else 2
    _set_directory_name(h["sender"], reply.sender_name)
    h["recipient"] = request.raw["sender"]
    h["messageTime"] = reply.now.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")
    if reply.sender_kid is not None:
        h["senderKID"] = reply.sender_kid
    if request.transaction_id is not None:
        h["transactionID"] = request.transaction_id
    h["senderNonce"] = reply.sender_nonce or csprng.token_bytes(ID_BYTES)
    if request.sender_nonce is not None:
        h["recipNonce"] = request.sender_nonce
    if reply.implicit_confirm:
        # RFC 4210 §5.1.1.1: the CA grants implicit confirmation by the same infoType.
        item = h["generalInfo"].componentType.clone()
        item["infoType"] = rfc9480.id_it_implicitConfirm
        item["infoValue"] = encoder.encode(rfc9480.ImplicitConfirmValue(""))
        h["generalInfo"].append(item)
    return h


def sender_nonce_of(header: ASN1) -> bytes:
    return bytes(header["senderNonce"].asOctets())


def _set_directory_name(general_name: ASN1, name_der: bytes) -> None:
    rdns, _ = decoder.decode(name_der, asn1Spec=rfc5280.RDNSequence())
    general_name["directoryName"]["rdnSequence"] = rdns


def set_protection_alg(header: ASN1, algorithm: str, parameters: bytes | None) -> None:
    header["protectionAlg"]["algorithm"] = rfc5280.univ.ObjectIdentifier(algorithm)
    if parameters is not None:
        header["protectionAlg"]["parameters"] = parameters


def protected_part(header: ASN1, body: ASN1) -> bytes:
    part = rfc9480.ProtectedPart()
    part["header"] = header
    part["body"] = body
    return bytes(encoder.encode(part))


def encode_message(
    header: ASN1, body: ASN1, *, protection: bytes | None, extra_certs: Sequence[bytes] = ()
) -> bytes:
    msg = rfc9480.PKIMessage()
    msg["header"] = header
    msg["body"] = body
    if protection is not None:
        # clone() keeps the schema's [0] tag, which a new BitString would not have.
        msg["protection"] = msg["protection"].clone(hexValue=protection.hex())
    for der in extra_certs:
        msg["extraCerts"].append(_certificate(der))
    return bytes(encoder.encode(msg))


def _certificate(der: bytes) -> ASN1:
    cert, _ = decoder.decode(der, asn1Spec=rfc4210.CMPCertificate())
    return cert


def _fill(slot: ASN1, value: ASN1) -> None:
    """Copy a decoded SEQUENCE into a schema slot whose tags differ (a tagged CMPCertificate)."""
    for i in range(len(value)):
        if value.getComponentByPosition(i).isValue:
            slot.setComponentByPosition(i, value.getComponentByPosition(i))


def untagged_der(spec: ASN1, value: ASN1) -> bytes:
    """The DER of a body's content without its [n] EXPLICIT tag (a p10cr's PKCS #10)."""
    _fill(spec, value)
    return bytes(encoder.encode(spec))


def _status_info(
    slot: ASN1, status: PKIStatus, fail_info: FailInfo | None, text: str | None
) -> None:
    slot["status"] = int(status)
    if text:
        slot["statusString"].append(text[:512])
    if fail_info is not None:
        # One bit set; DER drops trailing zero bits, so the bit string ends with it.
        slot["failInfo"] = "0" * int(fail_info) + "1"


@dataclass(frozen=True, slots=True)
class CertResponse:
    cert_req_id: int
    status: PKIStatus
    certificate: bytes | None = None  # DER, when accepted
    fail_info: FailInfo | None = None
    text: str | None = None


def cert_rep_body(kind: Body, responses: Iterable[CertResponse]) -> ASN1:
    """ip, cp or kup (RFC 4210 §5.3.4). No caPubs: RFC 9483 §4.1.1 leaves the trust anchor
    to be known out of band, and the chain travels in extraCerts."""
    body = rfc9480.PKIBody()
    rep = body[str(kind)]
    rep["response"]  # instantiate the SEQUENCE OF even when it stays empty
    for r in responses:
        item = rep["response"].componentType.clone()
        item["certReqId"] = r.cert_req_id
        _status_info(item["status"], r.status, r.fail_info, r.text)
        if r.certificate is not None:
            _fill(
                item["certifiedKeyPair"]["certOrEncCert"]["certificate"],
                _certificate(r.certificate),
            )
        rep["response"].append(item)
    return body


def error_body(status: PKIStatus, fail_info: FailInfo | None, text: str | None) -> ASN1:
    """RFC 4210 §5.3.21 ErrorMsgContent."""
    body = rfc9480.PKIBody()
    _status_info(body["error"]["pKIStatusInfo"], status, fail_info, text)
    return body


def pkiconf_body() -> ASN1:
    body = rfc9480.PKIBody()
    body["pkiconf"] = ""
    return body


def poll_rep_body(cert_req_id: int, check_after: int, reason: str | None) -> ASN1:
    """RFC 4210 §5.3.22 PollRepContent: ask again after ``check_after`` seconds."""
    body = rfc9480.PKIBody()
    item = body["pollRep"].componentType.clone()
    item["certReqId"] = cert_req_id
    item["checkAfter"] = check_after
    if reason:
        item["reason"].append(reason[:512])
    body["pollRep"].append(item)
    return body


@dataclass(frozen=True, slots=True)
class RevStatus:
    status: PKIStatus
    fail_info: FailInfo | None = None
    text: str | None = None


def rp_body(statuses: Iterable[RevStatus]) -> ASN1:
    """RFC 4210 §5.3.10 RevRepContent, one status per RevDetails (RFC 9483 §4.2: one)."""
    body = rfc9480.PKIBody()
    seq = body["rp"]["status"]
    for s in statuses:
        item = seq.componentType.clone()
        _status_info(item, s.status, s.fail_info, s.text)
        seq.append(item)
    return body


def genp_body(items: Iterable[tuple[str, bytes | None]]) -> ASN1:
    """RFC 4210 §5.3.19 GenRepContent: (infoType, DER infoValue or None for absent)."""
    body = rfc9480.PKIBody()
    seq = body["genp"]
    seq.clear()  # an empty genp is a valid answer (nothing certforge can tell)
    for oid, value in items:
        item = seq.componentType.clone()
        item["infoType"] = rfc5280.univ.ObjectIdentifier(oid)
        if value is not None:
            item["infoValue"] = value
        seq.append(item)
    return body


def certificates_value(ders: Iterable[bytes]) -> bytes:
    """A SEQUENCE OF CMPCertificate (id-it-caCerts' CaCertsValue, RFC 9483 §4.3.1)."""
    value = rfc9480.CaCertsValue()
    for der in ders:
        value.append(_certificate(der))
    return bytes(encoder.encode(value))
