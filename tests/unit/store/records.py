"""Record factories for the store tests: defaults plus overrides (Boulder's newCAArgs style).

The store never parses a CSR or a certificate, so their bytes here are placeholders. Times
start at ``T0`` and move forward one second per call to ``tick``, so that "oldest first" and
"newest first" have one right answer.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from server.model import (
    AuthMethod,
    CertificateDraft,
    CertificateRecord,
    Event,
    EventKind,
    Identifier,
    Requester,
    RequestRecord,
    Role,
    Status,
    Vouched,
)

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
_clock = itertools.count(1)
_serials = itertools.count(0x1000)


def tick() -> datetime:
    """A time later than every earlier ``tick`` in this process."""
    return T0 + timedelta(seconds=next(_clock))


def new_serial() -> int:
    """Distinct serials, with high bits set as real ones have (up to 159 bits)."""
    return (1 << 158) + next(_serials) * 0x10001


def make_request(**overrides: Any) -> RequestRecord:
    at = tick()
    record = RequestRecord(
        id=uuid.uuid4().hex,
        status=Status.PENDING,
        created_at=at,
        updated_at=at,
        protocol="rest",
        requester=Requester(AuthMethod.TOKEN, "alice", frozenset({Role.REQUESTER})),
        profile="server",
        csr_der=b"\x30\x82csr-placeholder",
        subject="CN=www.example.test,O=Example",
        sans=("dns:www.example.test",),
        transaction_id=None,
        vouched=Vouched(),
        draft=make_draft(),
        reason="waiting for an administrator's approval",
    )
    return replace(record, **overrides)


def make_draft(**overrides: Any) -> CertificateDraft:
    draft = CertificateDraft(
        profile="server",
        issuer="issuing-ca",
        subject=(("2.5.4.3", "www.example.test"),),
        sans=(Identifier.parse("dns:www.example.test"),),
        validity=timedelta(days=90),
        key_type="ec-p256",
        key_usage=frozenset({"digitalSignature"}),
        extended_key_usage=("1.3.6.1.5.5.7.3.1",),
    )
    return replace(draft, **overrides)


def make_certificate(request: RequestRecord, **overrides: Any) -> CertificateRecord:
    not_before = overrides.pop("not_before", tick())
    cert = CertificateRecord(
        serial=new_serial(),
        request_id=request.id,
        issuer="issuing-ca",
        profile=request.profile,
        subject=request.subject,
        sans=request.sans,
        not_before=not_before,
        not_after=not_before + timedelta(days=90),
        der=b"\x30\x82der-placeholder",
        requester=request.requester.label(),
        key_sha256=uuid.uuid4().hex * 2,
    )
    return replace(cert, **overrides)


def issued(**overrides: Any) -> tuple[RequestRecord, CertificateRecord]:
    """A request issued at once, and its certificate: what ``add_request`` records together."""
    request = make_request(status=Status.ISSUED, reason=None, **overrides)
    cert = make_certificate(request)
    return replace(request, serial=cert.serial), cert


def make_event(kind: EventKind = EventKind.PENDING, **overrides: Any) -> Event:
    return Event(kind, overrides.pop("at", tick()), **overrides)


def event_for(record: RequestRecord, kind: EventKind | None = None, **data: Any) -> Event:
    kind = kind or EventKind(str(record.status))
    return Event(kind, tick(), request_id=record.id, serial=record.serial, data=data)
