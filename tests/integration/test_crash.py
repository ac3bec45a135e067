"""SIGKILL with requests in flight, restart, and every certificate a client received is in
the store, with no serial issued twice."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp

from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

CONCURRENCY = 16
KILL_AFTER = 150


async def hammer(server: CertforgeServer, token: str, csrs: list[bytes]) -> list[dict[str, str]]:
    """Submit until KILL_AFTER answers arrived, then SIGKILL the server mid-flight."""
    received: list[dict[str, str]] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for csr in csrs:
        queue.put_nowait(csr)
    killed = asyncio.Event()
    ctx = ssl.create_default_context(cafile=str(server.root))

    async def worker(session: aiohttp.ClientSession) -> None:
        while not killed.is_set() and not queue.empty():
            csr = queue.get_nowait()
            try:
                async with session.post(
                    f"{server.url}/api/v1/requests",
                    data=csr,
                    headers={
                        "Content-Type": "application/pkcs10",
                        "Authorization": f"Bearer {token}",
                    },
                    ssl=ctx,
                ) as resp:
                    if resp.status == 201:
                        received.append(await resp.json())
            except aiohttp.ClientError:
                return  # the server is gone
            if len(received) >= KILL_AFTER and not killed.is_set():
                killed.set()
                server.kill()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return received


def test_sigkill_loses_no_issued_certificate(tmp_path: Path) -> None:
    server = CertforgeServer(tmp_path / "data")
    server.start()
    token = server.cli("token", "create", "crash", check=True).stdout.strip()
    received = asyncio.run(
        hammer(server, token, [make_csr(f"crash{i}.example.test") for i in range(2000)])
    )
    assert server.proc is None, "the server was not killed mid-flight"
    assert len(received) >= KILL_AFTER

    server.start()
    try:
        serials = [r["serial"] for r in received]
        assert len(set(serials)) == len(serials)
        for answer in received:
            out = server.curl(
                "-H",
                f"Authorization: Bearer {server.token}",
                f"{server.url}/api/v1/admin/certificates/{answer['serial']}",
            )
            stored = json.loads(out.stdout)
            assert stored["certificate"] == answer["certificate"], answer["serial"]
            assert stored["request_id"] == answer["id"]
        all_serials = []
        cursor = ""
        while True:
            page = json.loads(
                server.curl(
                    "-H",
                    f"Authorization: Bearer {server.token}",
                    f"{server.url}/api/v1/admin/certificates?limit=1000{cursor}",
                ).stdout
            )
            all_serials += [c["serial"] for c in page["certificates"]]
            if page["next"] is None:
                break
            cursor = f"&cursor={page['next']}"
        assert len(all_serials) == len(set(all_serials))
        assert set(serials) <= set(all_serials)
    finally:
        assert server.stop() == 0
