"""The admin API's inventory: ``GET /certificates`` and ``GET /requests``, filtered and paged.

A page is ``{"certificates"|"requests": [...], "next": CURSOR|null}``. ``next`` is an opaque
cursor naming the last record of the page (its sort time and serial or id), the instant the
first page was asked at (so ``status=expired`` and ``expiring=30d`` mean the same on every
page) and a digest of the filters; ``?cursor=CURSOR`` with the same filters gives the page
after it. The store seeks to that position (keyset paging), so a page deep in a million
certificates costs what the first does, and records issued meanwhile never shift a page: each
record is listed once, in order. A cursor is checked, not trusted: one that was altered, or
given with other filters or to the other list, is a 400. It is not secret (it names a time
and a serial the caller has already seen) and not signed: a forged one can only name a
position in a list its caller may read anyway.

Filters (certificates): status (valid, revoked, expired: not revoked and notAfter passed),
subject and san (substrings, any case), serial (a hex prefix), profile, issuer, protocol,
requester, reason, key_sha256, issued_after/issued_before, expires_after/expires_before (ISO
8601 times with their offset), expiring (a duration, ``30d``: expires within it from now);
sort (issued, the default, or expiry: the default when an expiry filter is given), order (asc,
desc; default desc for issued, asc for expiry), limit (1-1000, default 100). Requests take
the same but issuer, reason, key_sha256 and sort=expiry; their time is their creation.
An unknown parameter is a 400 that names it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from protocols.admin.render import certificate_json, request_json
from protocols.rest.auth import require
from server.errors import Malformed
from server.keys import STORE
from server.model import (
    CertificateQuery,
    CertStatus,
    RequestQuery,
    RevocationReason,
    SortKey,
    Status,
)
from server.roles import Permission

MAX_LIMIT = 1000
_PAGING = frozenset({"limit", "cursor", "pem"})  # not filters: they change no position
_COMMON = frozenset(
    {
        "status",
        "subject",
        "san",
        "serial",
        "profile",
        "protocol",
        "requester",
        "issued_after",
        "issued_before",
        "expires_after",
        "expires_before",
        "expiring",
        "sort",
        "order",
    }
)
CERTIFICATE_FILTERS = _COMMON | {"issuer", "reason", "key_sha256"}
REQUEST_FILTERS = _COMMON
_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=36_500)


def parse_duration(text: str) -> timedelta:
    """A number and a unit: ``90s``, ``15m``, ``12h``, ``30d``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise Malformed(f"{text!r} is not a duration: a number and s, m, h or d, such as 30d")
    delta = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if delta > MAX_DURATION:
        raise Malformed(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return delta


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 time with its offset, in UTC; one without is refused rather than guessed
    (read as the server's local time it would move the instant). Every time a client gives
    the admin API is read here."""
    problem = f"{name} must be an ISO 8601 time with its offset, such as 2026-01-01T00:00:00Z"
    try:
        when = datetime.fromisoformat(value)
        if when.utcoffset() is None:
            raise Malformed(problem)
        # OverflowError: a time at the edge of datetime's range with an offset that takes it
        # past the edge in UTC (0001-01-01T00:00:00+01:00, 9999-12-31T23:59:59-01:00) was a
        # 500 here, and from the store's encoder for a revocation's invalidity_date.
        return when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Malformed(problem) from None


def parse_serial_prefix(text: str) -> str:
    cleaned = text.replace(":", "").strip().lower().lstrip("0")
    if not cleaned or len(cleaned) > 40 or not re.fullmatch(r"[0-9a-f]+", cleaned):
        raise Malformed(f"serial {text!r} must be the start of a hexadecimal serial number")
    return cleaned


def _check_names(query: MultiMapping[str], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(query) - allowed - _PAGING)
    if unknown:
        raise Malformed(f"unknown {what} filter(s): {', '.join(unknown)}")
    repeated = sorted({k for k in query if len(query.getall(k)) > 1})
    if repeated:
        raise Malformed(f"given more than once: {', '.join(repeated)}")


def page_limit(query: MultiMapping[str]) -> int:
    """``limit``: 1 to MAX_LIMIT, 100 when absent."""
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise Malformed(f"limit must be an integer from 1 to {MAX_LIMIT}") from None
    if not 0 < limit <= MAX_LIMIT:
        raise Malformed(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return limit


def parse_enum(cls: Any, value: str | None, name: str) -> Any:
    """``value`` as a member of the enum ``cls`` (None stays None), or ``Malformed``."""
    if value is None:
        return None
    try:
        return cls(value)
    except ValueError:
        names = ", ".join(str(v) for v in cls)
        raise Malformed(f"{name} must be one of {names}") from None


# ------------------------------------------------------------------------ cursors
@dataclass(frozen=True, slots=True)
class Position:
    now: datetime
    time: datetime | None = None
    key: str | None = None


def _digest(kind: str, query: MultiMapping[str]) -> str:
    filters = sorted((k, v) for k, v in query.items() if k not in _PAGING)
    return hashlib.sha256(json.dumps([kind, filters]).encode()).hexdigest()[:16]


def encode_cursor(kind: str, query: MultiMapping[str], pos: Position) -> str:
    if pos.time is None or pos.key is None:
        raise ValueError("a cursor names a record")
    body = json.dumps(
        {
            "l": kind,
            "f": _digest(kind, query),
            "n": pos.now.isoformat(),
            "t": pos.time.isoformat(),
            "k": pos.key,
        },
        separators=(",", ":"),
    ).encode()
    check = hashlib.sha256(b"certforge cursor\0" + body).digest()[:8]
    return base64.urlsafe_b64encode(body + check).decode().rstrip("=")


def decode_cursor(kind: str, query: MultiMapping[str], text: str) -> Position:
    bad = Malformed("cursor is not one this list gave for these filters (use the 'next' it gave)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body, check = raw[:-8], raw[-8:]
        if len(raw) < 9 or hashlib.sha256(b"certforge cursor\0" + body).digest()[:8] != check:
            raise bad
        d = json.loads(body)
        if d["l"] != kind or d["f"] != _digest(kind, query) or not isinstance(d["k"], str):
            raise bad
        return Position(datetime.fromisoformat(d["n"]), datetime.fromisoformat(d["t"]), d["k"])
    except (ValueError, KeyError, TypeError):
        raise bad from None


def _position(kind: str, query: MultiMapping[str]) -> Position:
    if "cursor" in query:
        return decode_cursor(kind, query, query["cursor"])
    return Position(datetime.now(UTC))


# ------------------------------------------------------------------------ windows
@dataclass(slots=True)
class _Windows:
    issued_after: datetime | None = None
    issued_before: datetime | None = None
    expires_after: datetime | None = None
    expires_before: datetime | None = None
    by_expiry: bool = False  # an expiry filter was given: expiry is the default sort


def _windows(query: MultiMapping[str], now: datetime) -> _Windows:
    w = _Windows()
    for name in ("issued_after", "issued_before", "expires_after", "expires_before"):
        if name in query:
            setattr(w, name, parse_time(query[name], name))
    if "expiring" in query:
        w.expires_after = _later(w.expires_after, now)
        w.expires_before = _sooner(w.expires_before, now + parse_duration(query["expiring"]))
    w.by_expiry = bool({"expiring", "expires_after", "expires_before"} & set(query))
    return w


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else max(a, b)


def _sooner(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(a, b)


def _sort(query: MultiMapping[str], default: SortKey) -> tuple[SortKey, bool]:
    sort = parse_enum(SortKey, query.get("sort"), "sort") or default
    order = query.get("order", "desc" if sort is SortKey.ISSUED else "asc")
    if order not in ("asc", "desc"):
        raise Malformed("order must be asc or desc")
    return sort, order == "desc"


# ------------------------------------------------------------------------ handlers
def certificate_query(query: MultiMapping[str], pos: Position, limit: int) -> CertificateQuery:
    _check_names(query, CERTIFICATE_FILTERS, "certificate")
    w = _windows(query, pos.now)
    status = query.get("status")
    if status not in (None, "valid", "revoked", "expired"):
        raise Malformed("status must be one of valid, revoked, expired")
    if status == "valid":  # valid: neither revoked nor expired
        w.expires_after = _later(w.expires_after, pos.now)
    elif status == "expired":  # expired: not revoked, and its notAfter has passed
        w.expires_before = _sooner(w.expires_before, pos.now)
        w.by_expiry = True
    sort, descending = _sort(query, SortKey.EXPIRY if w.by_expiry else SortKey.ISSUED)
    after = None
    if pos.time is not None and pos.key is not None:
        request_id, _, serial = pos.key.partition(" ")
        try:
            after = (pos.time, request_id, int(serial, 16))
        except ValueError:
            raise Malformed("cursor is not one this list gave for these filters") from None
    return CertificateQuery(
        status=None
        if status is None
        else (CertStatus.REVOKED if status == "revoked" else CertStatus.VALID),
        issuer=query.get("issuer"),
        requester=query.get("requester"),
        profile=query.get("profile"),
        protocol=query.get("protocol"),
        subject=query.get("subject") or None,
        san=query.get("san") or None,
        serial_prefix=parse_serial_prefix(query["serial"]) if "serial" in query else None,
        key_sha256=query.get("key_sha256"),
        reason=RevocationReason.parse(query["reason"]) if "reason" in query else None,
        expires_before=w.expires_before,
        expires_after=w.expires_after,
        issued_after=w.issued_after,
        issued_before=w.issued_before,
        sort=sort,
        descending=descending,
        after=after,
        limit=limit + 1,
    )


def request_query(query: MultiMapping[str], pos: Position, limit: int) -> RequestQuery:
    _check_names(query, REQUEST_FILTERS, "request")
    w = _windows(query, pos.now)
    sort, descending = _sort(query, SortKey.ISSUED)
    if sort is not SortKey.ISSUED:
        raise Malformed("requests are sorted by their creation only (sort=issued)")
    return RequestQuery(
        status=parse_enum(Status, query.get("status"), "status"),
        requester=query.get("requester"),
        profile=query.get("profile"),
        protocol=query.get("protocol"),
        subject=query.get("subject") or None,
        san=query.get("san") or None,
        serial_prefix=parse_serial_prefix(query["serial"]) if "serial" in query else None,
        created_after=w.issued_after,
        created_before=w.issued_before,
        expires_after=w.expires_after,
        expires_before=w.expires_before,
        descending=descending,
        after=None if pos.time is None or pos.key is None else (pos.time, pos.key),
        limit=limit + 1,
    )


async def list_certificates(request: web.Request) -> web.Response:
    await require(request, Permission.READ)
    query, limit = request.query, page_limit(request.query)
    pos = _position("certificates", query)
    q = certificate_query(query, pos, limit)
    found = await request.config_dict[STORE].find_certificates(q)
    page, more = found[:limit], len(found) > limit
    cursor = None
    if more:
        last = page[-1]
        when = last.not_after if q.sort is SortKey.EXPIRY else last.not_before
        cursor = encode_cursor(
            "certificates", query, Position(pos.now, when, f"{last.request_id} {last.serial:x}")
        )
    pem = _flag(query, "pem")
    return web.json_response(
        {"certificates": [certificate_json(c, full=pem) for c in page], "next": cursor}
    )


async def list_requests(request: web.Request) -> web.Response:
    await require(request, Permission.READ)
    query, limit = request.query, page_limit(request.query)
    pos = _position("requests", query)
    found = await request.config_dict[STORE].find_requests(request_query(query, pos, limit))
    page, more = found[:limit], len(found) > limit
    cursor = None
    if more:
        last = page[-1]
        cursor = encode_cursor("requests", query, Position(pos.now, last.created_at, last.id))
    pem = _flag(query, "pem")
    return web.json_response(
        {"requests": [request_json(r, full=pem) for r in page], "next": cursor}
    )


def _flag(query: MultiMapping[str], name: str) -> bool:
    value = query.get(name, "false")
    if value not in ("true", "false"):
        raise Malformed(f"{name} must be true or false")
    return value == "true"
