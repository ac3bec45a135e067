"""Certificates issued per second, ECDSA P-256, reported as ratios to bare signing.

    .venv/bin/python -m bench.issuance [--seconds 10]

In the same run:
  bare    building and signing the same tls-server certificate with ``cryptography`` alone,
          on one core (the baseline);
  engine  ``Engine.submit`` in process (CSR check, profile policy, signing) with the durable
          SQLite store (WAL, synchronous=FULL), 64 concurrent submitters;
  rest    ``POST /api/v1/requests`` over HTTPS with a requester token, 32 concurrent
          keep-alive connections, against ``certforge serve`` as a subprocess.
Targets (issue #2): engine >= 0.5 x bare, rest >= 0.15 x bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from policies.profiles import ProfilePolicy
from server.ca.issuers import load_or_create
from server.config import Config
from server.engine import Engine, EngineDeps
from server.model import AuthMethod, EnrollmentRequest, Issued, Requester, Role
from server.store.sqlite import SQLiteStore
from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

REQUESTER = Requester(AuthMethod.TOKEN, "bench", frozenset({Role.REQUESTER}))


def bare_rate(seconds: float) -> float:
    """Build and sign the same shape of certificate with cryptography alone, one core."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    ski = x509.SubjectKeyIdentifier.from_public_key(leaf_key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host.bench.test")])
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now = datetime.now(UTC)
        (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(leaf_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("host.bench.test")]), critical=False
            )
            .add_extension(ski, critical=False)
            .add_extension(aki, critical=False)
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [
                                x509.UniformResourceIdentifier(
                                    "http://127.0.0.1:8080/crl/default.crl"
                                )
                            ],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier("http://127.0.0.1:8080/ocsp"),
                        ),
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier("http://127.0.0.1:8080/ca/default.cer"),
                        ),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        count += 1
    return count / seconds


async def run_workers(
    concurrency: int, seconds: float, one: Callable[[int], Awaitable[bool]]
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < deadline:
            if await one(i):
                done += 1
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done / (time.perf_counter() - started)


async def engine_rate(seconds: float, csrs: list[bytes], concurrency: int = 64) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config().with_data_dir(Path(tmp))
        cas = load_or_create(config, passphrase=None, now=datetime.now(UTC))
        store = SQLiteStore(f"sqlite:///{tmp}/certforge.db", consumers=[])
        await store.open()
        engine = Engine(
            EngineDeps(
                store=store,
                cas=cas,
                profiles=config.profiles,
                default_profile="tls-server",
                policies=[ProfilePolicy(config)],
            )
        )

        async def one(i: int) -> bool:
            req = EnrollmentRequest(csrs[i % len(csrs)], "rest", REQUESTER)
            return isinstance(await engine.submit(req), Issued)

        try:
            return await run_workers(concurrency, seconds, one)
        finally:
            await store.close()


async def rest_rate(seconds: float, csrs: list[bytes], concurrency: int = 32) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        server = CertforgeServer(Path(tmp) / "data", extra_config='log_level = "warning"')
        server.start()
        try:
            token = server.cli("token", "create", "bench", check=True).stdout.strip()
            ctx = ssl.create_default_context(cafile=str(server.root))
            headers = {"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}"}
            connector = aiohttp.TCPConnector(limit=concurrency, ssl=ctx)
            async with aiohttp.ClientSession(connector=connector) as session:
                url = f"{server.url}/api/v1/requests"

                async def one(i: int) -> bool:
                    async with session.post(url, data=csrs[i % len(csrs)], headers=headers) as resp:
                        await resp.read()
                        return resp.status == 201

                await run_workers(concurrency, 1.0, one)  # warm up the connections
                return await run_workers(concurrency, seconds, one)
        finally:
            assert server.stop() == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    csrs = [make_csr(f"host{i}.bench.test") for i in range(200)]
    bare = bare_rate(args.seconds)
    engine = asyncio.run(engine_rate(args.seconds, csrs))
    rest = asyncio.run(rest_rate(args.seconds, csrs))
    result = {
        "bare_per_s": round(bare),
        "engine_per_s": round(engine),
        "rest_per_s": round(rest),
        "engine_ratio": round(engine / bare, 3),
        "rest_ratio": round(rest / bare, 3),
        "targets": {"engine_ratio": 0.5, "rest_ratio": 0.15},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
