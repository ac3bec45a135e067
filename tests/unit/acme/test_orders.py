"""A processing order whose finalizing server stopped before recording the request's id is
recovered from the engine by its transaction id, or given up after a while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocols.acme.context import ACME, Background, URLs
from protocols.acme.orders import refresh
from protocols.acme.records import ORDER, Order, OrderStatus
from server.config import Config
from server.model import (
    AuthMethod,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    Issued,
    Requester,
    Vouched,
)
from tests.unit.factories import FakeClock, make_csr, make_engine

NAME = Identifier(IdentifierType.DNS, "www.example.test")


async def _acme(tmp_path: Path, clock: FakeClock) -> ACME:
    engine, store = await make_engine(tmp_path, clock=clock)
    return ACME(
        config=Config(),
        store=store,
        engine=engine,
        clock=clock,
        urls=URLs("https://ca.example/acme"),
        background=Background(),
    )


def _processing(acme: ACME) -> Order:
    now = acme.clock.now()
    return Order(
        id="order-1",
        account="acct-1",
        identifiers=[NAME],
        authorizations=[],
        expires=now + timedelta(hours=1),
        status=OrderStatus.PROCESSING,
        profile="tls-server",
        processing_since=now.isoformat(),
    )


async def test_processing_order_is_recovered_by_transaction_id(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))  # the store expires documents by the wall clock
    acme = await _acme(tmp_path, clock)
    order = _processing(acme)
    await acme.store.put_doc(order.to_doc())
    # The engine issued, but the server stopped before the order recorded the request.
    outcome = await acme.engine.submit(
        EnrollmentRequest(
            csr_der=make_csr(NAME.value),
            protocol="acme",
            requester=Requester(AuthMethod.ACME_ACCOUNT, acme.urls.account("acct-1")),
            vouched=Vouched(identifiers=frozenset({NAME})),
            transaction_id=order.id,
        )
    )
    assert isinstance(outcome, Issued)
    await refresh(acme, order)
    stored = Order.from_doc(await acme.store.get_doc(ORDER, order.id))
    assert (stored.status, stored.request_id) == (OrderStatus.VALID, outcome.request_id)
    assert stored.serial == format(outcome.certificate.serial, "x")
    await acme.store.close()


async def test_processing_order_without_request_is_given_up_later(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))  # the store expires documents by the wall clock
    acme = await _acme(tmp_path, clock)
    order = _processing(acme)
    await acme.store.put_doc(order.to_doc())
    await refresh(acme, order)
    assert order.status is OrderStatus.PROCESSING  # maybe still submitting: wait
    clock.advance(timedelta(minutes=10))
    await refresh(acme, order)
    stored = Order.from_doc(await acme.store.get_doc(ORDER, order.id))
    assert stored.status is OrderStatus.INVALID
    assert stored.error is not None and stored.error["type"].endswith("serverInternal")
    await acme.store.close()
