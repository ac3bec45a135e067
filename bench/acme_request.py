"""Server CPU of the cheapest ACME request: a POST-as-GET of an order (RFC 8555 §6.3), sent
one after another over one keep-alive HTTPS connection.

    .venv/bin/python -m bench.acme_request [--requests 1500] [--rounds 3]

An order needs nine requests (newNonce, newAccount, newOrder, the authorization, the
challenge, its poll, finalize, the order's poll, the certificate), so nine of these bound
what any order costs the server before its validation and issuance: the figure to set
beside Pebble's CPU per order from ``bench.acme`` (issue #4).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec

from bench.acme import Flow, cpu_seconds
from tests.integration.server import CertforgeServer


async def measure(requests: int, rounds: int) -> list[float]:
    """Server CPU seconds per request, one figure per round."""
    with tempfile.TemporaryDirectory() as tmp:
        server = CertforgeServer(Path(tmp) / "data")
        server.start()
        assert server.proc is not None
        try:
            connector = aiohttp.TCPConnector(ssl=server.ssl_context(), limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"{server.url}/acme/directory") as r:
                    directory = await r.json()
                flow = Flow(session, directory)
                key = ec.generate_private_key(ec.SECP256R1())
                _, headers, _ = await flow.post(
                    directory["newAccount"], {"termsOfServiceAgreed": True}, key, None
                )
                kid = headers["Location"]
                order = {"identifiers": [{"type": "dns", "value": "bench.example.com"}]}
                _, headers, _ = await flow.post(directory["newOrder"], order, key, kid)
                order_url = headers["Location"]
                per_request = []
                for _ in range(rounds):
                    before, started = cpu_seconds(server.proc.pid), time.perf_counter()
                    for _ in range(requests):
                        await flow.post(order_url, None, key, kid)
                    cpu = cpu_seconds(server.proc.pid) - before
                    per_request.append(cpu / requests)
                    print(
                        f"{1e6 * cpu / requests:6.0f} µs of server CPU per POST-as-GET "
                        f"({requests / (time.perf_counter() - started):.0f} requests/s)",
                        flush=True,
                    )
                return per_request
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = sorted(asyncio.run(measure(args.requests, args.rounds)))
    median = figures[len(figures) // 2]
    print(f"median {1e6 * median:.0f} µs; nine requests: {9e3 * median:.1f} ms per order")


if __name__ == "__main__":
    main()
