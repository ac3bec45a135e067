"""The expiry monitor against the real server, in real time.

No clock is shifted: certificates of a one-day profile, and thresholds a few seconds shorter
than their validity (``[monitor] expiry_thresholds`` takes durations), cross their thresholds
seconds after issuance. The same for the server's own certificates (TLS, OCSP signer, SCEP RA:
two days; CAs: three and four days). What is checked:

- each certificate's events arrive once per threshold (one event id per certificate and
  threshold, whatever is redelivered), none for a revoked one, also across a SIGKILL and
  restart, and with two workers;
- a webhook that is down does not keep the log exit from its events;
- /metrics matches the store (counts by state and profile, expiring, pending requests), the
  CA certificates' seconds to expiry and the CRLs' age.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import CertforgeServer
from tests.integration.test_exits import SECRET, Receiver, receiver, wait_for
from tests.unit.factories import make_csr

__all__ = ["receiver"]  # the fixture, used by name

DAY = 86400
# Leaves of the "short" profile live one day less a second (server/ca/build.py); the server's
# own certificates two days less a second; the issuing CA three days and the root four.
LEAF_SOON, LEAF_LATER = DAY - 6, DAY - 12  # 5 and 11 seconds after issuance
OWN = 2 * DAY - 5
ISSUING_CA, ROOT_CA = 3 * DAY - 5, 4 * DAY - 5


def config(receiver: Receiver, log: Path, *, workers: int = 1) -> str:
    return f"""
workers = {workers}
tls_cert_days = 2
tls_renew_before_days = 1

[ca]
root_validity_days = 4

[[ca.issuers]]
name = "default"
validity_days = 3

[ocsp]
signer_validity_days = 2
signer_renew_before_days = 1

[scep]
ra_validity_days = 2
ra_renew_before_days = 1

[monitor]
scan_interval_seconds = 0.5
expiry_thresholds = ["{OWN}s", "{LEAF_SOON}s", "{LEAF_LATER}s"]
ca_expiry_thresholds = ["{ROOT_CA}s", "{ISSUING_CA}s"]

[profiles.short]
validity_days = 1

[[exits]]
type = "webhook"
url = "http://127.0.0.1:{receiver.port}/hook"
secret = "{SECRET}"
timeout_seconds = 2

[[exits]]
type = "log"
path = "{log}"
events = ["expiring"]
"""


def issue(server: CertforgeServer, name: str) -> str:
    """A certificate of the short profile, issued at once (the admin token is a requester)."""
    req = urllib.request.Request(
        f"{server.url}/api/v1/requests?profile=short",
        data=make_csr(name),
        headers={"Content-Type": "application/pkcs10", "Authorization": f"Bearer {server.token}"},
    )
    with urllib.request.urlopen(req, context=server.ssl_context(), timeout=30) as resp:
        return str(json.loads(resp.read())["serial"])


def revoke(server: CertforgeServer, serial: str) -> None:
    req = urllib.request.Request(
        f"{server.url}/api/v1/admin/certificates/{serial}/revoke",
        data=b'{"reason": "keyCompromise"}',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"},
    )
    with urllib.request.urlopen(req, context=server.ssl_context(), timeout=30):
        pass


def data_of(event: dict[str, object]) -> dict[str, object]:
    data = event["data"]
    assert isinstance(data, dict)
    return data


def expiring(events: list[dict[str, object]]) -> dict[tuple[str, str], set[str]]:
    """(serial or CA name, threshold seconds) -> the distinct event ids delivered for it."""
    found: dict[tuple[str, str], set[str]] = {}
    for e in events:
        if e["kind"] != "expiring":
            continue
        data = data_of(e)
        who = data["name"] if data["role"] == "ca" else data["serial"]
        found.setdefault((str(who), str(data["threshold_seconds"])), set()).add(str(e["id"]))
    return found


def logged(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def has(
    events: Callable[[], list[dict[str, object]]], *keys: tuple[str, int]
) -> Callable[[], bool]:
    return lambda: all((who, str(t)) in expiring(events()) for who, t in keys)


def test_expiring_once_per_threshold_across_sigkill_and_a_webhook_down(
    tmp_path: Path, receiver: Receiver
) -> None:
    log = tmp_path / "expiring.jsonl"
    server = CertforgeServer(tmp_path / "data", extra_config=config(receiver, log))
    server.start()
    try:
        # The webhook is down: the log exit gets its events all the same.
        doomed = issue(server, "doomed.example.test")
        revoke(server, doomed)
        first = issue(server, "first.example.test")
        server.curl(f"{server.http_url}/scep?operation=GetCACert")  # makes the SCEP RA
        wait_for(has(lambda: logged(log), (first, LEAF_SOON)), timeout=30)
        assert receiver.received == []
        receiver.up = True
        wait_for(has(lambda: receiver.received, (first, LEAF_SOON)), timeout=30)
        server.kill()  # ... between the two thresholds of ``first``
        server.start()
        second = issue(server, "second.example.test")
        wait_for(
            has(lambda: receiver.received, (first, LEAF_LATER), (second, LEAF_LATER)),
            timeout=30,
        )
        time.sleep(2)  # four more scans, which must record nothing more
    finally:
        assert server.stop() == 0

    got = expiring(receiver.received)
    roles = {str(data_of(e)["role"]) for e in receiver.received if e["kind"] == "expiring"}
    assert roles == {"certificate", "tls", "ocsp-signer", "scep-ra", "ca"}
    assert (("root", str(ROOT_CA)) in got) and (("default", str(ISSUING_CA)) in got)
    for serial in (first, second):
        assert {t for (who, t) in got if who == serial} == {str(LEAF_SOON), str(LEAF_LATER)}
    assert not any(who == doomed for who, _ in got)
    # One event per certificate and threshold: redeliveries repeat an id, never a new one.
    assert all(len(ids) == 1 for ids in got.values()), got
    assert expiring(logged(log)) == got


def metrics(server: CertforgeServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(
        f"{server.url}/metrics", context=server.ssl_context(), timeout=10
    ) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def store_counts(db: Path) -> Counter[tuple[str, str]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT profile, status, not_after FROM certificates").fetchall()
    return Counter(
        (("expired" if not_after[:19] <= now else status), profile)
        for profile, status, not_after in rows
    )


def test_two_workers_no_duplicates_and_metrics_match_the_store(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.up = True
    log = tmp_path / "expiring.jsonl"
    server = CertforgeServer(tmp_path / "data", extra_config=config(receiver, log, workers=2))
    server.start()
    try:
        serials = [issue(server, f"w{i}.example.test") for i in range(6)]
        revoke(server, serials[0])
        wait_for(
            has(lambda: receiver.received, *((s, LEAF_LATER) for s in serials[1:])), timeout=40
        )
        time.sleep(1.5)  # the gauges of a scan after the last issuance and revocation
        got = metrics(server)
        crl = x509.load_der_x509_crl(server.curl(f"{server.http_url}/crl/default.crl").stdout)
        issuing = x509.load_pem_x509_certificates(
            (server.data_dir / "ca" / "default.pem").read_bytes()
        )[0]
        counted = store_counts(server.data_dir / "certforge.db")
    finally:
        assert server.stop() == 0

    delivered = Counter(str(e["id"]) for e in receiver.received if e["kind"] == "expiring")
    assert all(n == 1 for n in delivered.values()), delivered  # no crash: no redelivery either
    by_cert = expiring(receiver.received)
    assert all(len(ids) == 1 for ids in by_cert.values())
    assert not any(who == serials[0] for who, _ in by_cert)

    for (state, profile), n in counted.items():
        key = ("certforge_certificates", (("profile", profile), ("state", state)))
        assert got[key] == n, (key, got)
    assert got[("certforge_certificates", (("profile", "short"), ("state", "revoked")))] == 1
    assert counted[("valid", "internal-cmp-signer")] == 1  # one signer for every process
    assert got[("certforge_certificates_expiring", (("within", "7d"),))] == (
        counted[("valid", "short")]
        + counted[("valid", "internal-tls")]
        + counted[("valid", "internal-ocsp")]
        + counted[("valid", "internal-cmp-signer")]  # issued under [cmp]'s short profile
    )
    assert got[("certforge_requests_pending", ())] == 0
    now = datetime.now(UTC)
    left = (issuing.not_valid_after_utc - now).total_seconds()
    assert abs(got[("certforge_ca_certificate_expiry_seconds", (("ca", "default"),))] - left) < 5
    age = (now - crl.last_update_utc).total_seconds()
    assert abs(got[("certforge_crl_age_seconds", (("crl", "default"),))] - age) < 5
    assert crl.next_update_utc is not None
    to_next = (crl.next_update_utc - now).total_seconds()
    assert abs(got[("certforge_crl_next_update_seconds", (("crl", "default"),))] - to_next) < 5
    assert timedelta(seconds=to_next) > timedelta(hours=23)
