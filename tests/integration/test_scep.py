"""SCEP (RFC 8894) against the real server with its default configuration: messages built with
cryptography and asn1crypto, every operation, message type and bad-input case."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from asn1crypto import cms, core, parser
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from protocols.scep.envelope import ContentCipher, seal_envelope
from tests.integration.scep_http import (
    call,
    certificates_for,
    errors_logged,
    log_size,
    new_challenge,
    pki_operation,
    requests_for,
    scep_ca,
    scep_url,
    verify_and_lint,
)
from tests.integration.server import CertforgeServer
from tests.scep_client import (
    Message,
    MessageType,
    _asn1,
    issued_by,
    issuer_and_serial,
    issuer_and_subject,
    make_csr,
    read_cert_rep,
    read_crl_rep,
    rsa_key,
    self_signed,
)

SUCCESS, FAILURE, PENDING = "0", "2", "3"
BAD_ALG, BAD_MESSAGE_CHECK, BAD_REQUEST, BAD_TIME, BAD_CERT_ID = "0", "1", "2", "3", "4"

KEYS = [rsa_key() for _ in range(3)]  # RSA key generation is slow: a few, reused


@pytest.fixture(scope="module")
def ra(server: CertforgeServer) -> tuple[list[x509.Certificate], x509.Certificate]:
    return scep_ca(scep_url(server))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def enroll_message(
    server: CertforgeServer,
    recipient: x509.Certificate,
    *,
    cn: str,
    key: rsa.RSAPrivateKey | None = None,
    challenge: str | None = "",
    **kw: object,
) -> tuple[Message, rsa.RSAPrivateKey, x509.Certificate]:
    key = key or KEYS[0]
    signer = self_signed(key, cn)
    if challenge == "":
        challenge = new_challenge(server)
    msg = Message(
        message_type=MessageType.PKCS_REQ,
        content=make_csr(key, cn, challenge=challenge),
        recipient=recipient,
        signer_cert=signer,
        signer_key=key,
        **kw,  # type: ignore[arg-type]
    )
    return msg, key, signer


def lint_and_verify(server: CertforgeServer, tmp_path: Path, cert: x509.Certificate) -> None:
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(Encoding.PEM))
    verify_and_lint(server, leaf)


# ------------------------------------------------------------------ GET operations
def test_get_ca_caps_offers_rfc8894_modern_set(server: CertforgeServer) -> None:
    answer = call(scep_url(server), "GetCACaps")
    assert answer.status == 200
    caps = set(answer.body.decode().split())
    assert {"AES", "SHA-256", "SHA-512", "POSTPKIOperation", "Renewal", "SCEPStandard"} <= caps
    assert not caps & {"DES3", "SHA-1"}  # legacy algorithms only when configured


def test_get_ca_cert_gives_ra_and_ca(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    answer = call(scep_url(server), "GetCACert")
    assert answer.content_type == "application/x-x509-ca-ra-cert"
    certs, recipient = ra
    assert len(certs) == 2
    assert isinstance(recipient.public_key(), rsa.RSAPublicKey)
    ku = recipient.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment and ku.digital_signature
    ca = next(c for c in certs if c is not recipient)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)  # the default issuing CA
    recipient.verify_directly_issued_by(ca)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        pytest.param("operation=GetNextCACert", 404, id="no_rollover_prepared"),
        pytest.param("operation=Frobnicate", 400, id="unknown_operation"),
        pytest.param("", 400, id="no_operation"),
        pytest.param("operation=PKIOperation", 400, id="get_without_message"),
        pytest.param("operation=PKIOperation&message=%%%", 400, id="message_not_base64"),
    ],
)
def test_bad_http_requests_get_text_4xx(server: CertforgeServer, query: str, status: int) -> None:
    out = server.curl("-w", "\n%{http_code} %{content_type}", f"{scep_url(server)}?{query}")
    *body, last = out.stdout.decode().splitlines()
    code, ctype = last.split(" ", 1)
    assert int(code) == status and ctype.startswith("text/plain") and body


def test_unknown_profile_is_404(server: CertforgeServer) -> None:
    assert call(scep_url(server, "nope"), "GetCACaps").status == 404


# ------------------------------------------------------------------ PKCSReq
@pytest.mark.parametrize(
    ("cipher", "digest"),
    [
        pytest.param(ContentCipher.AES128, "sha256", id="aes128_sha256"),
        pytest.param(ContentCipher.AES256, "sha512", id="aes256_sha512"),
    ],
)
def test_pkcsreq_with_one_time_challenge_is_issued(
    server: CertforgeServer,
    ra: tuple[list[x509.Certificate], x509.Certificate],
    tmp_path: Path,
    cipher: ContentCipher,
    digest: str,
) -> None:
    msg, key, signer = enroll_message(server, ra[1], cn=unique("dev"), cipher=cipher, digest=digest)
    rep = read_cert_rep(
        pki_operation(scep_url(server), msg.build()).body,
        key=key,
        cert=signer,
        trusted_signers=[ra[1]],
    )
    assert (rep.status, rep.message_type) == (SUCCESS, "3")
    # RFC 8894 §3.2.1.5: the recipientNonce is the request's senderNonce; a fresh senderNonce.
    assert rep.transaction_id == msg.transaction_id
    assert rep.recipient_nonce == msg.sender_nonce and rep.sender_nonce != msg.sender_nonce
    assert rep.certificate is not None
    assert rep.certificate.public_key() == key.public_key()
    lint_and_verify(server, tmp_path, rep.certificate)


def test_pkcsreq_by_get(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, key, signer = enroll_message(server, ra[1], cn=unique("get"))
    answer = call(scep_url(server), "PKIOperation", get_message=msg.build())
    assert read_cert_rep(answer.body, key=key, cert=signer).status == SUCCESS


def test_ec_key_in_csr_with_rsa_signer_is_refused(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """A PKCSReq is signed with its CSR's key, and SCEP envelopes only to RSA: an EC key
    can come only by RenewalReq (test_renewal_to_an_ec_key). Nothing ties an RSA signer of
    another key to the EC CSR, which is the attack verify_pkcsreq_signer refuses."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    cn, challenge = unique("ecdev"), new_challenge(server)
    msg = Message(
        message_type=MessageType.PKCS_REQ,
        content=make_csr(ec_key, cn, challenge=challenge),
        recipient=ra[1],
        signer_cert=self_signed(KEYS[1], cn),
        signer_key=KEYS[1],
    )
    assert failure(server, msg.build()) == BAD_REQUEST
    assert requests_for(server, cn) == []


def test_resend_answers_the_same_certificate(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, key, signer = enroll_message(server, ra[1], cn=unique("resend"), key=KEYS[2])
    raw = msg.build()
    first = read_cert_rep(pki_operation(scep_url(server), raw).body, key=key, cert=signer)
    again = read_cert_rep(pki_operation(scep_url(server), raw).body, key=key, cert=signer)
    assert first.certificate is not None and first.certificate == again.certificate


def failure(server: CertforgeServer, message: bytes, profile: str = "") -> str | None:
    rep = read_cert_rep(pki_operation(scep_url(server, profile), message).body)
    assert rep.status == FAILURE, rep
    return rep.fail_info


# ------------------------------------------------------------------ refusals
def test_wrong_challenge_is_bad_request_and_nothing_recorded(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    cn = unique("wrong")
    msg, _, _ = enroll_message(server, ra[1], cn=cn, challenge="not-the-challenge")
    assert failure(server, msg.build()) == BAD_REQUEST
    assert requests_for(server, cn) == []


def test_missing_challenge_is_bad_request(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, _, _ = enroll_message(server, ra[1], cn=unique("nochal"), challenge=None)
    assert failure(server, msg.build()) == BAD_REQUEST


def test_reused_challenge_is_bad_request(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    challenge = new_challenge(server)
    first, key, signer = enroll_message(server, ra[1], cn=unique("a"), challenge=challenge)
    ok = read_cert_rep(pki_operation(scep_url(server), first.build()).body, key=key, cert=signer)
    assert ok.status == SUCCESS
    second, _, _ = enroll_message(server, ra[1], cn=unique("b"), key=KEYS[1], challenge=challenge)
    assert failure(server, second.build()) == BAD_REQUEST


def test_challenge_for_another_profile_is_refused_and_kept(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    challenge = new_challenge(server, profile="tls-client")
    msg, key, signer = enroll_message(server, ra[1], cn=unique("bound"), challenge=challenge)
    assert failure(server, msg.build()) == BAD_REQUEST  # /scep is the device profile
    msg.transaction_id = uuid.uuid4().hex
    rep = read_cert_rep(
        pki_operation(scep_url(server, "tls-client"), msg.build()).body, key=key, cert=signer
    )
    assert rep.status == SUCCESS


def test_transaction_id_reuse_with_another_key_is_refused(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    first, _key, _signer = enroll_message(server, ra[1], cn=unique("tx"))
    assert read_cert_rep(pki_operation(scep_url(server), first.build()).body).status == SUCCESS
    cn = unique("tx2")
    second, _, _ = enroll_message(server, ra[1], cn=cn, key=KEYS[1])
    second.transaction_id = first.transaction_id
    assert failure(server, second.build()) == BAD_REQUEST
    assert requests_for(server, cn) == []


def test_des3_and_sha1_are_refused_unless_configured(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    des3, _, _ = enroll_message(server, ra[1], cn=unique("des3"), cipher=ContentCipher.DES3)
    assert failure(server, des3.build()) == BAD_ALG
    sha1, _, _ = enroll_message(server, ra[1], cn=unique("sha1"), digest="sha1")
    assert failure(server, sha1.build()) == BAD_ALG


def test_unsupported_content_cipher_is_bad_alg(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, _, _ = enroll_message(server, ra[1], cn=unique("aes192"))
    info = cms.ContentInfo.load(msg.build())
    envelope = cms.ContentInfo.load(info["content"]["encap_content_info"]["content"].native)
    eci = envelope["content"]["encrypted_content_info"]
    eci["content_encryption_algorithm"]["algorithm"] = "aes192_cbc"
    msg.envelope = envelope.dump(force=True)
    assert failure(server, msg.build()) == BAD_ALG


def test_bad_signature_is_bad_message_check(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    cn = unique("badsig")
    msg, _, _ = enroll_message(server, ra[1], cn=cn, tamper_signature=True)
    assert failure(server, msg.build()) == BAD_MESSAGE_CHECK
    assert requests_for(server, cn) == []


def test_wrong_message_digest_is_bad_message_check(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, _, _ = enroll_message(server, ra[1], cn=unique("digest"), wrong_digest=True)
    assert failure(server, msg.build()) == BAD_MESSAGE_CHECK


def test_wrong_recipient_is_bad_message_check(server: CertforgeServer) -> None:
    stranger = self_signed(KEYS[2], "not the RA")
    cn = unique("stranger")
    msg, _, _ = enroll_message(server, stranger, cn=cn)
    assert failure(server, msg.build()) == BAD_MESSAGE_CHECK
    assert requests_for(server, cn) == []


def test_unknown_message_type_is_bad_request(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, _, _ = enroll_message(server, ra[1], cn=unique("type"))
    msg.message_type = "99"
    assert failure(server, msg.build()) == BAD_REQUEST


def test_signing_time_far_off_is_bad_time(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC) - timedelta(days=3)
    msg, _, _ = enroll_message(server, ra[1], cn=unique("time"), signing_time=when)
    assert failure(server, msg.build()) == BAD_TIME


def test_ec_signer_is_bad_alg_and_nothing_recorded(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    cn = unique("ecsigner")
    msg = Message(
        message_type=MessageType.PKCS_REQ,
        content=make_csr(ec_key, cn, challenge=new_challenge(server)),
        recipient=ra[1],
        signer_cert=self_signed(ec_key, cn),
        signer_key=ec_key,
    )
    assert failure(server, msg.build()) == BAD_ALG
    assert requests_for(server, cn) == []


def test_bad_csr_is_bad_request_and_keeps_the_challenge(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    challenge = new_challenge(server)
    msg, key, signer = enroll_message(server, ra[1], cn=unique("badcsr"), challenge=challenge)
    good = msg.content
    msg.content = good[:-5] + bytes(5)  # the CSR's signature no longer verifies
    assert failure(server, msg.build()) == BAD_REQUEST
    msg.content, msg.transaction_id = good, uuid.uuid4().hex
    ok = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert ok.status == SUCCESS


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_a_subject_no_certificate_can_carry_is_refused_and_keeps_the_challenge(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """A CN over 64 characters: a 500 from signing on the old code."""
    key, cn = KEYS[0], "x" * 65
    challenge = new_challenge(server)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
    )
    csr = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode()).sign(
        key, hashes.SHA256()
    )
    msg = Message(
        message_type=MessageType.PKCS_REQ,
        content=csr.public_bytes(Encoding.DER),
        recipient=ra[1],
        signer_cert=self_signed(key, "long"),
        signer_key=key,
    )
    since = log_size(server)
    assert failure(server, msg.build()) == BAD_REQUEST
    assert errors_logged(server, since) == []
    good, _, _ = enroll_message(server, ra[1], cn=unique("kept"), challenge=challenge)
    assert read_cert_rep(pki_operation(scep_url(server), good.build()).body).status == SUCCESS


def tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 128:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def with_deep_attribute(message: bytes, depth: int) -> bytes:
    """The message with one more signed attribute, of an unknown type, nesting SEQUENCEs
    ``depth`` deep (added after signing: the attributes are read before the signature)."""
    nested = b"\x05\x00"
    for _ in range(depth):
        nested = tlv(0x30, nested)
    attr = tlv(0x30, bytes(core.ObjectIdentifier("1.2.3.4.5").dump()) + tlv(0x31, nested))
    info = cms.ContentInfo.load(message)
    signer_info = info["content"]["signer_infos"][0]
    raw = signer_info["signed_attrs"].dump()
    contents = parser.parse(raw)[4]
    signer_info["signed_attrs"] = cms.CMSAttributes.load(tlv(0x31, contents + attr))
    return bytes(info.dump(force=True))


def deeply_segmented_envelope(recipient: x509.Certificate, depth: int) -> bytes:
    """A pkcsPKIEnvelope whose encryptedContent is BER constructed OCTET STRINGs, each holding
    the next, ``depth`` deep."""
    sealed = cms.ContentInfo.load(seal_envelope(b"x" * 32, _asn1(recipient), ContentCipher.AES128))
    enveloped = sealed["content"]
    eci = enveloped["encrypted_content_info"]
    inner = tlv(0x04, b"\x00" * 16)
    for _ in range(depth):
        inner = tlv(0x24, inner)
    eci_der = tlv(
        0x30,
        eci["content_type"].dump() + eci["content_encryption_algorithm"].dump() + tlv(0xA0, inner),
    )
    body = tlv(0x30, enveloped["version"].dump() + enveloped["recipient_infos"].dump() + eci_der)
    return tlv(0x30, bytes(core.ObjectIdentifier("1.2.840.113549.1.7.3").dump()) + tlv(0xA0, body))


def test_a_deeply_nested_unknown_attribute_is_not_parsed(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """An unknown signed attribute 2000 SEQUENCEs deep, read before the signature is checked:
    RecursionError (a 500) on the old code. Now unread; the signature does not verify."""
    since = log_size(server)
    msg, _, _ = enroll_message(server, ra[1], cn=unique("deep"), challenge="x")
    deep = with_deep_attribute(msg.build(), 2000)
    assert failure(server, deep) == BAD_MESSAGE_CHECK
    assert errors_logged(server, since) == []


def test_deeply_nested_encrypted_content_is_bad_message_check(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """An encryptedContent of 1000 nested constructed segments: RecursionError (a 500) on the
    old code."""
    since = log_size(server)
    key = KEYS[0]
    segmented = Message(
        message_type=MessageType.PKCS_REQ,
        content=b"",
        recipient=ra[1],
        signer_cert=self_signed(key, "segments"),
        signer_key=key,
        envelope=deeply_segmented_envelope(ra[1], 1000),
    )
    assert failure(server, segmented.build()) == BAD_MESSAGE_CHECK
    assert errors_logged(server, since) == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda m: b"hello, not PKCS#7", id="not_pkcs7"),
        pytest.param(lambda m: m[: len(m) // 2], id="truncated"),
        pytest.param(lambda m: m + b"\x00", id="trailing_garbage"),
    ],
)
def test_unreadable_message_is_http_400(
    server: CertforgeServer,
    ra: tuple[list[x509.Certificate], x509.Certificate],
    mangle: object,
) -> None:
    msg, _, _ = enroll_message(server, ra[1], cn=unique("mangled"), challenge="x")
    assert callable(mangle)
    answer = pki_operation(scep_url(server), mangle(msg.build()))
    assert answer.status == 400 and answer.content_type == "text/plain"


def test_missing_transaction_id_is_http_400(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, _, _ = enroll_message(server, ra[1], cn=unique("notid"), challenge="x")
    msg.omit = frozenset({"scep_transaction_id"})
    assert pki_operation(scep_url(server), msg.build()).status == 400


def test_oversized_message_is_413(server: CertforgeServer) -> None:
    answer = pki_operation(scep_url(server), os.urandom(70 * 1024))
    assert answer.status == 413


# ------------------------------------------------------------------ the PKCSReq's signer
def signed_by(
    server: CertforgeServer,
    recipient: x509.Certificate,
    *,
    cn: str,
    challenge: str,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey,
    key: rsa.RSAPrivateKey = KEYS[0],
) -> Message:
    """A PKCSReq for ``key``'s CSR, signed by ``signer_key`` with ``signer_cert``."""
    return Message(
        message_type=MessageType.PKCS_REQ,
        content=make_csr(key, cn, challenge=challenge),
        recipient=recipient,
        signer_cert=signer_cert,
        signer_key=signer_key,
    )


def assert_refused_and_challenge_kept(
    server: CertforgeServer, ra: x509.Certificate, refused: Message, *, cn: str, challenge: str
) -> None:
    """``refused`` gets FAILURE badRequest, records nothing and logs no error; its challenge
    then still enrolls a request signed as RFC 8894 §2.3 says."""
    since = log_size(server)
    assert failure(server, refused.build()) == BAD_REQUEST
    assert requests_for(server, cn) == [] and certificates_for(server, cn) == []
    good, key, signer = enroll_message(server, ra, cn=cn, challenge=challenge)
    ok = read_cert_rep(pki_operation(scep_url(server), good.build()).body, key=key, cert=signer)
    assert ok.status == SUCCESS and ok.certificate is not None
    assert len(certificates_for(server, cn)) == 1
    assert errors_logged(server, since) == []


def test_pkcsreq_signed_with_a_self_signed_certificate_of_another_key_is_refused(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """The reported attack: the CSR's key is KEYS[0], the signer a self-signed certificate
    for KEYS[1] with the same CN (anyone can wrap a captured pkcsPKIEnvelope so)."""
    cn, challenge = unique("otherkey"), new_challenge(server)
    refused = signed_by(
        server,
        ra[1],
        cn=cn,
        challenge=challenge,
        signer_cert=self_signed(KEYS[1], cn),
        signer_key=KEYS[1],
    )
    assert_refused_and_challenge_kept(server, ra[1], refused, cn=cn, challenge=challenge)


def test_pkcsreq_signed_with_a_certificate_of_this_ca_for_another_key_is_refused(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """Renewing with a certificate of this CA is RenewalReq's job; a PKCSReq it signs for
    another key gets no further than one signed by a stranger."""
    cn = unique("ourcert")
    first, key, signer = enroll_message(server, ra[1], cn=cn, key=KEYS[1])
    issued = read_cert_rep(
        pki_operation(scep_url(server), first.build()).body, key=key, cert=signer
    )
    assert issued.certificate is not None
    challenge = new_challenge(server)
    refused = signed_by(
        server,
        ra[1],
        cn=cn,
        challenge=challenge,
        signer_cert=issued.certificate,
        signer_key=KEYS[1],
    )
    since = log_size(server)
    assert failure(server, refused.build()) == BAD_REQUEST
    assert len(certificates_for(server, cn)) == 1  # the first one only
    refused.signer_cert, refused.signer_key = self_signed(KEYS[0], cn), KEYS[0]
    refused.transaction_id = uuid.uuid4().hex
    ok = read_cert_rep(pki_operation(scep_url(server), refused.build()).body)
    assert ok.status == SUCCESS  # the challenge was kept
    assert errors_logged(server, since) == []


def test_pkcsreq_signed_with_another_cas_certificate_for_another_key_is_refused(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """A manufacturer certificate for another key proves nothing certforge can check (it
    trusts no other CA) beyond possession of that key."""
    cn, challenge = unique("vendor"), new_challenge(server)
    vendor = issued_by(KEYS[1], cn, issuer_key=KEYS[2], issuer_cn="Vendor Device CA")
    refused = signed_by(
        server, ra[1], cn=cn, challenge=challenge, signer_cert=vendor, signer_key=KEYS[1]
    )
    assert_refused_and_challenge_kept(server, ra[1], refused, cn=cn, challenge=challenge)


def test_pkcsreq_signed_with_another_cas_certificate_for_the_csr_key_is_issued(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    cn = unique("vendorsame")
    vendor = issued_by(KEYS[1], "SN 0042", issuer_key=KEYS[2], issuer_cn="Vendor Device CA")
    msg = signed_by(
        server,
        ra[1],
        cn=cn,
        challenge=new_challenge(server),
        signer_cert=vendor,
        signer_key=KEYS[1],
        key=KEYS[1],
    )
    rep = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=KEYS[1], cert=vendor)
    assert rep.status == SUCCESS and rep.certificate is not None
    assert rep.certificate.public_key() == KEYS[1].public_key()


def test_pkcsreq_self_signed_for_the_csr_key_with_another_subject_is_issued(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """micromdm's scepclient signs with a self-signed 'CN=SCEP SIGNER' certificate of the
    CSR's key: RFC 8894 §2.3's "SHOULD use the same subject name" is not enforced."""
    cn = unique("signer")
    msg = signed_by(
        server,
        ra[1],
        cn=cn,
        challenge=new_challenge(server),
        signer_cert=self_signed(KEYS[0], "SCEP SIGNER"),
        signer_key=KEYS[0],
    )
    rep = read_cert_rep(pki_operation(scep_url(server), msg.build()).body)
    assert rep.status == SUCCESS


def test_resend_signed_with_another_key_is_refused(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """A transactionID, the CSR's key and a fresh challenge are not enough to get a
    certificate for that key enveloped to someone else's key."""
    cn = unique("resend-other")
    first, key, signer = enroll_message(server, ra[1], cn=cn)
    assert read_cert_rep(pki_operation(scep_url(server), first.build()).body).status == SUCCESS
    challenge = new_challenge(server)
    again = signed_by(
        server,
        ra[1],
        cn=cn,
        challenge=challenge,
        signer_cert=self_signed(KEYS[1], cn),
        signer_key=KEYS[1],
    )
    again.transaction_id = first.transaction_id
    assert failure(server, again.build()) == BAD_REQUEST
    assert len(certificates_for(server, cn)) == 1
    again.signer_cert, again.signer_key = signer, key  # the requester's own resend
    assert read_cert_rep(pki_operation(scep_url(server), again.build()).body).status == SUCCESS


# ------------------------------------------------------------------ other message types
def test_get_cert_cert_poll_and_get_crl(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    msg, key, signer = enroll_message(server, ra[1], cn=unique("other"))
    issued = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert issued.certificate is not None
    cert = issued.certificate

    def ask(message_type: str, content: bytes, tid: str | None = None) -> Message:
        return Message(
            message_type=message_type,
            content=content,
            recipient=ra[1],
            signer_cert=signer,
            signer_key=key,
            transaction_id=tid or uuid.uuid4().hex,
        )

    poll = ask(
        MessageType.CERT_POLL, issuer_and_subject(ra[0][0], cert.subject), msg.transaction_id
    )
    polled = read_cert_rep(pki_operation(scep_url(server), poll.build()).body, key=key, cert=signer)
    assert polled.status == SUCCESS and polled.certificate == cert
    unknown = ask(MessageType.CERT_POLL, issuer_and_subject(ra[0][0], cert.subject))
    assert failure(server, unknown.build()) == BAD_CERT_ID

    get = ask(MessageType.GET_CERT, issuer_and_serial(cert))
    got = read_cert_rep(pki_operation(scep_url(server), get.build()).body, key=key, cert=signer)
    assert got.status == SUCCESS and got.certificate == cert
    assert failure(server, ask(MessageType.GET_CERT, issuer_and_serial(signer)).build()) == (
        BAD_CERT_ID
    )
    crl_rep = pki_operation(
        scep_url(server), ask(MessageType.GET_CRL, issuer_and_serial(cert)).build()
    )
    crl = read_crl_rep(crl_rep.body, key=key, cert=signer)
    issuing_ca = next(c for c in ra[0] if c != ra[1])
    assert crl.issuer == issuing_ca.subject
    public = issuing_ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(public)
    assert failure(server, ask(MessageType.GET_CRL, issuer_and_serial(signer)).build()) == (
        BAD_CERT_ID
    )


# ------------------------------------------------------------------ RenewalReq
def renewal(
    server: CertforgeServer,
    recipient: x509.Certificate,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    new_key: rsa.RSAPrivateKey,
    cn: str,
) -> Message:
    return Message(
        message_type=MessageType.RENEWAL_REQ,
        content=make_csr(new_key, cn),
        recipient=recipient,
        signer_cert=cert,
        signer_key=key,
    )


def test_renewal_with_issued_certificate(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    cn = unique("renew")
    msg, key, signer = enroll_message(server, ra[1], cn=cn)
    first = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert first.certificate is not None
    req = renewal(server, ra[1], first.certificate, key, KEYS[1], cn)
    rep = read_cert_rep(
        pki_operation(scep_url(server), req.build()).body, key=key, cert=first.certificate
    )
    assert rep.status == SUCCESS and rep.certificate is not None
    assert rep.certificate.serial_number != first.certificate.serial_number
    assert rep.certificate.public_key() == KEYS[1].public_key()

    # Another subject, a self-signed signer, and a revoked certificate are all refused.
    other = renewal(server, ra[1], first.certificate, key, KEYS[1], unique("other"))
    assert failure(server, other.build()) == BAD_REQUEST
    selfsigned = renewal(server, ra[1], self_signed(key, cn), key, KEYS[1], cn)
    assert failure(server, selfsigned.build()) == BAD_REQUEST
    serial = format(rep.certificate.serial_number, "x")
    server.cli("cert", "revoke", serial, check=True)
    revoked = renewal(server, ra[1], rep.certificate, KEYS[1], KEYS[2], cn)
    assert failure(server, revoked.build()) == BAD_REQUEST


def test_renewal_keeps_the_names_and_the_profile(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """RFC 8894 §3.3.1.2: a RenewalReq renews its signer certificate: the same subject and no
    name it lacks, at its own profile. On the old code a name no one validated was added
    (SUCCESS at /scep/tls-server), and /scep/tls-client switched profile."""
    cn = unique("keep") + ".example.com"
    key, signer = KEYS[0], self_signed(KEYS[0], cn)
    msg = Message(
        message_type=MessageType.PKCS_REQ,
        content=csr_with_names(key, cn, cn, challenge=new_challenge(server)),
        recipient=ra[1],
        signer_cert=signer,
        signer_key=key,
    )
    first = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert first.certificate is not None
    since = log_size(server)

    def renew(profile: str, *names: str) -> Message:
        return Message(
            message_type=MessageType.RENEWAL_REQ,
            content=csr_with_names(KEYS[1], cn, *names),
            recipient=ra[1],
            signer_cert=first.certificate,  # type: ignore[arg-type]
            signer_key=key,
        )

    for profile, names in [
        ("", (cn, "www.victim.test")),
        ("device", (cn, "www.victim.test")),
        ("tls-server", (cn, "www.victim.test")),
        ("tls-client", (cn,)),
        ("tls-server", (cn,)),
    ]:
        assert failure(server, renew(profile, *names).build(), profile) == BAD_REQUEST, profile
    assert len(requests_for(server, f"CN={cn}")) == 1
    assert errors_logged(server, since) == []
    rep = read_cert_rep(pki_operation(scep_url(server), renew("", cn).build()).body)
    assert rep.status == SUCCESS


def csr_with_names(
    key: rsa.RSAPrivateKey, cn: str, *names: str, challenge: str | None = None
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_renewal_to_an_ec_key(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """A RenewalReq is signed by the RSA certificate it renews, so its CSR may carry an EC key
    (the CertRep is enveloped to the signer)."""
    cn = unique("renew-ec")
    msg, key, signer = enroll_message(server, ra[1], cn=cn)
    first = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert first.certificate is not None
    ec_key = ec.generate_private_key(ec.SECP256R1())
    req = Message(
        message_type=MessageType.RENEWAL_REQ,
        content=make_csr(ec_key, cn),
        recipient=ra[1],
        signer_cert=first.certificate,
        signer_key=key,
    )
    rep = read_cert_rep(
        pki_operation(scep_url(server), req.build()).body, key=key, cert=first.certificate
    )
    assert rep.status == SUCCESS and rep.certificate is not None
    assert rep.certificate.public_key() == ec_key.public_key()


def test_cert_poll_is_signed_by_the_requests_signer(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """RFC 8894 §3.3.3: a CertPoll continues its transaction's request. A RenewalReq is signed
    by the certificate it renews, not by the new key of its CSR: a CertPoll signed with that
    new key (or any other) is refused, one signed like the request gets the certificate."""
    cn = unique("pollrenew")
    msg, key, signer = enroll_message(server, ra[1], cn=cn)
    first = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert first.certificate is not None
    req = renewal(server, ra[1], first.certificate, key, KEYS[1], cn)
    renewed = read_cert_rep(pki_operation(scep_url(server), req.build()).body)
    assert renewed.status == SUCCESS

    def poll(signer_cert: x509.Certificate, signer_key: rsa.RSAPrivateKey) -> Message:
        return Message(
            message_type=MessageType.CERT_POLL,
            content=issuer_and_subject(ra[0][0], first.certificate.subject),  # type: ignore[union-attr]
            recipient=ra[1],
            signer_cert=signer_cert,
            signer_key=signer_key,
            transaction_id=req.transaction_id,
        )

    assert failure(server, poll(self_signed(KEYS[1], cn), KEYS[1]).build()) == BAD_REQUEST
    assert failure(server, poll(self_signed(KEYS[2], cn), KEYS[2]).build()) == BAD_REQUEST
    polled = pki_operation(scep_url(server), poll(first.certificate, key).build())
    got = read_cert_rep(polled.body, key=key, cert=first.certificate)
    assert got.status == SUCCESS and got.certificate is not None
    assert got.certificate.public_key() == KEYS[1].public_key()


@pytest.mark.parametrize(
    "message_type",
    [
        pytest.param(MessageType.CERT_POLL, id="cert_poll"),
        pytest.param(MessageType.GET_CERT, id="get_cert"),
        pytest.param(MessageType.GET_CRL, id="get_crl"),
    ],
)
def test_other_messages_with_a_bad_signature_are_bad_message_check(
    server: CertforgeServer,
    ra: tuple[list[x509.Certificate], x509.Certificate],
    message_type: str,
) -> None:
    """Every message type's signature is checked by its signer's certificate, not only the
    enrollments': a tampered one is refused before its content is looked at."""
    msg, key, signer = enroll_message(server, ra[1], cn=unique("sigcheck"))
    issued = read_cert_rep(pki_operation(scep_url(server), msg.build()).body, key=key, cert=signer)
    assert issued.certificate is not None
    content = (
        issuer_and_subject(ra[0][0], issued.certificate.subject)
        if message_type == MessageType.CERT_POLL
        else issuer_and_serial(issued.certificate)
    )
    tampered = Message(
        message_type=message_type,
        content=content,
        recipient=ra[1],
        signer_cert=signer,
        signer_key=key,
        transaction_id=msg.transaction_id,
        tamper_signature=True,
    )
    assert failure(server, tampered.build()) == BAD_MESSAGE_CHECK


def test_ra_certificate_persists_in_data_dir(server: CertforgeServer) -> None:
    assert (server.data_dir / "scep" / "ra-default.pem").exists()
    assert oct((server.data_dir / "scep" / "ra-default.key").stat().st_mode & 0o777) == "0o600"


def test_scepclient_legacy_algorithms_are_bad_alg_by_default(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate], tmp_path: Path
) -> None:
    """Debian's scepclient 2.1.0 signs with SHA-1 and encrypts with DES: refused by default
    (tests/interop/scep has it enrolling where legacy algorithms are configured)."""
    fingerprint = hashlib.sha256(ra[1].public_bytes(Encoding.DER)).hexdigest()
    out = subprocess.run(
        [
            "scepclient",
            "-server-url",
            scep_url(server),
            "-private-key",
            str(tmp_path / "key.pem"),
            "-challenge",
            new_challenge(server),
            "-ca-fingerprint",
            fingerprint,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode != 0 and "badAlg" in out.stdout + out.stderr, out


def test_pkcsreq_by_get_with_unescaped_base64(
    server: CertforgeServer, ra: tuple[list[x509.Certificate], x509.Certificate]
) -> None:
    """Clients put the base64 message in the query as is: its '+' reads as a space."""
    import base64
    import urllib.request

    msg, key, signer = enroll_message(server, ra[1], cn=unique("rawget"))
    raw = base64.b64encode(msg.build()).decode()
    assert "+" in raw or "/" in raw
    url = f"{scep_url(server)}?operation=PKIOperation&message={raw}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert read_cert_rep(resp.read(), key=key, cert=signer).status == SUCCESS
