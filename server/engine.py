"""The engine: one issuance flow for every front end (the classic certificate server's core).

The issuance cycle, and what is durable at each step:

``submit``
  Step 1. Verify the CSR's signature and its public key, which must not be one of
          certforge's own (``server.ca.reserved``). Bad input raises (``BadCSR``,
          ``BadPublicKey``...) and nothing is recorded.
  Step 2. The profile gives the draft; the policy modules decide and shape it, in config order.
  Step 3. Record the outcome.
          - Deny or Hold: the request, its decision and its event in ONE atomic write.
          - Issue: reserve a fresh random serial, build and sign the certificate in memory, then
            write the request, the certificate and the ``issued`` event in ONE atomic write,
            before anyone sees the certificate. A crash before that write loses only a
            certificate that was never handed out; a crash after it loses nothing. A serial
            collision (unique index) is retried with a new serial.
``approve``
  Step 1. PENDING -> APPROVED, a conditional write: of two concurrent approvals one wins.
  Step 2. Sign the draft stored with the request (exactly what policy shaped), then
          APPROVED -> ISSUED with the certificate and its event. A crash between the two
          leaves the request APPROVED, and ``resume_approved`` (run at start) finishes it.
``deny``: PENDING -> DENIED.  ``retrieve``: the requester polls by request id.
``revoke`` / ``unrevoke``: conditional writes on the certificate, each with its event.

Every write carries its event; the exit dispatcher delivers events at least once.
The engine knows no protocol: ``EnrollmentRequest.protocol`` is recorded, never branched on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, assert_never

from cryptography.hazmat.primitives.serialization import Encoding

from server.ca.build import build_certificate
from server.ca.csr import ParsedCSR, verify_csr
from server.ca.issuers import CAHierarchy
from server.ca.reserved import ReservedKeys, reserved_keys_of
from server.ca.serials import new_serial
from server.config import ProfileConfig
from server.errors import BadCSR, Conflict, Malformed, ReservedPublicKey, UnknownProfile
from server.model import (
    CertificateDraft,
    CertificateRecord,
    Clock,
    Denied,
    Deny,
    EnrollmentRequest,
    Event,
    EventKind,
    Hold,
    Issue,
    Issued,
    Outcome,
    Pending,
    PolicyModule,
    Requester,
    RequestQuery,
    RequestRecord,
    RevocationReason,
    Status,
    SystemClock,
    new_id,
)
from server.profiles import draft_for
from server.store.base import Store

log = logging.getLogger("certforge.engine")

SERIAL_ATTEMPTS = 3


class Observer:
    """Receives what the engine did, for metrics. The default does nothing."""

    def outcome(self, protocol: str, outcome: str, seconds: float) -> None:
        return None


@dataclass(frozen=True, slots=True)
class EngineDeps:
    store: Store
    cas: CAHierarchy
    profiles: Mapping[str, ProfileConfig]
    default_profile: str
    policies: Sequence[PolicyModule]
    clock: Clock = field(default_factory=SystemClock)
    observer: Observer = field(default_factory=Observer)
    notify: Callable[[], None] = lambda: None  # wakes the exit dispatcher


class Engine:
    def __init__(self, deps: EngineDeps) -> None:
        self._d = deps
        self.store = deps.store
        self.cas = deps.cas
        self.clock = deps.clock
        # The keys no request may carry. Parts of certforge that hold keys of their own (OCSP
        # signers, the TLS listener, the SCEP RA) add theirs as they load or make them.
        self.reserved_keys: ReservedKeys = reserved_keys_of(deps.cas)
        self._status_listeners: list[Callable[[int], None]] = []

    def verify_csr(self, csr_der: bytes) -> ParsedCSR:
        """Step 1 of ``submit``, for a front end that must know the request is good before it
        spends a one-time secret or records anything of its own; hand the result to
        ``submit(verified=...)``. Raises like ``server.ca.csr.verify_csr``, and
        ``ReservedPublicKey`` for one of certforge's own keys."""
        csr = verify_csr(csr_der)
        self.reserved_keys.check(csr.key_sha256)
        return csr

    # ----------------------------------------------------------------- submit
    async def submit(self, req: EnrollmentRequest, *, verified: ParsedCSR | None = None) -> Outcome:
        """``verified``: what ``verify_csr(req.csr_der)`` returned, when the front end had to
        verify the request before submitting it; the request is not verified twice."""
        started = time.perf_counter()
        # Step 1: Verify the CSR and its key. Raises; nothing is recorded. On the loop: handing
        # the check to a thread cost more in GIL hand-offs than the check itself (measured).
        if verified is not None and verified.der is req.csr_der:
            csr = verified
            # Checked again (one set lookup): a key may have been reserved since.
            self.reserved_keys.check(csr.key_sha256)
        else:
            csr = self.verify_csr(req.csr_der)
        # Step 2: The profile gives the draft; policy modules decide and shape it, in order.
        profile = self.profile(req.profile)
        decision = await self._decide(req, draft_for(profile, csr))
        # Step 3: Record the outcome (and for Issue, the signed certificate) in one write.
        match decision:
            case Issue(draft):
                outcome: Outcome = await self._issue_new(req, csr, draft)
            case Hold(draft, reason):
                outcome = await self._record_undecided(req, csr, draft, Status.PENDING, reason)
            case Deny(reason):
                outcome = await self._record_undecided(req, csr, None, Status.DENIED, reason)
            case _:
                assert_never(decision)
        self._d.observer.outcome(
            req.protocol, _outcome_name(outcome), time.perf_counter() - started
        )
        return outcome

    async def issue_internal(self, req: EnrollmentRequest, draft: CertificateDraft) -> Issued:
        """Issue a certificate certforge needs itself (its TLS certificate), bypassing the
        policy modules but recorded like any other."""
        return await self._issue_new(req, self.verify_csr(req.csr_der), draft)

    def profile(self, name: str | None) -> ProfileConfig:
        chosen = name or self._d.default_profile
        try:
            return self._d.profiles[chosen]
        except KeyError:
            raise UnknownProfile(f"no profile named {chosen!r}") from None

    async def _decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Issue | Hold | Deny:
        decision: Issue | Hold | Deny = Issue(draft)
        for module in self._d.policies:
            decision = await module.decide(req, draft)
            if not isinstance(decision, Issue):
                return decision
            draft = decision.draft
        return decision

    def _new_record(
        self,
        req: EnrollmentRequest,
        csr: ParsedCSR,
        *,
        status: Status,
        draft: CertificateDraft | None,
        reason: str | None,
        serial: int | None = None,
    ) -> RequestRecord:
        now = self._d.clock.now()
        return RequestRecord(
            id=new_id(),
            status=status,
            created_at=now,
            updated_at=now,
            protocol=req.protocol,
            requester=req.requester,
            profile=draft.profile if draft else self.profile(req.profile).name,
            csr_der=req.csr_der,
            subject=csr.subject_text,
            sans=tuple(str(s) for s in csr.sans),
            transaction_id=req.transaction_id,
            vouched=req.vouched,
            draft=draft,
            reason=reason,
            serial=serial,
        )

    async def _record_undecided(
        self,
        req: EnrollmentRequest,
        csr: ParsedCSR,
        draft: CertificateDraft | None,
        status: Status,
        reason: str,
    ) -> Outcome:
        record = self._new_record(req, csr, status=status, draft=draft, reason=reason)
        kind = EventKind.PENDING if status is Status.PENDING else EventKind.DENIED
        await self.store.add_request(record, event=self._request_event(kind, record, reason))
        self._d.notify()
        if status is Status.PENDING:
            return Pending(record.id, reason)
        return Denied(record.id, reason)

    async def _issue_new(
        self, req: EnrollmentRequest, csr: ParsedCSR, draft: CertificateDraft
    ) -> Issued:
        for attempt in range(SERIAL_ATTEMPTS):
            serial = new_serial()
            record = self._new_record(
                req, csr, status=Status.ISSUED, draft=draft, reason=None, serial=serial
            )
            try:
                cert = self._sign(record, csr, draft, serial)
            except ValueError as exc:
                # verify_csr refuses what no certificate can carry; a draft a policy module
                # shaped into one that cannot be built is refused the same way, not a 500.
                log.warning("building the certificate failed", exc_info=True)
                raise BadCSR("no certificate can be built from this request") from exc
            try:
                await self.store.add_request(
                    record, certificate=cert, event=self._issued_event(record, cert)
                )
            except Conflict:
                # Only a serial collision can conflict here (request ids are fresh UUIDs).
                log.warning("serial collision, retrying", extra={"attempt": attempt})
                continue
            self._d.notify()
            return Issued(record.id, cert, self.chain(cert.issuer))
        raise Conflict("could not allocate a unique serial number")

    def _sign(
        self, record: RequestRecord, csr: ParsedCSR, draft: CertificateDraft, serial: int
    ) -> CertificateRecord:
        issuer = self.cas.issuer(draft.issuer)
        cert = build_certificate(
            draft,
            public_key=csr.public_key,
            issuer=issuer,
            serial=serial,
            now=self._d.clock.now(),
        )
        return CertificateRecord(
            serial=serial,
            request_id=record.id,
            issuer=issuer.name,
            profile=draft.profile,
            # The subject as the certificate spells it: the request's text when the draft kept
            # the request's subject and each of its RDNs holds one attribute, as the
            # certificate's do (a multi-valued RDN is spelt with "+" in the request).
            subject=csr.subject_text
            if csr.one_attribute_per_rdn and draft.subject == csr.subject
            else cert.subject.rfc4514_string(),
            sans=tuple(str(s) for s in draft.sans),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            der=cert.public_bytes(Encoding.DER),
            requester=record.requester.label(),
            key_sha256=csr.key_sha256,
        )

    # ------------------------------------------------------- approve and deny
    async def approve(self, request_id: str, *, by: Requester) -> Outcome:
        # Step 1: PENDING -> APPROVED; of two concurrent approvals exactly one gets here.
        record = await self.store.transition(
            request_id,
            expect=Status.PENDING,
            to=Status.APPROVED,
            event=Event(
                EventKind.APPROVED,
                self._d.clock.now(),
                request_id=request_id,
                data={"by": by.label()},
            ),
        )
        # Step 2: Sign the stored draft and record APPROVED -> ISSUED.
        return await self._finish_approved(record)

    async def _finish_approved(self, record: RequestRecord) -> Outcome:
        if record.draft is None:  # cannot happen: PENDING requests always carry a draft
            raise Malformed(f"request {record.id} has no certificate draft")
        try:
            csr = self.verify_csr(record.csr_der)
            cert = self._sign(record, csr, record.draft, new_serial())
        except ReservedPublicKey as exc:
            # Held since before such keys were refused at submission: it fails as refused,
            # not as an internal error (the check logged a warning).
            return await self._fail_approved(record, exc.detail)
        except Exception:
            log.exception("signing approved request %s failed", record.id)
            return await self._fail_approved(record, "the certificate could not be issued")
        await self.store.transition(
            record.id,
            expect=Status.APPROVED,
            to=Status.ISSUED,
            certificate=cert,
            event=self._issued_event(replace(record, serial=cert.serial), cert),
        )
        self._d.notify()
        self._d.observer.outcome(record.protocol, "issued", 0.0)
        return Issued(record.id, cert, self.chain(cert.issuer))

    async def _fail_approved(self, record: RequestRecord, reason: str) -> Outcome:
        await self.store.transition(
            record.id,
            expect=Status.APPROVED,
            to=Status.FAILED,
            reason=reason,
            event=self._request_event(EventKind.FAILED, record, reason),
        )
        self._d.notify()
        return Denied(record.id, reason)

    async def deny(self, request_id: str, *, by: Requester, reason: str) -> Outcome:
        record = await self.store.get_request(request_id)
        reason = reason or "denied by an administrator"
        await self.store.transition(
            request_id,
            expect=Status.PENDING,
            to=Status.DENIED,
            reason=reason,
            event=self._request_event(EventKind.DENIED, record, reason, by=by),
        )
        self._d.notify()
        return Denied(request_id, reason)

    async def resume_approved(self) -> int:
        """Finish requests a crash left APPROVED (signed nowhere yet). Run once at start."""
        done = 0
        while batch := await self.store.find_requests(
            RequestQuery(status=Status.APPROVED, limit=100)
        ):
            for record in batch:
                try:
                    await self._finish_approved(record)
                    done += 1
                except Conflict:
                    pass  # another server finished it first
            if len(batch) < 100:
                break
        return done

    # --------------------------------------------------------------- retrieve
    async def retrieve(self, request_id: str) -> tuple[RequestRecord, Outcome]:
        """The classic RetrievePending: the requester polls by request id."""
        record = await self.store.get_request(request_id)
        match record.status:
            case Status.ISSUED:
                assert record.serial is not None  # noqa: S101 - set with status ISSUED
                cert = await self.store.get_certificate(record.serial)
                return record, Issued(record.id, cert, self.chain(cert.issuer))
            case Status.PENDING | Status.APPROVED:
                return record, Pending(record.id, record.reason or "pending")
            case Status.DENIED | Status.FAILED:
                return record, Denied(record.id, record.reason or "denied")
            case _:
                assert_never(record.status)

    def chain(self, issuer: str) -> tuple[bytes, ...]:
        return self.cas.issuer(issuer).chain_der

    # ----------------------------------------------------------------- revoke
    def on_status_change(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(serial)`` after each revocation and release is recorded (the OCSP
        responder drops its cached answer, so the change shows at once on this server)."""
        self._status_listeners.append(listener)

    def _status_changed(self, serial: int) -> None:
        for listener in self._status_listeners:
            listener(serial)
        self._d.notify()

    async def revoke(
        self,
        serial: int,
        *,
        reason: RevocationReason,
        by: Requester,
        invalidity_date: datetime | None = None,
    ) -> CertificateRecord:
        if reason is RevocationReason.REMOVE_FROM_CRL:
            raise Malformed("removeFromCRL is not a revocation reason; release the hold instead")
        now = self._d.clock.now()
        cert = await self.store.get_certificate(serial)
        record = await self.store.revoke(
            serial,
            reason=reason,
            at=now,
            invalidity_date=invalidity_date,
            event=Event(
                EventKind.REVOKED,
                now,
                request_id=cert.request_id,
                serial=serial,
                data={
                    "serial": format(serial, "x"),
                    "issuer": cert.issuer,
                    "reason": str(reason),
                    "by": by.label(),
                },
            ),
        )
        self._status_changed(serial)
        return record

    async def unrevoke(self, serial: int, *, by: Requester) -> CertificateRecord:
        now = self._d.clock.now()
        cert = await self.store.get_certificate(serial)
        if cert.revocation_reason is not RevocationReason.CERTIFICATE_HOLD:
            # A state the certificate is not in, not a permission the caller lacks: 409, so
            # that 403 keeps meaning "your role may not" in the admin API.
            raise Conflict("only a certificate on hold (certificateHold) can be released")
        record = await self.store.unrevoke(
            serial,
            event=Event(
                EventKind.UNREVOKED,
                now,
                request_id=cert.request_id,
                serial=serial,
                data={
                    "serial": format(serial, "x"),
                    "issuer": cert.issuer,
                    "reason": str(RevocationReason.REMOVE_FROM_CRL),
                    "by": by.label(),
                },
            ),
        )
        self._status_changed(serial)
        return record

    # ----------------------------------------------------------------- events
    def _request_event(
        self, kind: EventKind, record: RequestRecord, reason: str, by: Requester | None = None
    ) -> Event:
        data: dict[str, Any] = {
            "profile": record.profile,
            "subject": record.subject,
            "sans": list(record.sans),
            "requester": record.requester.label(),
            "protocol": record.protocol,
            "reason": reason,
        }
        if by is not None:
            data["by"] = by.label()
        return Event(kind, self._d.clock.now(), request_id=record.id, data=data)

    def _issued_event(self, record: RequestRecord, cert: CertificateRecord) -> Event:
        # The certificate itself is not copied into the event: the store keeps it once, and
        # the exit dispatcher adds it as ``certificate_pem`` when it delivers the event.
        return Event(
            EventKind.ISSUED,
            self._d.clock.now(),
            request_id=record.id,
            serial=cert.serial,
            data={
                "profile": cert.profile,
                "subject": cert.subject,
                "sans": list(cert.sans),
                "serial": format(cert.serial, "x"),
                "issuer": cert.issuer,
                "not_after": cert.not_after.isoformat(),
                "requester": cert.requester,
                "protocol": record.protocol,
            },
        )


def _outcome_name(outcome: Outcome) -> str:
    match outcome:
        case Issued():
            return "issued"
        case Pending():
            return "pending"
        case Denied():
            return "denied"
        case _:
            assert_never(outcome)
