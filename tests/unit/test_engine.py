"""The engine's flows against real SQLite in tmp_path, a created CA and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from server.ca.csr import verify_csr
from server.engine import Engine
from server.errors import BadCSR, BadPublicKey, Conflict, NotFound, UnknownProfile
from server.model import (
    ANONYMOUS,
    AuthMethod,
    CertificateDraft,
    CertificateQuery,
    CertStatus,
    Denied,
    Deny,
    EnrollmentRequest,
    Event,
    EventKind,
    Hold,
    Issue,
    Issued,
    Pending,
    Requester,
    RequestQuery,
    RevocationReason,
    Role,
    Status,
)
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock, RecordingPolicy, make_csr, make_engine

ADMIN = Requester(AuthMethod.TOKEN, "admin", frozenset({Role.ADMINISTRATOR}))
ENROLLER = Requester(AuthMethod.TOKEN, "script", frozenset({Role.REQUESTER}))


def rest(
    csr: bytes, requester: Requester = ENROLLER, profile: str | None = None
) -> EnrollmentRequest:
    return EnrollmentRequest(csr_der=csr, protocol="rest", requester=requester, profile=profile)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, SQLiteStore]]:
    pair = await make_engine(tmp_path)
    yield pair
    await pair[1].close()


async def test_token_requester_is_issued_at_once(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    outcome = await eng.submit(rest(make_csr()))
    assert isinstance(outcome, Issued)
    cert = x509.load_der_x509_certificate(outcome.certificate.der)
    assert cert.serial_number.bit_length() >= 64
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == eng.cas.issuer("default").ski
    record = await store.get_request(outcome.request_id)
    assert record.status is Status.ISSUED and record.serial == cert.serial_number
    events = await store.list_events(request_id=outcome.request_id)
    assert [e.kind for e in events] == [EventKind.ISSUED]
    assert events[0].serial == cert.serial_number  # the dispatcher adds the certificate
    assert outcome.chain == eng.chain("default")


async def test_a_verified_request_is_reused_only_for_its_own_der(
    engine: tuple[Engine, SQLiteStore],
) -> None:
    eng, _ = engine
    mine, other = make_csr("mine.example.test"), make_csr("other.example.test")
    verified_other = verify_csr(other)
    # A front end that hands over the verification of another request (a bug, or a swap)
    # gets its own request verified and issued, not the other one's key and names.
    outcome = await eng.submit(rest(mine), verified=verified_other)
    assert isinstance(outcome, Issued)
    cert = x509.load_der_x509_certificate(outcome.certificate.der)
    assert cert.public_key() == x509.load_der_x509_csr(mine).public_key()
    assert outcome.certificate.sans == ("dns:mine.example.test",)
    # Its own verification is used as it is.
    same = verify_csr(mine)
    reused = await eng.submit(rest(same.der), verified=same)
    assert isinstance(reused, Issued)
    assert reused.certificate.key_sha256 == same.key_sha256


async def test_the_certificate_record_spells_the_subject_as_the_certificate_does(
    engine: tuple[Engine, SQLiteStore],
) -> None:
    eng, _ = engine
    key = ec.generate_private_key(ec.SECP256R1())
    multi = x509.RelativeDistinguishedName(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "multi.example.test"),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([multi]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("multi.example.test")]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    outcome = await eng.submit(rest(csr, profile="tls-client"))
    assert isinstance(outcome, Issued)
    cert = x509.load_der_x509_certificate(outcome.certificate.der)
    assert outcome.certificate.subject == cert.subject.rfc4514_string()


async def test_anonymous_is_pending_then_approved(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    outcome = await eng.submit(rest(make_csr(), ANONYMOUS))
    assert isinstance(outcome, Pending)
    _, polled = await eng.retrieve(outcome.request_id)
    assert isinstance(polled, Pending)
    approved = await eng.approve(outcome.request_id, by=ADMIN)
    assert isinstance(approved, Issued)
    _, polled = await eng.retrieve(outcome.request_id)
    assert isinstance(polled, Issued) and polled.certificate.serial == approved.certificate.serial
    kinds = [e.kind for e in await store.list_events(request_id=outcome.request_id)]
    assert kinds == [EventKind.PENDING, EventKind.APPROVED, EventKind.ISSUED]


async def test_concurrent_approvals_issue_once(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    pending = await eng.submit(rest(make_csr(), ANONYMOUS))
    results = await asyncio.gather(
        *(eng.approve(pending.request_id, by=ADMIN) for _ in range(10)), return_exceptions=True
    )
    assert sum(isinstance(r, Issued) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, Issued))
    assert len(await store.find_certificates(CertificateQuery())) == 1


async def test_deny_then_approve_conflicts(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, _ = engine
    pending = await eng.submit(rest(make_csr(), ANONYMOUS))
    denied = await eng.deny(pending.request_id, by=ADMIN, reason="not ours")
    assert isinstance(denied, Denied) and denied.reason == "not ours"
    with pytest.raises(Conflict):
        await eng.approve(pending.request_id, by=ADMIN)
    _, polled = await eng.retrieve(pending.request_id)
    assert isinstance(polled, Denied)


@pytest.mark.parametrize(
    "csr",
    [
        pytest.param(b"garbage", id="bad_csr/garbage"),
        pytest.param(make_csr()[:-10], id="bad_csr/truncated"),
        pytest.param(make_csr(padding=40_000), id="bad_csr/padded_beyond_32_KiB"),
    ],
)
async def test_bad_csr_records_nothing(engine: tuple[Engine, SQLiteStore], csr: bytes) -> None:
    eng, store = engine
    with pytest.raises(BadCSR):
        await eng.submit(rest(csr))
    assert await store.find_requests(RequestQuery()) == []


async def test_weak_key_records_nothing(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BadPublicKey):
        await eng.submit(rest(make_csr(key=weak)))
    assert await store.find_requests(RequestQuery()) == []


async def test_unknown_profile_records_nothing(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    with pytest.raises(UnknownProfile):
        await eng.submit(rest(make_csr(), profile="nope"))
    assert await store.find_requests(RequestQuery()) == []


def shorten(draft: CertificateDraft) -> CertificateDraft:
    return replace(draft, validity=timedelta(days=1))


class ShortenPolicy:
    """Shapes the draft: one day of validity."""

    name = "shorten"

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Issue:
        return Issue(shorten(draft))


class HoldPolicy(RecordingPolicy):
    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Hold:
        self.seen.append((req, draft))
        return Hold(draft, "manual")


async def test_policy_chain_order_and_shaping(tmp_path: Path) -> None:
    holder, never = HoldPolicy("holder"), RecordingPolicy("never")
    eng, store = await make_engine(tmp_path, policies=[ShortenPolicy(), holder, never])
    try:
        # A shaping module's draft reaches the next one; the first Hold ends the chain.
        outcome = await eng.submit(rest(make_csr()))
        assert isinstance(outcome, Pending)
        assert holder.seen[0][1].validity == timedelta(days=1)
        assert never.seen == []
        # Approval signs exactly the stored draft.
        issued = await eng.approve(outcome.request_id, by=ADMIN)
        assert isinstance(issued, Issued)
        cert = x509.load_der_x509_certificate(issued.certificate.der)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert timedelta(hours=23) < lifetime <= timedelta(days=1)
    finally:
        await store.close()


class UnbuildablePolicy:
    """Shapes the draft into one no certificate can carry: a CN of 65 characters."""

    name = "unbuildable"

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Issue:
        return Issue(replace(draft, subject=(("2.5.4.3", "x" * 65),)))


async def test_a_draft_that_cannot_be_built_is_a_bad_csr_and_records_nothing(
    tmp_path: Path,
) -> None:
    """verify_csr refuses what no certificate can carry; what a policy module makes of it
    anyway is refused as bad input too (it was a ValueError from building: a 500)."""
    eng, store = await make_engine(tmp_path, policies=[UnbuildablePolicy()])
    try:
        with pytest.raises(BadCSR):
            await eng.submit(rest(make_csr()))
        assert await store.find_requests(RequestQuery()) == []
    finally:
        await store.close()


async def test_policy_denial_is_recorded(tmp_path: Path) -> None:
    eng, store = await make_engine(tmp_path, policies=[RecordingPolicy(answer=Deny("no"))])
    try:
        outcome = await eng.submit(rest(make_csr()))
        assert isinstance(outcome, Denied) and outcome.reason == "no"
        record = await store.get_request(outcome.request_id)
        assert record.status is Status.DENIED
        events = await store.list_events(request_id=outcome.request_id)
        assert [e.kind for e in events] == [EventKind.DENIED]
    finally:
        await store.close()


async def test_resume_finishes_a_request_left_approved(tmp_path: Path) -> None:
    eng, store = await make_engine(tmp_path)
    try:
        pending = await eng.submit(rest(make_csr(), ANONYMOUS))
        # A crash right after Step 1 of approve: the request is APPROVED, nothing signed.
        await store.transition(
            pending.request_id,
            expect=Status.PENDING,
            to=Status.APPROVED,
            event=Event(EventKind.APPROVED, FakeClock().now(), request_id=pending.request_id),
        )
        assert await eng.resume_approved() == 1
        _, polled = await eng.retrieve(pending.request_id)
        assert isinstance(polled, Issued)
    finally:
        await store.close()


async def test_revoke_hold_release(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    issued = await eng.submit(rest(make_csr()))
    assert isinstance(issued, Issued)
    serial = issued.certificate.serial
    held = await eng.revoke(serial, reason=RevocationReason.CERTIFICATE_HOLD, by=ADMIN)
    assert held.status is CertStatus.REVOKED
    released = await eng.unrevoke(serial, by=ADMIN)
    assert released.status is CertStatus.VALID
    with pytest.raises(Conflict):
        await eng.unrevoke(serial, by=ADMIN)
    await eng.revoke(serial, reason=RevocationReason.KEY_COMPROMISE, by=ADMIN)
    with pytest.raises(Conflict):
        await eng.revoke(serial, reason=RevocationReason.SUPERSEDED, by=ADMIN)
    with pytest.raises(NotFound):
        await eng.revoke(12345, reason=RevocationReason.UNSPECIFIED, by=ADMIN)
    kinds = [e.kind for e in await store.list_events(serial=serial)]
    assert kinds.count(EventKind.REVOKED) == 2 and EventKind.UNREVOKED in kinds


async def test_serial_collision_is_retried(engine: tuple[Engine, SQLiteStore]) -> None:
    eng, store = engine
    real_add = store.add_request
    calls = 0

    async def collide_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Conflict("duplicate serial")
        return await real_add(*args, **kwargs)

    store.add_request = collide_once  # type: ignore[method-assign]
    outcome = await eng.submit(rest(make_csr()))
    assert isinstance(outcome, Issued) and calls == 2
