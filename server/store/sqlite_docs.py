"""SQLite writes and reads of protocol documents (tokens, nonces, ACME accounts...).

Each write is a plain function of the writer's connection, run inside the writer's
group commit (``sqlite_writer.py``). An expired document is invisible to every call, even
before ``purge`` deletes it, so a caller never depends on when the purge last ran.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from server.errors import Conflict, NotFound
from server.model import Document
from server.store import codec

# Literal SQL (no assembly): every value, the current time included, is a bound parameter.
GET = "SELECT * FROM documents WHERE kind = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)"
FIND = (
    "SELECT * FROM documents WHERE kind = ? AND lookup = ? AND "
    "(expires_at IS NULL OR expires_at > ?) ORDER BY id"
)
LIST = (
    "SELECT * FROM documents WHERE kind = ? AND id > ? AND "
    "(expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?"
)


def put(c: sqlite3.Connection, doc: Document, now: str) -> None:
    """Insert; an expired namesake is replaced, a live one is a ``Conflict``."""
    c.execute(
        "DELETE FROM documents WHERE kind = ? AND id = ? AND expires_at <= ?",
        (doc.kind, doc.id, now),
    )
    try:
        c.execute(
            "INSERT INTO documents (kind, id, version, lookup, expires_at, data)"
            " VALUES (?,?,?,?,?,?)",
            _row(doc),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"{doc.kind} {doc.id} exists") from None


def update(c: sqlite3.Connection, new: Document, expect_version: int, now: str) -> None:
    """Replace if the stored version is ``expect_version``. An expired document is gone as
    far as callers can tell, so updating one is ``NotFound``."""
    cur = c.execute(
        "UPDATE documents SET version = ?, lookup = ?, expires_at = ?, data = ? "
        "WHERE kind = ? AND id = ? AND version = ? AND (expires_at IS NULL OR expires_at > ?)",
        (*_row(new)[2:], new.kind, new.id, expect_version, now),
    )
    if cur.rowcount == 1:
        return
    if c.execute(GET, (new.kind, new.id, now)).fetchone() is None:
        raise NotFound(f"no {new.kind} {new.id}")
    raise Conflict(f"{new.kind} {new.id} changed meanwhile")


def take(c: sqlite3.Connection, kind: str, doc_id: str, now: str) -> Document:
    """Select and delete in one write transaction (SQLite has one writer at a time): of
    concurrent takers, exactly one finds the row."""
    row = c.execute(GET, (kind, doc_id, now)).fetchone()
    if row is None:
        raise NotFound(f"no {kind} {doc_id}")
    c.execute("DELETE FROM documents WHERE kind = ? AND id = ?", (kind, doc_id))
    return from_row(row)


PURGE_BATCH = 1000  # rows per write: a backlog of expired nonces must not hold the writer


def purge(c: sqlite3.Connection, now: str) -> int:
    return c.execute(
        "DELETE FROM documents WHERE rowid IN"
        " (SELECT rowid FROM documents WHERE expires_at <= ? LIMIT ?)",
        (now, PURGE_BATCH),
    ).rowcount


def from_row(row: sqlite3.Row) -> Document:
    return Document(
        row["kind"],
        row["id"],
        json.loads(row["data"]),
        row["version"],
        row["lookup"],
        codec.from_ts(row["expires_at"]),
    )


def _row(doc: Document) -> tuple[Any, ...]:
    return (
        doc.kind,
        doc.id,
        doc.version,
        doc.lookup,
        codec.ts(doc.expires_at) if doc.expires_at else None,
        json.dumps(dict(doc.data)),
    )
