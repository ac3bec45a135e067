"""Keys, requests, configurations and foreign CAs for the CA and policy tests.

Factories take defaults plus overrides (Boulder's ``newCAArgs`` style). RSA keys are slow to
generate, so each size is generated once per test session.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeAlias

from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from server.config import CAConfig, Config, IssuerConfig, ServerConfig

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
PUBLIC_HTTP_URL = "http://pki.example.com"

SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@cache
def rsa_key(bits: int = 2048, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def subject_key(key_type: str) -> SigningKey:
    """A fresh subject key of a draft key type ("ec-p256", "rsa-2048", "ed25519"...)."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type.startswith("rsa-"):
        return rsa_key(int(key_type.removeprefix("rsa-")))
    curves = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(), "ec-p521": ec.SECP521R1()}
    return ec_key(curves[key_type])


def make_csr_object(
    key: SigningKey | None = None,
    *,
    cn: str | None = "www.example.com",
    sans: Sequence[x509.GeneralName] | None = None,
    extra: Sequence[x509.ExtensionType] = (),
    challenge: str | None = None,
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request; by default CN www.example.com with that DNS name as its SAN."""
    key = key or ec_key()
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    general_names = [x509.DNSName("www.example.com")] if sans is None else list(sans)
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    if challenge is not None:
        builder = builder.add_attribute(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge.encode()
        )
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest)


def make_csr(key: SigningKey | None = None, **kwargs: Any) -> bytes:
    return make_csr_object(key, **kwargs).public_bytes(serialization.Encoding.DER)


def resign_csr(
    der: bytes, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, algorithm: str
) -> bytes:
    """Sign a request again with a hash cryptography's builder refuses (MD5, SHA-1).

    ``algorithm`` is asn1crypto's name for the signature algorithm ("sha1_ecdsa", "md5_rsa").
    """
    request = asn1_csr.CertificationRequest.load(der)
    data = request["certification_request_info"].dump()
    digest: hashes.HashAlgorithm = hashes.MD5()  # noqa: S303 - the defect under test
    if algorithm.startswith("sha1"):
        digest = hashes.SHA1()  # noqa: S303 - the defect under test
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(digest))
    else:
        signature = key.sign(data, padding.PKCS1v15(), digest)
    request["signature_algorithm"] = {"algorithm": algorithm}
    request["signature"] = signature
    return bytes(request.dump(force=True))


def csr_with_raw_dns_name(raw: bytes) -> bytes:
    """A request (no CN) whose one dNSName holds the octets ``raw`` (UTF-8, say), which
    cryptography's builder refuses: built with an ASCII stand-in of the same length, the
    octets put in its place (every DER length stays right), and signed again."""
    key = ec_key()
    stand_in = b"q" * len(raw)
    der = make_csr(key, cn=None, sans=[x509.DNSName(stand_in.decode())])
    assert der.count(stand_in) == 1
    request = asn1_csr.CertificationRequest.load(der.replace(stand_in, raw))
    info = request["certification_request_info"].dump()
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    request["signature"] = signature
    body = info + request["signature_algorithm"].dump() + request["signature"].dump()
    return _der_sequence(body)


def _der_sequence(body: bytes) -> bytes:
    if len(body) < 128:
        return b"\x30" + bytes([len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(size)]) + size + body


def make_config(
    data_dir: Path, *, issuers: Sequence[IssuerConfig] = (IssuerConfig(),), **ca: Any
) -> Config:
    """The default configuration in ``data_dir``, with these issuers and ``[ca]`` keys."""
    return Config(
        server=ServerConfig(data_dir=data_dir, public_http_url=PUBLIC_HTTP_URL),
        ca=replace(CAConfig(), issuers=tuple(issuers), **ca),
    )


@dataclass(frozen=True)
class ForeignCA:
    """A CA made elsewhere, for import tests: root -> intermediate -> issuing CA."""

    root: x509.Certificate
    intermediate: x509.Certificate
    issuing: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey


def sign_test_cert(
    subject: str, key: SigningKey, *, issuer: tuple[x509.Name, SigningKey] | None, ca: bool = True
) -> x509.Certificate:
    """A minimal certificate: a CA (keyCertSign) or, with ``ca=False``, an end entity."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(64) + 1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    digest = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, digest)


def make_foreign_ca() -> ForeignCA:
    root_key, mid_key, issuing_key = ec_key(), ec_key(), ec_key()
    root = sign_test_cert("Foreign Root", root_key, issuer=None)
    mid = sign_test_cert("Foreign Intermediate", mid_key, issuer=(root.subject, root_key))
    issuing = sign_test_cert("Foreign Issuing", issuing_key, issuer=(mid.subject, mid_key))
    return ForeignCA(root=root, intermediate=mid, issuing=issuing, issuing_key=issuing_key)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: SigningKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
