"""Tokens with ``[server] workers = 2``: a revocation is seen by both workers, and by another
server sharing the store, within a second; the bootstrap token rotates; and every role meets
every admin endpoint (allowed: anything but 403; refused: 403 problem document and nothing
changed)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.config import load_config
from server.frontend import by_prefix, installed, mount_frontends
from tests.integration.openssl import make_csr
from tests.integration.server import CertforgeServer
from tests.integration.test_workers import children, cpu_ticks
from tests.integration.tokens_api import api, wait_until

EVENTS = "/api/v1/admin/events?limit=1"
ROLES = ("administrator", "operator", "auditor", "requester")
PROBERS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = CertforgeServer(tmp_path_factory.mktemp("tokens-workers") / "data", "workers = 2")
    srv.start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.log_tail()


def create(server: CertforgeServer, name: str, role: str) -> str:
    return server.cli("token", "create", name, "--role", role, check=True).stdout.strip()


async def probe(server: CertforgeServer, token: str, until: float) -> list[tuple[float, int]]:
    """``(sent at, status)`` of requests on fresh connections, PROBERS at a time, until
    ``until`` (monotonic)."""
    ctx = ssl.create_default_context(cafile=str(server.root))
    seen: list[tuple[float, int]] = []

    async def one_prober() -> None:
        while (sent := time.monotonic()) < until:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
                session.get(
                    server.url + EVENTS, headers={"Authorization": f"Bearer {token}"}
                ) as resp,
            ):
                seen.append((sent, resp.status))

    await asyncio.gather(*(one_prober() for _ in range(PROBERS)))
    return seen


async def revoke_while_probing(
    server: CertforgeServer, token: str
) -> tuple[float, float, list[tuple[float, int]]]:
    """Probe for 1 s (both workers hold the token fresh), revoke, probe 2 s more: when the
    revocation was sent and answered, and every probe."""
    start = time.monotonic()
    probing = asyncio.create_task(probe(server, token, until=start + 3.0))
    await asyncio.sleep(1.0)
    sent_at = time.monotonic()
    status, body, _ = await asyncio.to_thread(
        api, server, "POST", "/api/v1/admin/tokens/victim/revoke", server.token, {}
    )
    answered_at = time.monotonic()
    assert status == 200, body
    return sent_at, answered_at, await probing


def test_a_revoked_token_is_refused_by_every_worker_within_a_second(
    server: CertforgeServer,
) -> None:
    assert server.proc is not None
    workers = children(server.proc.pid)
    token = create(server, "victim", "auditor")
    before = {pid: cpu_ticks(pid) for pid in workers}

    sent_at, answered_at, seen = asyncio.run(revoke_while_probing(server, token))

    assert all(cpu_ticks(pid) > before[pid] for pid in workers), "a worker answered nothing"
    assert {status for _, status in seen} <= {200, 401}
    last_accepted = max(sent for sent, status in seen if status == 200)
    assert last_accepted - answered_at < 1.0
    late = [status for sent, status in seen if sent - answered_at > 1.0]
    assert late
    assert set(late) == {401}
    print(
        f"last accepted {(last_accepted - sent_at) * 1000:.0f} ms after the revocation was"
        f" sent, {(last_accepted - answered_at) * 1000:.0f} ms after its answer"
        f" ({(answered_at - sent_at) * 1000:.0f} ms later); {len(seen)} probes"
    )


def test_a_server_sharing_the_store_refuses_a_revoked_token_within_a_second(
    server: CertforgeServer, tmp_path: Path
) -> None:
    alias = tmp_path / "alias"  # the same data directory, so the same SQLite store
    alias.symlink_to(server.data_dir)
    other = CertforgeServer(alias)
    other.start()
    try:
        token = create(server, "shared-victim", "auditor")
        assert api(other, "GET", EVENTS, token)[0] == 200  # the other server's view

        status, body, _ = api(
            server, "POST", "/api/v1/admin/tokens/shared-victim/revoke", server.token, {}
        )
        assert status == 200, body

        wait_until(lambda: api(other, "GET", EVENTS, token)[0] == 401, timeout=1.0)
        assert [api(other, "GET", EVENTS, token)[0] for _ in range(5)] == [401] * 5
    finally:
        assert other.stop() == 0, other.log_tail()


def test_the_bootstrap_token_rotates(server: CertforgeServer) -> None:
    path = server.data_dir / "admin.token"
    old = server.token

    result = server.cli("token", "rotate-bootstrap", check=True)

    new = server.token
    assert new != old
    assert path.stat().st_mode & 0o777 == 0o600
    assert str(path) in result.stdout
    wait_until(lambda: api(server, "GET", EVENTS, old)[0] == 401, timeout=1.0)
    for _ in range(10):  # fresh connections: both workers
        assert api(server, "GET", EVENTS, old)[0] == 401
        assert api(server, "GET", EVENTS, new)[0] == 200
    listed = json.loads(server.cli("token", "list", "--json", check=True).stdout)["tokens"]
    states = [t["state"] for t in listed if t["name"] == "bootstrap-admin"]
    assert states == ["revoked", "active"]


# ---------------------------------------------------------------- roles
@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # under /api/v1/admin, with {rid}, {serial}, {est_user}, {token} to fill
    allowed: frozenset[str]
    body: dict[str, Any] | None = None


READERS = frozenset({"administrator", "operator", "auditor"})
ACTORS = frozenset({"administrator", "operator"})
ADMIN = frozenset({"administrator"})

# The README's roles table, endpoint by endpoint.
ENDPOINTS = [
    Endpoint("GET", "/requests", READERS),
    Endpoint("GET", "/requests/{rid}", READERS),
    Endpoint("POST", "/requests/{rid}/approve", ACTORS, {}),
    Endpoint("POST", "/requests/{rid}/deny", ACTORS, {}),
    Endpoint("GET", "/certificates", READERS),
    Endpoint("GET", "/certificates/{serial}", READERS),
    Endpoint("POST", "/certificates/{serial}/revoke", ACTORS, {"reason": "certificateHold"}),
    Endpoint("POST", "/certificates/{serial}/unrevoke", ACTORS, {}),
    Endpoint("GET", "/events", READERS),
    Endpoint("POST", "/crl/publish", ACTORS, {}),
    Endpoint("POST", "/scep/challenges", ACTORS, {}),
    Endpoint("POST", "/cmp/secrets", ACTORS, {}),
    Endpoint("GET", "/est/users", READERS),
    Endpoint("POST", "/est/users", ACTORS, {"name": "made-by-role"}),
    Endpoint("DELETE", "/est/users/{est_user}", ACTORS),
    Endpoint("POST", "/acme/eab", ACTORS, {}),
    Endpoint("POST", "/acme/renewal", ACTORS, {"serial": "{serial}"}),
    Endpoint("GET", "/tokens", frozenset({"administrator", "auditor"})),
    Endpoint("POST", "/tokens", ADMIN, {"name": "made-by-role", "roles": ["administrator"]}),
    Endpoint("POST", "/tokens/{token}/revoke", ADMIN, {}),
    Endpoint("POST", "/tokens/bootstrap/rotate", ADMIN, {}),
]


def test_the_table_names_every_admin_endpoint() -> None:
    routes = {
        (route.method, mount.prefix.rstrip("/") + route.resource.canonical)
        for mount in by_prefix(mount_frontends(load_config(None), installed()))
        if mount.prefix.startswith("/api/v1/admin/")
        for route in mount.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    table = {(e.method, "/api/v1/admin" + e.path) for e in ENDPOINTS}
    normalise = {"{rid}": "{request_id}", "{est_user}": "{name}", "{token}": "{ref}"}
    for short, long in normalise.items():
        table = {(m, p.replace(short, long)) for m, p in table}
    assert table == routes


def fingerprint(server: CertforgeServer, admin: str) -> list[Any]:
    """What an admin call could change, as the administrator reads it (last use aside: it
    is written in the background)."""
    seen: list[Any] = []
    for path in ("/requests", "/certificates", "/events?limit=1000", "/est/users", "/tokens"):
        status, body, _ = api(server, "GET", "/api/v1/admin" + path, admin)
        assert status == 200, body
        for token in body.get("tokens", []):
            token.pop("last_used_at")
        seen.append(body)
    return seen


@pytest.fixture(scope="module")
def targets(server: CertforgeServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("role-targets")
    _, pending_csr = make_csr(work, "pending.example.test")
    rid = server.cli("request", "submit", str(pending_csr), check=True).stdout.split()[0]
    _, issued_csr = make_csr(work, "issued.example.test")
    requester = create(server, "role-target-requester", "requester")
    submitted = server.cli("request", "submit", str(issued_csr), token=requester, check=True)
    issued_id = submitted.stdout.split()[0]
    got = json.loads(server.cli("request", "get", issued_id, "--json", check=True).stdout)
    server.cli("est", "user", "add", "role-est-user", check=True)
    victim = server.cli("token", "create", "role-victim", check=True).stdout.strip()
    assert victim
    return {
        "rid": rid,
        "serial": got["serial"],
        "est_user": "role-est-user",
        "token": "role-victim",
    }


def fill(value: Any, targets: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**targets)
    if isinstance(value, dict):
        return {k: fill(v, targets) for k, v in value.items()}
    return value


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_each_role_at_each_admin_endpoint(
    server: CertforgeServer, targets: dict[str, str], endpoint: Endpoint, work: Path
) -> None:
    tokens = {role: create(server, f"role-{role}", role) for role in ROLES}
    path = "/api/v1/admin" + fill(endpoint.path, targets)
    body = fill(endpoint.body, targets)
    for role in sorted(ROLES, key=lambda r: r in endpoint.allowed):  # refused ones first
        before = fingerprint(server, tokens["administrator"])
        status, answer, ctype = api(server, endpoint.method, path, tokens[role], body)
        if role in endpoint.allowed:
            assert status != 403, (role, answer)
            assert status < 500, (role, answer)
            continue
        assert (status, ctype) == (403, "application/problem+json"), (role, answer)
        assert answer["type"] == "urn:certforge:problem:forbidden"
        assert fingerprint(server, tokens["administrator"]) == before, role
