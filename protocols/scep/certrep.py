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
import os
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from protocols.scep.failinfo import FailInfo
from protocols.scep.messages import NONCE_BYTES, Addressee, MessageType, PKIStatus

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class Signer:
    """The identity that signs CertReps and opens envelopes: the CA itself or its RA."""

    certificate: asn1_x509.Certificate
    key: rsa.RSAPrivateKey


def cert_rep(
    *,
    signer: Signer,
    to: Addressee,
    status: PKIStatus,
    now: datetime,
    fail_info: FailInfo | None = None,
    envelope: bytes | None = None,
) -> bytes:
    content = envelope or b""
    attrs = [
        _attr("content_type", "data"),
        _attr("signing_time", cms.Time(name="utc_time", value=now)),
        _attr("message_digest", hashlib.new(to.digest, content).digest()),
        _attr("scep_message_type", str(MessageType.CERT_REP)),
        _attr("scep_pki_status", str(status)),
        _attr("scep_transaction_id", to.transaction_id),
        _attr("scep_recipient_nonce", to.sender_nonce),
        _attr("scep_sender_nonce", os.urandom(NONCE_BYTES)),
    ]
    if status is PKIStatus.FAILURE:
        attrs.append(_attr("scep_fail_info", str(fail_info or FailInfo.BAD_REQUEST)))
    # DER: a SET OF is sorted by the encodings of its elements (X.690 §11.6). Verifiers that
    # re-encode the attributes (Go's pkcs7) only match a signature over the sorted order.
    signed_attrs = cms.CMSAttributes(sorted(attrs, key=lambda a: a.dump()))
    signature = signer.key.sign(signed_attrs.dump(), PKCS1v15(), _HASHES[to.digest]())
    encap: dict[str, object] = {"content_type": "data"}
    if envelope is not None:
        encap["content"] = envelope
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": to.digest})],
            "encap_content_info": encap,
            "certificates": [signer.certificate],
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier(
                        name="issuer_and_serial_number",
                        value=cms.IssuerAndSerialNumber(
                            {
                                "issuer": signer.certificate.issuer,
                                "serial_number": signer.certificate.serial_number,
                            }
                        ),
                    ),
                    "digest_algorithm": {"algorithm": to.digest},
                    "signed_attrs": signed_attrs,
                    "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
                    "signature": signature,
                }
            ],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def _attr(name: str, value: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": name, "values": [value]})
