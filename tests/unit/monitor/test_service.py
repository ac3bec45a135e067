"""The monitor's round: the gauges it sets from the store, CA certificates and CRLs, and the
scan slot that lets one server per round walk the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.config import MonitorConfig
from server.model import EventKind
from server.monitor.service import Monitor, MonitorDeps
from server.monitor.watched import CA_ROLE, WatchSource
from server.revocation.published import PublishedCRL
from server.store.sqlite import SQLiteStore
from server.web.metrics import Metrics
from tests.unit.factories import FakeClock
from tests.unit.monitor.test_expiry import add, self_signed
from tests.unit.store.records import T0, event_for, make_request

DAY = timedelta(days=1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}", consumers=["webhook"])
    await s.open()
    yield s
    await s.close()


def monitor(store: SQLiteStore, clock: FakeClock, metrics: Metrics, **kw: object) -> Monitor:
    deps = MonitorDeps(
        store=store,
        config=MonitorConfig(),
        clock=clock,
        sources=kw.get("sources", ()),  # type: ignore[arg-type]
        gauges=metrics.monitor,
        crls=kw.get("crls", list),  # type: ignore[arg-type]
        notify=lambda: None,
    )
    return Monitor(deps)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_gauges_match_the_store_cas_and_crls(store: SQLiteStore) -> None:
    clock = FakeClock(T0)
    metrics = Metrics()
    for days, profile in ((5, "server"), (20, "server"), (200, "device")):
        await add(store, days=days, profile=profile)
    waiting = make_request()
    await store.add_request(waiting, event=event_for(waiting))
    root = self_signed("Root", T0 - DAY, 100)
    crl = PublishedCRL("issuing", 7, T0 - timedelta(minutes=5), T0 + timedelta(hours=1), 0, b"")
    clock.advance(timedelta(hours=2))
    sources = [WatchSource(CA_ROLE, None, lambda: [("root", root)])]

    await monitor(store, clock, metrics, sources=sources, crls=lambda: [crl]).round()

    got = samples(metrics)
    assert got[("certforge_certificates", (("profile", "server"), ("state", "valid")))] == 2
    assert got[("certforge_certificates", (("profile", "device"), ("state", "valid")))] == 1
    assert got[("certforge_certificates_expiring", (("within", "7d"),))] == 1
    assert got[("certforge_certificates_expiring", (("within", "30d"),))] == 2
    assert got[("certforge_requests_pending", ())] == 1
    age = (clock.now() - waiting.created_at).total_seconds()
    assert got[("certforge_requests_pending_oldest_age_seconds", ())] == age
    left = (root.not_valid_after_utc - clock.now()).total_seconds()
    assert got[("certforge_ca_certificate_expiry_seconds", (("ca", "root"),))] == left
    assert got[("certforge_crl_age_seconds", (("crl", "issuing"),))] == 2 * 3600 + 300
    assert got[("certforge_crl_next_update_seconds", (("crl", "issuing"),))] == -3600
    assert got[("certforge_monitor_refresh_timestamp_seconds", ())] == clock.now().timestamp()
    # The round's scan recorded the two certificates past a threshold.
    events = await store.pending_events("webhook", limit=100)
    assert sum(e.kind is EventKind.EXPIRING for e in events) == 2


async def test_one_server_per_round_walks_the_store(store: SQLiteStore) -> None:
    # The slot expires by the store's own clock: this test runs at the real time.
    clock = FakeClock(datetime.now(UTC))
    first, second = monitor(store, clock, Metrics()), monitor(store, clock, Metrics())

    assert await first._take_slot(clock.now())
    assert not await second._take_slot(clock.now())
