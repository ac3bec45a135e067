"""Two servers started at the same moment on one new data directory (servers sharing it, say
on a volume): both end up with the one CA and admin token the first created, and a TLS
certificate that chains to it. Before the start lock, one try in three to six gave two roots
and a server whose TLS certificate chained to neither file."""

from __future__ import annotations

import ssl
import threading
import urllib.request
from pathlib import Path

from tests.integration.server import CertforgeServer

TRIES = 8


def _start_together(servers: list[CertforgeServer]) -> list[str]:
    errors: list[str] = []

    def start(server: CertforgeServer) -> None:
        try:
            server.start()
        except RuntimeError as exc:
            errors.append(str(exc)[-500:])

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_servers_starting_together_share_one_ca(tmp_path: Path) -> None:
    for attempt in range(TRIES):
        data = tmp_path / f"data{attempt}"
        data.mkdir()
        alias = tmp_path / f"alias{attempt}"  # the same directory; each server its own config
        alias.symlink_to(data)
        servers = [CertforgeServer(data), CertforgeServer(alias)]
        try:
            assert not _start_together(servers)
            context = ssl.create_default_context(cafile=str(data / "root.pem"))
            for server in servers:
                with urllib.request.urlopen(f"{server.url}/healthz", context=context) as resp:
                    assert resp.status == 200  # its TLS certificate chains to root.pem
            assert servers[0].token == servers[1].token
        finally:
            for server in servers:
                if server.proc is not None:
                    assert server.stop() == 0
