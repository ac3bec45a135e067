"""Starting with several workers (issue 19): a start never hangs, whatever locks the parent's
threads held when it started its workers; a worker that does not become ready is named with
the step it is at and replaced; nobody accepts a connection it will not answer; and many
SIGTERM and SIGKILL restarts, under load, lose nothing that was acknowledged.

The parent really has used threads before it starts its workers (the first start's
preparation signs on executor threads). ``forkchurn/sitecustomize.py`` makes the worst case
frequent: threads that keep taking OpenSSL's thread-registry lock in the parent. A worker
forked from it hung in its first signature within a few starts; an exec'ed one cannot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.integration.server import CERTFORGE, CertforgeServer
from tests.unit.factories import make_csr

FORKCHURN = str(Path(__file__).parent / "forkchurn")
READY_WITHIN = 10.0  # seconds; a start takes about 1 s here
CHURNED = 20  # starts of the 100 with OpenSSL's thread lock churned in the parent


def alternating(count: int) -> list[int]:
    """Worker counts for ``count`` starts: 2 and 3 in turn, on one data directory."""
    return [2 + i % 2 for i in range(count)]


def churned(data_dir: Path, workers: int, extra: str = "") -> CertforgeServer:
    return CertforgeServer(
        data_dir,
        extra_config=f"workers = {workers}\n{extra}",
        env={"PYTHONPATH": FORKCHURN},
    )


def plain(data_dir: Path, workers: int) -> CertforgeServer:
    return CertforgeServer(data_dir, extra_config=f"workers = {workers}\n")


def errors_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if '"level": "error"' in line]


def test_100_starts_with_locks_held_in_the_parent_are_each_ready_within_10_s(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "data.log"
    for i, workers in enumerate(alternating(100)):
        # The churn reproduces the hang within a few starts on a forking supervisor, and
        # costs the parent its GIL: the first CHURNED starts have it, the rest start plain.
        server = churned(data, workers) if i < CHURNED else plain(data, workers)
        started = time.monotonic()
        server.start(timeout=READY_WITHIN)
        assert len(server.workers()) == workers
        # Every worker answers: fresh connections are spread over all of them.
        for _ in range(2 * workers):
            assert server.curl(f"{server.url}/healthz").stdout.strip() == b"ok", i
        assert time.monotonic() - started < READY_WITHIN + 2 * workers
        assert server.stop() == 0, f"start {i}:\n{server.log_tail()}"
    assert errors_in(log.read_text()) == []


async def hammer_then_kill(
    server: CertforgeServer, token: str, names: list[str], kill_after: int
) -> list[dict[str, str]]:
    """Issue through REST on 8 connections; SIGKILL everything once ``kill_after`` answers
    arrived, with requests still in flight. Returns every answer acknowledged (201)."""
    received: list[dict[str, str]] = []
    ctx = ssl.create_default_context(cafile=str(server.root))
    pending = list(names)
    killed = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            while pending and not killed.is_set():
                csr = make_csr(pending.pop())
                try:
                    async with session.post(
                        f"{server.url}/api/v1/requests",
                        data=csr,
                        headers={
                            "Content-Type": "application/pkcs10",
                            "Authorization": f"Bearer {token}",
                        },
                    ) as resp:
                        if resp.status == 201:
                            received.append(await resp.json())
                        else:
                            assert resp.status < 500, await resp.text()
                except aiohttp.ClientError:
                    return  # killed under us
                if len(received) >= kill_after and not killed.is_set():
                    killed.set()
                    server.kill_all()

    await asyncio.gather(*(client() for _ in range(8)))
    if not killed.is_set():
        server.kill_all()
    return received


async def stored(server: CertforgeServer, serials: list[str]) -> dict[str, dict[str, str]]:
    ctx = ssl.create_default_context(cafile=str(server.root))
    headers = {"Authorization": f"Bearer {server.token}"}
    found: dict[str, dict[str, str]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=8)) as s:

        async def one(serial: str) -> None:
            async with s.get(
                f"{server.url}/api/v1/admin/certificates/{serial}", headers=headers
            ) as resp:
                if resp.status == 200:
                    found[serial] = await resp.json()

        await asyncio.gather(*(one(serial) for serial in serials))
    return found


def test_50_sigkills_under_load_then_restarts_lose_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = plain(data, 2)
    server.start(timeout=READY_WITHIN)
    token = server.cli("token", "create", "soak", check=True).stdout.strip()
    server.kill_all()
    acknowledged: list[dict[str, str]] = []
    for cycle, workers in enumerate(alternating(50)):
        server = plain(data, workers)
        server.start(timeout=READY_WITHIN)
        names = [f"c{cycle}-{i}.soak.example.test" for i in range(200)]
        acknowledged += asyncio.run(hammer_then_kill(server, token, names, kill_after=12))
    assert len(acknowledged) >= 50 * 12

    server = plain(data, 2)
    server.start(timeout=READY_WITHIN)
    try:
        serials = [a["serial"] for a in acknowledged]
        assert len(set(serials)) == len(serials), "a serial was issued twice"
        found = asyncio.run(stored(server, serials))
        lost = [a["serial"] for a in acknowledged if a["serial"] not in found]
        assert lost == [], f"{len(lost)} acknowledged certificates are not in the store"
        for answer in acknowledged:
            assert found[answer["serial"]]["certificate"] == answer["certificate"]
    finally:
        assert server.stop() == 0
    assert server.log_path is not None
    assert errors_in(server.log_path.read_text()) == []


def wait_for_workers(server: CertforgeServer, count: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pids := server.workers()) == count:
            return pids
        time.sleep(0.005)  # polling another process's children; there is no event to await
    raise AssertionError("the workers did not start")


def start_without_waiting(server: CertforgeServer) -> None:
    """``CertforgeServer.start`` without waiting for /healthz."""
    server.start(timeout=60)  # a first start creates the data directory
    assert server.stop() == 0
    config = server.data_dir.parent / f"{server.data_dir.name}.toml"
    config.write_text(server.config_text())
    assert server.log_path is not None
    with server.log_path.open("ab") as log:
        server.proc = subprocess.Popen(
            [CERTFORGE, "serve", "--config", str(config)], stdout=log, stderr=log
        )


def test_a_worker_that_does_not_become_ready_is_named_and_replaced(tmp_path: Path) -> None:
    server = CertforgeServer(
        tmp_path / "data", extra_config="workers = 2\nworker_start_timeout = 3.0\n"
    )
    start_without_waiting(server)
    try:
        stuck, other = wait_for_workers(server, 2)
        os.kill(stuck, signal.SIGSTOP)  # it will never report ready
        server.wait_ready(READY_WITHIN)  # the other worker serves meanwhile
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and stuck in server.workers():
            time.sleep(0.1)  # polling the supervisor's children; there is no event to await
        workers = wait_for_workers(server, 2)
        assert stuck not in workers
        assert other in workers
        assert server.log_path is not None
        lines = [
            json.loads(line)
            for line in server.log_path.read_text().splitlines()
            if "not ready after" in line
        ]
        assert len(lines) == 1, lines
        assert lines[0]["msg"].startswith("worker ")
        assert "still " in lines[0]["msg"]
        assert lines[0]["waiting_for"]
        # The replacement serves too.
        for _ in range(6):
            assert server.curl(f"{server.url}/healthz").stdout.strip() == b"ok"
    finally:
        assert server.stop() == 0


def test_no_connection_is_accepted_while_no_worker_can_answer(tmp_path: Path) -> None:
    server = CertforgeServer(
        tmp_path / "data", extra_config="workers = 2\nworker_start_timeout = 30.0\n"
    )
    start_without_waiting(server)
    try:
        workers = wait_for_workers(server, 2)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # neither will reach its listeners
        time.sleep(0.5)
        for port in (server.https_port, server.http_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        server.wait_ready(READY_WITHIN)
    finally:
        assert server.stop() == 0
