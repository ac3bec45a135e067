"""A SCEP requester built from cryptography and asn1crypto, for tests and the benchmark.

It builds pkiMessages the way RFC 8894 §3 describes (SignedData around an EnvelopedData),
with knobs for every algorithm variant and for the defects the bad-input tests need, and
reads CertReps (verifying their signature and opening their envelope).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

from protocols.scep.envelope import ContentCipher, Recipient, open_envelope, seal_envelope
from protocols.scep.messages import MessageType  # also registers the SCEP attribute names

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha512": hashes.SHA512,
}


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str) -> x509.Certificate:
    """RFC 8894 §2.3: a requester without a certificate signs with a self-signed one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def issued_by(
    key: rsa.RSAPrivateKey, cn: str, *, issuer_key: rsa.RSAPrivateKey, issuer_cn: str
) -> x509.Certificate:
    """A certificate for ``key`` from another CA than certforge (say, a manufacturer's): RFC
    8894 §2.3 lets a requester sign with one instead of a self-signed certificate."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )


def make_csr(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    cn: str = "device-1",
    *,
    challenge: str | None = None,
    o: str | None = None,
) -> bytes:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if challenge is not None:
        builder = builder.add_attribute(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge.encode()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def ca_certificates(body: bytes) -> list[x509.Certificate]:
    """GetCACert's answer: one DER certificate, or a certificates-only PKCS#7."""
    try:
        return [x509.load_der_x509_certificate(body)]
    except ValueError:
        return pkcs7.load_der_pkcs7_certificates(body)


def recipient_of(certs: list[x509.Certificate]) -> x509.Certificate:
    """The certificate to encrypt to: the CA's when it is alone, else the RA's (an RSA key
    with keyEncipherment)."""
    if len(certs) == 1:
        return certs[0]
    for cert in certs:
        if isinstance(cert.public_key(), rsa.RSAPublicKey):
            try:
                ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            except x509.ExtensionNotFound:
                return cert
            if ku.key_encipherment:
                return cert
    raise AssertionError("no RSA recipient certificate")


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _attr(name: str, value: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": name, "values": [value]})


@dataclass
class Message:
    """One pkiMessage to build; every field can be bent for the bad-input tests."""

    message_type: str
    content: bytes
    recipient: x509.Certificate
    signer_cert: x509.Certificate
    signer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cipher: ContentCipher = ContentCipher.AES128
    digest: str = "sha256"
    transaction_id: str = field(default_factory=lambda: os.urandom(16).hex())
    sender_nonce: bytes = field(default_factory=lambda: os.urandom(16))
    signing_time: datetime | None = None
    envelope: bytes | None = None  # None: sealed from content
    omit: frozenset[str] = frozenset()  # attribute names to leave out
    tamper_signature: bool = False
    wrong_digest: bool = False

    def build(self) -> bytes:
        envelope = self.envelope
        if envelope is None:
            envelope = seal_envelope(self.content, _asn1(self.recipient), self.cipher)
        digest = hashlib.new(self.digest, envelope).digest()
        if self.wrong_digest:
            digest = bytes(len(digest))
        attrs = [
            _attr("content_type", "data"),
            _attr("message_digest", digest),
            _attr("scep_message_type", self.message_type),
            _attr("scep_transaction_id", self.transaction_id),
            _attr("scep_sender_nonce", self.sender_nonce),
        ]
        if self.signing_time is not None:
            attrs.append(_attr("signing_time", cms.Time(name="utc_time", value=self.signing_time)))
        attrs = [a for a in attrs if a["type"].native not in self.omit]
        signed_attrs = cms.CMSAttributes(sorted(attrs, key=lambda a: a.dump()))
        signature = self._sign(signed_attrs.dump())
        signer = _asn1(self.signer_cert)
        is_rsa = isinstance(self.signer_key, rsa.RSAPrivateKey)
        signed = cms.SignedData(
            {
                "version": "v1",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": self.digest})],
                "encap_content_info": {"content_type": "data", "content": envelope},
                "certificates": [signer],
                "signer_infos": [
                    {
                        "version": "v1",
                        "sid": cms.SignerIdentifier(
                            name="issuer_and_serial_number",
                            value=cms.IssuerAndSerialNumber(
                                {"issuer": signer.issuer, "serial_number": signer.serial_number}
                            ),
                        ),
                        "digest_algorithm": {"algorithm": self.digest},
                        "signed_attrs": signed_attrs,
                        "signature_algorithm": {
                            "algorithm": "rsassa_pkcs1v15" if is_rsa else f"{self.digest}_ecdsa"
                        },
                        "signature": signature,
                    }
                ],
            }
        )
        return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())

    def _sign(self, data: bytes) -> bytes:
        h = HASHES[self.digest]()
        if isinstance(self.signer_key, rsa.RSAPrivateKey):
            sig = self.signer_key.sign(data, PKCS1v15(), h)
        else:
            sig = self.signer_key.sign(data, ec.ECDSA(h))
        if self.tamper_signature:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        return sig


@dataclass(frozen=True)
class CertRep:
    status: str  # "0" SUCCESS, "2" FAILURE, "3" PENDING
    fail_info: str | None
    transaction_id: str
    recipient_nonce: bytes
    sender_nonce: bytes
    message_type: str
    certificate: x509.Certificate | None
    signer: x509.Certificate


def read_cert_rep(
    der: bytes,
    *,
    key: rsa.RSAPrivateKey | None = None,
    cert: x509.Certificate | None = None,
    trusted_signers: list[x509.Certificate] | None = None,
) -> CertRep:
    """Parse a CertRep, check its signature (by one of ``trusted_signers`` when given), and
    open its envelope with ``key``/``cert`` when it has one."""
    signed = cms.ContentInfo.load(der)["content"]
    (si,) = list(signed["signer_infos"])
    attrs = {a["type"].native: a["values"][0].native for a in si["signed_attrs"]}
    signer = next(
        x509.load_der_x509_certificate(c.chosen.dump())
        for c in signed["certificates"]
        if c.chosen.serial_number == si["sid"].chosen["serial_number"].native
    )
    if trusted_signers is not None:
        assert signer in trusted_signers, "CertRep signed by an unexpected certificate"
    digest = si["digest_algorithm"]["algorithm"].native
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        si["signature"].native,
        b"\x31" + si["signed_attrs"].dump()[1:],
        PKCS1v15(),
        HASHES[digest](),
    )
    content = signed["encap_content_info"]["content"].native
    assert attrs["message_digest"] == hashlib.new(digest, content or b"").digest()
    issued = None
    if content and key is not None and cert is not None:
        inner, _ = open_envelope(content, [Recipient(_asn1(cert), key)], legacy=True)
        issued = pkcs7.load_der_pkcs7_certificates(inner)[0]
    return CertRep(
        status=attrs["scep_pki_status"],
        fail_info=attrs.get("scep_fail_info"),
        transaction_id=attrs["scep_transaction_id"],
        recipient_nonce=attrs["scep_recipient_nonce"],
        sender_nonce=attrs["scep_sender_nonce"],
        message_type=attrs["scep_message_type"],
        certificate=issued,
        signer=signer,
    )


def issuer_and_serial(cert: x509.Certificate) -> bytes:
    c = _asn1(cert)
    return bytes(
        cms.IssuerAndSerialNumber({"issuer": c.issuer, "serial_number": c.serial_number}).dump()
    )


def issuer_and_subject(issuer: x509.Certificate, subject: x509.Name) -> bytes:
    """CertPoll's content (RFC 8894 §3.3.3): IssuerAndSubject."""

    class IssuerAndSubject(core.Sequence):  # type: ignore[misc]
        _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]  # noqa: RUF012 - asn1crypto spec

    return bytes(
        IssuerAndSubject(
            {
                "issuer": asn1_x509.Name.load(issuer.subject.public_bytes()),
                "subject": asn1_x509.Name.load(subject.public_bytes()),
            }
        ).dump()
    )


__all__ = ["MessageType"]


def read_crl_rep(
    der: bytes, *, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> x509.CertificateRevocationList:
    """GetCRL's CertRep: SUCCESS, with the CRL in a degenerate SignedData in the envelope."""
    signed = cms.ContentInfo.load(der)["content"]
    attrs = {
        a["type"].native: a["values"][0].native for a in signed["signer_infos"][0]["signed_attrs"]
    }
    assert attrs["scep_pki_status"] == "0", attrs
    inner, _ = open_envelope(
        signed["encap_content_info"]["content"].native, [Recipient(_asn1(cert), key)], legacy=True
    )
    (crl,) = list(cms.ContentInfo.load(inner)["content"]["crls"])
    return x509.load_der_x509_crl(crl.chosen.dump())
