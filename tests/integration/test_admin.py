"""The admin command line against the running server: every contract command, with --json."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.integration.openssl import make_csr
from tests.integration.server import CERTFORGE, CertforgeServer


def issue(server: CertforgeServer, work: Path, name: str) -> str:
    _, csr = make_csr(work, name)
    rid, status = server.cli("request", "submit", str(csr), check=True).stdout.split()
    assert status == "pending"
    server.cli("request", "approve", rid, check=True)
    body = json.loads(server.cli("request", "get", rid, "--json", check=True).stdout)
    return str(body["serial"])


def test_revoke_then_revoke_again_is_refused(server: CertforgeServer, work: Path) -> None:
    serial = issue(server, work, "revokee")
    colons = ":".join(
        serial.upper().zfill(len(serial) + len(serial) % 2)[i : i + 2]
        for i in range(0, len(serial) + len(serial) % 2, 2)
    )
    out = server.cli("cert", "revoke", colons, "--reason", "keyCompromise", check=True)
    assert out.stdout.split() == [serial, "revoked", "keyCompromise"]
    again = server.cli("cert", "revoke", serial)
    assert again.returncode == 1
    assert "revoked" in again.stderr
    listed = json.loads(
        server.cli("cert", "list", "--status", "revoked", "--json", check=True).stdout
    )
    assert serial in {c["serial"] for c in listed["certificates"]}


def test_every_contract_command_speaks_json(server: CertforgeServer, work: Path) -> None:
    serial = issue(server, work, "jsonny")
    _, csr = make_csr(work, "jsonsubmit")
    submitted = json.loads(server.cli("request", "submit", str(csr), "--json", check=True).stdout)
    assert submitted["status"] == "pending"
    listed = json.loads(server.cli("request", "list", "--json", check=True).stdout)
    assert submitted["id"] in {r["id"] for r in listed["requests"]}
    denied = json.loads(server.cli("request", "deny", submitted["id"], "--json", check=True).stdout)
    assert denied["status"] == "denied"
    certs = json.loads(server.cli("cert", "list", "--json", check=True).stdout)
    assert serial in {c["serial"] for c in certs["certificates"]}
    revoked = json.loads(server.cli("cert", "revoke", serial, "--json", check=True).stdout)
    assert revoked["status"] == "revoked"


def test_acme_eab_create_prints_kid_and_key(server: CertforgeServer) -> None:
    out = server.cli("acme", "eab", "create", check=True).stdout.split()
    assert len(out) == 2 and out[0].startswith("kid-")
    assert len(base64.urlsafe_b64decode(out[1] + "=")) == 32
    refused = server.cli("acme", "eab", "create", token="not-a-token")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr


def test_unreachable_server_is_one_line(server: CertforgeServer) -> None:
    result = subprocess.run(
        [
            CERTFORGE,
            "request",
            "list",
            "--url",
            "https://127.0.0.1:1",
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1


def test_scep_challenge_prints_one_fresh_password(server: CertforgeServer) -> None:
    first = server.cli("scep", "challenge", check=True).stdout
    second = server.cli("scep", "challenge", "--profile", "device", check=True).stdout
    assert len(first.splitlines()) == 1 and len(second.splitlines()) == 1
    assert first != second and len(first.strip()) >= 22
    body = json.loads(server.cli("scep", "challenge", "--json", check=True).stdout)
    assert set(body) >= {"challenge", "expires"}


def test_scep_challenge_for_unknown_profile_is_refused(server: CertforgeServer) -> None:
    result = server.cli("scep", "challenge", "--profile", "nope")
    assert result.returncode == 1
    assert "nope" in result.stderr


def test_scep_challenge_api_checks_its_body(server: CertforgeServer) -> None:
    auth = ["-H", f"Authorization: Bearer {server.token}", "-H", "Content-Type: application/json"]
    url = f"{server.url}/api/v1/admin/scep/challenges"
    ok = server.curl(*auth, "-d", '{"lifetime_seconds": 60}', url)
    assert json.loads(ok.stdout)["challenge"]
    too_long = ('{"lifetime_seconds": 9007199254740993}', '{"lifetime_seconds": -99999999999}')
    for bad in ('{"lifetime_seconds": "x"}', '{"lifetime_seconds": 0}', '{"profile": 3}', "[]",
                *too_long):  # fmt: skip
        out = server.curl("-w", "%{http_code}", "-o", "/dev/null", *auth, "-d", bad, url)
        assert out.stdout == b"400", bad
    anonymous = server.curl("-w", "%{http_code}", "-o", "/dev/null", "-X", "POST", url)
    assert anonymous.stdout == b"401"


def test_times_in_admin_requests_need_their_offset(server: CertforgeServer, work: Path) -> None:
    """An invalidity date or an expiry bound that is not an ISO 8601 time with its offset is
    the client's error (400), never a server error; nothing is revoked by a refused request."""
    serial = issue(server, work, "invalid-since")
    auth = ["-H", f"Authorization: Bearer {server.token}", "-H", "Content-Type: application/json"]
    revoke = f"{server.url}/api/v1/admin/certificates/{serial}/revoke"
    for bad in (
        '{"invalidity_date": 5}',
        '{"invalidity_date": ["2026-01-01T00:00:00Z"]}',
        '{"invalidity_date": "2026-01-01T00:00:00"}',
        '{"invalidity_date": "yesterday"}',
    ):
        out = server.curl("-w", "%{http_code}", "-o", "/dev/null", *auth, "-d", bad, revoke)
        assert out.stdout == b"400", bad
    listed = f"{server.url}/api/v1/admin/certificates?expires_before=2030-01-01T00:00:00"
    out = server.curl("-w", "%{http_code}", "-o", "/dev/null", *auth[:2], listed)
    assert out.stdout == b"400"
    stored = json.loads(server.cli("cert", "show", serial, "--json", check=True).stdout)
    assert stored["status"] == "valid"
    good = '{"reason": "keyCompromise", "invalidity_date": "2026-11-01T00:00:00+01:00"}'
    done = json.loads(server.curl(*auth, "-d", good, revoke).stdout)
    assert done["status"] == "revoked"


def test_paging_beyond_any_integer_is_the_clients_error(server: CertforgeServer) -> None:
    auth = ["-H", f"Authorization: Bearer {server.token}"]
    for path in ("requests", "certificates"):
        url = f"{server.url}/api/v1/admin/{path}?offset={2**70}"
        out = server.curl("-w", "%{http_code}", "-o", "/dev/null", *auth, url)
        assert out.stdout == b"400", path
