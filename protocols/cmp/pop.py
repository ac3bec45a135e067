"""Proof of possession of the key a certificate is asked for (RFC 4211 §4, RFC 9483 §4.1.1).

- CRMF (ir, cr, kur): signature POP only. RFC 4211 §4.1: with the subject and public key in
  the certTemplate, poposkInput is absent and the signature is over the DER CertRequest;
  ``verify_crmf_pop`` checks it with the template's key.
- PKCS #10 (p10cr): the request's own signature (RFC 2986 §3), ``verify_p10_pop``.

Refused with badPOP: raVerified (RFC 4211 §4: an RA asserts it once it verified the POP
itself; certforge is the only RA it trusts, so it takes it from no client), a missing POP,
encryption- and agreement-based POP (which need an encrypted certificate or a challenge
round, RFC 4210 §5.2.8, not built), poposkInput, and a signature that does not verify.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyasn1.codec.der import encoder
from pyasn1_alt_modules import rfc5280

from protocols.cmp.failinfo import CMPFailure, FailInfo
from protocols.cmp.messages import ASN1
from protocols.cmp.protection import ECDSA_HASHES, ID_ED25519, RSA_HASHES


def template_public_key_der(template: ASN1) -> bytes:
    """The certTemplate's publicKey as DER SubjectPublicKeyInfo (it is [6] IMPLICIT there).
    Raises badCertTemplate when absent: RFC 9483 §4.1.1's central key generation, which
    certforge does not offer, is the only use of a template without one."""
    key = template["publicKey"]
    if not key.isValue:
        raise CMPFailure(FailInfo.BAD_CERT_TEMPLATE, "the certTemplate has no publicKey")
    spki = rfc5280.SubjectPublicKeyInfo()
    spki["algorithm"] = key["algorithm"]
    spki["subjectPublicKey"] = key["subjectPublicKey"]
    return bytes(encoder.encode(spki))


def verify_crmf_pop(cert_req_msg: ASN1) -> tuple[str, bytes]:
    """Check a CertReqMsg's signature POP; returns its (algorithm OID, signature)."""
    popo = cert_req_msg["popo"]
    if not popo.isValue:
        raise CMPFailure(FailInfo.BAD_POP, "the request has no proof of possession")
    kind = popo.getName()
    if kind == "raVerified":
        raise CMPFailure(FailInfo.BAD_POP, "raVerified is not accepted from clients")
    if kind != "signature":
        raise CMPFailure(FailInfo.BAD_POP, f"{kind} proof of possession is not supported")
    signing_key = popo["signature"]
    if signing_key["poposkInput"].isValue:
        # RFC 4211 §4.1: poposkInput is used only when the template lacks the subject or key.
        raise CMPFailure(FailInfo.BAD_POP, "poposkInput is not supported; send the subject")
    if not cert_req_msg["certReq"]["certTemplate"]["subject"].isValue:
        raise CMPFailure(FailInfo.BAD_CERT_TEMPLATE, "the certTemplate has no subject")
    key_der = template_public_key_der(cert_req_msg["certReq"]["certTemplate"])
    oid = str(signing_key["algorithmIdentifier"]["algorithm"])
    signature = bytes(signing_key["signature"].asOctets())
    signed = bytes(encoder.encode(cert_req_msg["certReq"]))
    try:
        key = load_der_public_key(key_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CMPFailure(
            FailInfo.BAD_CERT_TEMPLATE, "the template's public key is malformed"
        ) from exc
    _verify(key, oid, signature, signed)
    return oid, signature


def _verify(key: object, oid: str, signature: bytes, data: bytes) -> None:
    try:
        match key:
            case ec.EllipticCurvePublicKey() if oid in ECDSA_HASHES:
                key.verify(signature, data, ec.ECDSA(ECDSA_HASHES[oid]()))
            case rsa.RSAPublicKey() if oid in RSA_HASHES:
                key.verify(signature, data, padding.PKCS1v15(), RSA_HASHES[oid]())
            case ed25519.Ed25519PublicKey() if oid == ID_ED25519:
                key.verify(signature, data)
            case _:
                raise CMPFailure(FailInfo.BAD_ALG, f"POP algorithm {oid} does not fit the key")
    except InvalidSignature as exc:
        raise CMPFailure(FailInfo.BAD_POP, "the proof of possession does not verify") from exc


def verify_p10_pop(csr_der: bytes) -> None:
    """RFC 2986 §3: a PKCS #10 request's signature proves possession of its key."""
    try:
        csr = x509.load_der_x509_csr(csr_der)
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CMPFailure(FailInfo.BAD_DATA_FORMAT, "the p10cr is not a PKCS #10 request") from exc
    if not valid:
        raise CMPFailure(FailInfo.BAD_POP, "the PKCS #10 signature does not verify")
