"""The sans-I/O SCEP layer: pkiMessages from a real client and from the test builder, every
defect refused with the right failInfo, envelopes for every cipher, and the failInfo table."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from protocols.scep import envelope
from protocols.scep.certrep import Signer, cert_rep
from protocols.scep.envelope import ContentCipher, Recipient, open_envelope, seal_envelope
from protocols.scep.failinfo import FAIL_INFO, BadHTTP, FailInfo, SCEPFailure
from protocols.scep.messages import Addressee, PKIStatus, SCEPMessageError, read_pki_message
from server.ca.csr import challenge_password, verify_csr
from server.errors import ErrorKind
from tests.scep_client import Message, MessageType, make_csr, read_cert_rep, self_signed

DATA = Path(__file__).parents[2] / "testdata" / "scep"
CAPTURED = datetime(2026, 11, 30, 12, 28, tzinfo=UTC)
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def ra() -> Recipient:
    cert = asn1_x509.Certificate.load(
        x509.load_pem_x509_certificate((DATA / "ra.pem").read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    )
    key = serialization.load_pem_private_key((DATA / "ra.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Recipient(cert, key)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ra_cert(ra: Recipient) -> x509.Certificate:
    return x509.load_der_x509_certificate(ra.certificate.dump())


def message(ra: Recipient, key: rsa.RSAPrivateKey, **kw: object) -> Message:
    return Message(
        message_type=MessageType.PKCS_REQ,
        content=make_csr(key, "unit", challenge="pw"),
        recipient=ra_cert(ra),
        signer_cert=self_signed(key, "unit"),
        signer_key=key,
        **kw,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------ captured from scepclient
def test_scepclient_pkcsreq_reads_with_legacy_algorithms(ra: Recipient) -> None:
    der = (DATA / "scepclient-2.1.0-pkcsreq.der").read_bytes()
    msg = read_pki_message(der, legacy=True, now=CAPTURED)
    assert (msg.message_type, msg.digest) == (MessageType.PKCS_REQ, "sha1")
    assert msg.envelope is not None
    content, cipher = open_envelope(msg.envelope, [ra], legacy=True)
    assert cipher is ContentCipher.DES
    csr = verify_csr(content)
    assert challenge_password(csr.csr) == "fixture-challenge-password"


def test_scepclient_renewalreq_reads(ra: Recipient) -> None:
    der = (DATA / "scepclient-2.1.0-renewalreq.der").read_bytes()
    msg = read_pki_message(der, legacy=True, now=CAPTURED)
    assert msg.message_type == MessageType.RENEWAL_REQ
    assert msg.signer.subject.native["common_name"] == "scepclient"


def test_scepclient_sha1_is_bad_alg_without_legacy() -> None:
    der = (DATA / "scepclient-2.1.0-pkcsreq.der").read_bytes()
    with pytest.raises(SCEPMessageError) as caught:
        read_pki_message(der, legacy=False, now=CAPTURED)
    assert caught.value.fail_info is FailInfo.BAD_ALG
    assert caught.value.addressee.transaction_id  # a CertRep FAILURE can be addressed


def test_scepclient_des_is_bad_alg_without_legacy(ra: Recipient) -> None:
    msg = read_pki_message(
        (DATA / "scepclient-2.1.0-pkcsreq.der").read_bytes(), legacy=True, now=CAPTURED
    )
    assert msg.envelope is not None
    with pytest.raises(SCEPFailure) as caught:
        open_envelope(msg.envelope, [ra], legacy=False)
    assert caught.value.fail_info is FailInfo.BAD_ALG


# ------------------------------------------------------------ built messages
@pytest.mark.parametrize(
    ("cipher", "digest"),
    [
        pytest.param(ContentCipher.AES128, "sha256", id="aes128_sha256"),
        pytest.param(ContentCipher.AES256, "sha512", id="aes256_sha512"),
        pytest.param(ContentCipher.DES3, "sha1", id="des3_sha1_legacy"),
    ],
)
def test_round_trip(
    ra: Recipient, key: rsa.RSAPrivateKey, cipher: ContentCipher, digest: str
) -> None:
    built = message(ra, key, cipher=cipher, digest=digest)
    msg = read_pki_message(built.build(), legacy=True, now=NOW)
    assert msg.transaction_id == built.transaction_id and msg.sender_nonce == built.sender_nonce
    assert msg.envelope is not None
    content, used = open_envelope(msg.envelope, [ra], legacy=True)
    assert (content, used) == (built.content, cipher)


@pytest.mark.parametrize(
    ("change", "fail_info"),
    [
        pytest.param({"tamper_signature": True}, FailInfo.BAD_MESSAGE_CHECK, id="bad_signature"),
        pytest.param({"wrong_digest": True}, FailInfo.BAD_MESSAGE_CHECK, id="wrong_digest"),
        pytest.param({"digest": "sha1"}, FailInfo.BAD_ALG, id="sha1_not_configured"),
        pytest.param(
            {"signing_time": NOW - timedelta(days=2)}, FailInfo.BAD_TIME, id="signing_time_old"
        ),
        pytest.param({"omit": frozenset({"content_type"})}, FailInfo.BAD_MESSAGE_CHECK, id="no_ct"),
        pytest.param(
            {"omit": frozenset({"scep_message_type"})}, FailInfo.BAD_REQUEST, id="no_type"
        ),
    ],
)
def test_defects_are_failures_with_an_addressee(
    ra: Recipient, key: rsa.RSAPrivateKey, change: dict[str, object], fail_info: FailInfo
) -> None:
    built = message(ra, key, **change)
    with pytest.raises(SCEPMessageError) as caught:
        read_pki_message(built.build(), legacy=False, now=NOW)
    assert caught.value.fail_info is fail_info
    assert caught.value.addressee.sender_nonce == built.sender_nonce


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"omit": frozenset({"scep_transaction_id"})}, id="no_transaction_id"),
        pytest.param({"omit": frozenset({"scep_sender_nonce"})}, id="no_sender_nonce"),
        pytest.param({"sender_nonce": b"short"}, id="short_sender_nonce"),
        pytest.param({"transaction_id": "x" * 200}, id="huge_transaction_id"),
    ],
)
def test_unaddressable_messages_are_http_400(
    ra: Recipient, key: rsa.RSAPrivateKey, change: dict[str, object]
) -> None:
    with pytest.raises(BadHTTP):
        read_pki_message(message(ra, key, **change).build(), legacy=False, now=NOW)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="not_content_info"),
        pytest.param(b"garbage" * 10, id="garbage"),
    ],
)
def test_not_pkcs7_is_http_400(data: bytes) -> None:
    with pytest.raises(BadHTTP):
        read_pki_message(data, legacy=False, now=NOW)


def test_envelope_for_someone_else_is_bad_message_check(
    ra: Recipient, key: rsa.RSAPrivateKey
) -> None:
    stranger = self_signed(key, "stranger")
    built = message(ra, key)
    built.recipient = stranger
    msg = read_pki_message(built.build(), legacy=False, now=NOW)
    assert msg.envelope is not None
    with pytest.raises(SCEPFailure) as caught:
        open_envelope(msg.envelope, [ra], legacy=False)
    assert caught.value.fail_info is FailInfo.BAD_MESSAGE_CHECK


def test_cert_rep_is_signed_and_addressed(ra: Recipient, key: rsa.RSAPrivateKey) -> None:
    signer_cert = self_signed(key, "requester")
    to = Addressee("tid-1", b"n" * 16, "sha512")
    envelope = seal_envelope(
        b"payload",
        asn1_x509.Certificate.load(signer_cert.public_bytes(serialization.Encoding.DER)),
        ContentCipher.AES256,
    )
    der = cert_rep(
        signer=Signer(ra.certificate, ra.key),
        to=to,
        status=PKIStatus.PENDING,
        now=NOW,
    )
    rep = read_cert_rep(der, trusted_signers=[ra_cert(ra)])
    assert (rep.status, rep.transaction_id, rep.recipient_nonce) == ("3", "tid-1", b"n" * 16)
    failed = read_cert_rep(
        cert_rep(
            signer=Signer(ra.certificate, ra.key),
            to=to,
            status=PKIStatus.FAILURE,
            now=NOW,
            fail_info=FailInfo.BAD_CERT_ID,
        )
    )
    assert (failed.status, failed.fail_info) == ("2", "4")
    assert envelope  # sealing to an RSA requester works; opening is tested in round trips


def test_fail_info_table_covers_every_error_kind() -> None:
    assert set(FAIL_INFO) == set(ErrorKind)


def test_mangled_messages_are_refused_never_crash(ra: Recipient, key: rsa.RSAPrivateKey) -> None:
    """Random damage anywhere in a pkiMessage ends in BadHTTP or a SCEP failure, also for the
    parts asn1crypto parses lazily and the parts the signature does not cover."""
    good = message(ra, key).build()
    rng = random.Random(20261130)  # noqa: S311 - a reproducible fuzz, not a secret
    for _ in range(400):
        mangled = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mangled))
            if rng.random() < 0.7:
                mangled[at] = rng.randrange(256)
            else:
                del mangled[at : at + rng.randint(1, 40)]
        try:
            msg = read_pki_message(bytes(mangled), legacy=True, now=NOW)
            seal_envelope(b"reply", msg.signer, ContentCipher.AES128)
            if msg.envelope is not None:
                open_envelope(msg.envelope, [ra], legacy=True)
        except (BadHTTP, SCEPFailure):
            pass


def _nested_segments(depth: int) -> bytes:
    inner = b"\x04\x02ab"
    for _ in range(depth):
        inner = bytes([0x24]) + _der_length(len(inner)) + inner
    return inner


def _der_length(size: int) -> bytes:
    if size < 128:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def test_segmented_encrypted_content_is_read_in_order() -> None:
    two = b"\x04\x01a" + b"\x24\x05\x04\x03bcd" + b"\x04\x01e"
    assert envelope._chunks(two) == b"abcde"
    assert envelope._chunks(_nested_segments(3)) == b"ab"


def test_segments_nested_too_deep_are_refused_without_recursion() -> None:
    """1000 levels raised RecursionError; the loop refuses more than a few."""
    with pytest.raises(ValueError, match="nested"):
        envelope._chunks(_nested_segments(1000))
