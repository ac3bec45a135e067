"""Prometheus metrics: requests by front end and outcome, issuance latency, and the
monitor's gauges (``server/monitor/gauges.py``: certificates, expiry, pending requests, CA
certificates, CRLs).

Served as Prometheus text at ``/metrics`` on the HTTPS listener. Each server process keeps
its own registry (no module-level globals), so tests can start several.

With several workers (``[server] workers``) the counts are prometheus_client's multiprocess
files in ``PROMETHEUS_MULTIPROC_DIR`` (``<data_dir>/metrics``, emptied at each start), and
``/metrics`` answers the sum over every worker, whichever worker is asked.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from server.engine import Observer
from server.monitor.gauges import MonitorGauges

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by server.workers.share_metrics


class Metrics(Observer):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "certforge_http_requests",
            "HTTP requests by front end and status class",
            ["frontend", "status"],
            registry=self.registry,
        )
        self.enrollments = Counter(
            "certforge_enrollments",
            "Enrollment outcomes by protocol",
            ["protocol", "outcome"],
            registry=self.registry,
        )
        self.issuance_seconds = Histogram(
            "certforge_issuance_seconds",
            "Time from receiving a CSR to its recorded outcome",
            ["protocol"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.monitor = MonitorGauges(self.registry)  # set by the monitor's job (worker 0)

    def outcome(self, protocol: str, outcome: str, seconds: float) -> None:
        self.enrollments.labels(protocol, outcome).inc()
        if seconds:
            self.issuance_seconds.labels(protocol).observe(seconds)

    def http(self, frontend: str, status: int) -> None:
        self.http_requests.labels(frontend, f"{status // 100}xx").inc()

    def render(self) -> bytes:
        if os.environ.get(MULTIPROCESS_ENV):
            every_worker = CollectorRegistry()
            MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
            return generate_latest(every_worker)
        return generate_latest(self.registry)
