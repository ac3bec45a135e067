"""SIGKILL with ACME clients in flight, restart: every certificate a client downloaded is
downloaded again the same, every order a client saw finalized ends valid, and no order or
request answers with a server error (RFC 8555 resources kept in the store survive)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.integration.server import CertforgeServer
from tests.interop.acme.challtestsrv import ChallTestSrv
from tests.interop.acme.client import Client, b64, make_csr
from tests.interop.acme.conftest import acme_server, http01_port
from tests.interop.acme.responder import http01_responder

CLIENTS = 8
KILL_AFTER = 30  # certificates downloaded before the kill


@dataclass
class Seen:
    """What one client saw of one order before the kill."""

    client: Client
    order_url: str
    finalized: bool = False
    certificate: bytes | None = None


def _orders_until_killed(
    server: CertforgeServer,
    answers: dict[str, str],
    seen: list[Seen],
    killed: threading.Event,
    worker: int,
) -> None:
    n = 0
    while not killed.is_set():
        n += 1
        name = f"c{worker}-{n}.crash.example.com"
        try:
            client = Client(f"{server.url}/acme/directory", server.ssl_context())
            client.register()
            resp = client.new_order(name)
            order = resp.json()
            entry = Seen(client, resp.headers["Location"])
            seen.append(entry)
            authz_url = order["authorizations"][0]
            challenge = next(
                c for c in client.post(authz_url).json()["challenges"] if c["type"] == "http-01"
            )
            answers[challenge["token"]] = client.key_authorization(challenge["token"])
            client.post(challenge["url"], {})
            client.poll(authz_url, ("valid", "invalid"))
            csr, _ = make_csr([name])
            if client.post(order["finalize"], {"csr": b64(csr)}).status == 200:
                entry.finalized = True
            done = client.poll(entry.order_url, ("valid", "invalid"))
            pem = client.post(done["certificate"]).body
            if b"BEGIN CERTIFICATE" in pem:
                entry.certificate = pem
        except (OSError, KeyError, ValueError):
            return  # the server is gone
        if sum(1 for s in seen if s.certificate) >= KILL_AFTER and not killed.is_set():
            killed.set()
            server.kill()


def test_sigkill_with_acme_clients_in_flight(tmp_path: Path, challtestsrv: ChallTestSrv) -> None:
    server = acme_server(tmp_path, challtestsrv)
    port = http01_port(server)
    answers: dict[str, str] = {}
    seen: list[Seen] = []
    killed = threading.Event()
    with http01_responder(port, answers), ThreadPoolExecutor(CLIENTS) as pool:
        for worker in range(CLIENTS):
            pool.submit(_orders_until_killed, server, answers, seen, killed, worker)
        deadline = time.monotonic() + 120
        while not killed.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)  # the clients kill the server themselves
    assert killed.is_set() and server.proc is None, "the server was not killed mid-flight"

    server.start()
    try:
        downloaded = [s for s in seen if s.certificate]
        assert len(downloaded) >= KILL_AFTER
        for entry in seen:
            resp = entry.client.post(entry.order_url)
            assert resp.status == 200, resp.body
            order = resp.json()
            if entry.finalized or entry.certificate:
                # Finalize answered: the request is recorded, so the order ends valid.
                assert order["status"] == "valid", order
            if entry.certificate:
                again = entry.client.post(order["certificate"])
                assert again.body == entry.certificate
            else:
                assert order["status"] in ("pending", "ready", "processing", "valid"), order
    finally:
        assert server.stop() == 0, server.log_tail()
