"""build_certificate and key_usage_for: what goes into an end-entity certificate."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtensionOID, ObjectIdentifier

from server.ca.build import build_certificate, key_usage_for
from server.ca.issuers import CAHierarchy, IssuingCA, load_or_create
from server.config import IssuerConfig
from server.errors import Internal
from server.model import CertificateDraft, ExtraExtension, Identifier, IdentifierType
from tests.unit.ca.helpers import NOW, SigningKey, ec_key, make_config, rsa_key

DRAFT = CertificateDraft(
    profile="tls-server",
    issuer="default",
    subject=(("2.5.4.3", "www.example.com"),),
    sans=(Identifier(IdentifierType.DNS, "www.example.com"),),
    validity=timedelta(days=90),
    key_type="ec-p256",
    key_usage=frozenset({"digitalSignature"}),
    extended_key_usage=("1.3.6.1.5.5.7.3.1",),
    certificate_policies=("2.23.140.1.2.1",),
)


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> CAHierarchy:
    config = make_config(
        tmp_path_factory.mktemp("ca"),
        issuers=(IssuerConfig(), IssuerConfig(name="rsa", key_type="rsa-2048")),
    )
    return load_or_create(config, passphrase=None, now=NOW)


def build(
    ca: IssuingCA, draft: CertificateDraft = DRAFT, key: SigningKey | None = None
) -> x509.Certificate:
    public_key = (key or ec_key()).public_key()
    return build_certificate(draft, public_key=public_key, issuer=ca, serial=12345, now=NOW)


def ext(cert: x509.Certificate, oid: ObjectIdentifier) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(oid)


@pytest.mark.parametrize(
    ("key_type", "names", "expected"),
    [
        pytest.param(
            "rsa-2048",
            {"digitalSignature", "keyEncipherment", "keyAgreement"},
            {"digitalSignature", "keyEncipherment"},
            id="rsa/no_key_agreement",
        ),
        pytest.param(
            "ec-p256",
            {"digitalSignature", "keyEncipherment", "dataEncipherment", "keyAgreement"},
            {"digitalSignature", "keyAgreement"},
            id="ecdsa/no_encipherment",
        ),
        pytest.param(
            "ed25519",
            {"digitalSignature", "keyEncipherment", "keyAgreement", "nonRepudiation"},
            {"digitalSignature", "nonRepudiation"},
            id="ed25519/signature_only",
        ),
        pytest.param(
            "rsa-2048",
            {"digitalSignature", "keyCertSign", "cRLSign"},
            {"digitalSignature"},
            id="end_entity/no_ca_usages",
        ),
    ],
)
def test_key_usage_for(key_type: str, names: set[str], expected: set[str]) -> None:
    assert key_usage_for(key_type, names) == expected


def test_certificate_contents(cas: CAHierarchy) -> None:
    ca = cas.issuer("default")
    key = ec_key()
    cert = build(ca, key=key)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.serial_number == 12345
    assert cert.issuer == ca.certificate.subject
    assert cert.subject.rfc4514_string() == "CN=www.example.com"
    assert cert.public_key() == key.public_key()
    critical = {e.oid: e.critical for e in cert.extensions}
    assert critical == {
        ExtensionOID.BASIC_CONSTRAINTS: True,
        ExtensionOID.KEY_USAGE: True,
        ExtensionOID.EXTENDED_KEY_USAGE: False,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME: False,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER: False,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: False,
        ExtensionOID.CRL_DISTRIBUTION_POINTS: False,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS: False,
        ExtensionOID.CERTIFICATE_POLICIES: False,
    }
    assert ext(cert, ExtensionOID.BASIC_CONSTRAINTS).value == x509.BasicConstraints(False, None)
    aki = ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ca.ski
    assert ca.crl_url in str(ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS).value)
    aia = str(ext(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value)
    assert ca.ocsp_url in aia
    assert ca.ca_issuers_url in aia


def test_validity_is_exact_and_truncated_to_the_second(cas: CAHierarchy) -> None:
    ca = cas.issuer("default")
    now = NOW + timedelta(microseconds=987654)
    cert = build_certificate(DRAFT, public_key=ec_key().public_key(), issuer=ca, serial=1, now=now)
    assert cert.not_valid_before_utc == NOW
    # RFC 5280 §4.1.2.5: both ends inclusive, so 90 days is notAfter = notBefore + 90d - 1s.
    assert cert.not_valid_after_utc == NOW + timedelta(days=90, seconds=-1)


def test_validity_never_outlives_the_issuer(cas: CAHierarchy) -> None:
    ca = cas.issuer("default")
    cert = build(ca, replace(DRAFT, validity=timedelta(days=100 * 365)))
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_an_expired_issuer_cannot_issue(cas: CAHierarchy) -> None:
    ca = cas.issuer("default")
    with pytest.raises(Internal):
        build_certificate(
            DRAFT,
            public_key=ec_key().public_key(),
            issuer=ca,
            serial=1,
            now=ca.certificate.not_valid_after_utc + timedelta(days=1),
        )


def test_empty_subject_makes_the_san_critical(cas: CAHierarchy) -> None:
    cert = build(cas.issuer("default"), replace(DRAFT, subject=()))
    assert cert.subject == x509.Name([])
    assert ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).critical


def test_no_sans_no_san_extension(cas: CAHierarchy) -> None:
    cert = build(cas.issuer("default"), replace(DRAFT, sans=()))
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)


def test_empty_lists_omit_their_extensions(cas: CAHierarchy) -> None:
    draft = replace(DRAFT, extended_key_usage=(), certificate_policies=(), key_usage=frozenset())
    oids = {e.oid for e in build(cas.issuer("default"), draft).extensions}
    assert ExtensionOID.EXTENDED_KEY_USAGE not in oids
    assert ExtensionOID.CERTIFICATE_POLICIES not in oids
    assert ExtensionOID.KEY_USAGE not in oids


def test_key_usage_names_map_to_bits(cas: CAHierarchy) -> None:
    names = frozenset({"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment"})
    usage = ext(
        build(cas.issuer("default"), replace(DRAFT, key_usage=names), rsa_key()),
        ExtensionOID.KEY_USAGE,
    ).value
    assert isinstance(usage, x509.KeyUsage)
    assert (
        usage.digital_signature,
        usage.content_commitment,
        usage.key_encipherment,
        usage.data_encipherment,
        usage.key_agreement,
    ) == (True, True, True, True, False)


def test_extra_extensions_are_added_verbatim(cas: CAHierarchy) -> None:
    extra = ExtraExtension("1.3.6.1.4.1.99999.1", critical=False, value_der=b"\x05\x00")
    cert = build(cas.issuer("default"), replace(DRAFT, extensions=(extra,)))
    value = ext(cert, ObjectIdentifier("1.3.6.1.4.1.99999.1")).value
    assert isinstance(value, x509.UnrecognizedExtension)
    assert value.value == b"\x05\x00"


@pytest.mark.parametrize(
    "draft",
    [
        pytest.param(replace(DRAFT, subject=(), sans=()), id="bad_draft/no_subject_no_san"),
        pytest.param(
            replace(
                DRAFT,
                extensions=(
                    ExtraExtension(ExtensionOID.KEY_USAGE.dotted_string, True, b"\x03\x02\x07\x80"),
                ),
            ),
            id="bad_draft/duplicate_extension",
        ),
        pytest.param(
            replace(DRAFT, key_usage=frozenset({"keyCertSign"})), id="bad_draft/ca_key_usage"
        ),
    ],
)
def test_bad_drafts_are_internal_errors(cas: CAHierarchy, draft: CertificateDraft) -> None:
    with pytest.raises(Internal):
        build(cas.issuer("default"), draft)


def test_rsa_issuer_and_ed25519_subject(cas: CAHierarchy) -> None:
    ca = cas.issuer("rsa")
    cert = build(ca, replace(DRAFT, key_type="ed25519"), ed25519.Ed25519PrivateKey.generate())
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"


def test_issuer_caches_are_computed_once(cas: CAHierarchy) -> None:
    ca = cas.issuer("default")
    build(ca)
    assert ca.leaf_extensions is ca.leaf_extensions
    assert ca.subject is ca.subject
