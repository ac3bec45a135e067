"""The root and issuing CA certificates certforge creates, and the URLs they point to.

RFC 5280 §4.2.1.9: basicConstraints is critical with cA asserted; an issuing CA has
pathLenConstraint 0 because it signs only end-entity certificates. §4.2.1.3: keyCertSign and
cRLSign (and digitalSignature for issuing CAs, which sign OCSP responses themselves). §4.2.1.2:
every CA certificate carries a subjectKeyIdentifier; §4.2.1.1: the issuing CA's
authorityKeyIdentifier is the root's. Issuing CAs also point at the root's CRL and certificate.

Deliberately absent: an extKeyUsage on issuing CAs (it would restrict what they can sign, and
the profiles decide that) and name constraints.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from server.ca.keystore import CAKey, signing_hash
from server.ca.serials import new_serial

ROOT = "root"  # the root's name in file names and URLs, so no issuer may take it


def crl_url(base_url: str, name: str) -> str:
    return f"{base_url}/crl/{name}.crl"


def delta_crl_url(base_url: str, name: str) -> str:
    return f"{base_url}/crl/{name}/delta.crl"


def ca_issuers_url(base_url: str, name: str) -> str:
    """Where the CA certificate is published, DER-encoded (RFC 5280 §4.2.2.1)."""
    return f"{base_url}/ca/{name}.cer"


def ski_of(cert: x509.Certificate) -> bytes:
    """The certificate's subject key identifier, or the RFC 5280 method-1 one if it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def root_certificate(
    *, ca_name: str, key: CAKey, now: datetime, validity_days: int
) -> x509.Certificate:
    """A self-signed root: ``O=<ca name>, CN=<ca name> Root CA``."""
    name = ca_subject(ca_name, f"{ca_name} Root CA")
    return _sign(
        subject=name,
        issuer=name,
        public_key=key.public_key(),
        signer=key,
        validity=(now, now + timedelta(days=validity_days)),
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (_ca_key_usage(digital_signature=False), True),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ],
    )


def issuing_certificate(
    *,
    ca_name: str,
    issuer_name: str,
    key: CAKey,
    root: tuple[x509.Certificate, CAKey],
    base_url: str,
    now: datetime,
    validity_days: int,
) -> x509.Certificate:
    """An issuing CA signed by the root: ``O=<ca name>, CN=<ca name> <issuer> Issuing CA``."""
    root_cert, root_key = root
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        x509.SubjectKeyIdentifier(ski_of(root_cert))
    )
    crl = x509.UniformResourceIdentifier(crl_url(base_url, ROOT))
    cdp = x509.CRLDistributionPoints([x509.DistributionPoint([crl], None, None, None)])
    location = x509.UniformResourceIdentifier(ca_issuers_url(base_url, ROOT))
    aia = x509.AuthorityInformationAccess(
        [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, location)]
    )
    not_after = min(now + timedelta(days=validity_days), root_cert.not_valid_after_utc)
    return _sign(
        subject=ca_subject(ca_name, f"{ca_name} {issuer_name} Issuing CA"),
        issuer=root_cert.subject,
        public_key=key.public_key(),
        signer=root_key,
        validity=(now, not_after),
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_ca_key_usage(digital_signature=True), True),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (aki, False),
            (cdp, False),
            (aia, False),
        ],
    )


def ca_subject(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signer: CAKey,
    validity: tuple[datetime, datetime],
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, signing_hash(signer))


def _ca_key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
