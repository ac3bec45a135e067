"""``certforge token create|list|revoke`` against the running server: tokens shown once,
listed without secrets, refused (401 problem document) once revoked or expired; bad input is
one line on stderr, exit 1, and nothing created or revoked."""

from __future__ import annotations

import json

import pytest

from tests.integration.server import CertforgeServer
from tests.integration.tokens_api import api, tokens_by_name, wait_until

EVENTS = "/api/v1/admin/events?limit=1"


def test_create_list_revoke_through_the_cli(server: CertforgeServer) -> None:
    created = server.cli(
        "token", "create", "cli-auditor", "--role", "auditor", "--expires", "30d", check=True
    )
    secret = created.stdout.strip()
    assert secret.startswith("cft_")
    assert len(created.stdout.splitlines()) == 1
    assert api(server, "GET", EVENTS, secret)[0] == 200

    listed = server.cli("token", "list", check=True).stdout
    (line,) = [x for x in listed.splitlines() if x.split()[1] == "cli-auditor"]
    token_id, _, roles, state, created_at, _, expires, revoked = line.split()
    assert (roles, state, revoked) == ("auditor", "active", "-")
    assert created_at < expires
    assert secret not in listed

    revoked_line = server.cli("token", "revoke", "cli-auditor", check=True).stdout
    assert revoked_line.strip() == f"{token_id} cli-auditor revoked"
    as_json = json.loads(server.cli("token", "list", "--json", check=True).stdout)
    (entry,) = [t for t in as_json["tokens"] if t["id"] == token_id]
    assert entry["state"] == "revoked"
    assert entry["revoked_at"]
    assert "token" not in entry

    status, problem, ctype = api(server, "GET", EVENTS, secret)
    assert (status, ctype) == (401, "application/problem+json")
    assert problem["type"] == "urn:certforge:problem:unauthorized"
    assert "revoked" in problem["detail"]
    refused = server.cli("request", "list", token=secret)
    assert refused.returncode == 1
    assert "revoked" in refused.stderr


def test_an_expired_token_is_refused(server: CertforgeServer) -> None:
    secret = server.cli(
        "token", "create", "short-lived", "--role", "auditor", "--expires", "2s", check=True
    ).stdout.strip()
    assert api(server, "GET", EVENTS, secret)[0] == 200

    wait_until(lambda: api(server, "GET", EVENTS, secret)[0] == 401, timeout=5)

    status, problem, _ = api(server, "GET", EVENTS, secret)
    assert status == 401
    assert "expired" in problem["detail"]
    (entry,) = tokens_by_name(server, "short-lived")
    assert entry["state"] == "expired"


def test_last_use_is_listed(server: CertforgeServer) -> None:
    secret = server.cli("token", "create", "used", "--role", "auditor", check=True).stdout.strip()
    assert tokens_by_name(server, "used")[0]["last_used_at"] is None
    assert api(server, "GET", EVENTS, secret)[0] == 200

    # Written in the background, within FLUSH_SECONDS (server/tokens.py).
    wait_until(lambda: tokens_by_name(server, "used")[0]["last_used_at"] is not None, 10)


def test_revoking_the_token_in_use_is_allowed(server: CertforgeServer) -> None:
    secret = server.cli(
        "token", "create", "self-revoker", "--role", "administrator", check=True
    ).stdout.strip()

    assert server.cli("token", "revoke", "self-revoker", token=secret).returncode == 0

    assert api(server, "GET", EVENTS, secret)[0] == 401


def test_duplicate_names_get_distinct_ids_and_revoke_only_by_id(server: CertforgeServer) -> None:
    server.cli("token", "create", "twin", check=True)
    server.cli("token", "create", "twin", check=True)
    first, second = (t["id"] for t in tokens_by_name(server, "twin"))
    assert first != second

    ambiguous = server.cli("token", "revoke", "twin")
    assert ambiguous.returncode == 1
    assert "HTTP 409" in ambiguous.stderr
    assert first in ambiguous.stderr
    assert second in ambiguous.stderr
    assert {t["state"] for t in tokens_by_name(server, "twin")} == {"active"}

    assert server.cli("token", "revoke", first).returncode == 0
    assert server.cli("token", "revoke", "twin").returncode == 0  # the one left active
    again = server.cli("token", "revoke", first)
    assert again.returncode == 1
    assert "HTTP 409" in again.stderr


@pytest.mark.parametrize(
    ("args", "status"),
    [
        pytest.param(["--role", "superuser"], "400", id="unknown_role"),
        pytest.param(["--expires", "soon"], "400", id="malformed_duration"),
        pytest.param(["--expires", "30"], "400", id="duration_without_unit"),
        pytest.param(["--expires", "0d"], "400", id="zero_duration"),
    ],
)
def test_bad_create_is_one_line_and_creates_nothing(
    server: CertforgeServer, args: list[str], status: str
) -> None:
    result = server.cli("token", "create", "bad-input", *args)

    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert f"HTTP {status}" in result.stderr
    assert tokens_by_name(server, "bad-input") == []


def states(server: CertforgeServer) -> list[list[str]]:
    """``token list`` without its last-used column, which other tests' requests move."""
    lines = server.cli("token", "list", check=True).stdout.splitlines()
    return [line.split()[:4] for line in lines]


def test_revoking_an_unknown_token_is_404(server: CertforgeServer) -> None:
    before = states(server)

    result = server.cli("token", "revoke", "no-such-token")

    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "HTTP 404" in result.stderr
    assert states(server) == before
    status, problem, ctype = api(
        server, "POST", "/api/v1/admin/tokens/no-such-token/revoke", server.token, {}
    )
    assert (status, ctype, problem["status"]) == (404, "application/problem+json", 404)


def test_an_unknown_token_is_401(server: CertforgeServer) -> None:
    status, problem, ctype = api(server, "GET", EVENTS, "cft_not-a-token")
    assert (status, ctype) == (401, "application/problem+json")
    assert problem["type"] == "urn:certforge:problem:unauthorized"
