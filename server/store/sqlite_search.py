"""How the SQLite store answers the inventory's searches: one page in keyset order, each
filter served by an index (the indexes are in ``sqlite_schema``).

The plan of one page:

1. The walk. The index that gives the sort order: with an equality filter that has an index
   in this order, (filter, time, tie-breaker), that one from the filter's value on; else the
   bare (time, tie-breaker) index. The page is read along it from the keyset position on
   (``(time, tie) < (?, ?)``, a seek, never an offset), the other filters checked in each
   row, and it stops at the limit: cheap whenever the other filters are not rare.
2. Unless one is rare. Every other filter has an index of its own: substrings the trigram
   tables, a serial prefix the primary key, a window on the other time that time's index, an
   equality its index. Each is first counted from that index alone, up to ``CANDIDATES`` + 1
   entries. The rarest with at most ``CANDIDATES`` gives the rows instead: they are read by
   rowid, checked, sorted (at most ``CANDIDATES`` of them) and cut to the page.

3. Substrings are counted last, and only if no other filter is rare: a trigram count costs
   in proportion to the matches it counts (more when the substring's trigrams are common).
   Each is counted to ``FEW``; if none is that rare, the walk is tried for at most
   ``WALK_STEPS`` steps of SQLite's virtual machine (a bound that does not depend on the
   load, about 20,000 rows), which fills the page of a common substring; only if it does not
   are they counted on to ``CANDIDATES``, then step 2 or the whole walk.

So a page reads at most about ``CANDIDATES`` rows plus a few bounded index counts, and a
bounded walk when a substring is in more than ``FEW`` records. The slow cases: several
filters, each common alone, that are rare together (the walk then reads far to fill a
page), and a substring in between (over ``FEW``, too rare for the bounded walk), which pays
for that walk before its rows are read. A substring of fewer than three characters has no
trigram and is only checked along the walk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.model import CertificateQuery, RequestQuery, SortKey
from server.store import codec
from server.store.sqlite_schema import CERTIFICATE_COLUMNS

CANDIDATES = 5000
FEW = 500  # a substring's first count (see _rare_substring)
WALK_STEPS = 100_000  # about 20,000 rows: what a filter of 5,000 in a million needs for 100


@dataclass(frozen=True, slots=True)
class Condition:
    """One filter: its check on a row, and the index that can find its rows alone."""

    sql: str
    args: Sequence[Any] = ()
    probe: str | None = None  # SELECT rowid FROM ...: every matching row, from an index
    probe_args: Sequence[Any] = ()
    walk_index: str | None = None  # an index in the sort order with this filter's value fixed
    by_text: bool = False  # a trigram probe, whose count costs in proportion to its matches


@dataclass(slots=True)
class Search:
    table: str
    time_column: str
    tie_columns: tuple[str, ...]
    walk_index: str
    descending: bool
    after: tuple[str, ...] | None
    limit: int
    conditions: list[Condition] = field(default_factory=list)
    columns: str = "*"  # what a page reads of each row


def like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fts_phrase(column: str, text: str) -> str:
    """An FTS5 query for ``text`` as a substring of ``column``: with the trigram tokenizer,
    a phrase is its trigrams at consecutive positions, which is exactly a substring."""
    return "{" + column + '} : "' + text.replace('"', '""') + '"'


def serial_ranges(prefix: str) -> list[tuple[str, str]]:
    """The primary-key ranges (fixed-width ``codec.serial_key``) of the serials whose hex,
    without leading zeros, starts with ``prefix``: one range per possible length."""
    width = codec.SERIAL_WIDTH
    return [
        (
            "0" * (width - n) + prefix + "0" * (n - len(prefix)),
            "0" * (width - n) + prefix + "f" * (n - len(prefix)),
        )
        for n in range(len(prefix), width + 1)
    ]


def run(conn: sqlite3.Connection, s: Search) -> list[sqlite3.Row]:
    walkers = [c for c in s.conditions if c.walk_index]
    walker = walkers[0] if walkers else None
    best: tuple[int, Condition] | None = None
    substrings = []
    for c in s.conditions:
        if c is walker or c.probe is None:
            continue
        if c.by_text:
            substrings.append(c)
            continue
        found = _count(conn, c, CANDIDATES)
        if found == 0:
            return []
        if found <= CANDIDATES and (best is None or found < best[0]):
            best = (found, c)
    if best is None and substrings:
        planned = _rare_substring(conn, s, walker, substrings)
        return planned if isinstance(planned, list) else _page(conn, s, walker, planned)
    return _page(conn, s, walker, best[1] if best else None)


def _rare_substring(
    conn: sqlite3.Connection, s: Search, walker: Condition | None, substrings: list[Condition]
) -> Condition | list[sqlite3.Row] | None:
    """The rarest substring filter if one is rare, None if none is, or the page itself when
    a bounded walk found it. A trigram count costs in proportion to the matches it counts,
    the more so as the substring's trigrams are common (3.6 µs a match for ``w17x.bench``
    among a million names that all end in ``.bench.test``: 18 ms to count 5,001), so they are
    counted to ``FEW`` first; a substring with more is common enough that a walk bounded to
    ``WALK_STEPS`` usually fills the page, and only if it does not are they counted on to
    ``CANDIDATES``."""
    best: tuple[int, Condition] | None = None
    for limit in (FEW, CANDIDATES):
        for c in substrings:
            found = _count(conn, c, limit)
            if found == 0:
                return []
            if found <= limit and (best is None or found < best[0]):
                best = (found, c)
        if best is not None:
            return best[1]
        if limit == FEW:
            rows = _bounded_page(conn, s, walker, WALK_STEPS)
            if rows is not None:
                return rows
    return None


def _bounded_page(
    conn: sqlite3.Connection, s: Search, walker: Condition | None, steps: int
) -> list[sqlite3.Row] | None:
    """The walk's page, or None if SQLite has not finished it after ``steps`` steps of its
    virtual machine (about 5 a row walked): a bound that does not depend on the machine's
    load, so the same search always takes the same plan."""
    conn.set_progress_handler(lambda: 1, steps)  # its first call interrupts the statement
    try:
        return _page(conn, s, walker, None)
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        return None
    finally:
        conn.set_progress_handler(None, 0)


def _page(
    conn: sqlite3.Connection, s: Search, walker: Condition | None, chosen: Condition | None
) -> list[sqlite3.Row]:
    """The page: the chosen filter's rows read, checked and sorted, or else the walk."""
    where: list[str] = []
    args: list[Any] = []
    for c in s.conditions:
        if c is not chosen:  # the chosen source's rows match it by construction
            where.append(c.sql)
            args += c.args
    order = "DESC" if s.descending else "ASC"
    columns = (s.time_column, *s.tie_columns)
    if s.after is not None:
        marks = ", ".join("?" * len(columns))
        where.append(f"({', '.join(columns)}) {'<' if s.descending else '>'} ({marks})")
        args += s.after
    cond = " AND ".join(where) or "1"
    tail = f"ORDER BY {', '.join(f'{c} {order}' for c in columns)} LIMIT ?"
    if chosen is not None:
        sql = (
            f"SELECT {s.columns} FROM {s.table} NOT INDEXED "
            f"WHERE rowid IN ({chosen.probe}) AND {cond}"
        )
        args = [*chosen.probe_args, *args]
    else:
        index = walker.walk_index if walker else s.walk_index
        sql = f"SELECT {s.columns} FROM {s.table} INDEXED BY {index} WHERE {cond}"
    return conn.execute(f"{sql} {tail}", (*args, s.limit)).fetchall()


def _count(conn: sqlite3.Connection, c: Condition, limit: int) -> int:
    """Its matches, counted up to ``limit`` + 1."""
    row = conn.execute(
        f"SELECT count(*) FROM ({c.probe} LIMIT {limit + 1})", tuple(c.probe_args)
    ).fetchone()
    return int(row[0])


def _eq(table: str, column: str, value: str, index: str, walk: str | None) -> Condition:
    return Condition(
        f"{column} = ?",
        (value,),
        f"SELECT rowid FROM {table} INDEXED BY {index} WHERE {column} = ?",
        (value,),
        walk,
    )


def _text(table: str, column: str, row_column: str, text: str) -> Condition:
    probe = f"SELECT rowid FROM {table} WHERE {table} MATCH ?" if len(text) >= 3 else None
    return Condition(
        f"{row_column} LIKE ? ESCAPE '\\'",
        (like(text),),
        probe,
        (fts_phrase(column, text),),
        by_text=True,
    )


def _window(column: str, after: datetime | None, before: datetime | None) -> tuple[str, list[str]]:
    parts, args = [], []
    if after is not None:
        parts.append(f"{column} > ?")
        args.append(codec.ts(after))
    if before is not None:
        parts.append(f"{column} < ?")
        args.append(codec.ts(before))
    return " AND ".join(parts), args


# ------------------------------------------------------------------ certificates
_CERT_WALKS = {  # equality filters, rarest first: the first one given is walked
    "reason": ("certificates_reason_issued", None),
    "requester": ("certificates_requester_issued", None),
    "profile": ("certificates_profile_issued", None),
    "protocol": ("certificates_protocol_issued", None),
    "issuer": ("certificates_issuer_issued", None),
    "status": ("certificates_status_issued", "certificates_status_expiry"),
}


def certificate_search(q: CertificateQuery) -> Search:
    by_expiry = q.sort is SortKey.EXPIRY
    s = Search(
        table="certificates",
        time_column="not_after" if by_expiry else "not_before",
        tie_columns=("request_id", "serial"),
        walk_index="certificates_expiry" if by_expiry else "certificates_issued",
        descending=q.descending,
        after=None
        if q.after is None
        else (codec.ts(q.after[0]), q.after[1], codec.serial_key(q.after[2])),
        limit=q.limit,
        columns=CERTIFICATE_COLUMNS,
    )
    for name, (issued_index, expiry_index) in _CERT_WALKS.items():
        value = getattr(q, name)
        if value is not None:
            walk = expiry_index if by_expiry else issued_index
            s.conditions.append(_eq("certificates", name, str(value), issued_index, walk))
    if q.key_sha256 is not None:
        s.conditions.append(
            _eq("certificates", "key_sha256", q.key_sha256, "certificates_key", None)
        )
    if q.subject:
        s.conditions.append(_text("cert_text", "subject", "subject", q.subject))
    if q.san:
        s.conditions.append(_text("cert_text", "sans", "sans", q.san))
    if q.serial_prefix:
        s.conditions.append(_serial_prefix(q.serial_prefix))
    issued = _window("not_before", None, q.issued_before)
    if q.issued_after is not None:  # issued_after is inclusive
        issued = (
            " AND ".join(p for p in ("not_before >= ?", issued[0]) if p),
            [codec.ts(q.issued_after), *issued[1]],
        )
    expiry = _window("not_after", q.expires_after, q.expires_before)
    for (sql, args), index, is_sorted in (
        (issued, "certificates_issued", not by_expiry),
        (expiry, "certificates_expiry", by_expiry),
    ):
        if not sql:
            continue
        # A window on the sort's own time is a range of the walk; on the other time, its index
        # can count and find its rows.
        probe = (
            None if is_sorted else f"SELECT rowid FROM certificates INDEXED BY {index} WHERE {sql}"
        )
        s.conditions.append(Condition(sql, args, probe, args))
    return s


def _serial_prefix(prefix: str) -> Condition:
    ranges = serial_ranges(prefix)
    probe = " OR ".join("serial BETWEEN ? AND ?" for _ in ranges)
    return Condition(
        "ltrim(serial, '0') LIKE ?",
        (prefix + "%",),
        f"SELECT rowid FROM certificates WHERE {probe}",
        [v for pair in ranges for v in pair],
    )


# ---------------------------------------------------------------------- requests
_REQUEST_WALKS = ("requester", "profile", "protocol", "status")


def request_search(q: RequestQuery) -> Search:
    s = Search(
        table="requests",
        time_column="created_at",
        tie_columns=("id",),
        walk_index="requests_created_id",
        descending=q.descending,
        after=None if q.after is None else (codec.ts(q.after[0]), q.after[1]),
        limit=q.limit,
    )
    for name in _REQUEST_WALKS:
        value = getattr(q, name)
        if value is not None:
            index = f"requests_{name}_created"
            s.conditions.append(_eq("requests", name, str(value), index, index))
    if q.transaction_id is not None:
        s.conditions.append(
            _eq("requests", "transaction_id", q.transaction_id, "requests_transaction_time", None)
        )
    if q.subject:
        s.conditions.append(_text("request_text", "subject", "subject", q.subject))
    if q.san:
        s.conditions.append(_text("request_text", "sans", "json_extract(extra, '$.sans')", q.san))
    created = []
    args: list[str] = []
    if q.created_after is not None:
        created.append("created_at >= ?")
        args.append(codec.ts(q.created_after))
    if q.created_before is not None:
        created.append("created_at < ?")
        args.append(codec.ts(q.created_before))
    if created:
        s.conditions.append(Condition(" AND ".join(created), args))
    if q.serial_prefix:
        ranges = serial_ranges(q.serial_prefix)
        probe = " OR ".join("c.serial BETWEEN ? AND ?" for _ in ranges)
        s.conditions.append(
            Condition(
                "ltrim(serial, '0') LIKE ?",
                (q.serial_prefix + "%",),
                "SELECT r.rowid FROM certificates c CROSS JOIN requests r ON r.id = c.request_id "
                f"WHERE {probe}",
                [v for pair in ranges for v in pair],
            )
        )
    expiry, expiry_args = _window("c.not_after", q.expires_after, q.expires_before)
    if expiry:
        s.conditions.append(
            Condition(
                "EXISTS (SELECT 1 FROM certificates c WHERE c.serial = requests.serial "
                f"AND {expiry})",
                expiry_args,
                "SELECT r.rowid FROM certificates c INDEXED BY certificates_expiry "
                f"CROSS JOIN requests r ON r.id = c.request_id WHERE {expiry}",
                expiry_args,
            )
        )
    return s
