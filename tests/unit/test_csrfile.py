"""``certforge request submit`` reads its file before sending anything: a private key, a
certificate or a stray file is named as what it is, and only a request block is sent."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from server.csrfile import NotACSR, read_csr

KEY = ec.generate_private_key(ec.SECP256R1())
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
CSR = x509.CertificateSigningRequestBuilder().subject_name(NAME).sign(KEY, hashes.SHA256())
NOW = datetime.datetime.now(datetime.UTC)
CERT = (
    x509.CertificateBuilder()
    .subject_name(NAME)
    .issuer_name(NAME)
    .public_key(KEY.public_key())
    .serial_number(1)
    .not_valid_before(NOW)
    .not_valid_after(NOW + datetime.timedelta(days=1))
    .sign(KEY, hashes.SHA256())
)
PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER


def key_bytes(
    encoding: serialization.Encoding,
    fmt: serialization.PrivateFormat,
    crypt: serialization.KeySerializationEncryption | None = None,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = KEY,
) -> bytes:
    return key.private_bytes(encoding, fmt, crypt or serialization.NoEncryption())


PKCS8, TRADITIONAL = (
    serialization.PrivateFormat.PKCS8,
    serialization.PrivateFormat.TraditionalOpenSSL,
)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ENCRYPTED = serialization.BestAvailableEncryption(b"secret")


def test_pem_request_is_sent_as_its_block(tmp_path: Path) -> None:
    path = tmp_path / "www.csr"
    path.write_bytes(b"Some text before\n" + CSR.public_bytes(PEM))
    assert read_csr(path) == CSR.public_bytes(PEM).strip()


def test_der_request_is_sent_whole(tmp_path: Path) -> None:
    path = tmp_path / "www.der"
    path.write_bytes(CSR.public_bytes(DER))
    assert read_csr(path) == CSR.public_bytes(DER)


def test_key_and_request_in_one_file_sends_the_request_only(tmp_path: Path) -> None:
    path = tmp_path / "both.pem"
    path.write_bytes(key_bytes(PEM, PKCS8) + CSR.public_bytes(PEM))
    sent = read_csr(path)
    assert b"PRIVATE KEY" not in sent
    assert x509.load_pem_x509_csr(sent) == CSR


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param(lambda: key_bytes(PEM, PKCS8), "is a private key", id="key/pem_pkcs8"),
        pytest.param(lambda: key_bytes(PEM, TRADITIONAL), "is a private key", id="key/pem_ec"),
        pytest.param(
            lambda: key_bytes(PEM, TRADITIONAL, key=RSA_KEY), "is a private key", id="key/pem_rsa"
        ),
        pytest.param(
            lambda: key_bytes(PEM, PKCS8, ENCRYPTED), "is a private key", id="key/pem_encrypted"
        ),
        pytest.param(lambda: key_bytes(DER, PKCS8), "is a private key", id="key/der_pkcs8"),
        pytest.param(
            lambda: key_bytes(DER, PKCS8, ENCRYPTED), "is a private key", id="key/der_encrypted"
        ),
        pytest.param(lambda: CERT.public_bytes(PEM), "is a certificate", id="cert/pem"),
        pytest.param(lambda: CERT.public_bytes(DER), "is a certificate", id="cert/der"),
        pytest.param(
            lambda: KEY.public_key().public_bytes(
                PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "holds a PEM PUBLIC KEY",
            id="other/public_key",
        ),
        pytest.param(lambda: b"hello\n", "is not a PEM or DER", id="garbage/text"),
        pytest.param(lambda: b"", "is not a PEM or DER", id="garbage/empty"),
        pytest.param(
            lambda: (
                b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "does not parse",
            id="garbage/broken_pem_request",
        ),
    ],
)
def test_what_is_not_a_request_is_named(
    tmp_path: Path, content: Callable[[], bytes], says: str
) -> None:
    path = tmp_path / "www.key"
    path.write_bytes(content())
    with pytest.raises(NotACSR, match=says) as caught:
        read_csr(path)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_a_key_is_told_how_to_make_a_request(tmp_path: Path) -> None:
    path = tmp_path / "www.key"
    path.write_bytes(key_bytes(PEM, PKCS8))
    with pytest.raises(NotACSR, match=f"openssl req -new -key {path}"):
        read_csr(path)
