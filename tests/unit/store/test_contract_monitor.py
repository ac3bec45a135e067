"""The store contract, continued: the monitor's reads (``server/monitor``), on every back-end.

- ``find_expiring``: a keyset walk over valid certificates by (notAfter, serial), in pages;
  revoked certificates are left out, ties on notAfter are ordered by serial, and paging with
  the last certificate's position covers the window once. With ``longer_than`` no
  certificate valid for longer is ever left out (the walk's pages still cover it once).
- A once-only event (``once_id``) is recorded at most once: a second ``add_event`` with the
  same id is a ``Conflict``, also from another store on the same data (another worker or
  server), and ``existing_events`` finds it.
- ``count``: certificates by state and profile, expiring within windows, pending requests.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from server.errors import Conflict
from server.model import CertificateRecord, Event, EventKind, RevocationReason, once_id
from server.store.base import Store
from tests.unit.store.conftest import Backend
from tests.unit.store.records import T0, event_for, issued, make_request, tick

START = (T0, 0)


async def _add(store: Store, *, days: float, profile: str = "server") -> CertificateRecord:
    request, cert = issued(profile=profile)
    cert = replace(cert, not_before=T0, not_after=T0 + timedelta(days=days))
    await store.add_request(request, certificate=cert, event=event_for(request))
    return cert


async def test_find_expiring_walks_valid_certificates_by_expiry_then_serial(store: Store) -> None:
    later = await _add(store, days=20)
    soon = await _add(store, days=5)
    tie = [await _add(store, days=10) for _ in range(3)]
    await _add(store, days=40)  # beyond the window
    revoked = await _add(store, days=6)
    await store.revoke(
        revoked.serial,
        reason=RevocationReason.KEY_COMPROMISE,
        at=tick(),
        event=Event(EventKind.REVOKED, tick(), serial=revoked.serial),
    )

    found = await store.find_expiring(after=START, until=T0 + timedelta(days=30))

    expected = [soon, *sorted(tie, key=lambda c: c.serial), later]
    assert [c.serial for c in found] == [c.serial for c in expected]
    assert found[0] == soon


async def test_find_expiring_pages_cover_the_window_once(store: Store) -> None:
    certs = [await _add(store, days=d) for d in (3, 3, 3, 4, 4, 5, 6, 6)]
    seen: list[int] = []
    position = START
    while page := await store.find_expiring(after=position, until=T0 + timedelta(days=30), limit=3):
        seen += [c.serial for c in page]
        position = (page[-1].not_after, page[-1].serial)

    assert sorted(seen) == sorted(c.serial for c in certs)
    assert len(seen) == len(set(seen))


async def test_find_expiring_starts_after_the_position_and_ends_at_until(store: Store) -> None:
    first = await _add(store, days=2)
    second = await _add(store, days=3)
    await _add(store, days=4)

    found = await store.find_expiring(after=(first.not_after, first.serial), until=second.not_after)

    assert [c.serial for c in found] == [second.serial]


async def test_find_expiring_longer_than_never_leaves_out_a_longer_one(store: Store) -> None:
    # Validity exactly the threshold, a microsecond and a second past it, and far past it.
    lengths = [timedelta(days=30), timedelta(days=30, microseconds=1)]
    lengths += [timedelta(days=30, seconds=1), timedelta(days=90)]
    longer = []
    for length in lengths:
        request, cert = issued()
        cert = replace(
            cert, not_before=T0 - length + timedelta(days=2), not_after=T0 + timedelta(days=2)
        )
        await store.add_request(request, certificate=cert, event=event_for(request))
        if length > timedelta(days=30):
            longer.append(cert.serial)
    for _ in range(4):  # shorter ones, which may be left out
        await _add(store, days=5)
    seen: list[int] = []
    position = START
    while page := await store.find_expiring(
        after=position, until=T0 + timedelta(days=30), limit=2, longer_than=timedelta(days=30)
    ):
        seen += [c.serial for c in page]
        position = (page[-1].not_after, page[-1].serial)

    assert set(longer) <= set(seen)
    assert len(seen) == len(set(seen))


async def test_a_once_only_event_is_recorded_once_also_by_another_store(backend: Backend) -> None:
    first, second = await backend.opened_store(), await backend.opened_store()
    event_id = once_id("expiring|1234|604800", T0)
    events = [Event(EventKind.EXPIRING, T0, serial=0x1234, id=event_id) for _ in range(4)]

    results = await asyncio.gather(
        *(store.add_event(e) for store, e in zip([first, second] * 2, events, strict=True)),
        return_exceptions=True,
    )

    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if r is not None)
    assert await first.existing_events([event_id, "absent"]) == {event_id}
    assert [e.id for e in await second.pending_events("webhook")] == [event_id]


async def test_existing_events_of_nothing_is_empty(store: Store) -> None:
    assert await store.existing_events([]) == set()


def test_once_ids_are_functions_of_the_fact_and_sort_by_when_due() -> None:
    assert once_id("a", T0) == once_id("a", T0)
    assert once_id("a", T0) != once_id("b", T0)
    assert once_id("b", T0) < once_id("a", T0 + timedelta(seconds=1))
    assert len(once_id("a", T0)) == 32


@pytest.mark.parametrize("days_later", [0, 8])
async def test_count_by_state_and_profile_and_expiry(store: Store, days_later: int) -> None:
    await _add(store, days=5)
    await _add(store, days=20, profile="device")
    await _add(store, days=400, profile="device")
    gone = await _add(store, days=1)
    held = await _add(store, days=6)
    await store.revoke(
        held.serial,
        reason=RevocationReason.CERTIFICATE_HOLD,
        at=tick(),
        event=Event(EventKind.REVOKED, tick(), serial=held.serial),
    )
    waiting = [make_request(), make_request()]
    for r in waiting:
        await store.add_request(r, event=event_for(r))
    now = T0 + timedelta(days=2 + days_later)

    counts = await store.count(now, expiring_within=[timedelta(days=7), timedelta(days=30)])

    if days_later == 0:
        assert counts.certificates == {
            ("valid", "server"): 1,
            ("expired", "server"): 1,
            ("revoked", "server"): 1,
            ("valid", "device"): 2,
        }
        assert counts.expiring == {timedelta(days=7): 1, timedelta(days=30): 2}
    else:
        assert counts.certificates == {("expired", "server"): 3, ("valid", "device"): 2}
        assert counts.expiring == {timedelta(days=7): 0, timedelta(days=30): 1}
    assert gone.not_after < now
    assert counts.pending_requests == 2
    assert counts.oldest_pending == waiting[0].created_at
