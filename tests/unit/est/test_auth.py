"""What a TLS client certificate proves over EST: its purpose (RFC 5280 §4.2.1.12) and the
names it certifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from protocols.est.auth import ClientCertificate, certified_names, is_for_client_auth
from server.model import Identifier

KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(*extensions: x509.ExtensionType) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev.example.com")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(KEY, hashes.SHA256())


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        pytest.param((), True, id="no_eku/any_purpose"),
        pytest.param(
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),), True, id="client_auth"
        ),
        pytest.param(
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),),
            True,
            id="any_extended_key_usage",
        ),
        pytest.param(
            (
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
            ),
            True,
            id="server_and_client_auth",
        ),
        pytest.param(
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),),
            False,
            id="refused/server_auth_only",
        ),
        pytest.param(
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),),
            False,
            id="refused/code_signing",
        ),
    ],
)
def test_only_certificates_for_client_authentication(
    extensions: tuple[x509.ExtensionType, ...], expected: bool
) -> None:
    assert is_for_client_auth(certificate(*extensions)) is expected


def test_an_anchors_certificate_certifies_the_names_certforge_can_issue() -> None:
    """An IDevID's hardwareModuleName (an otherName) is no name to ask a certificate for."""
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("Dev.Example.com"),
            x509.OtherName(ObjectIdentifier("1.3.6.1.5.5.7.8.4"), b"\x30\x00"),
        ]
    )
    cert = ClientCertificate(certificate(san), None, "CN=anchor")
    assert certified_names(cert) == {Identifier.parse("dns:dev.example.com")}
    assert certified_names(ClientCertificate(certificate(), None, "CN=anchor")) == frozenset()
