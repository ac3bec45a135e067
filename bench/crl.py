"""Time and peak memory to issue one CRL with 100,000 and with 1,000,000 revoked entries.

    .venv/bin/python -m bench.crl [--sizes 100000 1000000]

For each size, a SQLite store (the default back-end) is filled with that many revoked
certificates of one issuing CA plus as many valid ones (bulk-inserted, not timed). Then a
fresh process opens the store and runs ``CRLPublisher.publish`` for that CA, the same code
the server runs: entries read from the store a page at a time, DER-encoded, spliced into
cryptography's signed template and signed. Reported: wall time of ``publish``, the peak
resident memory of that process (``ru_maxrss``) and of an idle process that only opened the
store (the difference is what the CRL cost), and the CRL's size. The result is loaded with
cryptography to check its entry count and signature (not timed).

Baseline in the same run: cryptography's own ``CertificateRevocationListBuilder`` with
100,000 entries already in memory (no store), which is what the builder would cost without
the hand-encoded entries. Targets (issue 3): 100k in < 5 s; 1M in < 60 s and < 2 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca.issuers import load_or_create
from server.config import Config, CRLConfig
from server.model import SystemClock
from server.revocation.publisher import CRLPublisher
from server.store import codec
from server.store.sqlite import SQLiteStore

REASONS = ("keyCompromise", "superseded", "cessationOfOperation", "unspecified")


def fill(db: Path, revoked: int) -> None:
    """Bulk-insert ``revoked`` revoked and as many valid certificates of CA "default"."""
    asyncio.run(_create_schema(db))
    now = datetime.now(UTC)
    not_before, not_after = codec.ts(now - timedelta(days=1)), codec.ts(now + timedelta(days=90))
    revoked_at = codec.ts(now - timedelta(hours=1))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    batch = 50_000
    for start in range(0, 2 * revoked, batch):
        rows = []
        for i in range(start, min(start + batch, 2 * revoked)):
            is_revoked = i % 2 == 0
            serial = (1 << 126) + i * 0x9E3779B97F4A7C15  # spread, like random serials
            rows.append(
                (
                    codec.serial_key(serial),
                    f"r{i}",
                    "default",
                    "tls-server",
                    f"CN=h{i}.bench.test",
                    "[]",
                    not_before,
                    not_after,
                    b"",
                    "token:bench",
                    "",
                    "revoked" if is_revoked else "valid",
                    revoked_at if is_revoked else None,
                    REASONS[i % len(REASONS)] if is_revoked else None,
                    None,
                )
            )
        conn.executemany(
            "INSERT INTO certificates (serial, request_id, issuer, profile, subject, sans, "
            "not_before, not_after, der, requester, key_sha256, status, revoked_at, reason, "
            "invalidity_date) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.commit()
    conn.close()


async def _create_schema(db: Path) -> None:
    store = SQLiteStore(f"sqlite:///{db}", consumers=[])
    await store.open()
    await store.close()


async def _publish(data_dir: Path, *, idle: bool) -> dict[str, float]:
    config = Config().with_data_dir(data_dir)
    cas = load_or_create(config, passphrase=None, now=datetime.now(UTC))
    store = SQLiteStore(f"sqlite:///{data_dir / 'certforge.db'}", consumers=[])
    await store.open()
    try:
        publisher = CRLPublisher(store=store, cas=cas, config=CRLConfig(), clock=SystemClock())
        if idle:
            return {"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        started = time.perf_counter()
        crl = await publisher.publish("default")
        seconds = time.perf_counter() - started
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        (data_dir / "bench.crl").write_bytes(crl.der)
        return {"seconds": seconds, "maxrss_mb": maxrss, "entries": crl.entries}
    finally:
        await store.close()


def measure_child(data_dir: Path, *, idle: bool) -> dict[str, float]:
    args = [sys.executable, "-m", "bench.crl", "--child", str(data_dir)]
    out = subprocess.run(
        [*args, "--idle"] if idle else args, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def builder_baseline(entries: int) -> float:
    """cryptography's CRL builder with ``entries`` revoked certificates in memory."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    started = time.perf_counter()
    revoked = [
        x509.RevokedCertificateBuilder()
        .serial_number((1 << 126) + i)
        .revocation_date(now)
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
        for i in range(entries)
    ]
    x509.CertificateRevocationListBuilder(
        issuer_name=x509.Name.from_rfc4514_string("CN=Bench CA"),
        last_update=now,
        next_update=now + timedelta(days=1),
        revoked_certificates=revoked,
    ).sign(key, hashes.SHA256())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_publish(Path(args.child), idle=args.idle))))
        return
    baseline = builder_baseline(100_000)
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            data_dir.mkdir()
            fill(data_dir / "certforge.db", size)
            idle = measure_child(data_dir, idle=True)
            run = measure_child(data_dir, idle=False)
            der = (data_dir / "bench.crl").read_bytes()
            crl = x509.load_der_x509_crl(der)
            assert len(crl) == size == run["entries"], (len(crl), size, run["entries"])
            issuer = x509.load_pem_x509_certificate((data_dir / "ca" / "default.pem").read_bytes())
            assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]  # an EC CA key
            results.append(
                {
                    "entries": size,
                    "seconds": round(run["seconds"], 2),
                    "peak_rss_mb": round(run["maxrss_mb"]),
                    "idle_rss_mb": round(idle["maxrss_mb"]),
                    "crl_mb": round(len(der) / 2**20, 1),
                }
            )
    print(
        json.dumps(
            {
                "cryptography_builder_100k_seconds": round(baseline, 2),
                "crls": results,
                "targets": {"100k_seconds": 5, "1M_seconds": 60, "1M_peak_mb": 2048},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
