"""The SQLite search plans give the same pages: a substring search is answered from its
trigram rows when they are few, by a walk bounded in steps, or by the whole walk
(``sqlite_search._rare_substring``); each plan is forced here by shrinking its limits, and
every page of every plan must be the brute-force answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from server.model import CertificateQuery, CertificateRecord
from server.store import sqlite_search
from server.store.sqlite import SQLiteStore
from tests.unit.store.records import event_for, issued, tick

WORDS = ("alpha", "beta", "gamma")


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, list[CertificateRecord]]]:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}", consumers=[])
    await store.open()
    certs = []
    for i in range(60):
        # alpha in every name, beta in every third, gamma in one only.
        words = "alpha" + (".beta" if i % 3 == 0 else "") + (".gamma" if i == 17 else "")
        record, cert = issued(
            protocol="rest" if i % 2 else "acme",
            subject=f"CN=h{i}.{words}.example",
            sans=(f"dns:h{i}.{words}.example",),
        )
        cert = replace(cert, not_before=tick())
        await store.add_request(record, certificate=cert, event=event_for(record))
        certs.append(cert)
    yield store, certs
    await store.close()


PLANS = [
    pytest.param((500, 5000, 100_000), id="default"),
    pytest.param((0, 0, 100_000), id="bounded_walk"),
    pytest.param((0, 0, 1), id="walk_after_interrupted_walk"),
    pytest.param((0, 5000, 1), id="rare_after_interrupted_walk"),
]
QUERIES = [
    pytest.param(CertificateQuery(san="alpha"), id="san/everywhere"),
    pytest.param(CertificateQuery(san="h1"), id="san/some"),
    pytest.param(CertificateQuery(subject="BETA"), id="subject/every_third"),
    pytest.param(CertificateQuery(san=".gamma."), id="san/one"),
    pytest.param(CertificateQuery(san="delta"), id="san/none"),
    pytest.param(CertificateQuery(san="beta", protocol="rest"), id="san+protocol"),
    pytest.param(CertificateQuery(san="alpha", subject="beta"), id="san+subject"),
]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("query", QUERIES)
async def test_every_plan_pages_the_same_certificates(
    filled: tuple[SQLiteStore, list[CertificateRecord]],
    monkeypatch: pytest.MonkeyPatch,
    plan: tuple[int, int, int],
    query: CertificateQuery,
) -> None:
    store, certs = filled
    few, candidates, steps = plan
    monkeypatch.setattr(sqlite_search, "FEW", few)
    monkeypatch.setattr(sqlite_search, "CANDIDATES", candidates)
    monkeypatch.setattr(sqlite_search, "WALK_STEPS", steps)
    seen: list[int] = []
    after = None
    while page := await store.find_certificates(replace(query, after=after, limit=4)):
        seen += [c.serial for c in page]
        last = page[-1]
        after = (last.not_before, last.request_id, last.serial)

    def matches(c: CertificateRecord) -> bool:
        return (
            (query.san is None or any(query.san.lower() in s.lower() for s in c.sans))
            and (query.subject is None or query.subject.lower() in c.subject.lower())
            and (query.protocol is None or (c.serial in protocols[query.protocol]))
        )

    protocols = {"rest": {c.serial for i, c in enumerate(certs) if i % 2}}
    expected = sorted(
        (c for c in certs if matches(c)),
        key=lambda c: (c.not_before, c.request_id, c.serial),
        reverse=True,
    )
    assert seen == [c.serial for c in expected]
