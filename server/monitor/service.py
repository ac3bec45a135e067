"""The monitor's job: every ``[monitor] scan_interval_seconds``, the expiry scan, then the
gauges.

It runs in worker 0 of each server (``server/app.py``), beside the exit dispatcher. Each
round:

1. the certificates this server uses itself (``watched.py``): a handful, so every server
   checks its own, every round;
2. the store walk (``expiry.py``), by one server per round: the first to put the store's
   ``monitor``/``scan-slot`` document, which expires just before the next round, walks; the
   others find it there and skip. Nothing depends on that for correctness: two servers
   walking at once record each event once all the same (the event ids). It only spares the
   store the same walk from every server;
3. the gauges, from ``Store.count`` (index counts: certificates by state and profile,
   expiring within 7 and 30 days, pending requests), the CA certificates and the newest CRLs.

A failing round is logged and the next one tries again: the job never ends but by
cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.config import MonitorConfig
from server.errors import Conflict
from server.model import Clock, Document
from server.monitor.expiry import CURSOR_KIND, ExpiryScan
from server.monitor.gauges import EXPIRING_WINDOWS, MonitorGauges
from server.monitor.watched import CA_ROLE, WatchSource
from server.revocation.published import PublishedCRL
from server.store.base import Store

log = logging.getLogger("certforge.monitor")

SLOT = "scan-slot"


@dataclass(frozen=True, slots=True)
class MonitorDeps:
    store: Store
    config: MonitorConfig
    clock: Clock
    sources: Sequence[WatchSource]
    gauges: MonitorGauges
    crls: Callable[[], Iterable[PublishedCRL]]  # the newest CRLs this server published
    notify: Callable[[], None]  # wake the exit dispatcher: events were recorded


class Monitor:
    def __init__(self, deps: MonitorDeps) -> None:
        self._d = deps
        self.scan = ExpiryScan(
            store=deps.store,
            config=deps.config,
            clock=deps.clock,
            sources=deps.sources,
            notify=deps.notify,
        )

    async def run(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self._d.config.scan_interval_seconds)

    async def round(self) -> None:
        now = self._d.clock.now()
        scan_seconds = None
        try:
            await self.scan.scan_watched(now)
            if await self._take_slot(now):
                started = time.perf_counter()
                recorded = await self.scan.scan_store(now)
                scan_seconds = time.perf_counter() - started
                if recorded:
                    log.info(
                        "recorded expiring events",
                        extra={"recorded": recorded, "seconds": round(scan_seconds, 3)},
                    )
        except Exception:
            log.exception("the expiry scan failed; the next round tries again")
        try:
            await self.refresh_gauges(now, scan_seconds)
        except Exception:
            log.exception("recounting the monitor's gauges failed; the next round tries again")

    async def refresh_gauges(self, now: datetime, scan_seconds: float | None = None) -> None:
        gauges = self._d.gauges
        counts = await self._d.store.count(now, expiring_within=EXPIRING_WINDOWS)
        gauges.show_counts(counts)
        gauges.show_pending_age(counts, now)
        for source in self._d.sources:
            if source.role == CA_ROLE:
                gauges.show_cas(await asyncio.to_thread(source.read), now)
        gauges.show_crls(self._d.crls(), now)
        gauges.show_refreshed(now, scan_seconds)

    async def _take_slot(self, now: datetime) -> bool:
        """This round's store walk, unless another server (or worker) took it."""
        lasts = timedelta(seconds=self._d.config.scan_interval_seconds * 0.9)
        slot = Document(CURSOR_KIND, SLOT, {"pid": os.getpid()}, expires_at=now + lasts)
        try:
            # Losing it is harmless (a second walk records nothing twice): no fsync needed.
            await self._d.store.put_doc(slot, durable=False)
        except Conflict:
            return False
        return True
