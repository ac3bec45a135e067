"""The CertRep (RFC 8894 §3.3.2): the CA's or RA's signed answer to every pkiMessage.

SignedData signed by the CA (when its key is RSA) or the RA, with the SCEP attributes
messageType CertRep, pkiStatus, failInfo (FAILURE only), transactionID (copied),
recipientNonce (the request's senderNonce, §3.2.1.5) and a fresh senderNonce. On SUCCESS the
content is the pkcsPKIEnvelope holding a degenerate certificates-only SignedData with the
issued certificate, enveloped to the requester's signing certificate; "if the pkiStatus is
FAILURE or PENDING, the pkcsPKIEnvelope MUST be omitted" (§3.3.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from asn1crypto import algos, core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from protocols.scep.failinfo import FailInfo
from protocols.scep.messages import NONCE_BYTES, Addressee, MessageType, PKIStatus
from server import csprng
from server.revocation import der

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class Signer:
    """The identity that signs CertReps and opens envelopes: the CA itself or its RA."""

    certificate: asn1_x509.Certificate
    key: rsa.RSAPrivateKey

    @cached_property
    def certificate_der(self) -> bytes:
        return bytes(self.certificate.dump())

    @cached_property
    def issuer_and_serial(self) -> bytes:
        """IssuerAndSerialNumber (RFC 5652 §10.2.4), the signerInfo's sid."""
        c = self.certificate
        return der.tlv(der.SEQUENCE, bytes(c.issuer.dump()) + der.integer(c.serial_number))


def _oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


# The CertRep is written directly in DER (X.690): asn1crypto re-encodes every nested value
# when a structure is assembled, which made a CertRep cost three times its RSA signature.
# asn1crypto still reads every message, and the tests read every CertRep with it.
_SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
_DATA = _oid("1.2.840.113549.1.7.1")
_CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
_MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
_SIGNING_TIME = _oid("1.2.840.113549.1.9.5")
_MESSAGE_TYPE = _oid("2.16.840.1.113733.1.9.2")
_PKI_STATUS = _oid("2.16.840.1.113733.1.9.3")
_FAIL_INFO = _oid("2.16.840.1.113733.1.9.4")
_SENDER_NONCE = _oid("2.16.840.1.113733.1.9.5")
_RECIPIENT_NONCE = _oid("2.16.840.1.113733.1.9.6")
_TRANSACTION_ID = _oid("2.16.840.1.113733.1.9.7")
_DIGEST_ALGORITHMS = {
    name: bytes(algos.DigestAlgorithm({"algorithm": name}).dump()) for name in _HASHES
}
_RSA_SIGNATURE = bytes(algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}).dump())
_PRINTABLE = 0x13
_SET = 0x31


def _attribute(oid: bytes, value: bytes) -> bytes:
    return der.tlv(der.SEQUENCE, oid + der.tlv(_SET, value))


def cert_rep(
    *,
    signer: Signer,
    to: Addressee,
    status: PKIStatus,
    now: datetime,
    fail_info: FailInfo | None = None,
    envelope: bytes | None = None,
) -> bytes:
    signed_attrs = _signed_attributes(to, status, fail_info, envelope or b"", now)
    # RFC 5652 §5.4: the signature is over the attributes' DER with the SET OF tag.
    signature = signer.key.sign(der.tlv(_SET, signed_attrs), PKCS1v15(), _HASHES[to.digest]())
    digest_algorithm = _DIGEST_ALGORITHMS[to.digest]
    signer_info = der.tlv(
        der.SEQUENCE,
        der.integer(1)
        + signer.issuer_and_serial
        + digest_algorithm
        + der.tlv(0xA0, signed_attrs)  # [0] IMPLICIT signedAttrs
        + _RSA_SIGNATURE
        + der.tlv(der.OCTET_STRING, signature),
    )
    encap = _DATA
    if envelope is not None:
        encap += der.tlv(0xA0, der.tlv(der.OCTET_STRING, envelope))  # [0] EXPLICIT eContent
    signed_data = der.tlv(
        der.SEQUENCE,
        der.integer(1)
        + der.tlv(_SET, digest_algorithm)
        + der.tlv(der.SEQUENCE, encap)
        + der.tlv(0xA0, signer.certificate_der)  # [0] IMPLICIT certificates
        + der.tlv(_SET, signer_info),
    )
    return der.tlv(der.SEQUENCE, _SIGNED_DATA + der.tlv(0xA0, signed_data))


def _signed_attributes(
    to: Addressee, status: PKIStatus, fail_info: FailInfo | None, content: bytes, now: datetime
) -> bytes:
    """The SCEP authenticated attributes (RFC 8894 §3.2.1), DER-sorted, without the SET tag."""
    attrs = [
        _attribute(_CONTENT_TYPE, _DATA),
        _attribute(_SIGNING_TIME, der.time(now)),
        _attribute(
            _MESSAGE_DIGEST, der.tlv(der.OCTET_STRING, hashlib.new(to.digest, content).digest())
        ),
        _attribute(_MESSAGE_TYPE, der.tlv(_PRINTABLE, MessageType.CERT_REP.encode())),
        _attribute(_PKI_STATUS, der.tlv(_PRINTABLE, status.encode())),
        _attribute(_TRANSACTION_ID, der.tlv(_PRINTABLE, to.transaction_id.encode())),
        # §3.2.1.5: the recipientNonce is the request's senderNonce; ours is fresh.
        _attribute(_RECIPIENT_NONCE, der.tlv(der.OCTET_STRING, to.sender_nonce)),
        _attribute(_SENDER_NONCE, der.tlv(der.OCTET_STRING, csprng.token_bytes(NONCE_BYTES))),
    ]
    if status is PKIStatus.FAILURE:
        code = fail_info or FailInfo.BAD_REQUEST
        attrs.append(_attribute(_FAIL_INFO, der.tlv(_PRINTABLE, code.encode())))
    # DER: a SET OF is sorted by the encodings of its elements (X.690 §11.6). Verifiers that
    # re-encode the attributes (Go's pkcs7) only match a signature over the sorted order.
    return b"".join(sorted(attrs))
