"""verify_csr, csr_der_from_bytes and challenge_password: each defect is a test id."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Callable

import pytest
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID

from server.ca.csr import challenge_password, csr_der_from_bytes, verify_csr
from server.errors import BadCSR, BadPublicKey, BadSignatureAlgorithm, CertforgeError
from server.model import Identifier, IdentifierType
from tests.unit.ca.helpers import (
    SigningKey,
    csr_with_raw_dns_name,
    ec_key,
    make_csr,
    make_csr_object,
    resign_csr,
    rsa_key,
)


def flip_last_byte(der: bytes) -> bytes:
    return der[:-1] + bytes([der[-1] ^ 0x01])


def with_cn(der: bytes, new_cn: bytes) -> bytes:
    """Change the CN without re-signing: same length, so the DER stays well formed."""
    assert len(new_cn) == len(b"www.example.com")
    return der.replace(b"www.example.com", new_cn, 1)


def duplicated_san_request() -> bytes:
    """A request whose extensionRequest holds the subjectAltName twice, signed properly."""
    key = ec_key()
    request = asn1_csr.CertificationRequest.load(make_csr(key))
    info = request["certification_request_info"]
    extensions = info["attributes"][0]["values"][0]
    extensions.append(extensions[0].copy())
    info["attributes"][0]["values"][0] = extensions
    data = info.dump(force=True)
    request["signature"] = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return bytes(request.dump(force=True))


def malformed_san_request() -> bytes:
    junk = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x04\x02ab")
    return make_csr(sans=[], extra=[junk])


def ed448_request() -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
    )
    return builder.sign(ed448.Ed448PrivateKey.generate(), None).public_bytes(
        serialization.Encoding.DER
    )


BAD_REQUESTS: list[object] = [
    pytest.param(lambda: b"hello, world", BadCSR, id="bad_csr/garbage"),
    pytest.param(lambda: b"", BadCSR, id="bad_csr/empty"),
    pytest.param(lambda: make_csr()[:-12], BadCSR, id="bad_csr/truncated"),
    pytest.param(lambda: make_csr() + b"\x00", BadCSR, id="bad_csr/trailing_data"),
    pytest.param(
        lambda: flip_last_byte(make_csr(rsa_key())), BadCSR, id="bad_csr/tampered_signature"
    ),
    pytest.param(
        lambda: with_cn(make_csr(rsa_key()), b"www.attack.com."),
        BadCSR,
        id="bad_csr/tampered_subject",
    ),
    pytest.param(
        lambda: make_csr(sans=[x509.RegisteredID(NameOID.COMMON_NAME)]),
        BadCSR,
        id="bad_csr/san_registered_id",
    ),
    pytest.param(
        lambda: make_csr(sans=[x509.DirectoryName(x509.Name([]))]),
        BadCSR,
        id="bad_csr/san_directory_name",
    ),
    pytest.param(
        lambda: make_csr(sans=[x509.OtherName(NameOID.COMMON_NAME, b"\x05\x00")]),
        BadCSR,
        id="bad_csr/san_other_name",
    ),
    pytest.param(
        lambda: make_csr(sans=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]),
        BadCSR,
        id="bad_csr/san_ip_range",
    ),
    pytest.param(malformed_san_request, BadCSR, id="bad_csr/san_not_der"),
    pytest.param(duplicated_san_request, BadCSR, id="bad_csr/duplicate_extension"),
    pytest.param(
        lambda: resign_csr(make_csr(k := ec_key()), k, "sha1_ecdsa"),
        BadSignatureAlgorithm,
        id="bad_signature_alg/ecdsa_sha1",
    ),
    pytest.param(
        lambda: resign_csr(make_csr(rsa_key()), rsa_key(), "sha1_rsa"),
        BadSignatureAlgorithm,
        id="bad_signature_alg/rsa_sha1",
    ),
    pytest.param(
        lambda: resign_csr(make_csr(rsa_key()), rsa_key(), "md5_rsa"),
        BadSignatureAlgorithm,
        id="bad_signature_alg/rsa_md5",
    ),
    pytest.param(lambda: make_csr(rsa_key(1024)), BadPublicKey, id="bad_public_key/rsa_1024"),
    pytest.param(ed448_request, BadPublicKey, id="bad_public_key/ed448"),
]


@pytest.mark.parametrize(("make", "kind"), BAD_REQUESTS)
def test_bad_requests_raise_their_kind(
    make: Callable[[], bytes], kind: type[CertforgeError]
) -> None:
    with pytest.raises(kind):
        verify_csr(make())


def test_a_good_request_is_parsed() -> None:
    key = ec_key()
    sans: list[x509.GeneralName] = [
        x509.DNSName("WWW.Example.com"),
        x509.DNSName("www.example.com"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.RFC822Name("a@example.com"),
        x509.UniformResourceIdentifier("urn:example:device:1"),
    ]
    parsed = verify_csr(make_csr(key, sans=sans))
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert parsed.key_type == "ec-p256"
    assert parsed.key_sha256 == hashlib.sha256(spki).hexdigest()
    assert parsed.subject == (("2.5.4.3", "www.example.com"),)
    assert parsed.sans == (
        Identifier(IdentifierType.DNS, "www.example.com"),
        Identifier(IdentifierType.IP, "192.0.2.1"),
        Identifier(IdentifierType.EMAIL, "a@example.com"),
        Identifier(IdentifierType.URI, "urn:example:device:1"),
    )


@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        pytest.param(lambda: rsa_key(), "rsa-2048", id="ok/rsa_2048"),
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), "ed25519", id="ok/ed25519"),
    ],
)
def test_other_key_types_verify(key: Callable[[], SigningKey], key_type: str) -> None:
    assert verify_csr(make_csr(key(), sans=[])).key_type == key_type


def test_a_request_without_subject_or_sans_still_parses() -> None:
    """Whether that may be issued is the policy's question, not the parser's."""
    parsed = verify_csr(make_csr(cn=None, sans=[]))
    assert parsed.subject == ()
    assert parsed.sans == ()


def pem_of(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def test_csr_der_from_bytes_accepts_pem_and_der() -> None:
    der = make_csr()
    assert csr_der_from_bytes(der) == der
    assert csr_der_from_bytes(pem_of(der, "CERTIFICATE REQUEST")) == der
    assert csr_der_from_bytes(b"\n  " + pem_of(der, "NEW CERTIFICATE REQUEST")) == der


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"hello", id="bad_csr/neither_pem_nor_der"),
        pytest.param(b"", id="bad_csr/empty"),
        pytest.param(pem_of(b"0\x00", "CERTIFICATE"), id="bad_csr/pem_certificate_label"),
        pytest.param(
            b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----",
            id="bad_csr/pem_not_base64",
        ),
    ],
)
def test_csr_der_from_bytes_refuses(data: bytes) -> None:
    with pytest.raises(BadCSR):
        csr_der_from_bytes(data)


def test_challenge_password() -> None:
    assert challenge_password(make_csr_object(challenge="s3cret-å")) == "s3cret-å"
    assert challenge_password(make_csr_object()) is None


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("\u212aelvin.example.com", id="kelvin_sign"),
        pytest.param("b\u00fccher.example.com", id="u_label"),
    ],
)
def test_a_dns_name_that_is_not_ascii_is_refused(name: str) -> None:
    """RFC 5280 §4.2.1.6: a dNSName is ASCII (IDNs as A-labels). "\u212a" lower-cased is
    "k": the request for \u212aelvin.example.com was issued for kelvin.example.com."""
    der = csr_with_raw_dns_name(name.encode())
    assert x509.load_der_x509_csr(der).is_signature_valid
    with pytest.raises(BadCSR):
        verify_csr(der)


LONG_NAME = "a" * 63 + ".example.com"  # a valid DNS name of 75 characters


def subject_request(attrs: list[tuple[str, str]], sans: tuple[str, ...] = ()) -> bytes:
    """A request whose subject cryptography would refuse to build (``_validate=False``, as a
    client that is not cryptography writes it)."""
    name = x509.Name(
        [
            # UTF8String where cryptography would choose PrintableString and refuse "SN_1".
            x509.NameAttribute(x509.ObjectIdentifier(o), v, _ASN1Type.UTF8String, _validate=False)
            for o, v in attrs
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in sans])
        builder = builder.add_extension(san, critical=False)
    key = ec_key()
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
@pytest.mark.parametrize(
    ("attrs", "sans"),
    [
        pytest.param([("2.5.4.3", "x" * 65)], ("x.example.com",), id="bad_csr/cn_over_64"),
        pytest.param([("2.5.4.3", LONG_NAME)], ("other.example.com",), id="bad_csr/long_cn_no_san"),
        pytest.param([("2.5.4.3", "")], ("e.example.com",), id="bad_csr/empty_cn"),
        pytest.param([("2.5.4.5", "SN_1")], (), id="bad_csr/serial_number_not_printable"),
        pytest.param([("2.5.4.6", "USA")], ("c.example.com",), id="bad_csr/country_of_three"),
        pytest.param(
            [("2.5.4.10", "o" * 65)], ("o.example.com",), id="bad_csr/organization_over_64"
        ),
        pytest.param([("1.2.840.113549.1.9.1", "é@example.com")], (), id="bad_csr/email_not_ia5"),
    ],
)
def test_subject_attributes_no_certificate_can_carry_are_bad_csrs(
    attrs: list[tuple[str, str]], sans: tuple[str, ...]
) -> None:
    """They failed only when the certificate was signed (a 500), or at approval."""
    with pytest.raises(BadCSR):
        verify_csr(subject_request(attrs, sans))


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
@pytest.mark.parametrize(
    "sans",
    [pytest.param((LONG_NAME,), id="one_of_the_sans"), pytest.param((), id="no_sans")],
)
def test_a_long_cn_that_can_be_the_san_is_left_for_the_profile(sans: tuple[str, ...]) -> None:
    parsed = verify_csr(subject_request([("2.5.4.3", LONG_NAME)], sans))
    assert parsed.subject == (("2.5.4.3", LONG_NAME),)
