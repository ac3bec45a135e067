"""The inventory against the real server: 1,000 certificates issued through REST, listed
whole with ``cert list --all``, every filter checked against the whole listing, paging under
concurrent issuance, and bad input refused.

The profiles' validity is whole days, so no certificate can be made to expire during a test:
``status=expired`` is covered by the store contract suite (tests/unit/store), which sets
notAfter itself."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

COUNT = 1000
CONCURRENCY = 16
GROUPS = ("alpha", "beta", "gamma")
PROFILES = ("tls-server", "tls-client")
REVOKED = {"keyCompromise": range(0, 60, 3), "superseded": range(1, 60, 3)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = CertforgeServer(tmp_path_factory.mktemp("inventory") / "data")
    srv.start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.log_tail()


def _csr(i: int) -> tuple[bytes, str]:
    name = f"h{i}.{GROUPS[i % 3]}.example.test"
    sans = [name, f"api-{i}.extra.test"] if i % 5 == 0 else [name]
    return make_csr(name, sans=sans), PROFILES[i % 2 if i % 7 == 0 else 0]


async def submit_all(server: CertforgeServer, token: str, work: list[int]) -> list[str]:
    ctx = ssl.create_default_context(cafile=str(server.root))
    queue = [(i, *_csr(i)) for i in work]
    serials: list[str] = []
    headers = {"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:

        async def worker() -> None:
            while queue:
                _, csr, profile = queue.pop()
                url = f"{server.url}/api/v1/requests?profile={profile}"
                async with session.post(url, data=csr, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                    serials.append((await resp.json())["serial"])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return serials


async def revoke_some(server: CertforgeServer, serials: list[str]) -> dict[str, str]:
    ctx = ssl.create_default_context(cafile=str(server.root))
    headers = {"Authorization": f"Bearer {server.token}"}
    done: dict[str, str] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        for reason, picks in REVOKED.items():
            for i in picks:
                url = f"{server.url}/api/v1/admin/certificates/{serials[i]}/revoke"
                async with session.post(url, json={"reason": reason}, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                done[serials[i]] = reason
    return done


@dataclass(frozen=True)
class Issued:
    serials: list[str]  # in the order of _csr's index
    revoked: dict[str, str]  # serial -> reason


@pytest.fixture(scope="module")
def issued(server: CertforgeServer) -> Issued:
    token = server.cli("token", "create", "inventory", "--role", "requester", check=True)
    serials = asyncio.run(submit_all(server, token.stdout.strip(), list(range(COUNT))))
    return Issued(serials, asyncio.run(revoke_some(server, serials)))


def listing(server: CertforgeServer, *args: str) -> list[dict[str, str]]:
    out = server.cli("cert", "list", "--format", "csv", *args, check=True).stdout
    return list(csv.DictReader(io.StringIO(out)))


def test_list_all_lists_each_certificate_once(server: CertforgeServer, issued: Issued) -> None:
    out = server.cli("cert", "list", "--all", check=True).stdout.splitlines()
    serials = [line.split()[0] for line in out]
    assert len(serials) == len(set(serials))
    assert set(issued.serials) <= set(serials)
    # Without --all: the first 100, then one line saying there is more.
    short = server.cli("cert", "list", check=True).stdout.splitlines()
    assert len(short) == 101 and short[-1].startswith("... more")
    assert len(server.cli("cert", "list", "--limit", "1500", check=True).stdout.splitlines()) == (
        min(1500, len(serials)) + (1 if len(serials) > 1500 else 0)
    )
    rows = listing(server)
    assert sorted(r["serial"] for r in rows) == sorted(serials)
    exported = json.loads(server.cli("cert", "list", "--format", "json", check=True).stdout)
    assert [c["serial"] for c in exported["certificates"]] == [r["serial"] for r in rows]


Row = dict[str, str]


def _expected(rows: list[Row], keep: Callable[[Row], bool]) -> list[str]:
    return sorted(r["serial"] for r in rows if keep(r))


def test_every_filter_returns_exactly_its_certificates(
    server: CertforgeServer, issued: Issued
) -> None:
    rows = listing(server)
    ours, revoked = set(issued.serials), issued.revoked
    now = datetime.now(UTC)
    middle = sorted(r["not_before"] for r in rows if r["serial"] in ours)[COUNT // 2]
    prefix = next(iter(ours))[:2]
    cases: list[tuple[list[str], Callable[[Row], bool]]] = [
        (["--status", "revoked"], lambda r: r["serial"] in revoked),
        (["--status", "valid"], lambda r: r["serial"] not in revoked),
        (["--status", "expired"], lambda r: False),
        (["--reason", "keyCompromise"], lambda r: revoked.get(r["serial"]) == "keyCompromise"),
        (["--subject", "ALPHA.Example"], lambda r: "alpha.example" in r["subject"].lower()),
        (["--san", "extra.te"], lambda r: "extra.te" in r["sans"]),
        (["--san", "dns:api-1"], lambda r: "dns:api-1" in r["sans"]),
        (["--serial", prefix.upper()], lambda r: r["serial"].startswith(prefix)),
        (["--profile", "tls-client"], lambda r: r["profile"] == "tls-client"),
        (["--issuer", "default"], lambda r: r["issuer"] == "default"),
        (["--protocol", "rest"], lambda r: r["serial"] in ours),
        (["--requester", "token:inventory"], lambda r: r["serial"] in ours),
        (["--issued-after", middle], lambda r: r["not_before"] >= middle),
        (["--issued-before", middle], lambda r: r["not_before"] < middle),
        (
            ["--expiring", "100d"],
            lambda r: now.isoformat() < r["not_after"] < (now + timedelta(days=100)).isoformat(),
        ),
        (
            ["--status", "revoked", "--subject", "beta", "--sort", "expiry"],
            lambda r: r["serial"] in revoked and "beta" in r["subject"],
        ),
    ]
    for args, keep in cases:
        found = [r["serial"] for r in listing(server, *args)]
        assert len(found) == len(set(found)), args
        assert sorted(found) == _expected(rows, keep), args
    assert len([r for r in rows if r["serial"] in revoked]) == len(revoked) == 40


def test_requests_are_listed_and_filtered(server: CertforgeServer, issued: Issued) -> None:
    out = server.cli("request", "list", "--format", "csv", "--subject", "gamma", check=True)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == len([i for i in range(COUNT) if i % 3 == 2])
    assert all(r["status"] == "issued" and "gamma" in r["subject"] for r in rows)
    shown = server.cli("request", "show", rows[0]["id"], check=True).stdout
    assert "key EC secp256r1" in shown and "signature valid" in shown and "event" in shown
    assert f"serial {rows[0]['serial']}" in shown


def test_cert_show_decodes_the_certificate_and_its_chain(
    server: CertforgeServer, issued: Issued
) -> None:
    serial = issued.serials[0]
    shown = server.cli("cert", "show", serial, check=True).stdout
    assert "status revoked keyCompromise" in shown
    assert "key EC secp256r1" in shown and "chain " in shown and "event" in shown


def _page(server: CertforgeServer, query: str) -> dict[str, Any]:
    out = server.curl(
        "-H", f"Authorization: Bearer {server.token}", f"{server.url}/api/v1/admin/{query}"
    )
    page: dict[str, Any] = json.loads(out.stdout)
    return page


def test_paging_under_concurrent_issuance_never_repeats_or_skips(
    server: CertforgeServer, issued: Issued
) -> None:
    before = {r["serial"] for r in listing(server)}
    token_text = server.cli(
        "token", "create", "inventory-2", "--role", "requester", check=True
    ).stdout.strip()
    for order in ("desc", "asc"):
        seen: list[str] = []
        work = (
            list(range(COUNT, COUNT + 150))
            if order == "desc"
            else list(range(COUNT + 150, COUNT + 300))
        )
        new = asyncio.run(_page_while_issuing(server, token_text, order, work, seen))
        assert len(seen) == len(set(seen)), order
        assert before <= set(seen), order
        assert set(seen) <= before | set(new), order
        before |= set(new)


async def _page_through(server: CertforgeServer, order: str, seen: list[str]) -> None:
    cursor = ""
    while True:
        query = f"certificates?limit=37&order={order}{cursor}"
        page = await asyncio.to_thread(_page, server, query)
        seen.extend(c["serial"] for c in page["certificates"])
        if page["next"] is None:
            return
        cursor = f"&cursor={page['next']}"


async def _page_while_issuing(
    server: CertforgeServer, token: str, order: str, work: list[int], seen: list[str]
) -> list[str]:
    new, _ = await asyncio.gather(
        submit_all(server, token, work), _page_through(server, order, seen)
    )
    return new


def _status(server: CertforgeServer, query: str) -> tuple[int, str]:
    out = server.curl(
        "-w",
        "\n%{http_code}",
        "-H",
        f"Authorization: Bearer {server.token}",
        f"{server.url}/api/v1/admin/{query}",
    )
    body, _, code = out.stdout.decode().rpartition("\n")
    return int(code), body


def test_bad_queries_are_400_naming_the_problem(server: CertforgeServer, issued: Issued) -> None:
    page = _page(server, "certificates?limit=5&status=revoked")
    cursor = str(page["next"])
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    for query, word in (
        ("certificates?colour=red&size=2", "colour, size"),
        ("requests?issuer=default", "issuer"),
        ("certificates?limit=0", "limit"),
        ("certificates?limit=1001", "limit"),
        ("certificates?expiring=30x", "duration"),
        ("certificates?issued_after=yesterday", "issued_after"),
        ("certificates?serial=xyz", "serial"),
        ("certificates?status=lost", "status"),
        ("certificates?sort=size", "sort"),
        (f"certificates?limit=5&status=revoked&cursor={tampered}", "cursor"),
        (f"certificates?limit=5&status=valid&cursor={cursor}", "cursor"),
        (f"requests?limit=5&status=issued&cursor={cursor}", "cursor"),
        ("certificates?cursor=!!!", "cursor"),
    ):
        code, body = _status(server, query)
        assert code == 400, query
        assert word in json.loads(body)["detail"], query


def test_bad_cli_input_is_one_line_and_exit_1(server: CertforgeServer) -> None:
    for args in (
        ["cert", "list", "--expiring", "soon"],
        ["cert", "list", "--limit", "0"],
        ["cert", "list", "--issued-after", "yesterday"],
        ["cert", "list", "--serial", "zz"],
        ["request", "list", "--reason", "keyCompromise"],
    ):
        result = server.cli(*args)
        assert result.returncode == 1, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert result.stdout == "", args
    usage = server.cli("cert", "list", "--colour", "red")
    assert usage.returncode == 2
    assert server.cli("cert", "list", "--status", "lost").returncode == 2


def test_pem_export_is_every_certificate(
    server: CertforgeServer, issued: Issued, work: Path
) -> None:
    out = server.cli("cert", "list", "--format", "pem", "--status", "revoked", check=True).stdout
    path = work / "revoked.pem"
    path.write_text(out)
    count = out.count("-----BEGIN CERTIFICATE-----")
    assert count == 40
    shown = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-serial"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.startswith("serial=")
