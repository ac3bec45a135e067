"""The monitor's Prometheus gauges, set at each scan from the store's indexed counts.

Recounted every ``[monitor] scan_interval_seconds`` by the one worker that runs the monitor
(worker 0), never per scrape: a scrape reads the last values, so it costs the store nothing.

With several workers (``[server] workers``) every value lives in prometheus_client's
per-process files, and each gauge's ``multiprocess_mode`` says how ``/metrics`` combines them:
``mostrecent``, the value last written by any process. Only worker 0 writes these, so that
is its value; and when worker 0 is replaced, the new one's values are newer than what the
dead one left in its file (``sum`` or ``max`` would keep counting the dead one's, ``liveall``
would label every worker, and ``livemostrecent`` needs dead workers' files marked, which the
supervisor does not do). ``certforge_monitor_refresh_timestamp_seconds`` says when they were
last set, so an alert can tell values that stopped moving.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from prometheus_client import CollectorRegistry, Gauge

from server.config import format_duration
from server.model import StoreCounts
from server.revocation.published import PublishedCRL

MODE: Final = "mostrecent"
EXPIRING_WINDOWS = (timedelta(days=7), timedelta(days=30))


class MonitorGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, text, labels, registry=registry, multiprocess_mode=MODE)

        self.certificates = gauge(
            "certforge_certificates",
            "Certificates by state (valid, revoked, expired) and profile",
            ["state", "profile"],
        )
        self.expiring = gauge(
            "certforge_certificates_expiring",
            "Valid certificates whose notAfter is within the window",
            ["within"],
        )
        self.pending = gauge("certforge_requests_pending", "Requests waiting for a decision")
        self.pending_age = gauge(
            "certforge_requests_pending_oldest_age_seconds",
            "How long the longest-waiting pending request has waited (0: none)",
        )
        self.ca_expiry = gauge(
            "certforge_ca_certificate_expiry_seconds",
            "Seconds until each CA certificate's notAfter",
            ["ca"],
        )
        self.crl_age = gauge(
            "certforge_crl_age_seconds", "Seconds since each CRL's thisUpdate", ["crl"]
        )
        self.crl_next_update = gauge(
            "certforge_crl_next_update_seconds",
            "Seconds until each CRL's nextUpdate (negative: overdue)",
            ["crl"],
        )
        self.refreshed = gauge(
            "certforge_monitor_refresh_timestamp_seconds",
            "When the monitor last set these gauges (Unix time)",
        )
        self.scan_seconds = gauge(
            "certforge_monitor_scan_seconds", "How long the last expiry scan took"
        )
        self._shown: set[tuple[str, str]] = set()

    def show_counts(self, counts: StoreCounts) -> None:
        # A (state, profile) seen before and absent now is 0, not its last value.
        for key in self._shown - set(counts.certificates):
            self.certificates.labels(*key).set(0)
        for key, n in counts.certificates.items():
            self.certificates.labels(*key).set(n)
        self._shown |= set(counts.certificates)
        for window, n in counts.expiring.items():
            self.expiring.labels(format_duration(window)).set(n)
        self.pending.set(counts.pending_requests)

    def show_pending_age(self, counts: StoreCounts, now: datetime) -> None:
        oldest = counts.oldest_pending
        self.pending_age.set(0 if oldest is None else (now - oldest).total_seconds())

    def show_cas(self, cas: Iterable[tuple[str, x509.Certificate]], now: datetime) -> None:
        for name, cert in cas:
            self.ca_expiry.labels(name).set((cert.not_valid_after_utc - now).total_seconds())

    def show_crls(self, crls: Iterable[PublishedCRL], now: datetime) -> None:
        for crl in crls:
            self.crl_age.labels(crl.key).set((now - crl.this_update).total_seconds())
            self.crl_next_update.labels(crl.key).set((crl.next_update - now).total_seconds())

    def show_refreshed(self, now: datetime, scan_seconds: float | None) -> None:
        self.refreshed.set(now.timestamp())
        if scan_seconds is not None:
            self.scan_seconds.set(scan_seconds)
