"""pebble-challtestsrv (Debian package ``pebble``) as a subprocess: a DNS server answering
127.0.0.1 for every name, with TXT records set over its management API."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.integration.server import free_port


@dataclass
class ChallTestSrv:
    work: Path
    dns_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    http01_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def management(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def start(self) -> None:
        with (self.work / "challtestsrv.log").open("ab") as log:  # the child keeps its own
            self._spawn(log)
        self._wait(time.monotonic() + 20)

    def _spawn(self, log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [
                "pebble-challtestsrv",
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-management",
                f"127.0.0.1:{self.management_port}",
                "-http01",
                f"127.0.0.1:{self.http01_port}",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
            ],
            stdout=log,
            stderr=log,
        )

    def _wait(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.call("clear-txt", {"host": "ready.example.com."})
                return
            except OSError:
                time.sleep(0.1)  # polling a subprocess's readiness
        raise RuntimeError("pebble-challtestsrv did not start")

    def add_caa(self, host: str, tag: str, value: str) -> None:
        body = {"host": host.rstrip(".") + ".", "policies": [{"tag": tag, "value": value}]}
        self.call("add-caa", body)

    def call(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            f"{self.management}/{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def set_txt(self, host: str, value: str) -> None:
        self.call("set-txt", {"host": host.rstrip(".") + ".", "value": value})

    def add_http01(self, token: str, content: str) -> None:
        self.call("add-http01", {"token": token, "content": content})

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=10)
