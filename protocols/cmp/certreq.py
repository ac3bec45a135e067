"""A CRMF certificate request (RFC 4211 §5) as the engine's verified request.

The engine takes PKCS #10 requests: ``Engine.submit`` verifies one, unless the front end
hands it the verified form (``ParsedCSR``, ``submit(verified=...)``). A CRMF request has no
PKCS #10 signature, only its POP (``protocols.cmp.pop``), so ``parsed_request`` builds that
verified form from the certTemplate once the POP verified: its subject, its public key
(judged by ``server.ca.goodkey`` as every request's is) and the subject alternative names of
its extensions. Other template fields (validity, issuer, other extensions) are not taken:
the profile decides what the certificate says, as it does for a CSR's.

What the engine records as the request (``csr_der``) is the template as a PKCS #10
CertificationRequest (RFC 2986 §4) whose signature is the CRMF POP signature. It shows the
subject and key like any CSR, but its signature is over the CertRequest (RFC 4211 §4.1), not
over the certificationRequestInfo, so it does not verify as PKCS #10: a CRMF request held
for an administrator cannot be approved until the engine takes proofs of possession other
than a PKCS #10 signature (``Engine.approve`` verifies the stored request again).
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc2986, rfc5280

from protocols.cmp.messages import ASN1
from protocols.cmp.pop import template_public_key_der
from server.ca.csr import MAX_CSR_BYTES, ParsedCSR
from server.ca.goodkey import check_public_key
from server.errors import BadCSR, Malformed
from server.model import Identifier, subject_attrs

ID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"  # PKCS #9 extensionRequest (RFC 2985 §5.4.2)


def parsed_request(template: ASN1, *, pop_algorithm: str, pop_signature: bytes) -> ParsedCSR:
    """The engine's verified request for a certTemplate whose POP was checked. Raises
    ``BadCSR`` or ``BadPublicKey`` like ``server.ca.csr.verify_csr``."""
    der = _as_pkcs10(template, pop_algorithm, pop_signature)
    if len(der) > MAX_CSR_BYTES:
        raise BadCSR(f"a certificate request is at most {MAX_CSR_BYTES // 1024} KiB here")
    try:
        csr = x509.load_der_x509_csr(der)
        name = csr.subject
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadCSR("the certTemplate's subject or public key is malformed") from exc
    key_type = check_public_key(public_key)
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ParsedCSR(
        der=der,
        csr=csr,
        public_key=public_key,
        key_type=key_type,
        subject=subject_attrs(name),
        subject_text=name.rfc4514_string(),
        one_attribute_per_rdn=all(len(rdn) == 1 for rdn in name.rdns),
        sans=_sans(csr),
        key_sha256=hashlib.sha256(spki).hexdigest(),
    )


def _as_pkcs10(template: ASN1, algorithm: str, signature: bytes) -> bytes:
    req = rfc2986.CertificationRequest()
    info = req["certificationRequestInfo"]
    info["version"] = 0
    info["subject"]["rdnSequence"] = template["subject"]["rdnSequence"]
    spki_der = template_public_key_der(template)
    info["subjectPKInfo"] = _decode(spki_der, rfc5280.SubjectPublicKeyInfo())
    info["attributes"]  # instantiate: an empty SET is what a CSR without attributes has
    if template["extensions"].isValue:
        attribute = info["attributes"].componentType.clone()
        attribute["type"] = rfc5280.univ.ObjectIdentifier(ID_EXTENSION_REQUEST)
        extensions = rfc5280.Extensions()
        for ext in template["extensions"]:
            extensions.append(ext)
        attribute["values"].append(encoder.encode(extensions))
        info["attributes"].append(attribute)
    req["signatureAlgorithm"]["algorithm"] = rfc5280.univ.ObjectIdentifier(algorithm)
    req["signature"] = rfc5280.univ.BitString.fromOctetString(signature)
    return bytes(encoder.encode(req))


def _decode(der: bytes, spec: ASN1) -> ASN1:
    value, _ = decoder.decode(der, asn1Spec=spec)
    return value


def _sans(csr: x509.CertificateSigningRequest) -> tuple[Identifier, ...]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    except ValueError as exc:
        raise BadCSR("the certTemplate's extensions are malformed") from exc
    try:
        return tuple(Identifier.from_general_name(n) for n in ext.value)
    except Malformed as exc:
        raise BadCSR(exc.detail) from exc
