"""PKIOperation (RFC 8894 §3.3): what each messageType asks, translated for the engine.

- PKCSReq (§3.3.1): a PKCS#10 request authorised by its challengePassword: a one-time
  challenge (``certforge scep challenge``) or the profile's static challenge, and signed with
  the key it asks a certificate for (``verify_pkcsreq_signer``).
- RenewalReq (§3.3.1.2): signed with a valid, unrevoked certificate this CA issued for the
  same subject; no challenge. It asks for none of the names the certificate lacks, and only
  at the certificate's own profile.
- CertPoll (§3.3.3): the state of the transaction's request (the client polls while PENDING),
  for the key that signed that request only.
- GetCert (§3.3.4): a certificate by issuer and serial number.
- GetCRL (§3.3.4): the current CRL of the CA that issued the named certificate.

GetCert and GetCRL answer any requester whose message verifies (``read_pki_message`` checks
every message's signature by its signer's certificate): certificates and CRLs are public.

Every answer is a ``Reply``: the pkiStatus, a failInfo, or the certificate to envelope.
Nothing is recorded before the request is authorised, and a bad CSR is refused before a
one-time challenge is spent.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import assert_never

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from protocols.scep.config import SCEPConfig
from protocols.scep.failinfo import FailInfo, SCEPFailure
from protocols.scep.messages import MessageType, PKIMessage, PKIStatus
from protocols.scep.transactions import Transaction, find_transaction, sender_of
from server.ca.csr import ParsedCSR, challenge_password, requested_identifiers
from server.challenges import Challenges
from server.engine import Engine
from server.errors import BadCSR, NotFound
from server.model import (
    AuthMethod,
    CertStatus,
    Denied,
    EnrollmentRequest,
    Identifier,
    Issued,
    Outcome,
    Pending,
    Requester,
    Vouched,
)
from server.revocation.publisher import CRLPublisher


@dataclass(frozen=True, slots=True)
class Reply:
    status: PKIStatus
    fail_info: FailInfo | None = None
    certificate: bytes | None = None  # DER, enveloped to the requester on SUCCESS
    crl: bytes | None = None  # DER, likewise (GetCRL)


@dataclass(frozen=True)
class Operations:
    engine: Engine
    challenges: Challenges
    config: SCEPConfig
    crls: CRLPublisher

    async def handle(self, msg: PKIMessage, content: bytes, *, profile: str) -> Reply:
        try:
            message_type = MessageType(msg.message_type)
        except ValueError:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, f"unknown messageType {msg.message_type!r}"
            ) from None
        match message_type:
            case MessageType.PKCS_REQ | MessageType.RENEWAL_REQ:
                return await self.enroll(msg, content, profile=profile)
            case MessageType.CERT_POLL:
                return await self.cert_poll(msg)
            case MessageType.GET_CERT:
                return await self.get_cert(content)
            case MessageType.GET_CRL:
                return await self.get_crl(content)
            case MessageType.CERT_REP:
                raise SCEPFailure(FailInfo.BAD_REQUEST, "a CertRep is not a request")
            case _:
                assert_never(message_type)

    # ------------------------------------------------------------- PKCSReq
    async def enroll(self, msg: PKIMessage, csr_der: bytes, *, profile: str) -> Reply:
        csr, key_sha256 = _read_csr(csr_der)  # the engine verifies it
        if msg.message_type == MessageType.PKCS_REQ:
            # Before the transaction is looked up: a resend is answered (the certificate
            # enveloped to its signer) only to a signer this check lets through.
            verify_pkcsreq_signer(msg.signer, csr)
        sender = sender_of(msg.message_type, msg.signer.dump())
        previous = await find_transaction(self.engine.store, msg.transaction_id)
        if previous is not None:
            if previous.key_sha256 != key_sha256:
                # RFC 8894 §3.2.1.1: the transactionID identifies one key's enrollment.
                raise SCEPFailure(FailInfo.BAD_REQUEST, "transactionID reused with another key")
            if previous.sender == sender:
                return await self._state_of(previous.request_id)  # a resend polls
        requester, vouched, verified = await self._authorise(msg, csr, csr_der, profile)
        transaction = Transaction("", key_sha256, sender, _key_sha256(msg.signer))
        outcome = await self.engine.submit(
            EnrollmentRequest(
                csr_der,
                "scep",
                requester,
                profile=profile,
                vouched=replace(vouched, attributes=transaction.attributes()),
                transaction_id=msg.transaction_id,
            ),
            verified=verified,
        )
        return _reply(outcome)

    async def _authorise(
        self, msg: PKIMessage, csr: x509.CertificateSigningRequest, csr_der: bytes, profile: str
    ) -> tuple[Requester, Vouched, ParsedCSR | None]:
        """Who asks, and the request verified when that had to come first (else None: the
        engine verifies it)."""
        if msg.message_type == MessageType.RENEWAL_REQ:
            return *await self._renewal_signer(msg, csr, profile), None
        password = challenge_password(csr)
        if not password:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "a PKCSReq needs a challengePassword")
        static = self.config.static_challenges.get(profile)
        if static is not None and hmac.compare_digest(password.encode(), static.encode()):
            return Requester(AuthMethod.CHALLENGE_PASSWORD, "static"), Vouched(), None
        # A one-time challenge is spent only on a CSR the engine will accept as a CSR (its
        # key included: not one of certforge's own).
        verified = self.engine.verify_csr(csr_der)
        if await self.challenges.redeem(password, profile=profile):
            return Requester(AuthMethod.CHALLENGE_PASSWORD, "one-time"), Vouched(), verified
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challengePassword is wrong or used")

    async def _renewal_signer(
        self, msg: PKIMessage, csr: x509.CertificateSigningRequest, profile: str
    ) -> tuple[Requester, Vouched]:
        """RFC 8894 §3.3.1.2: a RenewalReq is signed with the certificate being renewed. It
        must be one this CA issued, valid now, unrevoked, for the same subject, asking for
        none of the names it does not have, under the profile it was issued under."""
        try:
            record = await self.engine.store.get_certificate(msg.signer.serial_number)
        except NotFound:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, "the signer was not issued by this CA"
            ) from None
        now = self.engine.clock.now()
        if record.der != msg.signer.dump():
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the signer was not issued by this CA")
        if record.status is not CertStatus.VALID:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the signer's certificate is revoked")
        if not record.not_before <= now < record.not_after:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the signer's certificate is not valid now")
        # "The same subject": the certificate's, or the one its enrollment asked for (the
        # profile may have dropped attributes the client's CSR still carries).
        subject = csr.subject
        if x509.load_der_x509_certificate(record.der).subject != subject:
            original = await self.engine.store.get_request(record.request_id)
            if original.subject != subject.rfc4514_string():
                raise SCEPFailure(FailInfo.BAD_REQUEST, "a renewal keeps the certificate's subject")
        # A renewal renews what was certified: names no one validated would be added (the
        # signature proves possession of the old certificate only), and another profile would
        # turn a 90-day serverAuth certificate into a 730-day clientAuth one.
        if record.profile != profile:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST,
                f"a renewal stays in the certificate's profile {record.profile!r}",
            )
        names = frozenset(Identifier.parse(s) for s in record.sans)
        if added := sorted(set(requested_identifiers(csr)) - names):
            raise SCEPFailure(
                FailInfo.BAD_REQUEST,
                f"a renewal cannot add names the certificate lacks: {added[0]}",
            )
        return (
            Requester(AuthMethod.CLIENT_CERT, record.subject),
            Vouched(identifiers=names, renewal_of=record.serial),
        )

    # ------------------------------------------------------------ CertPoll
    async def cert_poll(self, msg: PKIMessage) -> Reply:
        tx = await find_transaction(self.engine.store, msg.transaction_id)
        if tx is None:
            raise SCEPFailure(FailInfo.BAD_CERT_ID, "no enrollment has this transactionID")
        # Only the requester polls. The CertPoll's signature proves possession of its
        # signer's key, and that key must be the one that signed the request: for a PKCSReq
        # also the CSR's key (verify_pkcsreq_signer), for a RenewalReq the renewed
        # certificate's, not the new key in its CSR (which proved possession of nothing the
        # renewal was authorised by).
        if _key_sha256(msg.signer) != tx.signer_key_sha256:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "CertPoll signed by another key")
        return await self._state_of(tx.request_id)

    async def _state_of(self, request_id: str) -> Reply:
        _, outcome = await self.engine.retrieve(request_id)
        return _reply(outcome)

    # ------------------------------------------------------------- GetCert
    async def get_cert(self, content: bytes) -> Reply:
        ias, serial = _issuer_and_serial(content)
        try:
            record = await self.engine.store.get_certificate(serial)
        except NotFound:
            raise SCEPFailure(FailInfo.BAD_CERT_ID, "no certificate has this serial") from None
        issuer = x509.load_der_x509_certificate(record.der).issuer.public_bytes()
        if issuer != ias["issuer"].dump():
            raise SCEPFailure(FailInfo.BAD_CERT_ID, "no certificate of this issuer and serial")
        return Reply(PKIStatus.SUCCESS, certificate=record.der)

    # -------------------------------------------------------------- GetCRL
    async def get_crl(self, content: bytes) -> Reply:
        """RFC 8894 §3.3.4: the CRL that would hold the named certificate: its issuer's."""
        ias, _ = _issuer_and_serial(content)
        for name, ca in self.engine.cas.issuers.items():
            if ca.subject.public_bytes() == ias["issuer"].dump():
                published = self.crls.latest(name) or await self.crls.publish(name)
                return Reply(PKIStatus.SUCCESS, crl=published.der)
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "no CA here has this issuer name")


def verify_pkcsreq_signer(
    signer: asn1_x509.Certificate, csr: x509.CertificateSigningRequest
) -> None:
    """A PKCSReq is signed with the key its CSR asks a certificate for; raises otherwise.

    RFC 8894 §2.3: a requester without a certificate signs with "a locally generated
    self-signed certificate" that "SHOULD use the same subject name and key as in the PKCS #10
    request"; one from this CA signs a RenewalReq. The key is enforced as a MUST, whoever
    issued the signer certificate: a PKCSReq is authorised by the challenge inside its
    pkcsPKIEnvelope, the CMS signature proves possession of the signer's key only, and the
    CertRep is enveloped to the signer. Without the binding anyone could re-sign a captured
    envelope (SCEP runs over plain HTTP), spend its challenge and be sent its certificate.

    - A self-signed certificate for another key: refused, it is that attack.
    - A certificate of this CA for another key: refused; renewing is RenewalReq's job
      (``_renewal_signer``), and GetCACaps offers it.
    - Another CA's certificate (a manufacturer's, say): accepted for the CSR's key only. No
      other CA is trusted, so its issuer proves nothing; for another key it would authorise
      no more than a self-signed one.

    The subject name is not compared: whoever holds the key can sign any name, so it proves
    nothing more, and micromdm's scepclient signs as "CN=SCEP SIGNER".

    The failInfo is badRequest ("Transaction not permitted or supported"), not
    badMessageCheck, whose "Integrity check (meaning signature verification of the CMS
    message)" passed here: what is wrong is who asks, as for a RenewalReq signed by a
    certificate this CA did not issue.
    """
    if _spki_der(signer) == csr.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    ):
        return
    # For the log only. Self-issued (RFC 5280 §3.2: issuer and subject the same) from the
    # names' bytes, which read nothing else of a certificate the signature does not cover.
    kind = "a self-issued" if signer.issuer.dump() == signer.subject.dump() else "a"
    raise SCEPFailure(
        FailInfo.BAD_REQUEST,
        f"the PKCSReq is signed by {kind} certificate for another key than the CSR's",
    )


def _spki_der(cert: asn1_x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo as cryptography writes it, so that it compares
    with the CSR's whatever optional encodings (an absent NULL parameter) the client chose."""
    key = load_der_public_key(cert["tbs_certificate"]["subject_public_key_info"].dump())
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _issuer_and_serial(content: bytes) -> tuple[cms.IssuerAndSerialNumber, int]:
    try:
        ias = cms.IssuerAndSerialNumber.load(content, strict=True)
        return ias, int(ias["serial_number"].native)
    except (ValueError, TypeError) as exc:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "expected IssuerAndSerialNumber") from exc


def _read_csr(csr_der: bytes) -> tuple[x509.CertificateSigningRequest, str]:
    """The CSR and its key's SHA-256, without the signature check the engine makes."""
    try:
        csr = x509.load_der_x509_csr(csr_der)
        spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadCSR("the pkcsPKIEnvelope does not hold a DER PKCS#10 request") from exc
    return csr, hashlib.sha256(spki).hexdigest()


def _key_sha256(cert: asn1_x509.Certificate) -> str:
    return hashlib.sha256(cert["tbs_certificate"]["subject_public_key_info"].dump()).hexdigest()


def _reply(outcome: Outcome) -> Reply:
    match outcome:
        case Issued(certificate=cert):
            return Reply(PKIStatus.SUCCESS, certificate=cert.der)
        case Pending():
            return Reply(PKIStatus.PENDING)
        case Denied():
            return Reply(PKIStatus.FAILURE, FailInfo.BAD_REQUEST)
        case _:
            assert_never(outcome)
