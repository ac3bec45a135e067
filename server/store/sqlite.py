"""The embedded store: SQLite in WAL mode, one writer thread with group commit.

Every state change (a new request with its certificate, a transition, a revocation) runs as
one write on the writer thread: ``UPDATE ... WHERE id=? AND status=?`` plus the event and its
outbox rows, checked by ``rowcount`` (``Conflict`` on a miss), all inside one transaction that
is committed before the caller is answered. Reads run on their own thread and connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from server.errors import Conflict, NotFound
from server.model import (
    CertificateQuery,
    CertificateRecord,
    Document,
    Event,
    RequestQuery,
    RequestRecord,
    RevocationReason,
    Status,
)
from server.store import codec
from server.store.sqlite_schema import SCHEMA
from server.store.sqlite_writer import Writer, connect

T = TypeVar("T")


def sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite:/// URL: {url}")
    return url.removeprefix("sqlite:///") or ":memory:"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SQLiteStore:
    def __init__(self, url: str, *, consumers: Sequence[str]) -> None:
        self._path = sqlite_path(url)
        self._consumers = tuple(consumers)
        self._writer: Writer | None = None
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certforge-sqlite-r")
        self._reader: sqlite3.Connection | None = None

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(_create_schema, self._path)
        self._writer = Writer(self._path, asyncio.get_running_loop())
        self._reader = await self._read_raw(lambda: connect(self._path))

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
            self._writer = None
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await self._read_raw(reader.close)
        self._reads.shutdown(wait=True)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._writer is not None, "store is not open"  # noqa: S101
        result: T = await self._writer.submit(fn)
        return result

    async def _read_raw(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn)

    async def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        def run() -> list[sqlite3.Row]:
            assert self._reader is not None  # noqa: S101
            return self._reader.execute(sql, args).fetchall()

        return await self._read_raw(run)

    # ------------------------------------------------------------- events
    def _insert_event(self, c: sqlite3.Connection, e: Event) -> None:
        cur = c.execute(
            "INSERT INTO events (id, kind, at, request_id, serial, data) VALUES (?,?,?,?,?,?)",
            (
                e.id,
                str(e.kind),
                codec.ts(e.at),
                e.request_id,
                None if e.serial is None else codec.serial_key(e.serial),
                json.dumps(e.to_json()),
            ),
        )
        c.executemany(
            "INSERT INTO outbox (consumer, seq) VALUES (?, ?)",
            [(name, cur.lastrowid) for name in self._consumers],
        )

    async def add_event(self, event: Event) -> None:
        await self._write(lambda c: self._insert_event(c, event))

    async def pending_events(self, consumer: str, limit: int = 100) -> list[Event]:
        rows = await self._read(
            "SELECT e.data FROM outbox o JOIN events e ON e.seq = o.seq "
            "WHERE o.consumer = ? ORDER BY o.seq LIMIT ?",
            (consumer, limit),
        )
        return [Event.from_json(json.loads(r["data"])) for r in rows]

    async def ack_event(self, consumer: str, event_id: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM outbox WHERE consumer = ? AND seq = "
                "(SELECT seq FROM events WHERE id = ?)",
                (consumer, event_id),
            )

        await self._write(write)

    async def list_events(
        self, *, request_id: str | None = None, serial: int | None = None, limit: int = 100
    ) -> list[Event]:
        where, args = [], []
        if request_id is not None:
            where.append("request_id = ?")
            args.append(request_id)
        if serial is not None:
            where.append("serial = ?")
            args.append(codec.serial_key(serial))
        sql = "SELECT data FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._read(sql + " ORDER BY seq LIMIT ?", (*args, limit))
        return [Event.from_json(json.loads(r["data"])) for r in rows]

    # ----------------------------------------------------------- requests
    def _insert_certificate(self, c: sqlite3.Connection, cert: CertificateRecord) -> None:
        row = codec.certificate_row(cert)
        row["sans"] = json.dumps(row["sans"])
        try:
            c.execute(
                f"INSERT INTO certificates ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"serial {cert.serial:x} exists") from None
        c.executemany(
            "INSERT INTO cert_names (serial, full, bare) VALUES (?,?,?)",
            [(row["serial"], f, b) for f, b in codec.san_values(cert.sans)],
        )

    async def add_request(
        self, record: RequestRecord, *, certificate: CertificateRecord | None = None, event: Event
    ) -> None:
        def write(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO requests (id, status, created_at, updated_at, protocol, "
                    "requester, profile, subject, transaction_id, reason, serial, csr, extra) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        record.id,
                        str(record.status),
                        codec.ts(record.created_at),
                        codec.ts(record.updated_at),
                        record.protocol,
                        record.requester.label(),
                        record.profile,
                        record.subject,
                        record.transaction_id,
                        record.reason,
                        None if record.serial is None else codec.serial_key(record.serial),
                        record.csr_der,
                        json.dumps(codec.request_extra(record)),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"request {record.id} exists") from None
            c.executemany(
                "INSERT INTO request_names (request_id, full, bare) VALUES (?,?,?)",
                [(record.id, f, b) for f, b in codec.san_values(record.sans)],
            )
            if certificate is not None:
                self._insert_certificate(c, certificate)
            self._insert_event(c, event)

        await self._write(write)

    async def transition(
        self,
        request_id: str,
        *,
        expect: Status,
        to: Status,
        reason: str | None = None,
        certificate: CertificateRecord | None = None,
        event: Event,
    ) -> RequestRecord:
        def write(c: sqlite3.Connection) -> None:
            serial = None if certificate is None else codec.serial_key(certificate.serial)
            cur = c.execute(
                "UPDATE requests SET status = ?, updated_at = ?, reason = COALESCE(?, reason),"
                " serial = COALESCE(?, serial) WHERE id = ? AND status = ?",
                (str(to), codec.ts(event.at), reason, serial, request_id, str(expect)),
            )
            if cur.rowcount != 1:
                found = c.execute(
                    "SELECT status FROM requests WHERE id = ?", (request_id,)
                ).fetchone()
                if found is None:
                    raise NotFound(f"no request {request_id}")
                raise Conflict(f"request {request_id} is {found['status']}, not {expect}")
            if certificate is not None:
                self._insert_certificate(c, certificate)
            self._insert_event(c, event)

        await self._write(write)
        return await self.get_request(request_id)

    async def get_request(self, request_id: str) -> RequestRecord:
        rows = await self._read("SELECT * FROM requests WHERE id = ?", (request_id,))
        if not rows:
            raise NotFound(f"no request {request_id}")
        return codec.request_from(dict(rows[0]), json.loads(rows[0]["extra"]))

    async def find_requests(self, q: RequestQuery) -> list[RequestRecord]:
        where, args = ["1=1"], []
        for column, value in (
            ("status", q.status),
            ("requester", q.requester),
            ("profile", q.profile),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if q.subject:
            where.append("subject LIKE ? ESCAPE '\\'")
            args.append(_like(q.subject))
        if q.san:
            column = "full" if ":" in q.san else "bare"
            where.append(f"id IN (SELECT request_id FROM request_names WHERE {column} = ?)")
            args.append(q.san.lower() if column == "bare" or q.san.startswith("dns:") else q.san)
        rows = await self._read(
            f"SELECT * FROM requests WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (*args, q.limit, q.offset),
        )
        return [codec.request_from(dict(r), json.loads(r["extra"])) for r in rows]

    # ------------------------------------------------------- certificates
    async def get_certificate(self, serial: int) -> CertificateRecord:
        rows = await self._read(
            "SELECT * FROM certificates WHERE serial = ?", (codec.serial_key(serial),)
        )
        if not rows:
            raise NotFound(f"no certificate with serial {serial:x}")
        return _cert(rows[0])

    async def find_certificates(self, q: CertificateQuery) -> list[CertificateRecord]:
        where, args = ["1=1"], []
        for column, value in (
            ("status", q.status),
            ("issuer", q.issuer),
            ("requester", q.requester),
            ("key_sha256", q.key_sha256),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if q.subject:
            where.append("subject LIKE ? ESCAPE '\\'")
            args.append(_like(q.subject))
        if q.san:
            column = "full" if ":" in q.san else "bare"
            where.append(f"serial IN (SELECT serial FROM cert_names WHERE {column} = ?)")
            args.append(q.san)
        if q.expires_before is not None:
            where.append("not_after < ?")
            args.append(codec.ts(q.expires_before))
        if q.expires_after is not None:
            where.append("not_after > ?")
            args.append(codec.ts(q.expires_after))
        rows = await self._read(
            f"SELECT * FROM certificates WHERE {' AND '.join(where)} "
            "ORDER BY not_before DESC, serial LIMIT ? OFFSET ?",
            (*args, q.limit, q.offset),
        )
        return [_cert(r) for r in rows]

    async def revoke(
        self,
        serial: int,
        *,
        reason: RevocationReason,
        at: datetime,
        invalidity_date: datetime | None = None,
        event: Event,
    ) -> CertificateRecord:
        key = codec.serial_key(serial)

        def write(c: sqlite3.Connection) -> None:
            # VALID -> REVOKED, or a certificate on hold to a final reason.
            cur = c.execute(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ?, "
                "invalidity_date = ? WHERE serial = ? AND (status = 'valid' OR "
                "(reason = 'certificateHold' AND ? != 'certificateHold'))",
                (
                    codec.ts(at),
                    str(reason),
                    codec.ts(invalidity_date) if invalidity_date else None,
                    key,
                    str(reason),
                ),
            )
            self._check_cert_update(c, cur, key, "is already revoked")
            self._insert_event(c, event)

        await self._write(write)
        return await self.get_certificate(serial)

    async def unrevoke(self, serial: int, *, event: Event) -> CertificateRecord:
        key = codec.serial_key(serial)

        def write(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE certificates SET status = 'valid', revoked_at = NULL, reason = NULL, "
                "invalidity_date = NULL WHERE serial = ? AND status = 'revoked' "
                "AND reason = 'certificateHold'",
                (key,),
            )
            self._check_cert_update(c, cur, key, "is not on hold")
            self._insert_event(c, event)

        await self._write(write)
        return await self.get_certificate(serial)

    @staticmethod
    def _check_cert_update(
        c: sqlite3.Connection, cur: sqlite3.Cursor, key: str, conflict: str
    ) -> None:
        if cur.rowcount == 1:
            return
        if c.execute("SELECT 1 FROM certificates WHERE serial = ?", (key,)).fetchone() is None:
            raise NotFound(f"no certificate with serial {int(key, 16):x}")
        raise Conflict(f"certificate {int(key, 16):x} {conflict}")

    # ---------------------------------------------------------- documents
    async def put_doc(self, doc: Document) -> Document:
        now = codec.ts(datetime.now(UTC))

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM documents WHERE kind = ? AND id = ? AND expires_at <= ?",
                (doc.kind, doc.id, now),
            )
            try:
                c.execute(
                    "INSERT INTO documents (kind, id, version, lookup, expires_at, data)"
                    " VALUES (?,?,?,?,?,?)",
                    _doc_row(doc),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"{doc.kind} {doc.id} exists") from None

        await self._write(write)
        return doc

    async def update_doc(self, doc: Document, *, expect_version: int) -> Document:
        new = Document(doc.kind, doc.id, doc.data, expect_version + 1, doc.lookup, doc.expires_at)

        def write(c: sqlite3.Connection) -> None:
            row = _doc_row(new)
            cur = c.execute(
                "UPDATE documents SET version = ?, lookup = ?, expires_at = ?, "
                "data = ? WHERE kind = ? AND id = ? AND version = ?",
                (*row[2:], doc.kind, doc.id, expect_version),
            )
            if cur.rowcount != 1:
                found = c.execute(
                    "SELECT 1 FROM documents WHERE kind = ? AND id = ?", (doc.kind, doc.id)
                ).fetchone()
                if found is None:
                    raise NotFound(f"no {doc.kind} {doc.id}")
                raise Conflict(f"{doc.kind} {doc.id} changed meanwhile")

        await self._write(write)
        return new

    async def take_doc(self, kind: str, doc_id: str) -> Document:
        now = codec.ts(datetime.now(UTC))

        def write(c: sqlite3.Connection) -> Document:
            row = c.execute(
                "SELECT * FROM documents WHERE kind = ? AND id = ? AND "
                "(expires_at IS NULL OR expires_at > ?)",
                (kind, doc_id, now),
            ).fetchone()
            if row is None:
                raise NotFound(f"no {kind} {doc_id}")
            c.execute("DELETE FROM documents WHERE kind = ? AND id = ?", (kind, doc_id))
            return _doc(row)

        return await self._write(write)

    async def get_doc(self, kind: str, doc_id: str) -> Document:
        rows = await self._read(
            "SELECT * FROM documents WHERE kind = ? AND id = ? AND "
            "(expires_at IS NULL OR expires_at > ?)",
            (kind, doc_id, codec.ts(datetime.now(UTC))),
        )
        if not rows:
            raise NotFound(f"no {kind} {doc_id}")
        return _doc(rows[0])

    async def find_docs(self, kind: str, *, lookup: str) -> list[Document]:
        rows = await self._read(
            "SELECT * FROM documents WHERE kind = ? AND lookup = ? AND "
            "(expires_at IS NULL OR expires_at > ?) ORDER BY id",
            (kind, lookup, codec.ts(datetime.now(UTC))),
        )
        return [_doc(r) for r in rows]

    async def purge_expired_docs(self, now: datetime) -> int:
        def write(c: sqlite3.Connection) -> int:
            return c.execute(
                "DELETE FROM documents WHERE expires_at <= ?", (codec.ts(now),)
            ).rowcount

        return await self._write(write)


def _cert(row: sqlite3.Row) -> CertificateRecord:
    d = dict(row)
    d["sans"] = json.loads(d["sans"])
    return codec.certificate_from(d)


def _doc_row(doc: Document) -> tuple[Any, ...]:
    return (
        doc.kind,
        doc.id,
        doc.version,
        doc.lookup,
        codec.ts(doc.expires_at) if doc.expires_at else None,
        json.dumps(dict(doc.data)),
    )


def _doc(row: sqlite3.Row) -> Document:
    return Document(
        row["kind"],
        row["id"],
        json.loads(row["data"]),
        row["version"],
        row["lookup"],
        codec.from_ts(row["expires_at"]),
    )


def _create_schema(path: str) -> None:
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
    finally:
        conn.close()
