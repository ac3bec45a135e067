"""The store contract for CRL entries (``find_revoked``), held against every back-end."""

from __future__ import annotations

from datetime import timedelta

from server.model import Event, EventKind, RevocationReason, RevokedEntry
from server.store.base import Store
from tests.unit.store.records import issued, make_certificate, tick


def _revoked(serial: int) -> Event:
    return Event(EventKind.REVOKED, tick(), serial=serial)


async def _add(store: Store, *, issuer: str = "issuing-ca", days: int = 90) -> int:
    request, cert = issued()
    not_before = tick()
    cert = make_certificate(
        request,
        serial=cert.serial,
        issuer=issuer,
        not_before=not_before,
        not_after=not_before + timedelta(days=days),
    )
    await store.add_request(
        request, certificate=cert, event=Event(EventKind.ISSUED, tick(), serial=cert.serial)
    )
    return cert.serial


async def test_lists_revoked_and_held_in_serial_order_with_reasons(store: Store) -> None:
    serials = [await _add(store) for _ in range(5)]
    at, invalid = tick(), tick() - timedelta(days=3)
    await store.revoke(
        serials[3],
        reason=RevocationReason.KEY_COMPROMISE,
        at=at,
        invalidity_date=invalid,
        event=_revoked(serials[3]),
    )
    await store.revoke(
        serials[1], reason=RevocationReason.CERTIFICATE_HOLD, at=at, event=_revoked(serials[1])
    )

    got = await store.find_revoked("issuing-ca", expires_after=tick())

    assert got == [
        RevokedEntry(serials[1], at, RevocationReason.CERTIFICATE_HOLD, None),
        RevokedEntry(serials[3], at, RevocationReason.KEY_COMPROMISE, invalid),
    ]


async def test_released_hold_leaves_the_list(store: Store) -> None:
    serial = await _add(store)
    await store.revoke(
        serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=_revoked(serial)
    )
    await store.unrevoke(serial, event=_revoked(serial))

    assert await store.find_revoked("issuing-ca", expires_after=tick()) == []


async def test_other_issuers_and_expired_certificates_are_left_out(store: Store) -> None:
    mine = await _add(store)
    other = await _add(store, issuer="other-ca")
    expired = await _add(store, days=1)
    for serial in (mine, other, expired):
        await store.revoke(
            serial, reason=RevocationReason.SUPERSEDED, at=tick(), event=_revoked(serial)
        )

    got = await store.find_revoked("issuing-ca", expires_after=tick() + timedelta(days=2))

    assert [e.serial for e in got] == [mine]


async def test_pages_by_serial_cover_everything_once(store: Store) -> None:
    serials = sorted([await _add(store) for _ in range(7)])
    for serial in serials:
        await store.revoke(
            serial, reason=RevocationReason.UNSPECIFIED, at=tick(), event=_revoked(serial)
        )
    seen: list[int] = []
    after = 0
    while page := await store.find_revoked(
        "issuing-ca", expires_after=tick(), after_serial=after, limit=3
    ):
        seen += [e.serial for e in page]
        after = page[-1].serial

    assert seen == serials


async def test_revoked_since_keeps_later_revocations_only(store: Store) -> None:
    early, late = await _add(store), await _add(store)
    await store.revoke(early, reason=RevocationReason.SUPERSEDED, at=tick(), event=_revoked(early))
    since = tick()
    await store.revoke(late, reason=RevocationReason.SUPERSEDED, at=tick(), event=_revoked(late))

    got = await store.find_revoked("issuing-ca", expires_after=since, revoked_since=since)

    assert [e.serial for e in got] == [late]


async def test_find_released_lists_holds_released_since(store: Store) -> None:
    old, new, rerevoked = [await _add(store) for _ in range(3)]
    other = await _add(store, issuer="other-ca")
    for serial in (old, new, rerevoked, other):
        await store.revoke(
            serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=_revoked(serial)
        )
    await store.unrevoke(old, event=Event(EventKind.UNREVOKED, tick(), serial=old))
    since = tick()
    for serial in (new, rerevoked, other):
        await store.unrevoke(serial, event=Event(EventKind.UNREVOKED, tick(), serial=serial))
    await store.revoke(
        rerevoked, reason=RevocationReason.KEY_COMPROMISE, at=tick(), event=_revoked(rerevoked)
    )

    got = await store.find_released("issuing-ca", since=since, expires_after=since)

    assert got == [new]
