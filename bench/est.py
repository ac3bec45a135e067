"""EST enrollments per second over HTTPS, beside the REST front end's rate in the same run.

    .venv/bin/python -m bench.est [--seconds 10] [--concurrency 16] [--rounds 2]

One ``certforge serve`` subprocess; 16 concurrent keep-alive connections; the same profile
(tls-server, the default) and key type (ECDSA P-256) and the same CSRs for every front end:
  rest       ``POST /api/v1/requests`` with a requester token (the baseline);
  est_basic  ``POST /.well-known/est/simpleenroll`` with HTTP Basic (an EST user);
  est_cert   the same with a TLS client certificate this CA issued, no Basic.
The front ends take turns ``--rounds`` times (the machine is shared and noisy): every round's
rates are printed, and each EST ratio is the median over rounds of EST's rate over the REST
rate measured just before it. Target (issue 6): EST >= 0.8 x REST.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.issuance import run_workers
from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

PKCS10 = {"Content-Type": "application/pkcs10"}


def client_identity(server: CertforgeServer, token: str, work: Path) -> tuple[Path, Path]:
    """A key and a certificate for it issued by the server (through REST), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.bench.test")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("client.bench.test")]), False)
        .sign(key, hashes.SHA256())
    )
    csr_path = work / "client.csr"
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    out = server.cli("request", "submit", str(csr_path), "--json", token=token, admin=False)
    body = json.loads(out.stdout)
    key_path, cert_path = work / "client.key", work / "client.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_text(body["certificate"] + "".join(body["chain"]))
    return key_path, cert_path


async def rate(
    *,
    url: str,
    ctx: ssl.SSLContext,
    headers: dict[str, str],
    bodies: list[bytes],
    ok: int,
    concurrency: int,
    seconds: float,
) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ctx)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> bool:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                await resp.read()
                return resp.status == ok

        await run_workers(concurrency, 1.0, one)  # warm up the connections
        return await run_workers(concurrency, seconds, one)


async def measure(seconds: float, concurrency: int, rounds: int) -> dict[str, list[float]]:
    csrs = [make_csr(f"host{i}.bench.test") for i in range(200)]
    est_bodies = [base64.encodebytes(c) for c in csrs]
    with tempfile.TemporaryDirectory() as tmp:
        server = CertforgeServer(Path(tmp) / "data", extra_config='log_level = "warning"')
        server.start()
        try:
            token = server.cli("token", "create", "bench", check=True).stdout.strip()
            password = server.cli("est", "user", "add", "bench", check=True).stdout.strip()
            key, cert = client_identity(server, token, Path(tmp))
            plain = ssl.create_default_context(cafile=str(server.root))
            with_cert = ssl.create_default_context(cafile=str(server.root))
            with_cert.load_cert_chain(cert, key)
            basic = base64.b64encode(f"bench:{password}".encode()).decode()
            est_url = f"{server.url}/.well-known/est/simpleenroll"
            runs: dict[str, Callable[[], Awaitable[float]]] = {
                "rest": lambda: rate(
                    url=f"{server.url}/api/v1/requests",
                    ctx=plain,
                    headers=PKCS10 | {"Authorization": f"Bearer {token}"},
                    bodies=csrs,
                    ok=201,
                    concurrency=concurrency,
                    seconds=seconds,
                ),
                "est_basic": lambda: rate(
                    url=est_url,
                    ctx=plain,
                    headers=PKCS10 | {"Authorization": f"Basic {basic}"},
                    bodies=est_bodies,
                    ok=200,
                    concurrency=concurrency,
                    seconds=seconds,
                ),
                "est_cert": lambda: rate(
                    url=est_url,
                    ctx=with_cert,
                    headers=PKCS10,
                    bodies=est_bodies,
                    ok=200,
                    concurrency=concurrency,
                    seconds=seconds,
                ),
            }
            measured: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(rounds):
                for name, run in runs.items():
                    measured[name].append(await run())
            return measured
        finally:
            assert server.stop() == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    measured = asyncio.run(measure(args.seconds, args.concurrency, args.rounds))
    rest = measured["rest"]
    report: dict[str, object] = {"concurrency": args.concurrency, "rounds": args.rounds}
    for name, rates in measured.items():
        report[f"{name}_per_s"] = [round(r) for r in rates]
    for name in ("est_basic", "est_cert"):
        # Each round's EST rate over the REST rate measured just before it, then the median.
        ratios = [est / base for est, base in zip(measured[name], rest, strict=True)]
        report[f"{name}_ratio_median"] = round(statistics.median(ratios), 3)
    report["target_ratio"] = 0.8
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
