"""The inventory's searches on every back-end: keyset pages in each order that together list
each record once, and the filters the admin lists offer (profile, protocol, serial prefix,
reason, issued and expiry windows, expired certificates, substrings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from server.model import (
    CertificateQuery,
    CertificateRecord,
    CertStatus,
    Event,
    EventKind,
    RequestQuery,
    RevocationReason,
    SortKey,
)
from server.store.base import Store
from tests.unit.store.records import T0, event_for, issued, make_request, tick

PROTOCOLS = ("rest", "acme", "est")


@pytest.fixture
async def inventory(store: Store) -> list[CertificateRecord]:
    """Twelve certificates: three protocols, two profiles, validity 30 to 360 days, one
    expired, two revoked (keyCompromise, superseded); some share their notBefore."""
    certs = []
    shared = tick()
    for i in range(12):
        record, cert = issued(
            protocol=PROTOCOLS[i % 3],
            profile="client" if i % 4 == 0 else "server",
            subject=f"CN=Host{i}.Zone{i % 2}.example",
            sans=(f"dns:h{i}.zone{i % 2}.example", f"ip:192.0.2.{i}"),
        )
        not_before = shared if i % 5 == 0 else tick()
        cert = replace(
            cert, not_before=not_before, not_after=not_before + timedelta(days=30 * (i + 1))
        )
        if i == 11:  # expired long ago
            cert = replace(
                cert, not_before=T0 - timedelta(days=400), not_after=T0 - timedelta(days=10)
            )
        await store.add_request(record, certificate=cert, event=event_for(record))
        certs.append(cert)
    for cert, reason in (
        (certs[3], RevocationReason.KEY_COMPROMISE),
        (certs[6], RevocationReason.SUPERSEDED),
    ):
        revoked = await store.revoke(
            cert.serial,
            reason=reason,
            at=tick(),
            event=Event(EventKind.REVOKED, tick(), serial=cert.serial),
        )
        certs[certs.index(cert)] = revoked
    return certs


def _key(sort: SortKey) -> Callable[[CertificateRecord], tuple[datetime, str, int]]:
    return lambda c: (
        c.not_after if sort is SortKey.EXPIRY else c.not_before,
        c.request_id,
        c.serial,
    )


@pytest.mark.parametrize("sort", list(SortKey))
@pytest.mark.parametrize("descending", [True, False], ids=["desc", "asc"])
async def test_keyset_pages_list_each_certificate_once_in_order(
    store: Store, inventory: list[CertificateRecord], sort: SortKey, descending: bool
) -> None:
    seen: list[CertificateRecord] = []
    after = None
    while True:
        page = await store.find_certificates(
            CertificateQuery(sort=sort, descending=descending, after=after, limit=5)
        )
        seen += page
        if len(page) < 5:
            break
        last = page[-1]
        after = _key(sort)(last)
    key = _key(sort)
    assert [c.serial for c in seen] == [
        c.serial for c in sorted(inventory, key=key, reverse=descending)
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(CertificateQuery(profile="client"), [0, 4, 8], id="profile"),
        pytest.param(CertificateQuery(protocol="acme"), [1, 4, 7, 10], id="protocol"),
        pytest.param(CertificateQuery(reason=RevocationReason.SUPERSEDED), [6], id="reason"),
        pytest.param(
            CertificateQuery(status=CertStatus.REVOKED, protocol="rest"),
            [3, 6],
            id="status+protocol",
        ),
        pytest.param(
            CertificateQuery(status=CertStatus.VALID, expires_before=T0), [11], id="expired"
        ),
        pytest.param(
            CertificateQuery(subject="zone1.EXA"), [1, 3, 5, 7, 9, 11], id="subject/substring"
        ),
        pytest.param(CertificateQuery(subject="t1"), [1, 10, 11], id="subject/short"),
        pytest.param(CertificateQuery(san="dns:h1"), [1, 10, 11], id="san/typed_substring"),
        pytest.param(CertificateQuery(san="192.0.2.1"), [1, 10, 11], id="san/ip_substring"),
        pytest.param(CertificateQuery(san="h2.zone0", protocol="acme"), [], id="san+protocol/none"),
    ],
)
async def test_certificate_filters(
    store: Store, inventory: list[CertificateRecord], query: CertificateQuery, expected: list[int]
) -> None:
    found = await store.find_certificates(replace(query, limit=100))
    assert sorted(inventory.index(c) for c in found) == expected


async def test_serial_prefix_and_windows(store: Store, inventory: list[CertificateRecord]) -> None:
    target = inventory[5]
    prefix = format(target.serial, "x")[:-3]
    by_prefix = await store.find_certificates(CertificateQuery(serial_prefix=prefix))
    assert {c.serial for c in by_prefix} == {
        c.serial for c in inventory if format(c.serial, "x").startswith(prefix)
    }
    assert target in by_prefix
    middle = sorted(c.not_before for c in inventory)[6]
    issued_after = await store.find_certificates(CertificateQuery(issued_after=middle))
    assert {c.serial for c in issued_after} == {
        c.serial for c in inventory if c.not_before >= middle
    }
    window = (T0 + timedelta(days=100), T0 + timedelta(days=200))
    expiring = await store.find_certificates(
        CertificateQuery(
            expires_after=window[0], expires_before=window[1], sort=SortKey.EXPIRY, descending=False
        )
    )
    wanted = sorted(
        (c for c in inventory if window[0] < c.not_after < window[1]),
        key=_key(SortKey.EXPIRY),
    )
    assert expiring == wanted


async def test_request_pages_and_filters(store: Store, inventory: list[CertificateRecord]) -> None:
    pending = make_request(
        protocol="scep", subject="CN=waiting.example", sans=("dns:waiting.example",)
    )
    await store.add_request(pending, event=event_for(pending))
    seen = []
    after = None
    while page := await store.find_requests(RequestQuery(after=after, limit=4)):
        seen += page
        after = (page[-1].created_at, page[-1].id)
    assert len(seen) == len({r.id for r in seen}) == 13
    assert [(r.created_at, r.id) for r in seen] == sorted(
        ((r.created_at, r.id) for r in seen), reverse=True
    )
    assert [r.id for r in await store.find_requests(RequestQuery(protocol="scep"))] == [pending.id]
    assert [r.id for r in await store.find_requests(RequestQuery(san="WAITING.ex"))] == [pending.id]
    target = inventory[2]
    by_serial = await store.find_requests(RequestQuery(serial_prefix=format(target.serial, "x")))
    assert [r.id for r in by_serial] == [target.request_id]
    expiring = await store.find_requests(
        RequestQuery(expires_after=T0, expires_before=T0 + timedelta(days=65))
    )
    assert {r.id for r in expiring} == {
        c.request_id for c in inventory if T0 < c.not_after < T0 + timedelta(days=65)
    }
