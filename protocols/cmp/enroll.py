"""Enrollment transactions (RFC 9483 §4.1, §4.4): ir, cr, kur and p10cr, then certConf or
pollReq, translated for the engine.

- ir (§4.1.1) and cr (§4.1.2): authorised by a shared secret (MAC) or a signer certificate
  (this CA's, or a trust anchor's); cr is ir for a client that holds a certificate already.
- kur (§4.1.3): signed with the valid certificate of this CA being updated, for a new key;
  the profile is the endpoint's, or that certificate's at ``/.well-known/cmp``.
- p10cr (§4.1.4): a PKCS #10 request, its own POP; certReqId -1 in the answer.

Each request must carry exactly one certificate request with certReqId 0 (RFC 9483 §4.1.1).
Everything is checked (protection, POP, the key, the profile, the secret's binding) before
the transaction is opened and a one-time secret used up, so a refused request spends
nothing. The engine's answer becomes the CertResponse: accepted with the certificate and its
chain in extraCerts, waiting (the client polls, §4.4), or rejection with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import datetime
from typing import assert_never

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pyasn1_alt_modules import rfc9480

from protocols.cmp.certreq import parsed_request
from protocols.cmp.deps import Answer, Auth, CMPDeps, MACAuth, SignerAuth
from protocols.cmp.failinfo import CMPFailure, FailInfo, PKIStatus
from protocols.cmp.messages import (
    ASN1,
    RESPONSE_TO,
    Body,
    CertResponse,
    Message,
    cert_rep_body,
    pkiconf_body,
    poll_rep_body,
    untagged_der,
)
from protocols.cmp.pop import verify_crmf_pop, verify_p10_pop
from protocols.cmp.secrets import Sealer
from protocols.cmp.transactions import State, Transaction, Transactions
from server import csprng
from server.ca.csr import ParsedCSR
from server.model import (
    AuthMethod,
    Denied,
    EnrollmentRequest,
    Issued,
    Outcome,
    Pending,
    Requester,
    RevocationReason,
    Vouched,
)

NONCE_BYTES = 16


class Enrollment:
    def __init__(self, deps: CMPDeps, transactions: Transactions) -> None:
        self._d = deps
        self._tx = transactions
        self._sealer = Sealer(deps.master_key, b"transaction secrets")

    # -------------------------------------------------------------- requests
    async def crmf(
        self, msg: Message, auth: Auth, tx: Transaction | None, profile: str | None
    ) -> Answer:
        _no_transaction(tx)
        cert_req_msg = _single(msg.body, "CertReqMsg")
        if int(cert_req_msg["certReq"]["certReqId"]) != 0:
            raise CMPFailure(FailInfo.BAD_REQUEST, "RFC 9483 §4.1.1: the certReqId must be 0")
        algorithm, signature = verify_crmf_pop(cert_req_msg)
        parsed = parsed_request(
            cert_req_msg["certReq"]["certTemplate"],
            pop_algorithm=algorithm,
            pop_signature=signature,
        )
        vouched = Vouched()
        if msg.body_type == Body.KUR:
            renewed, profile = self._authorise_kur(auth, parsed, profile)
            vouched = Vouched(renewal_of=renewed)
        return await self._submit(msg, auth, parsed, profile, vouched=vouched, cert_req_id=0)

    async def p10(
        self, msg: Message, auth: Auth, tx: Transaction | None, profile: str | None
    ) -> Answer:
        _no_transaction(tx)
        csr_der = untagged_der(rfc9480.CertificationRequest(), msg.body)
        verify_p10_pop(csr_der)
        parsed = self._d.engine.verify_csr(csr_der)
        # RFC 9483 §4.1.4: the CertResponse of a p10cr has certReqId -1.
        return await self._submit(msg, auth, parsed, profile, vouched=Vouched(), cert_req_id=-1)

    def _authorise_kur(
        self, auth: Auth, parsed: ParsedCSR, profile: str | None
    ) -> tuple[int, str | None]:
        # RFC 9483 §4.1.3: a kur is signed with the certificate to be updated.
        if not isinstance(auth, SignerAuth) or auth.record is None:
            raise CMPFailure(
                FailInfo.NOT_AUTHORIZED, "a kur must be signed with the certificate it updates"
            )
        if parsed.key_sha256 == auth.key_sha256:
            raise CMPFailure(FailInfo.BAD_CERT_TEMPLATE, "a kur must ask for a new key")
        return auth.record.serial, profile or auth.record.profile

    async def _submit(
        self,
        msg: Message,
        auth: Auth,
        parsed: ParsedCSR,
        profile: str | None,
        *,
        vouched: Vouched,
        cert_req_id: int,
    ) -> Answer:
        engine = self._d.engine
        profile = engine.profile(profile or self._d.default_profile).name  # UnknownProfile
        engine.reserved_keys.check(parsed.key_sha256)  # refused before anything is spent
        requester = self._requester(auth, profile)
        nonce = csprng.token_bytes(NONCE_BYTES)
        tx = await self._tx.open(
            self._new_transaction(msg, auth, profile, cert_req_id, nonce), now=self._now()
        )
        try:
            if isinstance(auth, MACAuth) and not await self._use(auth):
                raise CMPFailure(FailInfo.NOT_AUTHORIZED, "this secret was used already")
            outcome = await engine.submit(
                EnrollmentRequest(
                    csr_der=parsed.der,
                    protocol="cmp",
                    requester=requester,
                    profile=profile,
                    vouched=vouched,
                    transaction_id=f"cmp-{tx.id}",
                ),
                verified=parsed,
            )
        except BaseException:
            await self._tx.forget(tx)
            raise
        return await self._answer(msg, tx, outcome, nonce)

    async def _use(self, auth: MACAuth) -> bool:
        """Use up a one-time secret, last of all checks: True when this request may go on."""
        if auth.from_transaction:
            return False  # the transaction's copy starts no second enrollment
        return not auth.secret.one_time or await self._d.use_secret(auth.reference)

    def _requester(self, auth: Auth, profile: str) -> Requester:
        if isinstance(auth, MACAuth):
            if auth.secret.profile is not None and auth.secret.profile != profile:
                # As with SCEP and EST challenges: refused without being used up.
                raise CMPFailure(FailInfo.NOT_AUTHORIZED, "this secret is for another profile")
            # TODO(#14): a method name of CMP's own once front ends own their auth names.
            return Requester(AuthMethod.CHALLENGE_PASSWORD, f"cmp:{auth.reference.hex()}")
        return Requester(AuthMethod.CLIENT_CERT, auth.certificate.subject.rfc4514_string())

    def _new_transaction(
        self, msg: Message, auth: Auth, profile: str, cert_req_id: int, nonce: bytes
    ) -> Transaction:
        assert msg.header.transaction_id is not None  # noqa: S101 - check_header ensured it
        tx = Transaction(
            id=msg.header.transaction_id.hex(),
            state=State.OPEN,
            body=msg.body_type,
            profile=profile,
            last_nonce=nonce.hex(),
            cert_req_id=cert_req_id,
        )
        if isinstance(auth, MACAuth):
            sealed = self._sealer.seal(auth.secret.secret, bound_to=msg.header.transaction_id)
            return replace(tx, mac_reference=auth.reference.hex(), sealed_secret=sealed)
        return replace(tx, signer_key=auth.key_sha256)

    async def _answer(
        self, msg: Message, tx: Transaction, outcome: Outcome, nonce: bytes
    ) -> Answer:
        kind = RESPONSE_TO[Body(tx.body)]
        now = self._now()
        match outcome:
            case Issued(request_id, certificate, chain):
                # RFC 4210 §5.1.1.1: implicit confirmation only when the client asked for it.
                implicit = msg.header.implicit_confirm and self._d.grant_implicit_confirm
                state = State.DONE if implicit else State.CONFIRM
                await self._tx.move(
                    tx, now=now, state=state, request_id=request_id,
                    serial=certificate.serial, last_nonce=nonce.hex(),
                )  # fmt: skip
                response = CertResponse(tx.cert_req_id, PKIStatus.ACCEPTED, certificate.der)
                return Answer(cert_rep_body(kind, [response]), chain, implicit, nonce)
            case Pending(request_id, reason):
                await self._tx.move(
                    tx, now=now, state=State.WAITING, request_id=request_id,
                    last_nonce=nonce.hex(),
                )  # fmt: skip
                response = CertResponse(tx.cert_req_id, PKIStatus.WAITING, text=reason)
                return Answer(cert_rep_body(kind, [response]), sender_nonce=nonce)
            case Denied(request_id, reason):
                await self._tx.move(
                    tx, now=now, state=State.DONE, request_id=request_id, last_nonce=nonce.hex()
                )
                response = CertResponse(
                    tx.cert_req_id, PKIStatus.REJECTION, fail_info=FailInfo.NOT_AUTHORIZED,
                    text=reason,
                )  # fmt: skip
                return Answer(cert_rep_body(kind, [response]), sender_nonce=nonce)
            case _:
                assert_never(outcome)

    # ------------------------------------------------- certConf and pollReq
    async def confirm(self, msg: Message, auth: Auth, tx: Transaction | None) -> Answer:
        """RFC 9483 §4.1.1: certConf for the certificate of this transaction; pkiConf."""
        if tx is None or tx.state is not State.CONFIRM or tx.serial is None:
            raise CMPFailure(
                FailInfo.BAD_REQUEST, "no certificate of this transaction waits for certConf"
            )
        self._continues(msg, auth, tx)
        status = _single(msg.body, "CertStatus")
        if int(status["certReqId"]) != tx.cert_req_id:
            raise CMPFailure(FailInfo.BAD_REQUEST, "the certConf names another certReqId")
        record = await self._d.store.get_certificate(tx.serial)
        expected = _cert_hash(record.der)
        if not hmac.compare_digest(bytes(status["certHash"].asOctets()), expected):
            raise CMPFailure(FailInfo.BAD_CERT_ID, "the certHash is not the certificate's")
        nonce = csprng.token_bytes(NONCE_BYTES)
        await self._tx.move(tx, now=self._now(), state=State.DONE, last_nonce=nonce.hex())
        info = status["statusInfo"]
        if info.isValue and int(info["status"]) == PKIStatus.REJECTION:
            # RFC 9483 §4.1.1: a certificate the EE rejects is revoked by the PKI.
            await self._d.engine.revoke(
                tx.serial,
                reason=RevocationReason.CESSATION_OF_OPERATION,
                by=self._requester(auth, tx.profile),
            )
        return Answer(pkiconf_body(), sender_nonce=nonce)

    async def poll(self, msg: Message, auth: Auth, tx: Transaction | None) -> Answer:
        """RFC 9483 §4.4: pollRep while the engine holds the request, then its answer."""
        if tx is None or tx.state is not State.WAITING or tx.request_id is None:
            raise CMPFailure(FailInfo.BAD_REQUEST, "no request of this transaction is waiting")
        self._continues(msg, auth, tx)
        item = _single(msg.body, "pollReq entry")
        if int(item["certReqId"]) != tx.cert_req_id:
            raise CMPFailure(FailInfo.BAD_REQUEST, "the pollReq names another certReqId")
        _, outcome = await self._d.engine.retrieve(tx.request_id)
        nonce = csprng.token_bytes(NONCE_BYTES)
        if isinstance(outcome, Pending):
            await self._tx.move(tx, now=self._now(), last_nonce=nonce.hex())
            body = poll_rep_body(tx.cert_req_id, self._d.check_after_seconds, outcome.reason)
            return Answer(body, sender_nonce=nonce)
        return await self._answer(msg, tx, outcome, nonce)

    def secret_of(self, tx: Transaction) -> bytes | None:
        """The MAC secret a transaction keeps for its later messages."""
        if tx.sealed_secret is None:
            return None
        return self._sealer.open(tx.sealed_secret, bound_to=bytes.fromhex(tx.id))

    def _continues(self, msg: Message, auth: Auth, tx: Transaction) -> None:
        """A later message of a transaction: the same client, answering our last nonce."""
        same = (isinstance(auth, MACAuth) and auth.reference.hex() == tx.mac_reference) or (
            isinstance(auth, SignerAuth) and auth.key_sha256 == tx.signer_key
        )
        if not same:
            raise CMPFailure(FailInfo.NOT_AUTHORIZED, "this transaction is another client's")
        # RFC 4210 §5.1.1: recipNonce is the senderNonce of the message it answers.
        nonce = msg.header.recip_nonce
        if nonce is None or not hmac.compare_digest(nonce.hex(), tx.last_nonce):
            raise CMPFailure(FailInfo.BAD_RECIPIENT_NONCE, "the recipNonce is not ours")

    def _now(self) -> datetime:
        return self._d.clock.now()


def _no_transaction(tx: Transaction | None) -> None:
    if tx is not None:
        # RFC 9483 §3.1: a new transaction needs a transactionID not in use.
        raise CMPFailure(FailInfo.TRANSACTION_ID_IN_USE, "this transactionID is already in use")


def _single(content: ASN1, what: str) -> ASN1:
    if len(content) != 1:
        raise CMPFailure(FailInfo.BAD_REQUEST, f"RFC 9483 allows exactly one {what} here")
    return content[0]


def _cert_hash(der: bytes) -> bytes:
    """RFC 4210 §5.3.18: certHash uses the hash of the certificate's signature algorithm."""
    cert = x509.load_der_x509_certificate(der)
    algorithm = cert.signature_hash_algorithm or hashes.SHA512()  # Ed25519: SHA-512
    return hashlib.new(algorithm.name, der).digest()
