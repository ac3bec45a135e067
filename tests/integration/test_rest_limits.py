"""Anonymous REST submissions are kept until an administrator decides, so anyone could fill
the store and the approval queue: they are counted per client address and hour
(``[rest] anonymous_requests_per_hour``), and a certificate request is at most 32 KiB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

LIMIT = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = CertforgeServer(
        tmp_path_factory.mktemp("rest") / "data",
        extra_config=f"\n[rest]\nanonymous_requests_per_hour = {LIMIT}\n",
    )
    srv.start()
    yield srv
    assert srv.stop() == 0


def submit(server: CertforgeServer, work: Path, csr: bytes, *headers: str) -> tuple[int, str, str]:
    path = work / "req.der"
    path.write_bytes(csr)
    out = server.curl(
        "-D",
        "-",
        "-H",
        "Content-Type: application/pkcs10",
        *[arg for h in headers for arg in ("-H", h)],
        "--data-binary",
        f"@{path}",
        f"{server.url}/api/v1/requests",
    )
    head, _, body = out.stdout.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    return status, head, body


def pending(server: CertforgeServer) -> int:
    out = server.curl(
        "-H",
        f"Authorization: Bearer {server.token}",
        f"{server.url}/api/v1/admin/requests?status=pending&limit=1000",
    )
    return len(json.loads(out.stdout)["requests"])


def test_anonymous_requests_beyond_the_hourly_limit_are_429(
    limited: CertforgeServer, work: Path
) -> None:
    for i in range(LIMIT):
        status, _, _ = submit(limited, work, make_csr(f"anon{i}.example.test"))
        assert status == 202
    status, head, body = submit(limited, work, make_csr("one-too-many.example.test"))
    assert status == 429
    assert "retry-after:" in head.lower()
    assert "application/problem+json" in head
    assert "anonymous requests" in json.loads(body)["detail"]
    assert pending(limited) == LIMIT  # the refused one was not recorded
    # A requester with a token is not counted with the anonymous ones.
    token = limited.cli("token", "create", "limits", check=True).stdout.strip()
    status, _, _ = submit(
        limited, work, make_csr("with-token.example.test"), f"Authorization: Bearer {token}"
    )
    assert status == 201


def test_a_padded_request_is_refused_and_not_kept(limited: CertforgeServer, work: Path) -> None:
    token = limited.cli("token", "create", "padded", check=True).stdout.strip()
    before = pending(limited)
    status, _, body = submit(
        limited,
        work,
        make_csr("padded.example.test", padding=40_000),
        f"Authorization: Bearer {token}",
    )
    assert status == 400
    assert "32 KiB" in json.loads(body)["detail"]
    assert pending(limited) == before
    assert '"level": "error"' not in (limited.log_path or Path("/dev/null")).read_text()
