"""``expiring`` events: one per certificate and threshold, at least once and at most once.

Which threshold is due (``due_threshold``): of the thresholds a certificate has crossed
(notAfter - now at most the threshold), the nearest to its expiry, and none once it expired.
So a certificate already past several thresholds when it is first seen (monitoring switched
on, thresholds added, a server stopped across one) gets the nearest one's event only: the
earlier warnings would arrive late and say less. A threshold at least as long as the
certificate's whole validity never applies to it (it was born inside it: a 24-hour
certificate warns 1 hour before, not "1 day before" at issuance). Revoked certificates
(certificateHold included) get none: the store walk reads valid certificates only.

Once per threshold. The event's id is ``once_id`` of (certificate, threshold): the serial
for certificates of this CA, the SHA-256 fingerprint for CA certificates. The store refuses a
second event with an id it holds, so recording the event is its own conditional write and
marker at once, whichever worker or server sharing the store gets there first, and across
restarts. Who scans is only an optimisation (``service.py``); a lost race is a ``Conflict``,
which is the answer "already recorded". Delivery is the outbox's: at least once, to every exit,
each at its own pace (``server/exits/dispatcher.py``), so a webhook that is down delays only
itself and never the scan.

The walk. For each threshold T the certificates newly due are those whose notAfter entered
(now, now + T] since the last scan: the store keeps, per threshold, how far the last walk
reached (a document, kind ``monitor``), and a scan walks from there (less ``MARGIN``, for
certificates committed late by another server or a clock a little behind) to now + T, in
pages of the (status, notAfter, serial) index, yielding to the loop between pages. It starts
no nearer than the next shorter threshold (what expires before is due that one) and reads
only certificates valid longer than T (``longer_than``): the first walk of a long threshold
over a store of short-lived certificates decodes none of them. The first
walk of a threshold starts at now. What the margin walks again is filtered by one indexed
lookup of the ids per page (``existing_events``), so a steady scan writes only new events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from server.config import MonitorConfig, format_duration
from server.errors import Conflict, NotFound
from server.model import CertificateRecord, Clock, Document, Event, EventKind, once_id
from server.monitor.watched import CA_ROLE, WatchSource
from server.store.base import Store

log = logging.getLogger("certforge.monitor")

# Certificates read at a time: their decoding runs on the loop (about 2 ms for 500).
PAGE = 500
# Events written together: SQLite's group commit runs on the loop, and 50 events' inserts
# (about 12 ms here) keep requests waiting no longer than a burst of issuances would.
GROUP = 50
MARGIN = timedelta(minutes=10)
CURSOR_KIND = "monitor"


def due_threshold(
    *, not_before: datetime, not_after: datetime, now: datetime, thresholds: Sequence[timedelta]
) -> timedelta | None:
    """The threshold whose ``expiring`` event is due now, or None (see the module docstring)."""
    left = not_after - now
    if left <= timedelta(0):
        return None
    lifetime = not_after - not_before
    return min((t for t in thresholds if left <= t < lifetime), default=None)


def _threshold_data(threshold: timedelta, not_after: datetime, now: datetime) -> dict[str, object]:
    return {
        "threshold": format_duration(threshold),
        "threshold_seconds": int(threshold.total_seconds()),
        "not_after": not_after.isoformat(),
        "seconds_left": int((not_after - now).total_seconds()),
    }


def certificate_event(cert: CertificateRecord, threshold: timedelta, now: datetime) -> Event:
    """The ``expiring`` event of a certificate in the store."""
    return Event(
        EventKind.EXPIRING,
        now,
        request_id=cert.request_id,
        serial=cert.serial,
        data={
            "role": "certificate",
            "serial": format(cert.serial, "x"),
            "issuer": cert.issuer,
            "profile": cert.profile,
            "subject": cert.subject,
            "sans": list(cert.sans),
            **_threshold_data(threshold, cert.not_after, now),
        },
        id=_id(f"{cert.serial:040x}", threshold, cert.not_after),
    )


def watched_event(
    role: str, name: str, cert: x509.Certificate, threshold: timedelta, now: datetime
) -> Event:
    """The ``expiring`` event of a certificate the server uses itself. A CA certificate is
    known by its fingerprint (an imported one's serial may be any number); the others are
    this CA's, known by their serial, as in the store."""
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    fact = f"ca|{fingerprint}" if role == CA_ROLE else f"{cert.serial_number:040x}"
    not_after = cert.not_valid_after_utc
    return Event(
        EventKind.EXPIRING,
        now,
        serial=None if role == CA_ROLE else cert.serial_number,
        data={
            "role": role,
            "name": name,
            "serial": format(cert.serial_number, "x"),
            "subject": cert.subject.rfc4514_string(),
            "fingerprint_sha256": fingerprint,
            **_threshold_data(threshold, not_after, now),
        },
        id=_id(fact, threshold, not_after),
    )


def _id(fact: str, threshold: timedelta, not_after: datetime) -> str:
    seconds = int(threshold.total_seconds())
    return once_id(f"expiring|{fact}|{seconds}", not_after - threshold)


class ExpiryScan:
    def __init__(
        self,
        *,
        store: Store,
        config: MonitorConfig,
        clock: Clock,
        sources: Sequence[WatchSource] = (),
        notify: Callable[[], None] = lambda: None,
        page: int = PAGE,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._sources = tuple(sources)
        self._notify = notify
        self._page = page
        # The store's profiles that a source watches instead (see watched.py).
        self._left_to_sources = frozenset(s.profile for s in sources if s.profile)
        # Ids of watched certificates' events known recorded: each scan would otherwise ask the
        # store again about the same few. Store certificates are not remembered: the walk
        # does not see them twice but in the margin.
        self._known: set[str] = set()

    async def scan_watched(self, now: datetime | None = None) -> int:
        """Record the due events of the certificates the sources give; how many were new."""
        now = now or self._clock.now()
        events = []
        for source in self._sources:
            thresholds = (
                self._config.ca_expiry_thresholds
                if source.role == CA_ROLE
                else self._config.expiry_thresholds
            )
            try:
                certificates = await asyncio.to_thread(source.read)
            except Exception:
                log.exception("reading the %s certificates to watch failed", source.role)
                continue
            for name, cert in certificates:
                due = due_threshold(
                    not_before=cert.not_valid_before_utc,
                    not_after=cert.not_valid_after_utc,
                    now=now,
                    thresholds=thresholds,
                )
                if due is not None:
                    events.append(watched_event(source.role, name, cert, due, now))
        fresh = [e for e in events if e.id not in self._known]
        recorded = await self._record(fresh)
        self._known.update(e.id for e in fresh)
        return recorded

    async def scan_store(self, now: datetime | None = None) -> int:
        """Walk each threshold's newly due window of the store; how many events were new."""
        now = now or self._clock.now()
        recorded = 0
        for threshold in self._config.expiry_thresholds:
            recorded += await self._walk(threshold, now)
        return recorded

    async def _walk(self, threshold: timedelta, now: datetime) -> int:
        reached = await self._reached(threshold)
        start = now if reached is None else max(now, reached - MARGIN)
        # Within the next nearer threshold of its expiry a certificate is due that one, never
        # this (due_threshold): that part of the window is the nearer threshold's walk.
        nearer = [t for t in self._config.expiry_thresholds if t < threshold]
        if nearer:
            start = max(start, now + max(nearer))
        until = now + threshold
        position, recorded = (start, 0), 0
        while start < until:
            # Only certificates valid longer than the threshold can be due it.
            page = await self._store.find_expiring(
                after=position, until=until, limit=self._page, longer_than=threshold
            )
            events = [
                certificate_event(cert, threshold, now)
                for cert in page
                if cert.profile not in self._left_to_sources
                and due_threshold(
                    not_before=cert.not_before,
                    not_after=cert.not_after,
                    now=now,
                    thresholds=self._config.expiry_thresholds,
                )
                == threshold
            ]
            recorded += await self._record(events)
            if len(page) < self._page:
                break
            position = (page[-1].not_after, page[-1].serial)
            await asyncio.sleep(0)  # requests run between pages
        await self._reach(threshold, until)
        return recorded

    async def _record(self, events: list[Event]) -> int:
        """Add the events the store does not hold yet, ``GROUP`` at a time, so that the store
        commits each group as one (SQLite: one transaction; one fsync for them all). Of processes
        racing to add one, the store lets one succeed; the others' ``Conflict`` means it is
        recorded."""
        if not events:
            return 0
        held = await self._store.existing_events([e.id for e in events])
        new = [e for e in events if e.id not in held]
        results: list[BaseException | None] = []
        for i in range(0, len(new), GROUP):
            # Only the last group waits for an fsync, which makes the groups before it durable
            # too (Store.add_event): one fsync per page instead of one per group.
            durable = i + GROUP >= len(new)
            results += await asyncio.gather(
                *(self._store.add_event(e, durable=durable) for e in new[i : i + GROUP]),
                return_exceptions=True,
            )
        recorded = 0
        for result in results:
            if isinstance(result, Conflict):
                continue
            if isinstance(result, BaseException):
                raise result
            recorded += 1
        if recorded:
            self._notify()
        return recorded

    # How far each threshold's walk reached: an optimisation only (the ids make events once),
    # so a lost race to move it forward is simply retried against the newer value.
    @staticmethod
    def _cursor_id(threshold: timedelta) -> str:
        return f"expiry-walk-{int(threshold.total_seconds())}"

    async def _reached(self, threshold: timedelta) -> datetime | None:
        try:
            doc = await self._store.get_doc(CURSOR_KIND, self._cursor_id(threshold))
        except NotFound:
            return None
        return datetime.fromisoformat(doc.data["until"])

    async def _reach(self, threshold: timedelta, until: datetime) -> None:
        doc_id = self._cursor_id(threshold)
        new = Document(CURSOR_KIND, doc_id, {"until": until.isoformat()})
        for _ in range(3):
            try:
                doc = await self._store.get_doc(CURSOR_KIND, doc_id)
            except NotFound:
                try:
                    await self._store.put_doc(new)
                    return
                except Conflict:
                    continue
            if datetime.fromisoformat(doc.data["until"]) >= until:
                return
            try:
                await self._store.update_doc(new, expect_version=doc.version)
                return
            except (Conflict, NotFound):
                continue
