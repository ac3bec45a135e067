"""From a certificate draft to a signed end-entity certificate (RFC 5280 §4.1 and §4.2).

The draft says what the certificate contains; this module says how it is encoded. Every
certificate gets, in this order: basicConstraints (cA false, critical), keyUsage (critical),
extKeyUsage, subjectAltName, subjectKeyIdentifier, the issuing CA's authorityKeyIdentifier,
CRL distribution point and authorityInfoAccess, certificatePolicies, then the draft's own
extensions verbatim.

This is the hot path of issuance, compared in ``bench/issuance.py`` with bare cryptography
signing, so nothing is computed twice: the issuer's name, hash and extensions are cached on
``IssuingCA``, the extensions that depend only on the profile are cached here, and the builder
is constructed in one call rather than copied once per ``add_extension``.

Not done here: pre-issuance linting (issue 16) and Certificate Transparency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID, ObjectIdentifier

from server.ca.issuers import IssuingCA
from server.config import SUBJECT_ATTRIBUTES
from server.errors import BadCSR, Internal
from server.model import CertificateDraft, Identifier, IdentifierType, SubjectAttrs, subject_name

_KEY_USAGE_FLAGS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
}
_ONE_SECOND = timedelta(seconds=1)
_NOT_A_CA = x509.Extension(
    ExtensionOID.BASIC_CONSTRAINTS, True, x509.BasicConstraints(ca=False, path_length=None)
)


def key_usage_for(key_type: str, names: Iterable[str]) -> frozenset[str]:
    """The profile's key usages that make sense for this kind of subject key.

    - keyEncipherment and dataEncipherment need a key that encrypts: RSA only (RFC 8813 §3
      for ECDSA; RFC 8410 §5 for Ed25519, which allows only digitalSignature, nonRepudiation,
      keyCertSign and cRLSign).
    - keyAgreement needs a key-agreement key: ECDH, never RSA or Ed25519.
    - keyCertSign and cRLSign are dropped: RFC 5280 §4.2.1.9, "If the keyCertSign bit is
      asserted, then the cA bit in the basic constraints extension MUST also be asserted",
      and these certificates are never CAs.
    """
    dropped = {"keyCertSign", "cRLSign"}
    if not key_type.startswith("rsa"):
        dropped |= {"keyEncipherment", "dataEncipherment"}
    if key_type.startswith("rsa") or key_type == "ed25519":
        dropped.add("keyAgreement")
    return frozenset(names) - dropped


# RFC 5280 Appendix A.1, the upper bounds (ub-*) of the attributes certforge keeps, in
# characters; cryptography itself checks only CN (1 to 64 UTF-8 octets) and C (2).
CN_OID, CN_UPPER_BOUND = "2.5.4.3", 64  # ub-common-name
_UPPER_BOUNDS = {
    CN_OID: CN_UPPER_BOUND,
    "2.5.4.10": 64,  # ub-organization-name
    "2.5.4.11": 64,  # ub-organizational-unit-name
    "2.5.4.5": 64,  # ub-serial-number
    "2.5.4.7": 128,  # ub-locality-name
    "2.5.4.8": 128,  # ub-state-name
    "1.2.840.113549.1.9.1": 255,  # ub-emailaddress-length
}
# The attributes cryptography encodes as PrintableString (X.520 gives them no other syntax;
# X.680 §41.4 its characters) or IA5String (ASCII); it refuses other characters only when
# the certificate is signed.
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*\Z")
_PRINTABLE_STRING = frozenset({"2.5.4.6", "2.5.4.5", "2.5.4.46", "1.3.6.1.4.1.311.60.2.1.3"})
_IA5_STRING = frozenset({"1.2.840.113549.1.9.1", "0.9.2342.19200300.100.1.25"})
# A DNS name in preferred name syntax (RFC 1034 §3.5), which a profile may make the SAN.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?![0-9]+\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z"
)
_ATTRIBUTE_NAMES = {oid: name for name, oid in SUBJECT_ATTRIBUTES.items()}


def check_subject(attrs: SubjectAttrs, *, sans: Sequence[Identifier] = ()) -> None:
    """Raise ``BadCSR`` naming the first attribute no certificate can carry as it is: empty,
    too long, or with characters its string type cannot hold; checked when the request is
    verified, so that none fails when it is signed (or when an administrator approves it).

    One exception: a CN over ub-common-name that is one of ``sans`` (or, without SANs, a DNS
    name, which a profile may make the SAN) is left for the profile to drop, the SAN carrying
    the name, as Boulder does.
    """
    for oid, value in attrs:
        name = _ATTRIBUTE_NAMES.get(oid, oid)
        bound = _UPPER_BOUNDS.get(oid)
        if oid == CN_OID and len(value) > CN_UPPER_BOUND and _may_drop(value, sans):
            continue
        if bound is not None and not 1 <= len(value) <= bound:
            raise BadCSR(f"the subject's {name} must be 1 to {bound} characters, not {len(value)}")
        if oid in _PRINTABLE_STRING and not _PRINTABLE.match(value):
            raise BadCSR(f"the subject's {name} has characters a PrintableString cannot hold")
        if oid in _IA5_STRING and not value.isascii():
            raise BadCSR(f"the subject's {name} must be ASCII (IA5String)")
        try:
            x509.NameAttribute(ObjectIdentifier(oid), value)
        except ValueError as exc:
            raise BadCSR(f"the subject's {name} cannot be put in a certificate") from exc


def _may_drop(cn: str, sans: Sequence[Identifier]) -> bool:
    if not sans:
        return _HOST_NAME.match(cn.lower()) is not None
    return any(
        san.type in (IdentifierType.DNS, IdentifierType.IP) and san.value == cn.lower()
        for san in sans
    )


def build_certificate(
    draft: CertificateDraft,
    *,
    public_key: CertificatePublicKeyTypes,
    issuer: IssuingCA,
    serial: int,
    now: datetime,
) -> x509.Certificate:
    """Build the certificate the draft describes and sign it with the issuing CA's key."""
    not_before, not_after = _validity(draft, issuer, now)
    if not 0 < serial < 2**159:  # RFC 5280 §4.1.2.2: positive, at most 20 octets
        raise Internal("the serial number is out of range")
    builder = x509.CertificateBuilder(
        issuer_name=issuer.subject,
        subject_name=subject_name(draft.subject),
        public_key=public_key,
        serial_number=serial,
        # The builder's own setters store naive UTC; the constructor takes them as stored.
        not_valid_before=not_before.replace(tzinfo=None),
        not_valid_after=not_after.replace(tzinfo=None),
        extensions=_extensions(draft, public_key, issuer, serial),
    )
    return builder.sign(issuer.key, issuer.hash_algorithm)


def _validity(
    draft: CertificateDraft, issuer: IssuingCA, now: datetime
) -> tuple[datetime, datetime]:
    """notBefore is now to the second; notAfter makes the validity exactly ``draft.validity``.

    RFC 5280 §4.1.2.5: the validity period runs from notBefore "through" notAfter, both
    inclusive, hence the one second less. A certificate never outlives its issuer.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    not_before = now.astimezone(UTC).replace(microsecond=0)
    not_after = min(not_before + draft.validity - _ONE_SECOND, issuer.not_after)
    if not_after <= not_before:
        raise Internal(f"issuing CA {issuer.name!r} has expired and cannot issue")
    return not_before, not_after


def _extensions(
    draft: CertificateDraft, public_key: CertificatePublicKeyTypes, issuer: IssuingCA, serial: int
) -> list[x509.Extension[x509.ExtensionType]]:
    extensions: list[x509.Extension[x509.ExtensionType]] = [_NOT_A_CA]
    for cached in (_key_usage(draft.key_usage), _extended_key_usage(draft.extended_key_usage)):
        if cached is not None:
            extensions.append(cached)
    if draft.sans:
        # RFC 5280 §4.2.1.6: "If the subject field contains an empty sequence, then the issuing
        # CA MUST include a subjectAltName extension that is marked as critical."
        sans = x509.SubjectAlternativeName([i.to_general_name() for i in draft.sans])
        extensions.append(x509.Extension(sans.oid, not draft.subject, sans))
    elif not draft.subject:
        raise Internal("a certificate needs a subject or a subject alternative name")
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    extensions.append(x509.Extension(ski.oid, False, ski))
    if draft.extensions and _is_ocsp_responder(draft):
        # CA/B Forum BR §7.1.2.8: an OCSP responder certificate has no CRL distribution point
        # (and no AIA is recommended); with id-pkix-ocsp-nocheck nobody checks it anyway
        # (RFC 6960 §4.2.2.2.1). The authority key identifier stays.
        extensions.append(issuer.leaf_extensions[0])
    else:
        extensions.extend(issuer.leaf_extensions_for(serial))
    policies = _certificate_policies(draft.certificate_policies)
    if policies is not None:
        extensions.append(policies)
    if draft.extensions:
        _add_extra(extensions, draft)
    return extensions


_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5"  # id-pkix-ocsp-nocheck


def _is_ocsp_responder(draft: CertificateDraft) -> bool:
    return any(e.oid == _OCSP_NOCHECK for e in draft.extensions)


def _add_extra(
    extensions: list[x509.Extension[x509.ExtensionType]], draft: CertificateDraft
) -> None:
    """Append a policy module's extensions, refusing one that repeats an extension.

    RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a particular
    extension."
    """
    present = {e.oid for e in extensions}
    for extra in draft.extensions:
        oid = ObjectIdentifier(extra.oid)
        if oid in present:
            raise Internal(f"extension {extra.oid} appears twice in the certificate draft")
        present.add(oid)
        extensions.append(
            x509.Extension(oid, extra.critical, x509.UnrecognizedExtension(oid, extra.value_der))
        )


@lru_cache(maxsize=256)
def _key_usage(names: frozenset[str]) -> x509.Extension[x509.ExtensionType] | None:
    """The keyUsage extension, critical; None when no usage is left.

    RFC 5280 §4.2.1.3: "When the keyUsage extension appears in a certificate, at least one of
    the bits MUST be set to 1", and conforming CAs "SHOULD mark this extension as critical".
    """
    unknown = names.difference(_KEY_USAGE_FLAGS)  # a frozenset, as typed (keys() gives a set)
    if unknown:
        raise Internal(f"key usage {sorted(unknown)[0]!r} cannot go in an end-entity certificate")
    if not names:
        return None
    flags = {flag: name in names for name, flag in _KEY_USAGE_FLAGS.items()}
    usage = x509.KeyUsage(
        **flags, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False
    )
    return x509.Extension(usage.oid, True, usage)


@lru_cache(maxsize=256)
def _extended_key_usage(oids: tuple[str, ...]) -> x509.Extension[x509.ExtensionType] | None:
    if not oids:
        return None
    usage = x509.ExtendedKeyUsage([ObjectIdentifier(oid) for oid in oids])
    return x509.Extension(usage.oid, False, usage)


@lru_cache(maxsize=256)
def _certificate_policies(oids: tuple[str, ...]) -> x509.Extension[x509.ExtensionType] | None:
    if not oids:
        return None
    policies = x509.CertificatePolicies(
        [x509.PolicyInformation(ObjectIdentifier(oid), None) for oid in oids]
    )
    return x509.Extension(policies.oid, False, policies)
