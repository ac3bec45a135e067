"""The store contract (``server/store/base.py``), held against every back-end: requests,
transitions, certificates and revocation. The outbox and documents are in
``test_contract_events.py`` and ``test_contract_documents.py``.

Each test runs once per ``store`` fixture parameter (conftest.py). The errors asserted are
kinds (``Conflict``, ``NotFound``), never messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from server.errors import Conflict, NotFound
from server.model import (
    AuthMethod,
    CertificateQuery,
    CertStatus,
    Event,
    EventKind,
    Identifier,
    Requester,
    RequestQuery,
    RevocationReason,
    Status,
    Vouched,
)
from server.store.base import Store
from tests.unit.store.records import (
    event_for,
    issued,
    make_certificate,
    make_request,
    new_serial,
    tick,
)

RACERS = 20


# ------------------------------------------------------------------ requests
async def test_request_round_trips_every_field(store: Store) -> None:
    record = make_request(
        transaction_id="scep-tx-1",
        vouched=Vouched(
            identifiers=frozenset({Identifier.parse("dns:a.example.test")}),
            renewal_of=new_serial(),
            attributes=(("device", "thermostat"),),
        ),
        sans=("dns:www.example.test", "ip:192.0.2.7", "email:ops@example.test"),
    )
    await store.add_request(record, event=event_for(record))

    got = await store.get_request(record.id)

    assert got == record
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)


async def test_newest_in_transaction_is_the_head_of_its_newest_request(store: Store) -> None:
    assert await store.newest_in_transaction("est-tx") is None
    older = make_request(transaction_id="est-tx", protocol="est", status=Status.PENDING)
    newer = make_request(transaction_id="est-tx", protocol="est")  # made later: newer
    other = make_request(transaction_id="other-tx")
    for record in (older, newer, other):
        await store.add_request(record, event=event_for(record))

    head = await store.newest_in_transaction("est-tx")

    assert head is not None
    assert (head.id, head.status, head.protocol) == (newer.id, newer.status, "est")
    assert head.requester == newer.requester.label()
    assert (head.created_at, head.updated_at) == (newer.created_at, newer.updated_at)
    assert await store.newest_in_transaction("EST-TX") is None


async def test_unknown_request_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.get_request("no-such-request")


async def test_duplicate_request_id_conflicts_and_keeps_the_first(store: Store) -> None:
    first = make_request()
    await store.add_request(first, event=event_for(first))
    second = replace(first, subject="CN=intruder", status=Status.DENIED)

    with pytest.raises(Conflict):
        await store.add_request(second, event=event_for(second))

    assert await store.get_request(first.id) == first
    assert len(await store.list_events(request_id=first.id)) == 1
    assert len(await store.pending_events("webhook")) == 1


@pytest.fixture
async def searchable(store: Store) -> dict[str, str]:
    """Four requests that differ in each searchable field; name -> request id."""
    bob = Requester(AuthMethod.EST_BASIC, "bob")
    records = {
        "web": make_request(sans=("dns:www.example.test", "dns:example.test")),
        "mail": make_request(
            status=Status.DENIED,
            profile="smime",
            subject="CN=Mail Relay,O=Example",
            sans=("email:Relay@Example.test",),
        ),
        "bob": make_request(
            requester=bob,
            sans=("ip:2001:db8::7",),
            subject="CN=bob-device",
            transaction_id="tx/Bob+1=",
        ),
        "uri": make_request(status=Status.APPROVED, sans=("uri:https://svc.example.test/x",)),
    }
    for record in records.values():
        await store.add_request(record, event=event_for(record))
    return {name: record.id for name, record in records.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(RequestQuery(), ["uri", "bob", "mail", "web"], id="all/newest_first"),
        pytest.param(RequestQuery(status=Status.DENIED), ["mail"], id="status"),
        pytest.param(RequestQuery(requester="est_basic:bob"), ["bob"], id="requester"),
        pytest.param(RequestQuery(profile="smime"), ["mail"], id="profile"),
        pytest.param(RequestQuery(subject="mail relay"), ["mail"], id="subject/substring_nocase"),
        pytest.param(RequestQuery(subject="100%"), [], id="subject/wildcards_are_literal"),
        pytest.param(RequestQuery(san="dns:example.test"), ["web"], id="san/typed"),
        pytest.param(RequestQuery(san="dns:WWW.example.test"), ["web"], id="san/typed_nocase"),
        pytest.param(RequestQuery(san="ip:2001:db8::7"), ["bob"], id="san/typed_ipv6"),
        pytest.param(RequestQuery(san="2001:db8::7"), ["bob"], id="san/bare_ipv6"),
        pytest.param(RequestQuery(san="relay@example.test"), ["mail"], id="san/bare_email"),
        pytest.param(
            RequestQuery(san="https://svc.example.test/x"), ["uri"], id="san/bare_uri_has_colon"
        ),
        pytest.param(RequestQuery(san="www.example"), ["web"], id="san/substring"),
        pytest.param(RequestQuery(san="XAMPLE.TEST"), ["uri", "mail", "web"], id="san/nocase"),
        pytest.param(
            RequestQuery(status=Status.PENDING, requester="token:alice"), ["web"], id="combined"
        ),
        pytest.param(RequestQuery(limit=2), ["uri", "bob"], id="limit"),
        pytest.param(RequestQuery(transaction_id="tx/Bob+1="), ["bob"], id="transaction_id"),
        pytest.param(RequestQuery(transaction_id="tx/bob+1="), [], id="transaction_id/exact"),
    ],
)
async def test_find_requests(
    store: Store, searchable: dict[str, str], query: RequestQuery, expected: list[str]
) -> None:
    found = await store.find_requests(query)

    assert [r.id for r in found] == [searchable[name] for name in expected]


@pytest.mark.parametrize(
    "san", ["api.example.test", "DNS:API.example.test", "ip:192.0.2.44", "192.0.2.44"]
)
async def test_requests_issued_at_once_are_found_by_their_names(store: Store, san: str) -> None:
    record, cert = issued(sans=("dns:api.example.test", "ip:192.0.2.44"))
    await store.add_request(record, certificate=cert, event=event_for(record, EventKind.ISSUED))
    other, other_cert = issued(sans=("dns:other.example.test",))
    await store.add_request(other, certificate=other_cert, event=event_for(other))

    assert [r.id for r in await store.find_requests(RequestQuery(san=san))] == [record.id]


# ---------------------------------------------------------------- transitions
async def test_transition_moves_status_and_records_its_event(store: Store) -> None:
    record = make_request()
    await store.add_request(record, event=event_for(record))
    approve = event_for(record, EventKind.APPROVED, by="admin")

    moved = await store.transition(
        record.id, expect=Status.PENDING, to=Status.APPROVED, reason="approved", event=approve
    )

    assert (moved.status, moved.reason, moved.updated_at) == (
        Status.APPROVED,
        "approved",
        approve.at,
    )
    assert await store.get_request(record.id) == moved
    assert (await store.list_events(request_id=record.id))[-1] == approve


async def test_transition_to_issued_records_the_certificate(store: Store) -> None:
    record = make_request(status=Status.APPROVED)
    await store.add_request(record, event=event_for(record))
    cert = make_certificate(record)

    moved = await store.transition(
        record.id,
        expect=Status.APPROVED,
        to=Status.ISSUED,
        certificate=cert,
        event=event_for(replace(record, status=Status.ISSUED, serial=cert.serial)),
    )

    assert (moved.status, moved.serial) == (Status.ISSUED, cert.serial)
    assert await store.get_certificate(cert.serial) == cert
    assert [e.kind for e in await store.list_events(serial=cert.serial)] == [EventKind.ISSUED]


async def test_transition_from_the_wrong_status_conflicts_and_records_nothing(
    store: Store,
) -> None:
    record = make_request(status=Status.DENIED)
    await store.add_request(record, event=event_for(record))

    with pytest.raises(Conflict):
        await store.transition(
            record.id,
            expect=Status.PENDING,
            to=Status.APPROVED,
            event=event_for(record, EventKind.APPROVED),
        )

    assert await store.get_request(record.id) == record
    assert len(await store.list_events(request_id=record.id)) == 1


async def test_transition_of_an_unknown_request_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.transition(
            "no-such-request",
            expect=Status.PENDING,
            to=Status.APPROVED,
            event=event_for(make_request(), EventKind.APPROVED),
        )
    assert await store.pending_events("webhook") == []


async def test_concurrent_approvals_exactly_one_wins(store: Store) -> None:
    record = make_request()
    await store.add_request(record, event=event_for(record))

    results = await asyncio.gather(
        *(
            store.transition(
                record.id,
                expect=Status.PENDING,
                to=Status.APPROVED,
                event=event_for(record, EventKind.APPROVED, racer=n),
            )
            for n in range(RACERS)
        ),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert [e.kind for e in await store.list_events(request_id=record.id)] == [
        EventKind.PENDING,
        EventKind.APPROVED,
    ]


# ------------------------------------------------------------ certificates
async def test_issued_at_once_records_request_certificate_and_event(store: Store) -> None:
    record, cert = issued()
    event = event_for(record)

    await store.add_request(record, certificate=cert, event=event)

    assert await store.get_request(record.id) == record
    assert await store.get_certificate(cert.serial) == cert
    assert await store.list_events(serial=cert.serial) == [event]


async def test_duplicate_serial_conflicts_and_leaves_nothing_of_the_loser(store: Store) -> None:
    first, cert = issued()
    await store.add_request(first, certificate=cert, event=event_for(first))
    loser = make_request(status=Status.ISSUED, serial=cert.serial)
    loser_event = event_for(loser)

    with pytest.raises(Conflict):
        await store.add_request(
            loser, certificate=replace(cert, request_id=loser.id), event=loser_event
        )

    with pytest.raises(NotFound):
        await store.get_request(loser.id)
    assert (await store.get_certificate(cert.serial)).request_id == first.id
    assert await store.list_events(request_id=loser.id) == []
    assert loser_event.id not in {e.id for e in await store.pending_events("webhook")}


async def test_transition_with_a_taken_serial_conflicts_and_leaves_the_request(
    store: Store,
) -> None:
    first, cert = issued()
    await store.add_request(first, certificate=cert, event=event_for(first))
    record = make_request(status=Status.APPROVED)
    await store.add_request(record, event=event_for(record))

    with pytest.raises(Conflict):
        await store.transition(
            record.id,
            expect=Status.APPROVED,
            to=Status.ISSUED,
            certificate=replace(cert, request_id=record.id),
            event=event_for(record, EventKind.ISSUED),
        )

    assert await store.get_request(record.id) == record
    assert (await store.get_certificate(cert.serial)).request_id == first.id
    assert len(await store.list_events(request_id=record.id)) == 1


async def test_a_conflict_among_concurrent_writes_undoes_only_itself(store: Store) -> None:
    taken, cert = issued()
    await store.add_request(taken, certificate=cert, event=event_for(taken))
    good = [issued() for _ in range(30)]
    bad = [make_request(status=Status.ISSUED, serial=cert.serial) for _ in range(5)]

    results = await asyncio.gather(
        *(store.add_request(r, certificate=c, event=event_for(r)) for r, c in good),
        *(
            store.add_request(r, certificate=replace(cert, request_id=r.id), event=event_for(r))
            for r in bad
        ),
        return_exceptions=True,
    )

    assert results[: len(good)] == [None] * len(good)
    assert all(isinstance(r, Conflict) for r in results[len(good) :])
    for record, certificate in good:
        assert await store.get_request(record.id) == record
        assert await store.get_certificate(certificate.serial) == certificate


async def test_unknown_serial_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.get_certificate(new_serial())


async def test_serials_up_to_159_bits_keep_their_order(store: Store) -> None:
    serials = [1, 0xFF, (1 << 64) + 1, (1 << 159) - 1]
    for serial in serials:
        record = make_request(status=Status.ISSUED, serial=serial)
        cert = make_certificate(record, serial=serial)
        await store.add_request(record, certificate=cert, event=event_for(record))

    for serial in serials:
        assert (await store.get_certificate(serial)).serial == serial


@pytest.fixture
async def certificates(store: Store) -> dict[str, int]:
    """Four certificates that differ in each searchable field; name -> serial."""
    bob = Requester(AuthMethod.CLIENT_CERT, "CN=bob")
    specs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "web": ({"sans": ("dns:www.example.test",)}, {}),
        "bob": (
            {"requester": bob, "subject": "CN=Bob's Laptop", "sans": ("dns:bob.example.test",)},
            {"issuer": "device-ca"},
        ),
        "short": ({"sans": ("ip:192.0.2.9",)}, {"key_sha256": "ab" * 32}),
        "old": ({"sans": ()}, {"not_before": tick() - timedelta(days=400)}),
    }
    serials: dict[str, int] = {}
    for name, (request_fields, cert_fields) in specs.items():
        record, _ = issued(**request_fields)
        cert = make_certificate(record, serial=record.serial, **cert_fields)
        await store.add_request(record, certificate=cert, event=event_for(record))
        serials[name] = cert.serial
    await store.revoke(
        serials["short"],
        reason=RevocationReason.KEY_COMPROMISE,
        at=tick(),
        event=_revoked(serials["short"]),
    )
    return serials


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(CertificateQuery(), ["short", "bob", "web", "old"], id="all/newest_first"),
        pytest.param(CertificateQuery(status=CertStatus.REVOKED), ["short"], id="status"),
        pytest.param(CertificateQuery(issuer="device-ca"), ["bob"], id="issuer"),
        pytest.param(CertificateQuery(requester="client_cert:CN=bob"), ["bob"], id="requester"),
        pytest.param(CertificateQuery(subject="bob's laptop"), ["bob"], id="subject/nocase"),
        pytest.param(CertificateQuery(san="www.example.test"), ["web"], id="san/bare"),
        pytest.param(CertificateQuery(san="ip:192.0.2.9"), ["short"], id="san/typed"),
        pytest.param(CertificateQuery(key_sha256="ab" * 32), ["short"], id="key_sha256"),
        pytest.param(
            CertificateQuery(expires_before=tick() - timedelta(days=30)), ["old"], id="expiring"
        ),
        pytest.param(
            CertificateQuery(expires_after=tick() + timedelta(days=30)),
            ["short", "bob", "web"],
            id="expires_after",
        ),
        pytest.param(CertificateQuery(limit=2), ["short", "bob"], id="limit"),
    ],
)
async def test_find_certificates(
    store: Store, certificates: dict[str, int], query: CertificateQuery, expected: list[str]
) -> None:
    found = await store.find_certificates(query)

    assert [c.serial for c in found] == [certificates[name] for name in expected]


# --------------------------------------------------------------- revocation
async def _one_certificate(store: Store) -> int:
    record, cert = issued()
    await store.add_request(record, certificate=cert, event=event_for(record))
    return cert.serial


def _revoked(serial: int) -> Event:
    return Event(EventKind.REVOKED, tick(), serial=serial)


async def test_revoke_records_reason_times_and_event(store: Store) -> None:
    serial = await _one_certificate(store)
    at, invalid_since, event = tick(), tick() - timedelta(days=2), _revoked(serial)

    cert = await store.revoke(
        serial,
        reason=RevocationReason.KEY_COMPROMISE,
        at=at,
        invalidity_date=invalid_since,
        event=event,
    )

    assert (cert.status, cert.revocation_reason) == (
        CertStatus.REVOKED,
        RevocationReason.KEY_COMPROMISE,
    )
    assert (cert.revoked_at, cert.invalidity_date) == (at, invalid_since)
    assert await store.get_certificate(serial) == cert
    assert event in await store.pending_events("webhook")


async def test_revoking_twice_conflicts(store: Store) -> None:
    serial = await _one_certificate(store)
    await store.revoke(
        serial, reason=RevocationReason.SUPERSEDED, at=tick(), event=_revoked(serial)
    )

    with pytest.raises(Conflict):
        await store.revoke(
            serial, reason=RevocationReason.KEY_COMPROMISE, at=tick(), event=_revoked(serial)
        )
    assert (await store.get_certificate(serial)).revocation_reason is RevocationReason.SUPERSEDED


async def test_revoking_an_unknown_serial_is_not_found(store: Store) -> None:
    serial = new_serial()
    with pytest.raises(NotFound):
        await store.revoke(
            serial, reason=RevocationReason.UNSPECIFIED, at=tick(), event=_revoked(serial)
        )
    with pytest.raises(NotFound):
        await store.unrevoke(serial, event=_revoked(serial))


async def test_hold_then_release_makes_it_valid_again(store: Store) -> None:
    serial = await _one_certificate(store)
    await store.revoke(
        serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=_revoked(serial)
    )

    cert = await store.unrevoke(serial, event=_revoked(serial))

    assert cert.status is CertStatus.VALID
    assert (cert.revoked_at, cert.revocation_reason, cert.invalidity_date) == (None, None, None)
    assert await store.get_certificate(serial) == cert


async def test_a_held_certificate_may_be_revoked_for_good(store: Store) -> None:
    serial = await _one_certificate(store)
    await store.revoke(
        serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=_revoked(serial)
    )

    cert = await store.revoke(
        serial, reason=RevocationReason.KEY_COMPROMISE, at=tick(), event=_revoked(serial)
    )

    assert cert.revocation_reason is RevocationReason.KEY_COMPROMISE
    with pytest.raises(Conflict):
        await store.unrevoke(serial, event=_revoked(serial))


async def test_holding_a_held_certificate_conflicts(store: Store) -> None:
    serial = await _one_certificate(store)
    await store.revoke(
        serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=_revoked(serial)
    )
    with pytest.raises(Conflict):
        await store.revoke(
            serial, reason=RevocationReason.CERTIFICATE_HOLD, at=tick(), event=_revoked(serial)
        )


async def test_releasing_a_valid_certificate_conflicts(store: Store) -> None:
    serial = await _one_certificate(store)
    with pytest.raises(Conflict):
        await store.unrevoke(serial, event=_revoked(serial))
    assert [e.kind for e in await store.list_events(serial=serial)] == [EventKind.ISSUED]


async def test_concurrent_revocations_exactly_one_wins(store: Store) -> None:
    serial = await _one_certificate(store)

    results = await asyncio.gather(
        *(
            store.revoke(
                serial, reason=RevocationReason.KEY_COMPROMISE, at=tick(), event=_revoked(serial)
            )
            for _ in range(RACERS)
        ),
        return_exceptions=True,
    )

    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
