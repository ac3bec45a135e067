"""One serialization of records for both back-ends: JSON-able dicts, fixed-width serials,
sortable UTC timestamps and the normalized SAN values both search by.

Keeping it in one place is what makes the two back-ends answer the contract suite alike: a
serial, a time or a SAN that one back-end wrote differently would sort or match differently.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.model import (
    CertificateDraft,
    CertificateRecord,
    CertStatus,
    IdentifierType,
    Requester,
    RequestHead,
    RequestRecord,
    RevocationReason,
    RevokedEntry,
    Status,
    Vouched,
)

_SAN_TYPES = frozenset(t.value for t in IdentifierType)

SERIAL_WIDTH = 40  # 160 bits of hex: certificate serials are at most 20 octets (RFC 5280)


def serial_key(serial: int) -> str:
    """Fixed-width lowercase hex, so string order and uniqueness match the integer's."""
    return format(serial, f"0{SERIAL_WIDTH}x")


def ts(value: datetime) -> str:
    """UTC, fixed width (isoformat drops zero microseconds, which would break ordering).

    A naive datetime is refused rather than guessed: read as local time it would silently move
    an expiry or a revocation by the server's UTC offset."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware UTC times")
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")  # "...T12:00:00.000000+00:00"


def from_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def san_values(sans: tuple[str, ...]) -> list[tuple[str, str]]:
    """(full "dns:example.com", bare "example.com") pairs for the SAN search index.

    Both are lowercased, and so is every query (``san_query``): administrators search names
    case-insensitively, and DNS names are case-insensitive anyway (RFC 4343)."""
    return [(s.lower(), s.partition(":")[2].lower()) for s in sans]


def san_query(san: str) -> tuple[str, str]:
    """Which index a SAN search uses, ``("full", "dns:x")`` or ``("bare", "x")``, and the value.

    Only a known type before the first colon makes a full name: a bare IPv6 address
    ("2001:db8::1") or URI ("https://x") has colons of its own."""
    kind, sep, _ = san.partition(":")
    if sep and kind.lower() in _SAN_TYPES:
        return "full", san.lower()
    return "bare", san.lower()


def request_extra(r: RequestRecord) -> dict[str, Any]:
    vouched = r.vouched.to_json()
    if vouched.get("renewal_of") is not None:
        # A serial: up to 159 bits, more than BSON's (or any JSON reader's) integers hold.
        vouched["renewal_of"] = serial_key(vouched["renewal_of"])
    return {
        "requester": r.requester.to_json(),
        "sans": list(r.sans),
        "vouched": vouched,
        "draft": r.draft.to_json() if r.draft else None,
    }


def _vouched(d: dict[str, Any]) -> Vouched:
    renewal_of = d.get("renewal_of")
    if isinstance(renewal_of, str):
        d = d | {"renewal_of": int(renewal_of, 16)}
    return Vouched.from_json(d)


def request_from(row: dict[str, Any], extra: dict[str, Any]) -> RequestRecord:
    created = from_ts(row["created_at"])
    updated = from_ts(row["updated_at"])
    assert created is not None  # noqa: S101 - NOT NULL column
    assert updated is not None  # noqa: S101 - NOT NULL column
    return RequestRecord(
        id=row["id"],
        status=Status(row["status"]),
        created_at=created,
        updated_at=updated,
        protocol=row["protocol"],
        requester=Requester.from_json(extra["requester"]),
        profile=row["profile"],
        csr_der=bytes(row["csr"]),
        subject=row["subject"],
        sans=tuple(extra["sans"]),
        transaction_id=row["transaction_id"],
        vouched=_vouched(extra["vouched"]),
        draft=CertificateDraft.from_json(extra["draft"]) if extra.get("draft") else None,
        reason=row["reason"],
        serial=None if row["serial"] is None else int(row["serial"], 16),
    )


def request_head(row: dict[str, Any]) -> RequestHead:
    created, updated = from_ts(row["created_at"]), from_ts(row["updated_at"])
    assert created is not None  # noqa: S101 - NOT NULL column
    assert updated is not None  # noqa: S101 - NOT NULL column
    return RequestHead(
        id=row["id"],
        status=Status(row["status"]),
        protocol=row["protocol"],
        requester=row["requester"],
        created_at=created,
        updated_at=updated,
    )


def certificate_from(row: dict[str, Any]) -> CertificateRecord:
    not_before, not_after = from_ts(row["not_before"]), from_ts(row["not_after"])
    assert not_before is not None  # noqa: S101 - NOT NULL column
    assert not_after is not None  # noqa: S101 - NOT NULL column
    return CertificateRecord(
        serial=int(row["serial"], 16),
        request_id=row["request_id"],
        issuer=row["issuer"],
        profile=row["profile"],
        subject=row["subject"],
        sans=tuple(row["sans"]),
        not_before=not_before,
        not_after=not_after,
        der=bytes(row["der"]),
        requester=row["requester"],
        key_sha256=row["key_sha256"],
        status=CertStatus(row["status"]),
        revoked_at=from_ts(row["revoked_at"]),
        revocation_reason=RevocationReason(row["reason"]) if row["reason"] else None,
        invalidity_date=from_ts(row["invalidity_date"]),
    )


def certificate_row(c: CertificateRecord) -> dict[str, Any]:
    return {
        "serial": serial_key(c.serial),
        "request_id": c.request_id,
        "issuer": c.issuer,
        "profile": c.profile,
        "subject": c.subject,
        "sans": list(c.sans),
        "not_before": ts(c.not_before),
        "not_after": ts(c.not_after),
        "der": c.der,
        "requester": c.requester,
        "key_sha256": c.key_sha256,
        "status": str(c.status),
        "revoked_at": ts(c.revoked_at) if c.revoked_at else None,
        "reason": str(c.revocation_reason) if c.revocation_reason else None,
        "invalidity_date": ts(c.invalidity_date) if c.invalidity_date else None,
    }


_REASONS = {str(r): r for r in RevocationReason}  # a dict lookup: Enum() is slow per entry


def revoked_entry(row: Any) -> RevokedEntry:
    """A CRL entry from a row or document with serial, revoked_at, reason, invalidity_date.
    Called once per entry of a CRL, so kept to the bare conversions."""
    invalidity = row["invalidity_date"]
    return RevokedEntry(
        int(row["serial"], 16),
        datetime.fromisoformat(row["revoked_at"]),
        _REASONS[row["reason"]],
        datetime.fromisoformat(invalidity) if invalidity else None,
    )
