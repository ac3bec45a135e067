"""The MongoDB store's inventory searches: a filter, a sort and a keyset position per page.

Each page is one ``find`` sorted by (time, ``_id``) with the keyset condition ``time < t OR
(time = t AND _id < id)`` (for a descending page), so a deep page is an index seek, never a
skip. Every filter has an index (``mongo_schema.create_indexes``): equality filters
(filter, time, ``_id``) for the issued order, status also for the expiry order; the planner
picks among them and the time indexes. What MongoDB does with the rest, honestly:

- Subject and SAN substrings are case-insensitive, unanchored regular expressions on the
  ``subject`` field and on the lowercase ``names_full`` array. MongoDB can answer them from
  those indexes, but an unanchored regex still reads every key of the index (no document is
  fetched unless its key matches): a scan of the index, not a range of it.
- A serial prefix is one ``_id`` range per possible length of the serial (an ``$or``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from server.model import CertificateQuery, RequestQuery, SortKey
from server.store import codec

Doc = dict[str, Any]


def serial_ranges(prefix: str) -> list[Doc]:
    width = codec.SERIAL_WIDTH
    return [
        {
            "$gte": "0" * (width - n) + prefix + "0" * (n - len(prefix)),
            "$lte": "0" * (width - n) + prefix + "f" * (n - len(prefix)),
        }
        for n in range(len(prefix), width + 1)
    ]


def _substring(text: str) -> Doc:
    return {"$regex": re.escape(text), "$options": "i"}


def _keyset(fields: tuple[str, ...], after: tuple[str, ...] | None, descending: bool) -> Doc:
    """After ``after`` in the order of ``fields``: (a < x) or (a = x and b < y) or ..."""
    if after is None:
        return {}
    op = "$lt" if descending else "$gt"
    branches = [
        {**dict(zip(fields[:n], after[:n], strict=True)), fields[n]: {op: after[n]}}
        for n in range(len(fields))
    ]
    return {"$or": branches}


def _window(after: datetime | None, before: datetime | None, *, inclusive: bool) -> Doc:
    bounds: Doc = {}
    if after is not None:
        bounds["$gte" if inclusive else "$gt"] = codec.ts(after)
    if before is not None:
        bounds["$lt"] = codec.ts(before)
    return bounds


def _text_and_serial(
    subject: str | None, san: str | None, serial_prefix: str | None, serial_field: str
) -> list[Doc]:
    """The substring and serial-prefix clauses certificates and requests share."""
    clauses: list[Doc] = []
    if subject:
        clauses.append({"subject": _substring(subject)})
    if san:
        clauses.append({"names_full": _substring(san.lower())})
    if serial_prefix:
        clauses.append({"$or": [{serial_field: r} for r in serial_ranges(serial_prefix)]})
    return clauses


def certificate_find(q: CertificateQuery) -> tuple[Doc, list[tuple[str, int]]]:
    """The filter and sort of one page of certificates."""
    clauses: list[Doc] = []
    for field in ("status", "issuer", "requester", "profile", "protocol", "key_sha256", "reason"):
        value = getattr(q, field)
        if value is not None:
            clauses.append({field: str(value)})
    clauses += _text_and_serial(q.subject, q.san, q.serial_prefix, "_id")
    if issued := _window(q.issued_after, q.issued_before, inclusive=True):
        clauses.append({"not_before": issued})
    expiry: Doc = {}
    if q.expires_after is not None:
        expiry["$gt"] = codec.ts(q.expires_after)
    if q.expires_before is not None:
        expiry["$lt"] = codec.ts(q.expires_before)
    if expiry:
        clauses.append({"not_after": expiry})
    fields = ("not_after" if q.sort is SortKey.EXPIRY else "not_before", "request_id", "_id")
    after = None
    if q.after is not None:
        after = (codec.ts(q.after[0]), q.after[1], codec.serial_key(q.after[2]))
    if keyset := _keyset(fields, after, q.descending):
        clauses.append(keyset)
    direction = DESCENDING if q.descending else ASCENDING
    return _and(clauses), [(f, direction) for f in fields]


def request_find(q: RequestQuery) -> tuple[Doc, list[tuple[str, int]]]:
    """The filter and sort of one page of requests; the expiry window and the serial prefix
    need the certificates, so the caller resolves them to serials first (``serials``)."""
    clauses: list[Doc] = []
    for field in ("status", "requester", "profile", "protocol", "transaction_id"):
        value = getattr(q, field)
        if value is not None:
            clauses.append({field: str(value)})
    clauses += _text_and_serial(q.subject, q.san, q.serial_prefix, "serial")
    if created := _window(q.created_after, q.created_before, inclusive=True):
        clauses.append({"created_at": created})
    after = None if q.after is None else (codec.ts(q.after[0]), q.after[1])
    if keyset := _keyset(("created_at", "_id"), after, q.descending):
        clauses.append(keyset)
    direction = DESCENDING if q.descending else ASCENDING
    return _and(clauses), [("created_at", direction), ("_id", direction)]


def expiry_filter(q: RequestQuery) -> Doc | None:
    """The certificates whose requests an expiry window of ``q`` selects, or None."""
    expiry: Doc = {}
    if q.expires_after is not None:
        expiry["$gt"] = codec.ts(q.expires_after)
    if q.expires_before is not None:
        expiry["$lt"] = codec.ts(q.expires_before)
    return {"not_after": expiry} if expiry else None


def _and(clauses: list[Doc]) -> Doc:
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
