"""Prometheus metrics: requests by front end and outcome, and issuance latency.

Served as Prometheus text at ``/metrics`` on the HTTPS listener. Each server process keeps
its own registry (no module-level globals), so tests can start several.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from server.engine import Observer

CONTENT_TYPE = CONTENT_TYPE_LATEST


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

    def outcome(self, protocol: str, outcome: str, seconds: float) -> None:
        self.enrollments.labels(protocol, outcome).inc()
        if seconds:
            self.issuance_seconds.labels(protocol).observe(seconds)

    def http(self, frontend: str, status: int) -> None:
        self.http_requests.labels(frontend, f"{status // 100}xx").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
