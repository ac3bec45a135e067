"""Exit modules against the real server: the files exit publishes what is issued, and a
webhook that was down when the server was SIGKILLed receives the event after the restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.openssl import make_csr
from tests.integration.server import CertforgeServer, free_port

SECRET = "hook-secret"


class Receiver:
    """A webhook endpoint on loopback that records what it is sent while ``up``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.up = False
        self.received: list[dict[str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not receiver.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                assert self.headers["X-Certforge-Signature"] == expected
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kinds(self) -> list[str]:
        return [str(e["kind"]) for e in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)  # polling another process's side effect
    raise AssertionError("condition not reached in time")


def test_events_reach_exits_at_least_once_across_sigkill(
    tmp_path: Path, receiver: Receiver
) -> None:
    published = tmp_path / "published"
    exits = f"""
[[exits]]
type = "files"
directory = "{published}"

[[exits]]
type = "webhook"
url = "http://127.0.0.1:{receiver.port}/hook"
secret = "{SECRET}"
timeout_seconds = 2
"""
    server = CertforgeServer(tmp_path / "data", extra_config=exits)
    server.start()
    # The webhook is down: the issued event stays owed to it while the files exit delivers.
    _, csr = make_csr(tmp_path, "hooked")
    rid, status = server.cli("request", "submit", str(csr), check=True).stdout.split()
    assert status == "pending"
    server.cli("request", "approve", rid, check=True)
    serial = json.loads(server.cli("request", "get", rid, "--json", check=True).stdout)["serial"]
    wait_for(lambda: (published / "certs" / f"{serial}.pem").exists())
    server.kill()

    receiver.up = True
    server.start()
    try:

        def mine() -> list[object]:
            return [e["kind"] for e in receiver.received if e["request_id"] == rid]

        wait_for(lambda: "issued" in mine())
        assert mine() == ["pending", "approved", "issued"]
        issued = next(
            e for e in receiver.received if e["request_id"] == rid and e["kind"] == "issued"
        )
        assert issued["serial"] == serial
    finally:
        assert server.stop() == 0
