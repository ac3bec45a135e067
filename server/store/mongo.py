"""The MongoDB store, for several certforge servers sharing one database.

Reached through PyMongo's asyncio API (``AsyncMongoClient``, not Motor), created in ``open()``
on the serving loop, which owns it. There are no multi-document transactions: every state
change is ONE single-document atomic write, which MongoDB guarantees on any deployment.

State changes. A request's transition is ``find_one_and_update({"_id": id, "status": expect},
{"$set": ..., "$push": {"events": ..., "undelivered": ...}})``; no match means ``NotFound`` or
``Conflict``, so of several servers approving one request exactly one wins. Revocation is the
same on the certificate document.

Issuance touches two documents (request and certificate). The REQUEST document is the source of
truth: the write that makes a request issued (``add_request`` with a certificate, or the
``transition`` to issued) also stores the serial, the certificate itself (``certificate``) and
``cert_pending: true`` in that request, in the same single-document write. A unique index on
``requests.serial`` turns a duplicate serial into ``DuplicateKeyError`` -> ``Conflict``, and the
write is then refused whole: nothing is half-recorded. Only after that write is the
``certificates`` document (what searches, revocation, CRLs and OCSP read) inserted, and the
pending copy removed from the request. The certificates collection is thus a derived index:

- A certificate document never exists unless its request is issued with that serial, so a
  reader can never see a certificate that was not issued, nor one issued twice.
- A crash between the two writes leaves the request with ``cert_pending``. Nothing is lost: the
  certificate is in the request. It is indexed by the next ``open()``, and by any server that
  misses the serial (``get_certificate``, ``revoke``) or runs a certificate search, since those
  first finish pending certificates. Indexing is idempotent: the insert never overwrites, and
  a ``DuplicateKeyError`` there means another server (or an earlier try) already did it.

Outbox. Each event is embedded in the document whose state it changes (``events``), and the
same write adds ``"consumer|event id"`` strings to that document's ``undelivered`` array and
lowers ``first_event_at`` with ``$min``. ``pending_events`` finds documents with an entry for
the consumer, oldest ``first_event_at`` first, across the three collections that hold events;
``ack_event`` ``$pull``s the entry, so acks may arrive in any order. Standalone events
(crl_published) are documents of their own in ``events``. With a backlog larger than one
page, the order across documents is approximate (by each document's first event); nothing is
skipped, since every page is read from what is still undelivered.

Serials are 40-digit fixed-width hex strings (never Mongo integers: they reach 159 bits), so
that order and uniqueness match the integer. Times are fixed-width UTC strings, for the same
reason. Documents carry a BSON date for the TTL index too, but reads filter on expiry
themselves, since TTL deletion runs only about once a minute.

Durability: unless the URL sets ``w`` or ``journal``, writes use ``w: "majority", j: true``,
so a write is acknowledged only once it is journaled (on a majority, in a replica set).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from server.errors import Conflict, NotFound, StoreUnavailable
from server.model import (
    CertificateQuery,
    CertificateRecord,
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
from server.store import codec, mongo_search
from server.store.mongo_schema import (
    HIDDEN,
    certificate_doc,
    create_indexes,
    doc_fields,
    from_certificate_doc,
    from_document,
    from_request_doc,
    request_doc,
)

Doc = dict[str, Any]
ClientFactory = Callable[[str], "AsyncMongoClient[Doc]"]
EVENT_HOLDERS = ("requests", "certificates", "events")  # request events come first
REPAIR_BATCH = 100
HOLD = str(RevocationReason.CERTIFICATE_HOLD)


def default_client(url: str) -> AsyncMongoClient[Doc]:
    """A client that acknowledges a write only once it is journaled (unless the URL says)."""
    options = {key.lower() for key in parse_qs(urlsplit(url).query)}
    durable: dict[str, Any] = {}
    if not options & {"w", "journal", "j"}:
        durable = {"w": "majority", "journal": True}
    return AsyncMongoClient(url, tz_aware=True, **durable)


class MongoStore:
    def __init__(
        self, url: str, *, consumers: Sequence[str], client_factory: ClientFactory | None = None
    ) -> None:
        self._url = url
        self._consumers = tuple(consumers)
        self._factory = client_factory or default_client
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        self._client = self._factory(self._url)
        self._db = self._client.get_default_database("certforge")
        try:
            await create_indexes(self._db)
            while await self._finish_pending_certificates():
                pass
        except PyMongoError as exc:
            # Unreachable, refusing our credentials...: one line for the operator. PyMongo's
            # messages name hosts, never the URL's password.
            await self.close()
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreUnavailable(f"cannot open the MongoDB store: {first[:300]}") from exc

    async def close(self) -> None:
        client, self._client, self._db = self._client, None, None
        if client is not None:
            await client.close()

    def _col(self, name: str) -> AsyncCollection[Doc]:
        if self._db is None:
            raise RuntimeError("the Mongo store is not open")
        return self._db[name]

    # ------------------------------------------------------------- events
    def _owed(self, event: Event) -> list[str]:
        return [f"{consumer}|{event.id}" for consumer in self._consumers]

    def _outbox(self, event: Event) -> Doc:
        """The update operators that record ``event`` in a document, with its outbox."""
        return {
            "$push": {"events": event.to_json(), "undelivered": {"$each": self._owed(event)}},
            "$min": {"first_event_at": codec.ts(event.at)},
        }

    def _first_event(self, event: Event) -> Doc:
        """The same, for a document being inserted."""
        return {
            "events": [event.to_json()],
            "undelivered": self._owed(event),
            "first_event_at": codec.ts(event.at),
        }

    async def add_event(self, event: Event, *, durable: bool = True) -> None:
        # ``durable`` is not used: the client's write concern decides for every write.
        try:
            await self._col("events").insert_one({"_id": event.id, **self._first_event(event)})
        except DuplicateKeyError:
            raise Conflict(f"event {event.id} exists") from None

    async def pending_events(self, consumer: str, limit: int = 100) -> list[Event]:
        # Anchored, so MongoDB serves it from the ``undelivered`` index; "[^|]*$" keeps
        # consumer "a" from matching consumer "a|b"'s entries.
        pattern = {"$regex": "^" + re.escape(consumer) + r"\|[^|]*$"}
        wanted: list[Event] = []
        for name in EVENT_HOLDERS:
            cursor = (
                self._col(name)
                .find({"undelivered": pattern}, {"events": 1, "undelivered": 1})
                .sort("first_event_at", ASCENDING)
                .limit(limit)
            )
            for doc in await cursor.to_list(None):
                owed = {u.rpartition("|")[2] for u in doc["undelivered"] if _owner(u) == consumer}
                wanted += [Event.from_json(e) for e in doc["events"] if e["id"] in owed]
        wanted.sort(key=lambda e: e.at)  # stable: same-time events keep their order
        return wanted[:limit]

    async def ack_event(self, consumer: str, event_id: str) -> None:
        key = f"{consumer}|{event_id}"
        for name in EVENT_HOLDERS:
            result = await self._col(name).update_one(
                {"undelivered": key}, {"$pull": {"undelivered": key}}
            )
            if result.matched_count:
                return

    async def list_events(
        self, *, request_id: str | None = None, serial: int | None = None, limit: int = 100
    ) -> list[Event]:
        docs: list[Doc] = []
        for name, flt in _event_sources(request_id, serial):
            cursor = (
                self._col(name).find(flt, {"events": 1}).sort("first_event_at", ASCENDING)
            ).limit(limit)
            docs += await cursor.to_list(None)
        events = {e["id"]: Event.from_json(e) for doc in docs for e in doc.get("events", [])}
        chosen = [
            e
            for e in events.values()
            if (request_id is None or e.request_id == request_id)
            and (serial is None or e.serial == serial)
        ]
        chosen.sort(key=lambda e: e.at)  # stable: same-time events keep their order
        return chosen[:limit]

    # ----------------------------------------------------------- requests
    async def add_request(
        self, record: RequestRecord, *, certificate: CertificateRecord | None = None, event: Event
    ) -> None:
        doc = request_doc(record) | self._first_event(event)
        if certificate is not None:
            doc |= _pending_certificate(certificate)
        try:
            await self._col("requests").insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"request {record.id} or its serial exists") from None
        if certificate is not None:
            await self._index_certificate(record.id, doc["certificate"], record.protocol)

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
        changes: Doc = {"status": str(to), "updated_at": codec.ts(event.at)}
        if reason is not None:
            changes["reason"] = reason
        if certificate is not None:
            changes |= _pending_certificate(certificate)
        try:
            found = await self._col("requests").find_one_and_update(
                {"_id": request_id, "status": str(expect)},
                {"$set": changes, **self._outbox(event)},
                projection=HIDDEN,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise Conflict("that serial number exists") from None
        if found is None:
            current = await self._col("requests").find_one({"_id": request_id}, {"status": 1})
            if current is None:
                raise NotFound(f"no request {request_id}")
            raise Conflict(f"request {request_id} is {current['status']}, not {expect}")
        if certificate is not None:
            await self._index_certificate(request_id, changes["certificate"], found["protocol"])
        return from_request_doc(found)

    async def get_request(self, request_id: str) -> RequestRecord:
        doc = await self._col("requests").find_one({"_id": request_id}, HIDDEN)
        if doc is None:
            raise NotFound(f"no request {request_id}")
        return from_request_doc(doc)

    async def find_requests(self, q: RequestQuery) -> list[RequestRecord]:
        flt, sort = mongo_search.request_find(q)
        window = mongo_search.expiry_filter(q)
        if window is not None:
            flt = {"$and": [flt, {"cert_not_after": window["not_after"]}]}
        cursor = self._col("requests").find(flt, HIDDEN).sort(sort).limit(q.limit)
        return [from_request_doc(d) for d in await cursor.to_list(None)]

    async def newest_in_transaction(self, transaction_id: str) -> RequestHead | None:
        cursor = (
            self._col("requests")
            .find(
                {"transaction_id": transaction_id},
                {"status": 1, "protocol": 1, "requester": 1, "created_at": 1, "updated_at": 1},
            )
            .sort([("created_at", DESCENDING), ("_id", ASCENDING)])
            .limit(1)
        )
        docs = await cursor.to_list(None)
        return codec.request_head(docs[0] | {"id": docs[0]["_id"]}) if docs else None

    # ------------------------------------------- the certificates index
    async def _index_certificate(self, request_id: str, cert_doc: Doc, protocol: str) -> None:
        """Write the derived certificate document (with its request's protocol, a filter of
        the inventory), then drop the request's pending copy."""
        # A DuplicateKeyError means another server, or a try before a crash, got this far.
        with suppress(DuplicateKeyError):
            await self._col("certificates").insert_one(cert_doc | {"protocol": protocol})
        await self._col("requests").update_one(
            {"_id": request_id, "cert_pending": True},
            {"$unset": {"cert_pending": "", "certificate": ""}},
        )

    async def _finish_pending_certificates(self, serial_key: str | None = None) -> int:
        """Index certificates a crash left inside their (issued) request documents."""
        flt: Doc = {"cert_pending": True}
        if serial_key is not None:
            flt["serial"] = serial_key
        cursor = (
            self._col("requests").find(flt, {"certificate": 1, "protocol": 1}).limit(REPAIR_BATCH)
        )
        pending = await cursor.to_list(None)
        for doc in pending:
            await self._index_certificate(doc["_id"], doc["certificate"], doc["protocol"])
        return len(pending)

    # ------------------------------------------------------- certificates
    async def get_certificate(self, serial: int) -> CertificateRecord:
        key = codec.serial_key(serial)
        doc = await self._col("certificates").find_one({"_id": key}, HIDDEN)
        if doc is None and await self._finish_pending_certificates(key):
            doc = await self._col("certificates").find_one({"_id": key}, HIDDEN)
        if doc is None:
            raise NotFound(f"no certificate with serial {serial:x}")
        return from_certificate_doc(doc)

    async def find_certificates(self, q: CertificateQuery) -> list[CertificateRecord]:
        await self._finish_pending_certificates()  # so that a search misses no issued one
        flt, sort = mongo_search.certificate_find(q)
        cursor = self._col("certificates").find(flt, HIDDEN).sort(sort).limit(q.limit)
        return [from_certificate_doc(d) for d in await cursor.to_list(None)]

    async def find_revoked(
        self,
        issuer: str,
        *,
        expires_after: datetime,
        after_serial: int = 0,
        limit: int = 10_000,
        revoked_since: datetime | None = None,
    ) -> list[RevokedEntry]:
        # Served by the "revoked" index (issuer, status, _id): a range scan in serial order.
        flt: Doc = {
            "issuer": issuer,
            "status": "revoked",
            "_id": {"$gt": codec.serial_key(after_serial)},
            "not_after": {"$gte": codec.ts(expires_after)},
        }
        if revoked_since is not None:
            flt["revoked_at"] = {"$gte": codec.ts(revoked_since)}
        cursor = (
            self._col("certificates")
            .find(
                flt,
                {"revoked_at": 1, "reason": 1, "invalidity_date": 1},
            )
            .sort("_id", ASCENDING)
            .limit(limit)
        )
        return [codec.revoked_entry(d | {"serial": d["_id"]}) for d in await cursor.to_list(None)]

    async def revoke(
        self,
        serial: int,
        *,
        reason: RevocationReason,
        at: datetime,
        invalidity_date: datetime | None = None,
        event: Event,
    ) -> CertificateRecord:
        allowed: list[Doc] = [{"status": "valid"}]
        if reason is not RevocationReason.CERTIFICATE_HOLD:
            # RFC 5280 §5.3.1: certificateHold is the one reversible reason, so a held
            # certificate may still be revoked for good.
            allowed.append({"status": "revoked", "reason": HOLD})
        changes = {
            "status": "revoked",
            "revoked_at": codec.ts(at),
            "reason": str(reason),
            "invalidity_date": codec.ts(invalidity_date) if invalidity_date else None,
        }
        return await self._change_certificate(
            serial, {"$or": allowed}, changes, event, "is already revoked"
        )

    async def unrevoke(self, serial: int, *, event: Event) -> CertificateRecord:
        held = {"status": "revoked", "reason": HOLD}
        changes = {
            "status": "valid",
            "revoked_at": None,
            "reason": None,
            "invalidity_date": None,
            "released_at": codec.ts(event.at),  # for find_released (delta CRLs)
        }
        return await self._change_certificate(serial, held, changes, event, "is not on hold")

    async def find_released(
        self, issuer: str, *, since: datetime, expires_after: datetime
    ) -> list[int]:
        cursor = (
            self._col("certificates")
            .find(
                {
                    "released_at": {"$gte": codec.ts(since)},
                    "issuer": issuer,
                    "status": "valid",
                    "not_after": {"$gte": codec.ts(expires_after)},
                },
                {"_id": 1},
            )
            .sort("_id", ASCENDING)
        )
        return [int(d["_id"], 16) for d in await cursor.to_list(None)]

    async def _change_certificate(
        self, serial: int, condition: Doc, changes: Doc, event: Event, conflict: str
    ) -> CertificateRecord:
        key = codec.serial_key(serial)
        for _ in range(2):  # a second try only after finishing a pending certificate
            doc = await self._col("certificates").find_one_and_update(
                {"_id": key, **condition},
                {"$set": changes, **self._outbox(event)},
                projection=HIDDEN,
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return from_certificate_doc(doc)
            if await self._col("certificates").find_one({"_id": key}, {"_id": 1}) is not None:
                raise Conflict(f"certificate {serial:x} {conflict}")
            if not await self._finish_pending_certificates(key):
                break
        raise NotFound(f"no certificate with serial {serial:x}")

    # ---------------------------------------------------------- documents
    @staticmethod
    def _unexpired() -> Doc:
        return {"$or": [{"expires_ts": None}, {"expires_ts": {"$gt": codec.ts(datetime.now(UTC))}}]}

    async def put_doc(self, doc: Document, *, durable: bool = True) -> Document:
        # ``durable`` is not used: the client's write concern decides for every write.
        key = _doc_key(doc.kind, doc.id)
        await self._col("documents").delete_one(
            {"_id": key, "expires_ts": {"$lte": codec.ts(datetime.now(UTC))}}
        )
        try:
            await self._col("documents").insert_one({"_id": key, **doc_fields(doc)})
        except DuplicateKeyError:
            raise Conflict(f"{doc.kind} {doc.id} exists") from None
        return doc

    async def update_doc(self, doc: Document, *, expect_version: int) -> Document:
        new = Document(doc.kind, doc.id, doc.data, expect_version + 1, doc.lookup, doc.expires_at)
        key = _doc_key(doc.kind, doc.id)
        result = await self._col("documents").update_one(
            {"_id": key, "version": expect_version, **self._unexpired()},
            {"$set": doc_fields(new)},
        )
        if result.matched_count != 1:
            found = await self._col("documents").find_one(
                {"_id": key, **self._unexpired()}, {"_id": 1}
            )
            if found is None:
                raise NotFound(f"no {doc.kind} {doc.id}")
            raise Conflict(f"{doc.kind} {doc.id} changed meanwhile")
        return new

    async def take_doc(self, kind: str, doc_id: str) -> Document:
        found = await self._col("documents").find_one_and_delete(
            {"_id": _doc_key(kind, doc_id), **self._unexpired()}
        )
        if found is None:
            raise NotFound(f"no {kind} {doc_id}")
        return from_document(found)

    async def get_doc(self, kind: str, doc_id: str) -> Document:
        found = await self._col("documents").find_one(
            {"_id": _doc_key(kind, doc_id), **self._unexpired()}
        )
        if found is None:
            raise NotFound(f"no {kind} {doc_id}")
        return from_document(found)

    async def find_docs(self, kind: str, *, lookup: str) -> list[Document]:
        cursor = (
            self._col("documents")
            .find({"kind": kind, "lookup": lookup, **self._unexpired()})
            .sort("id", ASCENDING)
        )
        return [from_document(d) for d in await cursor.to_list(None)]

    async def list_docs(self, kind: str, *, after: str = "", limit: int = 1000) -> list[Document]:
        cursor = (
            self._col("documents")
            .find({"kind": kind, "id": {"$gt": after}, **self._unexpired()})
            .sort("id", ASCENDING)
            .limit(limit)
        )
        return [from_document(d) for d in await cursor.to_list(None)]

    async def purge_expired_docs(self, now: datetime) -> int:
        result = await self._col("documents").delete_many({"expires_ts": {"$lte": codec.ts(now)}})
        return int(result.deleted_count)

    # ---------------------------------------------------------- monitor
    async def find_expiring(
        self,
        *,
        after: tuple[datetime, int],
        until: datetime,
        limit: int = 500,
        longer_than: timedelta | None = None,
    ) -> list[CertificateRecord]:
        # ``longer_than`` is not used (Store.find_expiring allows it): the documents' times
        # are strings, which a filter cannot subtract without $expr over every document.
        await self._finish_pending_certificates()  # so that the walk misses no issued one
        not_after, serial = codec.ts(after[0]), codec.serial_key(after[1])
        # The "expiring" index (status, not_after, _id): one range, in the walk's order.
        flt: Doc = {
            "status": "valid",
            "not_after": {"$gte": not_after, "$lte": codec.ts(until)},
            "$or": [{"not_after": {"$gt": not_after}}, {"_id": {"$gt": serial}}],
        }
        cursor = (
            self._col("certificates")
            .find(flt, HIDDEN)
            .sort([("not_after", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [from_certificate_doc(d) for d in await cursor.to_list(None)]

    async def existing_events(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        # A once-only event is a standalone document whose _id is the event's id (add_event).
        cursor = self._col("events").find({"_id": {"$in": list(ids)}}, {"_id": 1})
        return {d["_id"] for d in await cursor.to_list(None)}

    async def count(self, now: datetime, *, expiring_within: Sequence[timedelta]) -> StoreCounts:
        await self._finish_pending_certificates()
        at = codec.ts(now)
        state = {"$cond": [{"$lte": ["$not_after", at]}, "expired", "$status"]}
        groups = await (
            await self._col("certificates").aggregate(
                [{"$group": {"_id": {"profile": "$profile", "state": state}, "n": {"$sum": 1}}}]
            )
        ).to_list(None)
        expiring = {
            window: await self._col("certificates").count_documents(
                {"status": "valid", "not_after": {"$gt": at, "$lte": codec.ts(now + window)}}
            )
            for window in expiring_within
        }
        requests = self._col("requests")
        oldest = await (
            requests.find({"status": "pending"}, {"created_at": 1})
            .sort("created_at", ASCENDING)
            .limit(1)
            .to_list(None)
        )
        return StoreCounts(
            certificates={(g["_id"]["state"], g["_id"]["profile"]): g["n"] for g in groups},
            expiring=expiring,
            pending_requests=await requests.count_documents({"status": "pending"}),
            oldest_pending=codec.from_ts(oldest[0]["created_at"]) if oldest else None,
        )


def _owner(entry: str) -> str:
    return entry.rpartition("|")[0]


def _doc_key(kind: str, doc_id: str) -> str:
    return f"{kind}\x00{doc_id}"


def _pending_certificate(cert: CertificateRecord) -> Doc:
    """What the issuing write puts in the request: see the module docstring."""
    return {
        "serial": codec.serial_key(cert.serial),
        "cert_not_after": codec.ts(cert.not_after),  # the request list's expiry window
        "cert_pending": True,
        "certificate": certificate_doc(cert),
    }


def _event_sources(request_id: str | None, serial: int | None) -> list[tuple[str, Doc]]:
    """Which documents can hold the events asked for, collection by collection."""
    if request_id is not None:
        return [
            ("requests", {"_id": request_id}),
            ("certificates", {"request_id": request_id}),
            ("events", {"events.request_id": request_id}),
        ]
    if serial is not None:
        return [
            ("requests", {"serial": codec.serial_key(serial)}),
            ("certificates", {"_id": codec.serial_key(serial)}),
            ("events", {"events.serial": format(serial, "x")}),
        ]
    return [(name, {"first_event_at": {"$exists": True}}) for name in EVENT_HOLDERS]
