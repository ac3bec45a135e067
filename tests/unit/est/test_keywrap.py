"""Encrypted server-generated keys: what a request asks for, and to whom the key may go
(``protocols.est.messages.decrypt_key_identifier``, ``protocols.est.keywrap``). The
encryption itself is checked by openssl in tests/integration/test_est.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type

from protocols.est import keywrap
from protocols.est.messages import (
    ASYMMETRIC_DECRYPT_KEY_IDENTIFIER,
    DECRYPT_KEY_IDENTIFIER,
    decrypt_key_identifier,
)
from server.errors import BadCSR, BadPublicKey, CertforgeError, Forbidden, Malformed, Unavailable

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def request_with(oid: str | None, value: bytes, tag: _ASN1Type = _ASN1Type.OctetString) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string("CN=device")
    )
    if oid is not None:
        builder = builder.add_attribute(x509.ObjectIdentifier(oid), value, _tag=tag)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def certificate(key: Key, key_usage: x509.KeyUsage | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name.from_rfc4514_string("CN=device")
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest)


def usage(**allowed: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    flags = {n: allowed.get(n, False) for n in names}
    return x509.KeyUsage(**flags)


def test_the_asymmetric_identifier_is_read_and_its_absence_is_none() -> None:
    assert decrypt_key_identifier(request_with(None, b"")) is None
    der = request_with(ASYMMETRIC_DECRYPT_KEY_IDENTIFIER, b"\x0a\x0b")
    assert decrypt_key_identifier(der) == b"\x0a\x0b"


@pytest.mark.parametrize(
    ("oid", "value", "tag", "kind"),
    [
        pytest.param(
            DECRYPT_KEY_IDENTIFIER, b"kek", _ASN1Type.OctetString, Unavailable, id="symmetric"
        ),
        pytest.param(
            ASYMMETRIC_DECRYPT_KEY_IDENTIFIER,
            b"ab",
            _ASN1Type.UTF8String,
            BadCSR,
            id="bad_csr/identifier_not_an_octet_string",
        ),
        pytest.param(
            ASYMMETRIC_DECRYPT_KEY_IDENTIFIER,
            b"",
            _ASN1Type.OctetString,
            BadCSR,
            id="bad_csr/empty_identifier",
        ),
    ],
)
def test_requests_for_keys_certforge_cannot_encrypt_to(
    oid: str, value: bytes, tag: _ASN1Type, kind: type[CertforgeError]
) -> None:
    with pytest.raises(kind):
        decrypt_key_identifier(request_with(oid, value, tag))


def test_the_recipient_is_the_client_certificate_it_names() -> None:
    cert = certificate(ec.generate_private_key(ec.SECP256R1()))
    ski = keywrap.subject_key_id(cert)
    assert keywrap.recipient_for(ski, cert) is cert
    with pytest.raises(Malformed):
        keywrap.recipient_for(b"\x01" * 20, cert)  # names another key
    with pytest.raises(Malformed):
        keywrap.recipient_for(ski, None)  # no client certificate to encrypt to


@pytest.mark.parametrize(
    ("key", "key_usage", "kind"),
    [
        pytest.param(
            ec.generate_private_key(ec.SECP256R1()),
            usage(digital_signature=True),
            Forbidden,
            id="forbidden/ec_without_key_agreement",
        ),
        pytest.param(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            usage(digital_signature=True, key_agreement=True),
            Forbidden,
            id="forbidden/rsa_without_key_encipherment",
        ),
        pytest.param(
            ed25519.Ed25519PrivateKey.generate(), None, BadPublicKey, id="bad_public_key/ed25519"
        ),
    ],
)
def test_keys_that_may_not_receive_a_key(
    key: Key, key_usage: x509.KeyUsage | None, kind: type[CertforgeError]
) -> None:
    """RFC 7030 §4.4.1.2: the key "MUST either explicitly support keyTransport or
    keyAgreement or its use MUST be unrestricted"."""
    cert = certificate(key, key_usage)
    with pytest.raises(kind):
        keywrap.recipient_for(keywrap.subject_key_id(cert), cert)


def test_allowed_key_usages_pass() -> None:
    ec_cert = certificate(ec.generate_private_key(ec.SECP256R1()), usage(key_agreement=True))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_cert = certificate(rsa_key, usage(key_encipherment=True))
    for cert in (ec_cert, rsa_cert):
        assert keywrap.recipient_for(keywrap.subject_key_id(cert), cert) is cert
