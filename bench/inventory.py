"""The admin inventory with a million certificates, beside an empty store in the same run.

    .venv/bin/python -m bench.inventory [--count 1000000] [--reps 30]

Two ``certforge serve`` processes: one whose SQLite store was bulk-filled before its first
start with ``count`` certificates and their requests, written as the engine writes them
(rows, the search text in the trigram tables, protocol), issued over the past year in time
order, 70% tls-server (90 days: most of those issued before the last quarter have expired),
20% tls-client (365 days), 10% device (730 days, issuing CA device-ca), four protocols, 50
requesters, 1% revoked; one with an empty store. For each call, ``reps`` timed GETs over one
kept-alive HTTPS connection to each server, alternating, with p50 and p99 and the ratio of the
loaded p99 to the empty one: the first page (100) of every filter, a page 90% deep by cursor,
one certificate by serial. The monitor is off in both servers meanwhile (its first scan of a
loaded store would run beside the timed calls). Then a full keyset walk of the expiry index
(in process, pages of 1,000) and ``certforge cert list --all --format csv`` of the whole
store, with rows/s and the peak memory of the CLI (its own ``ru_maxrss``) and of the server
(its RSS sampled during the export) above their idle figures. Last, the monitor's expiry
scan over the whole store: the loaded server restarted with the monitor on, one worker, and
thresholds 3650d (longer than any certificate's validity: its walk reads every valid
certificate of the store and records nothing) and the default 30d, 7d, 1d (the first scan's
real events); REST issuances (4 issuers, 100 a second) run from its start, and their p99
while the scan runs is compared with theirs after it, same server. Targets (issue 13):
p99 <= 50 ms and <= 3x empty; the scan <= 10 s, issuance p99 during it <= 1.5x without;
export >= 20,000 rows/s; server and CLI peaks <= 200 MB above idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from protocols.admin.inventory import Position, encode_cursor
from server.model import CertificateQuery, SortKey
from server.store import codec
from server.store.sqlite import SQLiteStore
from server.store.sqlite_schema import names_text
from tests.integration.server import CERTFORGE, CertforgeServer
from tests.unit.factories import make_csr

WORDS = [f"w{n:02d}x" for n in range(100)]
PROTOCOLS = ("rest", "acme", "scep", "est")
REASONS = ("keyCompromise", "superseded", "cessationOfOperation")
QUIET = 'log_level = "warning"\n[monitor]\nenabled = false\n'
# 3650d walks every valid certificate and applies to none (it is longer than any validity);
# the defaults record the first scan's events. One worker: the scan and the requests share
# one event loop, the case where a scan could block them.
SCANNING = (
    'log_level = "warning"\nworkers = 1\n[monitor]\n'
    'expiry_thresholds = ["3650d", "30d", "7d", "1d"]\nscan_interval_seconds = 3600\n'
)
ISSUERS = 4
# Each issuer sends one request every INTERVAL seconds (100 a second in all, a quarter of what
# one worker issues): the latency then shows what the scan blocks, not a queue of requests
# that would wait for each other with or without it.
INTERVAL = 0.04


def fill(db: Path, count: int) -> None:
    asyncio.run(_create_schema(db))
    rng = random.Random(13)
    now = datetime.now(UTC)
    start = now - timedelta(days=365)
    step = timedelta(days=365) / count
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    der = bytes(rng.getrandbits(8) for _ in range(700))
    batch = 20_000
    for first in range(0, count, batch):
        certs, texts, requests, rtexts = [], [], [], []
        for i in range(first, min(first + batch, count)):
            roll = i % 10
            profile, days, issuer = (
                ("device", 730, "device-ca")
                if roll == 0
                else ("tls-client", 365, "default")
                if roll < 3
                else ("tls-server", 90, "default")
            )
            nb = start + step * i
            serial = rng.getrandbits(159) | 1
            name = f"h{i}.{WORDS[i % 100]}.bench.test"
            sans = [f"dns:{name}"]
            rid = f"{int(nb.timestamp() * 1000):012x}{rng.getrandbits(80):020x}"
            revoked = i % 100 == 7
            requester = f"token:bench-{i % 50}"
            protocol = PROTOCOLS[i % 4]
            certs.append(
                (
                    codec.serial_key(serial),
                    rid,
                    issuer,
                    profile,
                    f"CN={name}",
                    json.dumps(sans),
                    codec.ts(nb),
                    codec.ts(nb + timedelta(days=days)),
                    der,
                    requester,
                    f"{rng.getrandbits(256):064x}",
                    "revoked" if revoked else "valid",
                    codec.ts(nb + timedelta(hours=1)) if revoked else None,
                    REASONS[i % 3] if revoked else None,
                    None,
                    protocol,
                )
            )
            texts.append((f"CN={name}", names_text(sans)))
            extra: dict[str, Any] = {"requester": {"method": "token", "name": requester[6:]}}
            extra |= {"sans": sans, "vouched": {}, "draft": None}
            requests.append(
                (
                    rid,
                    "issued",
                    codec.ts(nb),
                    codec.ts(nb),
                    protocol,
                    requester,
                    profile,
                    f"CN={name}",
                    None,
                    None,
                    codec.serial_key(serial),
                    b"csr",
                    json.dumps(extra),
                )
            )
            rtexts.append((f"CN={name}", names_text(sans)))
        _insert(conn, certs, texts, requests, rtexts)
    conn.close()


def _insert(
    conn: sqlite3.Connection,
    certs: list[Any],
    texts: list[Any],
    requests: list[Any],
    rtexts: list[Any],
) -> None:
    for row, text in zip(certs, texts, strict=True):
        cur = conn.execute(
            "INSERT INTO certificates (serial, request_id, issuer, profile, subject, sans, "
            "not_before, not_after, der, requester, key_sha256, status, revoked_at, reason, "
            "invalidity_date, protocol) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            row,
        )
        conn.execute(
            "INSERT INTO cert_text (rowid, subject, sans) VALUES (?,?,?)", (cur.lastrowid, *text)
        )
    for row, text in zip(requests, rtexts, strict=True):
        cur = conn.execute(
            "INSERT INTO requests (id, status, created_at, updated_at, protocol, requester, "
            "profile, subject, transaction_id, reason, serial, csr, extra) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            row,
        )
        conn.execute(
            "INSERT INTO request_text (rowid, subject, sans) VALUES (?,?,?)", (cur.lastrowid, *text)
        )
    conn.commit()


async def _create_schema(db: Path) -> None:
    store = SQLiteStore(f"sqlite:///{db}", consumers=[])
    await store.open()
    await store.close()


def calls(db: Path, count: int) -> dict[str, str]:
    """Each timed path, for the loaded store (the empty one gets the same)."""
    now = datetime.now(UTC)
    conn = sqlite3.connect(db)
    deep = conn.execute(
        "SELECT not_before, request_id, serial FROM certificates "
        "ORDER BY not_before DESC, request_id DESC, serial DESC LIMIT 1 OFFSET ?",
        (int(count * 0.9),),
    ).fetchone()
    some = conn.execute(
        "SELECT serial FROM certificates LIMIT 1 OFFSET ?", (count // 2,)
    ).fetchone()
    conn.close()
    base = "/api/v1/admin/certificates?"
    cursor = encode_cursor(
        "certificates",
        _multi({}),
        Position(now, datetime.fromisoformat(deep[0]), f"{deep[1]} {int(deep[2], 16):x}"),
    )
    serial = format(int(some[0], 16), "x")
    filters = {
        "first page": "",
        "status=valid": "status=valid",
        "status=revoked": "status=revoked",
        "status=expired": "status=expired",
        "subject=word": "subject=w42x",
        "subject=one host": f"subject=h{count // 3}.w",
        "san=word": "san=w17x.bench",
        "serial=prefix4": f"serial={serial[:4]}",
        "profile=device": "profile=device",
        "issuer=device-ca": "issuer=device-ca",
        "protocol=scep": "protocol=scep",
        "requester": "requester=token:bench-7",
        "reason": "reason=keyCompromise",
        "expiring=30d": "expiring=30d",
        "issued_after=7d": "issued_after=" + quote((now - timedelta(days=7)).isoformat()),
        "issued_before=300d": "issued_before=" + quote((now - timedelta(days=300)).isoformat()),
        "sort=expiry": "sort=expiry",
    }
    paths = {name: base + q for name, q in filters.items()}
    paths["page 90% deep"] = base + "cursor=" + cursor
    paths["one by serial"] = f"/api/v1/admin/certificates/{serial}"
    return paths


def _multi(d: dict[str, str]) -> Any:
    from multidict import MultiDict

    return MultiDict(d)


async def time_calls(
    servers: list[CertforgeServer], paths: dict[str, str], reps: int
) -> dict[str, list[list[float]]]:
    ctx = ssl.create_default_context(cafile=str(servers[0].root))
    ctx.load_verify_locations(cafile=str(servers[1].root))
    results: dict[str, list[list[float]]] = {name: [[], []] for name in paths}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=2)) as http:
        for _ in range(reps):
            for name, path in paths.items():
                for k, srv in enumerate(servers):
                    url = srv.url + path
                    started = time.perf_counter()
                    async with http.get(url, headers={"Authorization": f"Bearer {srv.token}"}) as r:
                        await r.read()
                        status = r.status
                    elapsed = time.perf_counter() - started
                    if status == 200 or (k == 1 and status == 404):  # no such serial when empty
                        results[name][k].append(elapsed * 1000)
                    else:
                        raise RuntimeError(f"{name}: HTTP {status}")
    return results


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def expiry_walk(db: Path) -> tuple[float, int, float]:
    store = SQLiteStore(f"sqlite:///{db}", consumers=[])
    await store.open()
    try:
        rows, worst, after = 0, 0.0, None
        started = time.perf_counter()
        while True:
            t = time.perf_counter()
            page = await store.find_certificates(
                CertificateQuery(sort=SortKey.EXPIRY, descending=False, after=after, limit=1000)
            )
            worst = max(worst, time.perf_counter() - t)
            rows += len(page)
            if len(page) < 1000:
                return time.perf_counter() - started, rows, worst * 1000
            after = (page[-1].not_after, page[-1].request_id, page[-1].serial)
    finally:
        await store.close()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cli_run(server: CertforgeServer, *args: str) -> tuple[float, float, int]:
    """Wall seconds, the CLI's peak RSS (MB) and its output's line count."""
    cmd = [
        CERTFORGE,
        "cert",
        "list",
        *args,
        "--data-dir",
        str(server.data_dir),
        "--url",
        server.url,
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    lines = sum(1 for _ in proc.stdout)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.returncode
    return time.perf_counter() - started, usage.ru_maxrss / 1024, lines


def export(server: CertforgeServer) -> dict[str, float]:
    assert server.proc is not None
    pid = server.proc.pid
    _, cli_idle, _ = cli_run(server, "--limit", "1")
    server_idle = rss_mb(pid)
    peak = [server_idle]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak.append(rss_mb(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        seconds, cli_peak, lines = cli_run(server, "--all", "--format", "csv")
    finally:
        done.set()
        sampler.join()
    rows = lines - 1
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "cli_peak_above_idle_mb": round(cli_peak - cli_idle),
        "server_peak_above_idle_mb": round(max(peak) - server_idle),
    }


def _gauge(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return max(values, default=0.0)


async def issue_during_scan(srv: CertforgeServer, token: str) -> dict[str, float]:
    """REST issuances from the server's start, while its first expiry scan runs and for as long
    again after it (at least 10 s); the scan's start and length come from its gauges."""
    csrs = [make_csr(f"scan{i}.bench.test") for i in range(200)]
    ctx = ssl.create_default_context(cafile=str(srv.root))
    headers = {"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}"}
    samples: list[tuple[float, float]] = []  # (wall-clock start, milliseconds)
    scan: list[float] = []  # started (Unix time), seconds
    deadline = time.time() + 900

    async def issuer(http: aiohttp.ClientSession, w: int) -> None:
        i, slot = w, time.perf_counter() + w * INTERVAL / ISSUERS
        while time.time() < deadline:
            slot += INTERVAL
            await asyncio.sleep(max(0.0, slot - time.perf_counter()))
            at, started = time.time(), time.perf_counter()
            async with http.post(srv.url + "/api/v1/requests", data=csrs[i % 200]) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"issuance: HTTP {r.status}")
            samples.append((at, (time.perf_counter() - started) * 1000))
            i += ISSUERS

    async def watch(http: aiohttp.ClientSession) -> None:
        nonlocal deadline
        while not scan:
            await asyncio.sleep(0.25)
            async with http.get(srv.url + "/metrics") as r:
                text = await r.text()
            seconds = _gauge(text, "certforge_monitor_scan_seconds")
            if seconds > 0:
                scan[:] = [_gauge(text, "certforge_monitor_refresh_timestamp_seconds"), seconds]
        deadline = time.time() + max(scan[1], 10.0)

    connector = aiohttp.TCPConnector(ssl=ctx, limit=ISSUERS + 1)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        await asyncio.gather(watch(http), *(issuer(http, w) for w in range(ISSUERS)))
    started, seconds = scan
    during = [ms for at, ms in samples if started <= at <= started + seconds]
    after = [ms for at, ms in samples if at > started + seconds + 1]
    return {
        "scan_seconds": round(seconds, 1),
        "issued_during": len(during),
        "p99_during_ms": round(p99(during), 1),
        "issued_after": len(after),
        "p99_after_ms": round(p99(after), 1),
        "ratio": round(p99(during) / p99(after), 2),
    }


def valid_count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute(
                "SELECT count(*) FROM certificates WHERE status = 'valid' AND not_after > ?",
                (codec.ts(datetime.now(UTC)),),
            ).fetchone()[0]
        )
    finally:
        conn.close()


def scan_phase(data_dir: Path, token: str) -> dict[str, float]:
    srv = CertforgeServer(data_dir, extra_config=SCANNING)
    srv.start(timeout=300)
    try:
        result = asyncio.run(issue_during_scan(srv, token))
    finally:
        srv.stop()
    conn = sqlite3.connect(data_dir / "certforge.db")
    events = conn.execute("SELECT count(*) FROM events WHERE kind = 'expiring'").fetchone()[0]
    conn.close()
    return result | {"events_recorded": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--export-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loaded_dir, empty_dir = Path(tmp) / "loaded", Path(tmp) / "empty"
        loaded_dir.mkdir()
        db = loaded_dir / "certforge.db"
        started = time.perf_counter()
        fill(db, args.count)
        print(f"filled {args.count:,} certificates in {time.perf_counter() - started:.0f} s")
        paths = calls(db, args.count)
        servers = [CertforgeServer(loaded_dir, QUIET), CertforgeServer(empty_dir, QUIET)]
        for srv in servers:
            srv.start(timeout=300)
        try:
            report_calls(asyncio.run(time_calls(servers, paths, args.reps)))
            seconds, rows, worst = asyncio.run(expiry_walk(db))
            print(
                f"expiry index walk: {rows:,} rows in {seconds:.1f} s, pages of 1,000, "
                f"slowest page {worst:.1f} ms"
            )
            rates = []
            for _ in range(args.export_rounds):
                result = export(servers[0])
                rates.append(result["rows_per_s"])
                print("export:", json.dumps(result))
            print(f"export median {statistics.median(rates):,.0f} rows/s")
            token = servers[0].cli("token", "create", "bench-scan", check=True).stdout.strip()
        finally:
            for srv in servers:
                srv.stop()
        print(f"monitor scan over {valid_count(db):,} valid certificates:")
        print("scan:", json.dumps(scan_phase(loaded_dir, token)))
    print(f"bench peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def report_calls(timed: dict[str, list[list[float]]]) -> None:
    print(
        f"{'call':22} {'p50 ms':>8} {'p99 ms':>8} {'empty p50':>10} {'empty p99':>10} {'ratio':>6}"
    )
    for name, (loaded, empty) in timed.items():
        ratio = p99(loaded) / p99(empty)
        print(
            f"{name:22} {statistics.median(loaded):8.1f} {p99(loaded):8.1f} "
            f"{statistics.median(empty):10.1f} {p99(empty):10.1f} {ratio:6.2f}"
        )


if __name__ == "__main__":
    main()
