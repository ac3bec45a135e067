"""A first start says, once and in plain words, where everything is; a start on a taken port
creates nothing."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import CERTFORGE, CertforgeServer, free_port

BANNER = "certforge: first start:"


def log_since(server: CertforgeServer, offset: int) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")[offset:]


def test_first_start_message_once_and_not_again(tmp_path: Path) -> None:
    server = CertforgeServer(tmp_path / "data")
    server.start()
    try:
        first = log_since(server, 0)
    finally:
        assert server.stop() == 0
    assert first.count(BANNER) == 1, first
    lines = first[first.index(BANNER) :].splitlines()[:7]
    text = "\n".join(lines)
    assert all(not line.startswith("{") for line in lines)  # not a JSON log line
    for needed in (
        f"{server.data_dir.resolve()}/root.pem",
        f"{server.data_dir.resolve()}/admin.token",
        server.url,
        server.http_url,
        f"cert list --data-dir {server.data_dir.resolve()}",
        "Stop with Ctrl-C (SIGTERM).",
    ):
        assert needed in text, text

    offset = len(first)
    server.start()
    try:
        again = log_since(server, offset)
    finally:
        assert server.stop() == 0
    assert "certforge is ready" in again
    assert BANNER not in again


def test_first_start_message_once_with_workers(tmp_path: Path) -> None:
    server = CertforgeServer(tmp_path / "data", extra_config="workers = 2")
    server.start()
    try:
        assert len(server.workers()) == 2
        log = log_since(server, 0)
    finally:
        assert server.stop() == 0
    assert log.count(BANNER) == 1, log


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("listener", ["https_listen", "http_listen"])
def test_taken_port_creates_nothing(tmp_path: Path, taken_port: int, listener: str) -> None:
    ports = {"https_listen": free_port(), "http_listen": free_port(), listener: taken_port}
    config = tmp_path / "taken.toml"
    config.write_text(
        "[server]\n" + "".join(f'{key} = "127.0.0.1:{port}"\n' for key, port in ports.items())
    )
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [CERTFORGE, "serve", "--config", str(config), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1] == "certforge: cannot start: Address already in use"
    )
    assert not data_dir.exists() or not [p.name for p in data_dir.iterdir()]
