"""How an EST retry finds the request it repeats (``protocols.est.pending``), on a real SQLite
store and engine: the lookup is the request's ``transaction_id``, written by the engine in its
one atomic write, so a stop right after that write cannot make the retry a second request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from protocols.est.pending import KEEP, find_retried, mark_collected, retry_id
from server.ca.csr import verify_csr
from server.engine import Engine
from server.model import (
    AuthMethod,
    CertificateDraft,
    EnrollmentRequest,
    Hold,
    Issued,
    Pending,
    Requester,
    Status,
)
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock, make_csr, make_engine

ALICE = Requester(AuthMethod.EST_BASIC, "alice")
ADMIN = Requester(AuthMethod.TOKEN, "admin")
Setup = tuple[Engine, SQLiteStore, FakeClock]


class HoldAll:
    """Every request waits for an administrator."""

    name = "hold"

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Hold:
        return Hold(draft)


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[Setup]:
    clock = FakeClock()
    engine, store = await make_engine(tmp_path, clock=clock, policies=[HoldAll()])
    yield engine, store, clock
    await store.close()


def est_request(csr_der: bytes, requester: Requester = ALICE) -> tuple[EnrollmentRequest, str]:
    tid = retry_id("simpleenroll", "tls-server", verify_csr(csr_der), requester)
    req = EnrollmentRequest(csr_der, "est", requester, profile="tls-server", transaction_id=tid)
    return req, tid


async def test_a_retry_finds_the_request_from_the_one_write_alone(manual: Setup) -> None:
    engine, store, clock = manual
    req, tid = est_request(make_csr())
    first = await engine.submit(req)
    assert isinstance(first, Pending)
    # Whatever happened after the engine's write (a stop, a crash), the record alone leads the
    # retry to the request: nothing else was written.
    found = await find_retried(store, clock, tid, ALICE)
    assert found is not None
    assert found.id == first.request_id


async def test_held_then_approved_is_delivered_once(manual: Setup) -> None:
    engine, store, clock = manual
    req, tid = est_request(make_csr())
    pending = await engine.submit(req)
    clock.advance(timedelta(minutes=5))
    assert isinstance(await engine.approve(pending.request_id, by=ADMIN), Issued)
    found = await find_retried(store, clock, tid, ALICE)
    assert found is not None
    assert found.status is Status.ISSUED
    await mark_collected(store, clock, found)
    # Collected: the same request again is a new enrollment.
    assert await find_retried(store, clock, tid, ALICE) is None


async def test_a_decision_not_collected_for_too_long_is_forgotten(manual: Setup) -> None:
    engine, store, clock = manual
    req, tid = est_request(make_csr())
    pending = await engine.submit(req)
    clock.advance(timedelta(minutes=1))
    await engine.deny(pending.request_id, by=ADMIN, reason="no")
    assert await find_retried(store, clock, tid, ALICE) is not None
    clock.advance(KEEP + timedelta(days=1))
    assert await find_retried(store, clock, tid, ALICE) is None


async def test_a_request_still_pending_is_found_however_old(manual: Setup) -> None:
    engine, store, clock = manual
    req, tid = est_request(make_csr())
    await engine.submit(req)
    clock.advance(KEEP * 3)
    assert await find_retried(store, clock, tid, ALICE) is not None


async def test_issued_at_once_is_not_a_retry_target(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = await make_engine(tmp_path, clock=clock)
    try:
        req, tid = est_request(make_csr())
        assert isinstance(await engine.submit(req), Issued)
        assert await find_retried(store, clock, tid, ALICE) is None
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("protocol", "requester"),
    [
        pytest.param("scep", ALICE, id="other_protocol/same_transaction_id"),
        pytest.param("est", Requester(AuthMethod.EST_BASIC, "mallory"), id="other_requester"),
    ],
)
async def test_only_the_same_requesters_est_request_counts(
    manual: Setup, protocol: str, requester: Requester
) -> None:
    engine, store, clock = manual
    csr = make_csr()
    _, tid = est_request(csr)
    # A request carrying the same transaction id, made by someone else or through SCEP (whose
    # transaction ids are chosen by its clients), is not alice's retry target.
    other = EnrollmentRequest(csr, protocol, requester, profile="tls-server", transaction_id=tid)
    await engine.submit(other)
    assert await find_retried(store, clock, tid, ALICE) is None


def test_retry_id_depends_on_every_part() -> None:
    csr = verify_csr(make_csr())
    other_key = verify_csr(make_csr())
    base = retry_id("simpleenroll", "tls-server", csr, ALICE)
    assert base == retry_id("simpleenroll", "tls-server", csr, ALICE)
    assert base.startswith("est-")
    assert (
        len(
            {
                base,
                retry_id("serverkeygen", "tls-server", csr, ALICE),
                retry_id("simpleenroll", "device", csr, ALICE),
                retry_id("simpleenroll", "tls-server", other_key, ALICE),
                retry_id("simpleenroll", "tls-server", csr, Requester(AuthMethod.EST_BASIC, "bob")),
            }
        )
        == 5
    )
