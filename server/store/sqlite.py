"""The embedded store: SQLite in WAL mode, writes grouped into one commit per turn of the loop.

Every state change (a new request with its certificate, a transition, a revocation) runs as
one write in the writer's group commit (``sqlite_writer.py``): ``UPDATE ... WHERE id=? AND
status=?`` plus the event and its outbox rows, checked by ``rowcount`` (``Conflict`` on a
miss), all inside one transaction that is committed before the caller is answered. A
duplicate request id, serial or event id is a ``Conflict`` and leaves nothing of that write
behind. A write that returns a record reads it inside its own transaction, so the caller sees
exactly the state it made.

Point reads (one request, certificate or document by its key; the newest requests of one
transaction) run on the loop, on a read-only connection of their own: they take tens of
microseconds, less than a thread hand-off. Other reads (searches, CRL entries, the outbox) run
on a small pool of reader threads, each with its own read-only connection. WAL lets every
reader read the last commit while the writer works.

The outbox is one row per (consumer, event), written with the event: ``pending_events`` is a
join ordered by the event's sequence number, and an acknowledgement deletes one row, so acks
may arrive in any order. A consumer not configured when an event was recorded never sees it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from server.errors import Conflict, NotFound, StoreUnavailable
from server.model import (
    CertificateQuery,
    CertificateRecord,
    CertStatus,
    Document,
    Event,
    RequestHead,
    RequestQuery,
    RequestRecord,
    RevocationReason,
    RevokedEntry,
    Status,
    StoreCounts,
)
from server.store import codec, sqlite_docs, sqlite_monitor, sqlite_search
from server.store.sqlite_schema import CERTIFICATE_COLUMNS, SCHEMA, names_text, upgrade
from server.store.sqlite_writer import Writer, connect

T = TypeVar("T")
READERS = 4  # sqlite3 releases the GIL while it reads, so a few threads do read in parallel


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/path`` is relative, ``sqlite:////abs/path`` absolute.

    An in-memory database is refused: the writer and the readers use separate connections,
    which would each see a different, empty database."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite:/// URL: {url}")
    path = url.removeprefix("sqlite:///")
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"the SQLite store needs a file path, not {url!r}")
    return path


class SQLiteStore:
    def __init__(self, url: str, *, consumers: Sequence[str]) -> None:
        self._path = sqlite_path(url)
        self._consumers = tuple(consumers)
        self._writer: Writer | None = None
        self._reads: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._point_reader: sqlite3.Connection | None = None  # on the loop

    @property
    def writer(self) -> Writer:
        """The group committer (its ``commits``/``writes`` counters show the grouping)."""
        if self._writer is None:
            raise RuntimeError("the SQLite store is not open")
        return self._writer

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._writer is not None:
            raise RuntimeError("the SQLite store is already open")
        try:
            conn = await asyncio.to_thread(_open_schema, self._path)
        except sqlite3.DatabaseError as exc:  # not a database, locked past the busy timeout...
            raise StoreUnavailable(f"cannot open the SQLite store {self._path}: {exc}") from exc
        self._point_reader = await asyncio.to_thread(connect, self._path, readonly=True)
        self._writer = Writer(conn, asyncio.get_running_loop(), self._path)
        self._reads = ThreadPoolExecutor(READERS, thread_name_prefix="certforge-sqlite-r")

    async def close(self) -> None:
        """Finish the writes already queued, then release the threads and connections."""
        writer, self._writer = self._writer, None
        reads, self._reads = self._reads, None
        if writer is not None:
            writer.close()
            await asyncio.to_thread(writer.wait_closed)
        if reads is not None:
            await asyncio.to_thread(reads.shutdown, wait=True)
        if self._point_reader is not None:
            self._point_reader.close()
            self._point_reader = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        self._local = threading.local()
        for conn in readers:
            conn.close()

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        result: T = await self.writer.submit(fn, durable=durable)
        return result

    def _reader(self) -> sqlite3.Connection:
        """This reader thread's own connection, made on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        if self._reads is None:
            raise RuntimeError("the SQLite store is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._reads, lambda: self._reader().execute(sql, args).fetchall()
        )

    def _lookup(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A point read (by key, a few rows at most), on the loop: tens of microseconds of
        SQLite, less than handing it to a reader thread and back costs."""
        if self._point_reader is None:
            raise RuntimeError("the SQLite store is not open")
        return self._point_reader.execute(sql, args).fetchall()

    # ------------------------------------------------------------- events
    def _insert_event(self, c: sqlite3.Connection, e: Event) -> None:
        """The event and one outbox row per configured consumer, in the caller's write."""
        try:
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
        except sqlite3.IntegrityError:
            raise Conflict(f"event {e.id} exists") from None
        c.executemany(
            "INSERT INTO outbox (consumer, seq) VALUES (?, ?)",
            [(name, cur.lastrowid) for name in self._consumers],
        )

    async def add_event(self, event: Event, *, durable: bool = True) -> None:
        await self._write(lambda c: self._insert_event(c, event), durable=durable)

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
        where, args = ["1=1"], []
        if request_id is not None:
            where.append("request_id = ?")
            args.append(request_id)
        if serial is None:
            sql = f"SELECT data FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
            rows = await self._read(sql, (*args, limit))
            return [Event.from_json(json.loads(r["data"])) for r in rows]
        # By serial: the issued event through its request, the later ones by the serial index.
        key = codec.serial_key(serial)
        cond = " AND ".join(where)
        sql = (
            f"SELECT data, seq FROM events WHERE {cond} AND serial = ? AND kind != 'issued' "
            f"UNION ALL SELECT data, seq FROM events WHERE {cond} AND kind = 'issued' "
            "AND serial = ? AND request_id = "
            "(SELECT request_id FROM certificates WHERE serial = ?) ORDER BY seq LIMIT ?"
        )
        rows = await self._read(sql, (*args, key, *args, key, key, limit))
        return [Event.from_json(json.loads(r["data"])) for r in rows]

    # ----------------------------------------------------------- requests
    def _insert_certificate(
        self, c: sqlite3.Connection, cert: CertificateRecord, *, protocol: str
    ) -> None:
        row = codec.certificate_row(cert)
        row["sans"] = json.dumps(row["sans"])
        row["protocol"] = protocol
        try:
            cur = c.execute(
                f"INSERT INTO certificates ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"serial {cert.serial:x} exists") from None
        c.execute(
            "INSERT INTO cert_text (rowid, subject, sans) VALUES (?, ?, ?)",
            (cur.lastrowid, cert.subject, names_text(cert.sans)),
        )

    async def add_request(
        self, record: RequestRecord, *, certificate: CertificateRecord | None = None, event: Event
    ) -> None:
        def write(c: sqlite3.Connection) -> None:
            try:
                cur = c.execute(
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
            c.execute(
                "INSERT INTO request_text (rowid, subject, sans) VALUES (?, ?, ?)",
                (cur.lastrowid, record.subject, names_text(record.sans)),
            )
            if certificate is not None:
                self._insert_certificate(c, certificate, protocol=record.protocol)
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
        def write(c: sqlite3.Connection) -> sqlite3.Row:
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
            row: sqlite3.Row = c.execute(
                "SELECT * FROM requests WHERE id = ?", (request_id,)
            ).fetchone()
            if certificate is not None:
                self._insert_certificate(c, certificate, protocol=row["protocol"])
            self._insert_event(c, event)
            return row

        return _request(await self._write(write))

    async def get_request(self, request_id: str) -> RequestRecord:
        rows = self._lookup("SELECT * FROM requests WHERE id = ?", (request_id,))
        if not rows:
            raise NotFound(f"no request {request_id}")
        return _request(rows[0])

    async def find_requests(self, q: RequestQuery) -> list[RequestRecord]:
        search = sqlite_search.request_search(q)
        if q.transaction_id is not None and q.limit <= 10:
            # The newest few of one transaction (retries, SCEP polls): index ranges.
            if self._point_reader is None:
                raise RuntimeError("the SQLite store is not open")
            rows = sqlite_search.run(self._point_reader, search)
        else:
            rows = await self._search(search)
        return [_request(r) for r in rows]

    async def _search(self, search: sqlite_search.Search) -> list[sqlite3.Row]:
        if self._reads is None:
            raise RuntimeError("the SQLite store is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._reads, lambda: sqlite_search.run(self._reader(), search)
        )

    async def newest_in_transaction(self, transaction_id: str) -> RequestHead | None:
        rows = self._lookup(
            "SELECT id, status, protocol, requester, created_at, updated_at FROM requests "
            "WHERE transaction_id = ? ORDER BY created_at DESC, id LIMIT 1",
            (transaction_id,),
        )
        return codec.request_head(dict(rows[0])) if rows else None

    # ------------------------------------------------------- certificates
    async def get_certificate(self, serial: int) -> CertificateRecord:
        rows = self._lookup(
            f"SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE serial = ?",
            (codec.serial_key(serial),),
        )
        if not rows:
            raise NotFound(f"no certificate with serial {serial:x}")
        return _cert(rows[0])

    async def find_certificates(self, q: CertificateQuery) -> list[CertificateRecord]:
        return [_cert(r) for r in await self._search(sqlite_search.certificate_search(q))]

    async def find_revoked(
        self,
        issuer: str,
        *,
        expires_after: datetime,
        after_serial: int = 0,
        limit: int = 10_000,
        revoked_since: datetime | None = None,
    ) -> list[RevokedEntry]:
        # The partial, covering index certificates_revoked_entries holds revoked certificates
        # only, in serial order per issuer: each page is one range scan of the index alone,
        # however many valid certificates there are.
        since = codec.ts(revoked_since) if revoked_since is not None else ""
        rows = await self._read(
            "SELECT serial, revoked_at, reason, invalidity_date FROM certificates "
            "INDEXED BY certificates_revoked_entries WHERE issuer = ? AND status = 'revoked' "
            "AND serial > ? AND not_after >= ? AND revoked_at >= ? ORDER BY serial LIMIT ?",
            (issuer, codec.serial_key(after_serial), codec.ts(expires_after), since, limit),
        )
        return [codec.revoked_entry(r) for r in rows]

    async def find_released(
        self, issuer: str, *, since: datetime, expires_after: datetime
    ) -> list[int]:
        # Releases are the 'unrevoked' events (partial index events_unrevoked); the join keeps
        # certificates that are still valid, i.e. not revoked again since.
        rows = await self._read(
            "SELECT DISTINCT c.serial FROM events e INDEXED BY events_unrevoked "
            "JOIN certificates c ON c.serial = e.serial WHERE e.kind = 'unrevoked' "
            "AND e.at >= ? AND c.issuer = ? AND c.status = 'valid' AND c.not_after >= ? "
            "ORDER BY c.serial",
            (codec.ts(since), issuer, codec.ts(expires_after)),
        )
        return [int(r["serial"], 16) for r in rows]

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

        def write(c: sqlite3.Connection) -> sqlite3.Row:
            # VALID -> REVOKED, or a certificate on hold to a final reason (RFC 5280 §5.3.1:
            # certificateHold is the one reversible reason).
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
            return _select_certificate(c, key)

        return _cert(await self._write(write))

    async def unrevoke(self, serial: int, *, event: Event) -> CertificateRecord:
        key = codec.serial_key(serial)

        def write(c: sqlite3.Connection) -> sqlite3.Row:
            cur = c.execute(
                "UPDATE certificates SET status = 'valid', revoked_at = NULL, reason = NULL, "
                "invalidity_date = NULL WHERE serial = ? AND status = 'revoked' "
                "AND reason = 'certificateHold'",
                (key,),
            )
            self._check_cert_update(c, cur, key, "is not on hold")
            self._insert_event(c, event)
            return _select_certificate(c, key)

        return _cert(await self._write(write))

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
    async def put_doc(self, doc: Document, *, durable: bool = True) -> Document:
        now = _now()
        await self._write(lambda c: sqlite_docs.put(c, doc, now), durable=durable)
        return doc

    async def update_doc(self, doc: Document, *, expect_version: int) -> Document:
        new = Document(doc.kind, doc.id, doc.data, expect_version + 1, doc.lookup, doc.expires_at)
        now = _now()
        await self._write(lambda c: sqlite_docs.update(c, new, expect_version, now))
        return new

    async def take_doc(self, kind: str, doc_id: str) -> Document:
        now = _now()
        return await self._write(lambda c: sqlite_docs.take(c, kind, doc_id, now))

    async def get_doc(self, kind: str, doc_id: str) -> Document:
        rows = self._lookup(sqlite_docs.GET, (kind, doc_id, _now()))
        if not rows:
            raise NotFound(f"no {kind} {doc_id}")
        return sqlite_docs.from_row(rows[0])

    async def find_docs(self, kind: str, *, lookup: str) -> list[Document]:
        rows = await self._read(sqlite_docs.FIND, (kind, lookup, _now()))  # maybe many
        return [sqlite_docs.from_row(r) for r in rows]

    async def list_docs(self, kind: str, *, after: str = "", limit: int = 1000) -> list[Document]:
        rows = await self._read(sqlite_docs.LIST, (kind, after, _now(), limit))
        return [sqlite_docs.from_row(r) for r in rows]

    async def purge_expired_docs(self, now: datetime) -> int:
        # In batches, each its own write, so requests' writes go between them; not fsynced:
        # a deletion lost in a crash is made again by the next purge.
        cutoff = codec.ts(now)
        total = 0
        purge = functools.partial(sqlite_docs.purge, now=cutoff)
        while (done := await self._write(purge, durable=False)) > 0:
            total += done
            if done < sqlite_docs.PURGE_BATCH:
                break
        return total

    # ---------------------------------------------------------- monitor
    async def find_expiring(
        self,
        *,
        after: tuple[datetime, int],
        until: datetime,
        limit: int = 500,
        longer_than: timedelta | None = None,
    ) -> list[CertificateRecord]:
        position = (codec.ts(after[0]), codec.serial_key(after[1]))
        args: tuple[Any, ...]
        if longer_than is None:
            sql, args = sqlite_monitor.EXPIRING, (*position, codec.ts(until), limit)
        else:
            # A second of slack for julianday's rounding: never leave out a longer one.
            longer = longer_than.total_seconds() - 1
            sql = sqlite_monitor.EXPIRING_LONGER
            args = (*position, codec.ts(until), longer, limit)
        return [_cert(r) for r in await self._read(sql, args)]

    async def existing_events(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = await self._read(sqlite_monitor.EXISTING_EVENTS, (json.dumps(list(ids)),))
        return {r["id"] for r in rows}

    async def count(self, now: datetime, *, expiring_within: Sequence[timedelta]) -> StoreCounts:
        at = codec.ts(now)
        by_profile = await self._read(sqlite_monitor.BY_PROFILE, (at,))
        expiring = {}
        for window in expiring_within:
            rows = await self._read(sqlite_monitor.EXPIRING_COUNT, (at, codec.ts(now + window)))
            expiring[window] = int(rows[0]["n"])
        pending = (await self._read(sqlite_monitor.PENDING))[0]
        return StoreCounts(
            certificates={(r["state"], r["profile"]): int(r["n"]) for r in by_profile},
            expiring=expiring,
            pending_requests=int(pending["n"]),
            oldest_pending=codec.from_ts(pending["oldest"]),
        )


def _now() -> str:
    return codec.ts(datetime.now(UTC))


def _request(row: sqlite3.Row) -> RequestRecord:
    return codec.request_from(dict(row), json.loads(row["extra"]))


def _select_certificate(c: sqlite3.Connection, key: str) -> sqlite3.Row:
    row: sqlite3.Row = c.execute(
        f"SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE serial = ?", (key,)
    ).fetchone()
    return row


_STATUSES = {s.value: s for s in CertStatus}
_REASONS = {r.value: r for r in RevocationReason}


def _cert(row: sqlite3.Row) -> CertificateRecord:
    """A record from a row of ``CERTIFICATE_COLUMNS``, unpacked by position: a page of a
    thousand (an export, the monitor's walk) is decoded on the loop, and this takes half the
    time of going through a dict and ``codec.certificate_from``."""
    (serial, request_id, issuer, profile, subject, sans, not_before, not_after, der) = row[:9]
    (requester, key_sha256, status, revoked_at, reason, invalidity_date) = row[9:]
    return CertificateRecord(
        serial=int(serial, 16),
        request_id=request_id,
        issuer=issuer,
        profile=profile,
        subject=subject,
        sans=tuple(json.loads(sans)),
        not_before=_time(not_before),
        not_after=_time(not_after),
        der=der,
        requester=requester,
        key_sha256=key_sha256,
        status=_STATUSES[status],
        revoked_at=None if revoked_at is None else _time(revoked_at),
        revocation_reason=None if reason is None else _REASONS[reason],
        invalidity_date=None if invalidity_date is None else _time(invalidity_date),
    )


_time = datetime.fromisoformat


def _open_schema(path: str) -> sqlite3.Connection:
    """The writer's connection, once the schema exists (blocking: run off the loop)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        upgrade(conn)
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn
