"""The expiry scan on a real SQLite store with a fake clock: which threshold is due, one event
per certificate and threshold across rescans, restarts and concurrent scanners, none for
revoked certificates, and the server's own certificates watched as in use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.config import MonitorConfig
from server.model import CertificateRecord, Event, EventKind, RevocationReason
from server.monitor.expiry import ExpiryScan, due_threshold
from server.monitor.watched import CA_ROLE, WatchSource
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock
from tests.unit.store.records import T0, event_for, issued, tick

DAY = timedelta(days=1)
CONFIG = MonitorConfig(expiry_thresholds=(30 * DAY, 7 * DAY, DAY), ca_expiry_thresholds=(90 * DAY,))


@pytest.mark.parametrize(
    ("left", "lifetime", "due"),
    [
        pytest.param(40 * DAY, 90 * DAY, None, id="not_yet"),
        pytest.param(30 * DAY, 90 * DAY, 30 * DAY, id="exactly_at_the_threshold"),
        pytest.param(20 * DAY, 90 * DAY, 30 * DAY, id="crossed_one"),
        pytest.param(5 * DAY, 90 * DAY, 7 * DAY, id="crossed_two/nearest_only"),
        pytest.param(timedelta(hours=1), 90 * DAY, DAY, id="crossed_all/nearest_only"),
        pytest.param(timedelta(0), 90 * DAY, None, id="expired"),
        pytest.param(5 * DAY, 8 * DAY, DAY * 7, id="shorter_life/still_longer_than_7d"),
        pytest.param(5 * DAY, 7 * DAY, None, id="born_inside_7d_and_30d"),
        pytest.param(timedelta(hours=20), DAY, None, id="one_day_certificate/1d_never_applies"),
    ],
)
def test_due_threshold(left: timedelta, lifetime: timedelta, due: timedelta | None) -> None:
    now = T0 + 100 * DAY
    got = due_threshold(
        # As server/ca/build.py makes them: notAfter is notBefore + validity - 1 second.
        not_before=now + left - lifetime + timedelta(seconds=1),
        not_after=now + left,
        now=now,
        thresholds=CONFIG.expiry_thresholds,
    )
    assert got == due


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}", consumers=["webhook"])
    await s.open()
    yield s
    await s.close()


def scanner(store: SQLiteStore, clock: FakeClock, **kw: object) -> ExpiryScan:
    return ExpiryScan(store=store, config=CONFIG, clock=clock, **kw)  # type: ignore[arg-type]


async def add(
    store: SQLiteStore, *, days: float, profile: str = "server", lifetime: float = 90
) -> CertificateRecord:
    """A certificate expiring ``days`` after T0, valid ``lifetime`` days in all."""
    request, cert = issued(profile=profile)
    not_after = T0 + timedelta(days=days)
    cert = replace(cert, not_before=not_after - timedelta(days=lifetime), not_after=not_after)
    await store.add_request(request, certificate=cert, event=event_for(request))
    return cert


async def expiring(store: SQLiteStore) -> list[tuple[int | None, str]]:
    events = await store.pending_events("webhook", limit=1000)
    return [(e.serial, e.data["threshold"]) for e in events if e.kind is EventKind.EXPIRING]


async def test_each_threshold_once_as_time_passes(store: SQLiteStore) -> None:
    clock = FakeClock(T0)
    cert = await add(store, days=90)
    scan = scanner(store, clock)
    seen: list[tuple[int | None, str]] = []
    for day in range(91):
        clock.current = T0 + day * DAY + timedelta(hours=1)
        await scan.scan_store()
        seen = await expiring(store)
    assert seen == [(cert.serial, "30d"), (cert.serial, "7d"), (cert.serial, "1d")]
    event = (await store.pending_events("webhook", limit=1000))[-1]
    assert event.data["role"] == "certificate"
    assert event.data["serial"] == format(cert.serial, "x")
    assert event.data["not_after"] == cert.not_after.isoformat()
    assert event.request_id == cert.request_id


async def test_first_scan_gives_the_nearest_threshold_only(store: SQLiteStore) -> None:
    clock = FakeClock(T0)
    soon, later, far = [await add(store, days=d) for d in (3, 20, 60)]
    await add(store, days=0.5, lifetime=0.9)  # born inside every threshold: nothing

    assert await scanner(store, clock).scan_store() == 2

    assert sorted(await expiring(store)) == sorted([(soon.serial, "7d"), (later.serial, "30d")])
    assert far.serial not in {s for s, _ in await expiring(store)}


async def test_rescans_restarts_and_concurrent_scanners_record_nothing_twice(
    store: SQLiteStore,
) -> None:
    clock = FakeClock(T0)
    certs = [await add(store, days=10 + i * 0.01) for i in range(30)]
    first = scanner(store, clock, page=7)
    await first.scan_store()
    # A scan again, one after a restart (nothing in memory), and two racing at once.
    await first.scan_store()
    await scanner(store, clock, page=7).scan_store()
    await asyncio.gather(*(scanner(store, clock, page=4).scan_store() for _ in range(2)))

    assert sorted(await expiring(store)) == sorted((c.serial, "30d") for c in certs)


async def test_a_missed_walk_is_caught_up_from_where_it_reached(store: SQLiteStore) -> None:
    clock = FakeClock(T0)
    scan = scanner(store, clock)
    await scan.scan_store()  # the walks reached T0 + each threshold
    certs = [await add(store, days=d) for d in (31, 35, 36.5)]
    clock.current = T0 + 6 * DAY + timedelta(hours=12)  # "down" for six days and a half

    assert await scanner(store, clock).scan_store() == 3
    assert sorted(await expiring(store)) == sorted((c.serial, "30d") for c in certs)


async def test_revoked_and_held_certificates_get_none(store: SQLiteStore) -> None:
    clock = FakeClock(T0)
    revoked, held = await add(store, days=5), await add(store, days=6)
    for cert, reason in (
        (revoked, RevocationReason.KEY_COMPROMISE),
        (held, RevocationReason.CERTIFICATE_HOLD),
    ):
        await store.revoke(
            cert.serial,
            reason=reason,
            at=tick(),
            event=Event(EventKind.REVOKED, tick(), serial=cert.serial),
        )

    assert await scanner(store, clock).scan_store() == 0


def self_signed(name: str, not_before: datetime, days: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


async def test_watched_certificates_and_their_profiles_left_to_them(store: SQLiteStore) -> None:
    clock = FakeClock(T0)
    ca = self_signed("Root", T0 - 3000 * DAY, 3060)  # 60 days left: past the CA's 90d
    tls = self_signed("tls", T0 - 20 * DAY, 25)  # 5 days left: past 7d
    replaced = await add(store, days=2, profile="internal-tls")  # a renewed TLS certificate
    sources = [
        WatchSource(CA_ROLE, None, lambda: [("root", ca)]),
        WatchSource("tls", "internal-tls", lambda: [("https", tls)]),
    ]
    scan = scanner(store, clock, sources=sources)

    assert await scan.scan_watched() == 2
    assert await scan.scan_watched() == 0
    assert await scanner(store, clock, sources=sources).scan_watched() == 0  # a restart
    assert await scan.scan_store() == 0  # the replaced one is not in use

    events = await store.pending_events("webhook")
    roles = {e.data["role"]: e for e in events if e.kind is EventKind.EXPIRING}
    assert roles["ca"].data["threshold"] == "90d"
    assert roles["ca"].serial is None
    assert roles["tls"].data["threshold"] == "7d"
    assert roles["tls"].serial == tls.serial_number
    assert replaced.serial not in {e.serial for e in events if e.kind is EventKind.EXPIRING}
