"""``[server] workers = 2``: two processes share the listeners and the store.

Every answer is a distinct certificate that the store holds, both workers do the work, the
files exit (run by worker 0 only) publishes what worker 1 issued too, a worker that dies is
started again, and SIGTERM stops them all with exit status 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

REQUESTS = 120
CONCURRENCY = 16


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of a process, in clock ticks (proc(5), fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def all_serials(server: CertforgeServer) -> list[str]:
    result = server.curl(
        "-H",
        f"Authorization: Bearer {server.token}",
        f"{server.url}/api/v1/admin/certificates?limit=1000",
    )
    return [c["serial"] for c in json.loads(result.stdout)["certificates"]]


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)  # polling another process's state; there is no event to await
    raise AssertionError("timed out")


async def submit_all(server: CertforgeServer, token: str, csrs: list[bytes]) -> list[int]:
    """POST every CSR over fresh connections (so the kernel spreads them over the workers)."""
    ctx = ssl.create_default_context(cafile=str(server.root))
    queue = list(csrs)
    statuses: list[int] = []

    async def worker() -> None:
        while queue:
            csr = queue.pop()
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
                session.post(
                    f"{server.url}/api/v1/requests",
                    data=csr,
                    headers={
                        "Content-Type": "application/pkcs10",
                        "Authorization": f"Bearer {token}",
                    },
                ) as resp,
            ):
                statuses.append(resp.status)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    tmp = tmp_path_factory.mktemp("workers")
    published = tmp / "published"
    srv = CertforgeServer(
        tmp / "data",
        extra_config=f'workers = 2\n\n[[exits]]\ntype = "files"\ndirectory = "{published}"\n',
    )
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.proc.kill()
            srv.proc.wait()


def test_two_workers_issue_distinct_certificates_and_share_the_work(
    server: CertforgeServer,
) -> None:
    assert server.proc is not None
    workers = children(server.proc.pid)
    assert len(workers) == 2
    before = {pid: cpu_ticks(pid) for pid in workers}
    token = server.cli("token", "create", "workers", check=True).stdout.strip()
    csrs = [make_csr(f"w{i}.example.test") for i in range(REQUESTS)]
    statuses = asyncio.run(submit_all(server, token, csrs))
    assert statuses == [201] * REQUESTS
    serials = all_serials(server)
    assert len(serials) == len(set(serials)) >= REQUESTS
    # Both workers served: each spent CPU on the requests.
    assert all(cpu_ticks(pid) - before[pid] >= 5 for pid in workers), "one worker sat idle"


def test_metrics_count_every_worker(server: CertforgeServer) -> None:
    """Whichever worker answers /metrics, it reports the requests both workers served."""
    for _ in range(4):  # fresh connections, so both workers answer some of these
        text = server.curl(f"{server.url}/metrics").stdout.decode()
        issued = [
            line
            for line in text.splitlines()
            if line.startswith("certforge_enrollments_total")
            and 'protocol="rest"' in line
            and 'outcome="issued"' in line
        ]
        assert len(issued) == 1, text
        assert float(issued[0].split()[-1]) >= REQUESTS


def test_worker_0_publishes_what_every_worker_issued(server: CertforgeServer) -> None:
    published = server.data_dir.parent / "published" / "certs"
    wanted = {f"{int(serial, 16):x}.pem" for serial in all_serials(server)}
    wait_for(lambda: wanted <= {p.name for p in published.glob("*.pem")})


def test_a_dead_worker_is_started_again(server: CertforgeServer) -> None:
    assert server.proc is not None
    first, second = children(server.proc.pid)
    os.kill(second, signal.SIGKILL)
    pid = server.proc.pid
    wait_for(lambda: len(children(pid)) == 2 and second not in children(pid))
    for _ in range(10):  # fresh connections, spread over both workers
        assert server.curl(f"{server.url}/healthz").stdout.strip() == b"ok"
    assert first in children(pid)


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    srv = CertforgeServer(tmp_path / "data", extra_config="workers = 2")
    srv.start()
    assert srv.proc is not None
    workers = children(srv.proc.pid)
    assert len(workers) == 2
    srv.kill()  # SIGKILL to the parent only
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers))


def test_a_taken_port_is_refused_with_workers(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = CertforgeServer(tmp_path / "data", extra_config="workers = 2")
        srv.https_port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited with 1"):
            srv.start(timeout=30)


def test_sigterm_stops_every_worker_with_status_0(server: CertforgeServer) -> None:
    assert server.proc is not None
    workers = children(server.proc.pid)
    assert server.stop() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
