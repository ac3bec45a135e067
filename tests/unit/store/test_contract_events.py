"""The store contract, continued: the event log and its outbox, on every back-end.

The outbox promise: each event is delivered to every consumer configured when it was recorded,
at least once, also across a restart or a crash (close without acknowledging), oldest first;
acknowledgements may come in any order.
"""

from __future__ import annotations

import pytest

from server.errors import Conflict
from server.model import Event, EventKind, RevocationReason, Status
from server.store.base import Store
from tests.unit.store.conftest import Backend
from tests.unit.store.records import event_for, issued, make_event, make_request, tick


async def _record_requests(store: Store, count: int) -> list[Event]:
    events = []
    for _ in range(count):
        record = make_request()
        event = event_for(record)
        await store.add_request(record, event=event)
        events.append(event)
    return events


async def test_each_consumer_gets_every_event_oldest_first(store: Store) -> None:
    events = await _record_requests(store, 3)
    crl = make_event(EventKind.CRL_PUBLISHED, data={"issuer": "issuing-ca", "number": 7})
    await store.add_event(crl)

    assert await store.pending_events("webhook") == [*events, crl]
    assert await store.pending_events("files") == [*events, crl]


async def test_pending_events_honours_the_limit(store: Store) -> None:
    events = await _record_requests(store, 5)

    assert await store.pending_events("webhook", limit=2) == events[:2]


async def test_acks_out_of_order_are_per_consumer(store: Store) -> None:
    events = await _record_requests(store, 4)

    await store.ack_event("webhook", events[2].id)
    await store.ack_event("webhook", events[0].id)

    assert await store.pending_events("webhook") == [events[1], events[3]]
    assert await store.pending_events("files") == events


async def test_acking_twice_or_an_unknown_event_is_harmless(store: Store) -> None:
    events = await _record_requests(store, 2)

    await store.ack_event("webhook", events[0].id)
    await store.ack_event("webhook", events[0].id)
    await store.ack_event("webhook", "no-such-event")
    await store.ack_event("nobody", events[1].id)

    assert await store.pending_events("webhook") == [events[1]]


async def test_an_unconfigured_consumer_sees_nothing(store: Store) -> None:
    await _record_requests(store, 2)

    assert await store.pending_events("not-configured") == []


async def test_a_consumer_name_is_not_a_prefix_match(backend: Backend) -> None:
    store = await backend.opened_store(consumers=["a", "a|b", "ab"])
    events = await _record_requests(store, 1)

    await store.ack_event("a|b", events[0].id)

    assert await store.pending_events("a") == events
    assert await store.pending_events("ab") == events
    assert await store.pending_events("a|b") == []


async def test_every_state_change_lands_in_the_outbox(store: Store) -> None:
    record = make_request()
    created = event_for(record)
    await store.add_request(record, event=created)
    approved = event_for(record, EventKind.APPROVED)
    await store.transition(record.id, expect=Status.PENDING, to=Status.APPROVED, event=approved)
    record2, cert = issued()
    issued_event = event_for(record2)
    await store.add_request(record2, certificate=cert, event=issued_event)
    hold = Event(EventKind.REVOKED, tick(), request_id=record2.id, serial=cert.serial)
    await store.revoke(cert.serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=hold)
    release = Event(EventKind.UNREVOKED, tick(), request_id=record2.id, serial=cert.serial)
    await store.unrevoke(cert.serial, event=release)

    assert await store.pending_events("webhook") == [
        created,
        approved,
        issued_event,
        hold,
        release,
    ]


async def test_events_survive_close_and_reopen(backend: Backend) -> None:
    store = await backend.opened_store()
    events = await _record_requests(store, 3)
    await store.ack_event("webhook", events[1].id)
    await store.close()

    reopened = await backend.opened_store()

    assert await reopened.pending_events("webhook") == [events[0], events[2]]
    assert await reopened.pending_events("files") == events


async def test_unacked_events_are_redelivered_after_a_crash(backend: Backend) -> None:
    """At least once: delivered (returned) but not acknowledged before the stop."""
    store = await backend.opened_store()
    events = await _record_requests(store, 2)
    assert await store.pending_events("webhook") == events
    await store.close()  # no ack: the consumer died after delivering

    reopened = await backend.opened_store()

    assert await reopened.pending_events("webhook") == events


async def test_a_consumer_added_later_gets_only_later_events(backend: Backend) -> None:
    store = await backend.opened_store(consumers=["webhook"])
    await _record_requests(store, 2)
    await store.close()

    reopened = await backend.opened_store(consumers=["webhook", "newcomer"])
    later = await _record_requests(reopened, 1)

    assert await reopened.pending_events("newcomer") == later
    assert len(await reopened.pending_events("webhook")) == 3


async def test_list_events_by_request_and_by_serial(store: Store) -> None:
    record = make_request(status=Status.APPROVED)
    approved = event_for(record)
    await store.add_request(record, event=approved)
    other, other_cert = issued()
    await store.add_request(other, certificate=other_cert, event=event_for(other))
    record2, cert = issued()
    issued_event = event_for(record2)
    await store.add_request(record2, certificate=cert, event=issued_event)
    revoked = Event(EventKind.REVOKED, tick(), request_id=record2.id, serial=cert.serial)
    await store.revoke(cert.serial, reason=RevocationReason.SUPERSEDED, at=tick(), event=revoked)

    assert await store.list_events(request_id=record.id) == [approved]
    assert await store.list_events(request_id=record2.id) == [issued_event, revoked]
    assert await store.list_events(serial=cert.serial) == [issued_event, revoked]
    assert await store.list_events(request_id=record2.id, serial=other_cert.serial) == []
    assert await store.list_events(serial=cert.serial, limit=1) == [issued_event]


async def test_list_events_without_filter_is_the_whole_log(store: Store) -> None:
    events = await _record_requests(store, 3)
    crl = make_event(EventKind.CRL_PUBLISHED)
    await store.add_event(crl)

    assert await store.list_events() == [*events, crl]
    assert await store.list_events(limit=2) == events[:2]


async def test_standalone_event_ids_are_unique(store: Store) -> None:
    crl = make_event(EventKind.CRL_PUBLISHED)
    await store.add_event(crl)

    with pytest.raises(Conflict):
        await store.add_event(crl)
    assert await store.pending_events("webhook") == [crl]
