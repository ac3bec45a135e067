"""SCEP enrollments per second: certforge against micromdm's scepserver, in the same run.

    .venv/bin/python -m bench.scep [--count 150] [--rounds 5]

Both servers get an RSA-2048 CA (certforge: ``[ca] key_type = "rsa-2048"``, so the CA is
its own SCEP identity; scepserver: ``scepserver ca -init -keySize 2048``) and a static
challenge password, and the same load driver: PKCSReq messages (RSA-2048 requester keys from
a small pool, a unique subject and transactionID each, AES-128-CBC and SHA-256, built before
the clock starts) POSTed with 1 and 8 concurrent keep-alive connections, each round measuring both
servers back to back (the median of the rounds' ratios is reported). Only a CertRep
saying SUCCESS counts as an enrollment. Afterwards every CertRep is opened and the serial numbers of
each server's certificates are checked for duplicates.

Target (issue #5): certforge >= 1.0 x scepserver at both parallelisms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.scep_http import scep_ca
from tests.integration.server import CertforgeServer, free_port
from tests.scep_client import Message, MessageType, make_csr, read_cert_rep, rsa_key, self_signed

CHALLENGE = "bench-static-challenge"
CERTFORGE_CONFIG = f"""
[ca]
key_type = "rsa-2048"
[scep.static_challenges]
device = "{CHALLENGE}"
"""


@dataclass(frozen=True)
class Prepared:
    message: bytes
    key: rsa.RSAPrivateKey
    signer: x509.Certificate


def prepare(url: str, count: int, keys: list[rsa.RSAPrivateKey]) -> list[Prepared]:
    _, recipient = scep_ca(url)
    out = []
    for i in range(count):
        key = keys[i % len(keys)]
        cn = f"bench-{uuid.uuid4().hex[:12]}"
        signer = self_signed(key, cn)
        msg = Message(
            message_type=MessageType.PKCS_REQ,
            content=make_csr(key, cn, challenge=CHALLENGE),
            recipient=recipient,
            signer_cert=signer,
            signer_key=key,
        )
        out.append(Prepared(msg.build(), key, signer))
    return out


async def drive(url: str, work: list[Prepared], parallelism: int) -> tuple[float, list[bytes]]:
    """POST every message with ``parallelism`` workers; the seconds it took and the CertReps."""
    replies: list[bytes] = [b""] * len(work)
    queue = list(range(len(work)))
    endpoint = f"{url}?operation=PKIOperation"
    connector = aiohttp.TCPConnector(limit=parallelism)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                i = queue.pop()
                async with session.post(
                    endpoint,
                    data=work[i].message,
                    headers={"Content-Type": "application/x-pki-message"},
                ) as resp:
                    replies[i] = await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(parallelism)))
        elapsed = time.perf_counter() - started
    return elapsed, replies


def check(work: list[Prepared], replies: list[bytes]) -> tuple[int, int]:
    """Successes, and serial numbers issued more than once."""
    serials: Counter[int] = Counter()
    ok = 0
    for prepared, reply in zip(work, replies, strict=True):
        rep = read_cert_rep(reply, key=prepared.key, cert=prepared.signer)
        if rep.status == "0" and rep.certificate is not None:
            ok += 1
            serials[rep.certificate.serial_number] += 1
    return ok, sum(n - 1 for n in serials.values() if n > 1)


class SCEPServer:
    """micromdm's scepserver with a fresh RSA-2048 CA in its own depot."""

    def __init__(self, workdir: Path) -> None:
        self.depot = workdir / "depot"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "scepserver.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/scep"

    def start(self) -> None:
        subprocess.run(
            ["scepserver", "ca", "-init", "-depot", str(self.depot), "-keySize", "2048"],
            check=True,
            capture_output=True,
        )
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    "scepserver",
                    "-depot",
                    str(self.depot),
                    "-port",
                    str(self.port),
                    "-challenge",
                    CHALLENGE,
                    "-allowrenew",
                    "0",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                scep_ca(self.url)
                return
            except OSError:
                time.sleep(0.1)  # waiting for a subprocess to listen
        raise RuntimeError("scepserver did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def measure(
    url: str, count: int, keys: list[rsa.RSAPrivateKey], parallelism: int
) -> tuple[float, int]:
    """Enrollments (SUCCESS) per second, and serial numbers issued twice."""
    work = prepare(url, count, keys)
    elapsed, replies = asyncio.run(drive(url, work, parallelism))
    ok, duplicates = check(work, replies)
    if ok < count:
        print(f"  {url}: {count - ok} of {count} not SUCCESS", flush=True)
    return ok / elapsed, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=150, help="enrollments per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=16, help="RSA-2048 requester keys to reuse")
    parser.add_argument("--workers", type=int, default=None, help="certforge [server] workers")
    args = parser.parse_args()
    if shutil.which("scepserver") is None:
        raise SystemExit("scepserver is missing: apt-get install scep")
    keys = [rsa_key() for _ in range(args.keys)]
    with tempfile.TemporaryDirectory() as tmp:
        # Lines before the first table belong to [server] (CertforgeServer writes it last).
        workers = f"workers = {args.workers}\n" if args.workers else ""
        certforge = CertforgeServer(
            Path(tmp) / "cf" / "data", extra_config=workers + CERTFORGE_CONFIG
        )
        certforge.start()
        micromdm = SCEPServer(Path(tmp))
        micromdm.start()
        targets = {"certforge": f"{certforge.http_url}/scep", "scepserver": micromdm.url}
        try:
            ratios: dict[int, list[float]] = {1: [], 8: []}
            duplicates: Counter[str] = Counter()
            for round_ in range(args.rounds):
                for parallelism in (1, 8):
                    # Adjacent measurements, in alternating order: the machine's noise
                    # (other jobs on shared cores) hits both sides of each ratio alike.
                    order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                    rate: dict[str, float] = {}
                    for name in order:
                        rate[name], dup = measure(targets[name], args.count, keys, parallelism)
                        duplicates[name] += dup
                    ratios[parallelism].append(rate["certforge"] / rate["scepserver"])
                    print(
                        f"round {round_ + 1} p={parallelism}: certforge "
                        f"{rate['certforge']:7.1f}/s, scepserver {rate['scepserver']:7.1f}/s, "
                        f"ratio {ratios[parallelism][-1]:.2f}",
                        flush=True,
                    )
            print()
            for parallelism in (1, 8):
                print(
                    f"p={parallelism}: median ratio certforge/scepserver "
                    f"{statistics.median(ratios[parallelism]):.2f} over {args.rounds} rounds "
                    "(target >= 1.0)"
                )
            print(f"serial numbers issued twice: {dict(duplicates)}")
        finally:
            micromdm.stop()
            assert certforge.stop() == 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
