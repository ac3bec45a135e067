"""PKIOperation's rules on who may ask: a PKCSReq is signed with its CSR's key, and a CertPoll
with the key that signed the request it polls. Through the real Operations over an engine on
SQLite, and verify_pkcsreq_signer on its own with the captured scepclient request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID, NameOID

from protocols.scep.config import SECTION as SCEP_SECTION
from protocols.scep.envelope import Recipient, open_envelope
from protocols.scep.failinfo import FailInfo, SCEPFailure
from protocols.scep.messages import PKIMessage, PKIStatus, read_pki_message
from protocols.scep.operations import Operations, verify_pkcsreq_signer
from server.challenges import Challenges
from server.config import Config
from server.model import RequestQuery
from server.revocation import der
from server.revocation.publisher import CRLPublisher
from server.store.sqlite import SQLiteStore
from tests.scep_client import MessageType, issued_by, make_csr, self_signed
from tests.unit.factories import FakeClock, make_engine

DATA = Path(__file__).parents[2] / "testdata" / "scep"
CAPTURED = datetime(2026, 11, 30, 12, 28, tzinfo=UTC)
PROFILE = "device"


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def csr_of(der: bytes) -> x509.CertificateSigningRequest:
    return x509.load_der_x509_csr(der)


# ------------------------------------------------------------ verify_pkcsreq_signer
@pytest.mark.parametrize(
    ("signer", "fail_info"),
    [
        pytest.param("self_signed_csr_key", None, id="accepted/self_signed_csr_key"),
        pytest.param("self_signed_csr_key_other_name", None, id="accepted/other_subject"),
        pytest.param("other_ca_csr_key", None, id="accepted/other_ca_csr_key"),
        pytest.param("self_signed_other_key", FailInfo.BAD_REQUEST, id="bad_request/other_key"),
        pytest.param(
            "other_ca_other_key", FailInfo.BAD_REQUEST, id="bad_request/other_ca_other_key"
        ),
    ],
)
def test_pkcsreq_signer_must_hold_the_csr_key(
    keys: list[rsa.RSAPrivateKey], signer: str, fail_info: FailInfo | None
) -> None:
    csr_key, other, vendor = keys
    certs = {
        "self_signed_csr_key": self_signed(csr_key, "dev"),
        "self_signed_csr_key_other_name": self_signed(csr_key, "SCEP SIGNER"),
        "other_ca_csr_key": issued_by(csr_key, "SN 1", issuer_key=vendor, issuer_cn="Vendor"),
        "self_signed_other_key": self_signed(other, "dev"),
        "other_ca_other_key": issued_by(other, "dev", issuer_key=vendor, issuer_cn="Vendor"),
    }
    csr = csr_of(make_csr(csr_key, "dev", challenge="pw"))
    if fail_info is None:
        verify_pkcsreq_signer(asn1(certs[signer]), csr)
        return
    with pytest.raises(SCEPFailure) as caught:
        verify_pkcsreq_signer(asn1(certs[signer]), csr)
    assert caught.value.fail_info is fail_info


def test_scepclient_signs_with_the_csr_key_under_another_name() -> None:
    """The captured scepclient 2.1.0 PKCSReq: its self-signed 'CN=SCEP SIGNER' certificate
    holds the CSR's key, and the CSR asks for CN=fixture-device. It must pass."""
    msg = read_pki_message(
        (DATA / "scepclient-2.1.0-pkcsreq.der").read_bytes(), legacy=True, now=CAPTURED
    )
    ra_cert = x509.load_pem_x509_certificate((DATA / "ra.pem").read_bytes())
    ra_key = serialization.load_pem_private_key((DATA / "ra.key").read_bytes(), password=None)
    assert isinstance(ra_key, rsa.RSAPrivateKey) and msg.envelope is not None
    content, _ = open_envelope(msg.envelope, [Recipient(asn1(ra_cert), ra_key)], legacy=True)
    csr = csr_of(content)
    assert msg.signer.subject.native["common_name"] == "SCEP SIGNER"
    assert csr.subject.rfc4514_string().startswith("CN=fixture-device")
    verify_pkcsreq_signer(msg.signer, csr)


def test_signer_key_compares_whatever_its_optional_encoding(
    keys: list[rsa.RSAPrivateKey],
) -> None:
    """An rsaEncryption AlgorithmIdentifier without its NULL parameters (cryptography always
    writes it, some encoders leave it out) holds the same key as the CSR's."""
    cert = asn1(self_signed(keys[0], "dev"))
    bits = cert["tbs_certificate"]["subject_public_key_info"]["public_key"].dump()
    rsa_encryption = core.ObjectIdentifier("1.2.840.113549.1.1.1").dump()
    no_null = der.tlv(der.SEQUENCE, der.tlv(der.SEQUENCE, rsa_encryption) + bits)
    cert["tbs_certificate"]["subject_public_key_info"] = asn1_keys.PublicKeyInfo.load(no_null)
    reencoded = asn1_x509.Certificate.load(cert.dump(force=True))
    assert reencoded["tbs_certificate"]["subject_public_key_info"].dump() == no_null
    verify_pkcsreq_signer(reencoded, csr_of(make_csr(keys[0], "dev", challenge="pw")))


# ------------------------------------------------------------ through Operations
@dataclass
class World:
    operations: Operations
    challenges: Challenges
    store: SQLiteStore


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock(datetime.now(UTC))  # the store judges a challenge's expiry by real time
    engine, store = await make_engine(tmp_path, clock=clock)
    config = Config()
    challenges = Challenges(store, clock.now, timedelta(hours=1))
    crls = CRLPublisher(store=store, cas=engine.cas, config=config.crl, clock=clock)
    try:
        yield World(
            Operations(engine, challenges, SCEP_SECTION.of(config), crls), challenges, store
        )
    finally:
        await store.close()


def pki_message(
    message_type: str, signer: x509.Certificate, transaction_id: str | None = None
) -> PKIMessage:
    """A PKIMessage as read_pki_message returns it once the signature verified (Operations
    sees nothing else of the message)."""
    return PKIMessage(
        message_type=message_type,
        transaction_id=transaction_id or os.urandom(8).hex(),
        sender_nonce=os.urandom(16),
        signer=asn1(signer),
        digest="sha256",
        envelope=None,
    )


async def test_pkcsreq_for_another_key_spends_no_challenge_and_records_nothing(
    world: World, keys: list[rsa.RSAPrivateKey]
) -> None:
    password, _ = await world.challenges.create(profile=PROFILE)
    csr = make_csr(keys[0], "victim", challenge=password)
    wrapped = pki_message(MessageType.PKCS_REQ, self_signed(keys[1], "victim"))
    with pytest.raises(SCEPFailure) as caught:
        await world.operations.handle(wrapped, csr, profile=PROFILE)
    assert caught.value.fail_info is FailInfo.BAD_REQUEST
    assert await world.store.find_requests(RequestQuery()) == []
    own = pki_message(MessageType.PKCS_REQ, self_signed(keys[0], "victim"))
    reply = await world.operations.handle(own, csr, profile=PROFILE)  # the challenge is kept
    assert reply.status is PKIStatus.SUCCESS and reply.certificate is not None


async def test_resend_is_answered_only_to_a_signer_of_the_csr_key(
    world: World, keys: list[rsa.RSAPrivateKey]
) -> None:
    """A resend is answered before any challenge is asked for, so the signer is checked
    first: the transactionID (visible on the wire) and even a fresh challenge do not get a
    certificate for the CSR's key enveloped to another key."""
    password, _ = await world.challenges.create(profile=PROFILE)
    csr = make_csr(keys[0], "resent", challenge=password)
    signer = self_signed(keys[0], "resent")
    first = pki_message(MessageType.PKCS_REQ, signer)
    issued = await world.operations.handle(first, csr, profile=PROFILE)
    again = pki_message(MessageType.PKCS_REQ, self_signed(keys[1], "resent"), first.transaction_id)
    fresh, _ = await world.challenges.create(profile=PROFILE)
    with pytest.raises(SCEPFailure) as caught:
        await world.operations.handle(
            again, make_csr(keys[0], "resent", challenge=fresh), profile=PROFILE
        )
    assert caught.value.fail_info is FailInfo.BAD_REQUEST
    assert len(await world.store.find_requests(RequestQuery())) == 1
    resent = pki_message(MessageType.PKCS_REQ, signer, first.transaction_id)
    assert (await world.operations.handle(resent, csr, profile=PROFILE)) == issued


async def test_cert_poll_only_by_the_key_that_signed_the_request(
    world: World, keys: list[rsa.RSAPrivateKey]
) -> None:
    """A RenewalReq is signed by the certificate it renews: a CertPoll signed with the new
    key of its CSR (or any third key) is refused, one signed like the request is answered."""
    password, _ = await world.challenges.create(profile=PROFILE)
    enrolled = await world.operations.handle(
        pki_message(MessageType.PKCS_REQ, self_signed(keys[0], "poller")),
        make_csr(keys[0], "poller", challenge=password),
        profile=PROFILE,
    )
    assert enrolled.certificate is not None
    current = x509.load_der_x509_certificate(enrolled.certificate)
    renewal = pki_message(MessageType.RENEWAL_REQ, current)
    renewed = await world.operations.handle(renewal, make_csr(keys[1], "poller"), profile=PROFILE)
    assert renewed.status is PKIStatus.SUCCESS
    tid = renewal.transaction_id
    for stranger in (self_signed(keys[1], "poller"), self_signed(keys[2], "poller")):
        with pytest.raises(SCEPFailure) as caught:
            await world.operations.handle(
                pki_message(MessageType.CERT_POLL, stranger, tid), b"", profile=PROFILE
            )
        assert caught.value.fail_info is FailInfo.BAD_REQUEST
    polled = await world.operations.handle(
        pki_message(MessageType.CERT_POLL, current, tid), b"", profile=PROFILE
    )
    assert polled == renewed


def csr_with_names(key: rsa.RSAPrivateKey, cn: str, *names: str, challenge: str = "") -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    if challenge:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("names", "profile"),
    [
        pytest.param(("dev.example.com", "www.victim.test"), PROFILE, id="bad_request/added_name"),
        pytest.param(("dev.example.com",), "tls-client", id="bad_request/other_profile"),
        pytest.param(("dev.example.com",), "tls-server", id="bad_request/other_profile_2"),
    ],
)
async def test_renewal_keeps_the_certificates_names_and_profile(
    world: World, keys: list[rsa.RSAPrivateKey], names: tuple[str, ...], profile: str
) -> None:
    """RFC 8894 §3.3.1.2: a renewal of the same certificate, so of its names and its profile;
    refused before anything is recorded."""
    password, _ = await world.challenges.create(profile=PROFILE)
    enrolled = await world.operations.handle(
        pki_message(MessageType.PKCS_REQ, self_signed(keys[0], "dev.example.com")),
        csr_with_names(keys[0], "dev.example.com", "dev.example.com", challenge=password),
        profile=PROFILE,
    )
    assert enrolled.certificate is not None
    current = x509.load_der_x509_certificate(enrolled.certificate)
    csr = csr_with_names(keys[1], "dev.example.com", *names)
    with pytest.raises(SCEPFailure) as caught:
        await world.operations.handle(
            pki_message(MessageType.RENEWAL_REQ, current), csr, profile=profile
        )
    assert caught.value.fail_info is FailInfo.BAD_REQUEST
    assert len(await world.store.find_requests(RequestQuery())) == 1
    kept = csr_with_names(keys[1], "dev.example.com", "dev.example.com")
    renewed = await world.operations.handle(
        pki_message(MessageType.RENEWAL_REQ, current), kept, profile=PROFILE
    )
    assert renewed.status is PKIStatus.SUCCESS
