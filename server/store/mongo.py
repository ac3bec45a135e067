"""The MongoDB store, for several certforge servers sharing one database.

Reached through PyMongo's asyncio API (``AsyncMongoClient``), created in ``open()`` on the
serving loop. No multi-document transactions: every state change is ONE single-document
atomic write, as MongoDB documents them.

- A request's state change is ``update_one({"_id": id, "status": expect}, {"$set": ...,
  "$push": {"events": ...}, ...})``; ``matched_count == 0`` means NotFound or Conflict. Of
  several servers approving one request, exactly one matches.
- The request document is the source of truth for issuance. Issuing writes the serial and the
  certificate INTO the request document in that same single write, with ``cert_pending``;
  a unique (sparse) index on ``requests.serial`` refuses a second request with the same serial
  (DuplicateKeyError -> Conflict). Only then is the ``certificates`` document (what searches,
  revocation and OCSP read) inserted, and the pending copy removed from the request.
  Crash between the two: the request keeps ``cert_pending`` and ``open()`` finishes the
  insertion (idempotent: a DuplicateKeyError there means it was already done). So a
  certificate is never issued twice, never lost, and never visible before its request.
- Events live in the document whose state they change (``events``), with a flat
  ``undelivered`` array of ``"consumer|event id"`` strings: the outbox, written in the same
  single-document write. ``ack_event`` pulls the entry. Standalone events (crl_published)
  are documents of their own in ``events``.
- Unique indexes: request ``_id``, certificate ``_id`` (the serial as 40 hex digits, so
  order and uniqueness match the integer), ``requests.serial``, document ``_id``.
  A TTL index expires documents; reads also filter on expiry, since TTL deletion is lazy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

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

ClientFactory = Callable[[str], Any]
SCAN_LIMIT = 1000


def _names(sans: tuple[str, ...]) -> dict[str, list[str]]:
    pairs = codec.san_values(sans)
    return {"names_full": [f for f, _ in pairs], "names_bare": [b for _, b in pairs]}


class MongoStore:
    def __init__(
        self, url: str, *, consumers: Sequence[str], client_factory: ClientFactory | None = None
    ) -> None:
        self._url = url
        self._consumers = tuple(consumers)
        self._factory = client_factory or (lambda u: AsyncMongoClient(u, tz_aware=True))
        self._client: Any = None
        self._db: Any = None

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        self._client = self._factory(self._url)
        self._db = self._client.get_default_database("certforge")
        await self._create_indexes()
        await self._finish_pending_certificates()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _create_indexes(self) -> None:
        r, c, d = self._db["requests"], self._db["certificates"], self._db["documents"]
        await r.create_index([("serial", ASCENDING)], unique=True, sparse=True, name="serial")
        for field in (
            "status",
            "requester",
            "profile",
            "names_full",
            "names_bare",
            "transaction_id",
            "undelivered",
            "cert_pending",
        ):
            await r.create_index([(field, ASCENDING), ("created_at", DESCENDING)], name=field)
        await r.create_index([("created_at", DESCENDING)], name="created_at")
        for field in (
            "status",
            "issuer",
            "requester",
            "key_sha256",
            "names_full",
            "names_bare",
            "subject",
            "undelivered",
            "not_after",
            "request_id",
        ):
            await c.create_index([(field, ASCENDING)], name=field)
        await c.create_index([("not_before", DESCENDING)], name="not_before")
        await self._db["events"].create_index([("undelivered", ASCENDING)], name="undelivered")
        await d.create_index([("kind", ASCENDING), ("lookup", ASCENDING)], name="lookup")
        await d.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")

    async def _finish_pending_certificates(self) -> None:
        """Insert certificates a crash left inside their request documents."""
        cursor = self._db["requests"].find({"cert_pending": True}, {"certificate": 1})
        for doc in await cursor.to_list(None):
            await self._index_certificate(doc["_id"], doc["certificate"])

    # ------------------------------------------------------------- events
    def _outbox(self, event: Event) -> dict[str, Any]:
        return {
            "$push": {
                "events": event.to_json(),
                "undelivered": {"$each": [f"{c}|{event.id}" for c in self._consumers]},
            }
        }

    async def add_event(self, event: Event) -> None:
        await self._db["events"].insert_one(
            {
                "_id": event.id,
                "events": [event.to_json()],
                "undelivered": [f"{c}|{event.id}" for c in self._consumers],
            }
        )

    async def pending_events(self, consumer: str, limit: int = 100) -> list[Event]:
        prefix = {"$regex": "^" + re.escape(consumer + "|")}
        wanted: list[Event] = []
        for name in ("requests", "certificates", "events"):
            cursor = (
                self._db[name]
                .find({"undelivered": prefix}, {"events": 1, "undelivered": 1})
                .limit(limit)
            )
            for doc in await cursor.to_list(None):
                owed = {
                    u.split("|", 1)[1] for u in doc["undelivered"] if u.startswith(consumer + "|")
                }
                wanted += [Event.from_json(e) for e in doc["events"] if e["id"] in owed]
        wanted.sort(key=lambda e: e.at)  # stable: same-time events keep their order
        return wanted[:limit]

    async def ack_event(self, consumer: str, event_id: str) -> None:
        key = f"{consumer}|{event_id}"
        for name in ("requests", "certificates", "events"):
            result = await self._db[name].update_one(
                {"undelivered": key}, {"$pull": {"undelivered": key}}
            )
            if result.matched_count:
                return

    async def list_events(
        self, *, request_id: str | None = None, serial: int | None = None, limit: int = 100
    ) -> list[Event]:
        docs: list[dict[str, Any]] = []
        if request_id is None and serial is None:
            for name in ("requests", "certificates", "events"):
                docs += await self._db[name].find({}, {"events": 1}).limit(SCAN_LIMIT).to_list(None)
        if request_id is not None:
            docs += (
                await self._db["requests"].find({"_id": request_id}, {"events": 1}).to_list(None)
            )
            docs += (
                await self._db["certificates"]
                .find({"request_id": request_id}, {"events": 1})
                .to_list(None)
            )
        if serial is not None:
            key = codec.serial_key(serial)
            docs += await self._db["requests"].find({"serial": key}, {"events": 1}).to_list(None)
            docs += await self._db["certificates"].find({"_id": key}, {"events": 1}).to_list(None)
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
    @staticmethod
    def _request_doc(record: RequestRecord) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": record.id,
            "status": str(record.status),
            "created_at": codec.ts(record.created_at),
            "updated_at": codec.ts(record.updated_at),
            "protocol": record.protocol,
            "requester": record.requester.label(),
            "profile": record.profile,
            "subject": record.subject,
            "transaction_id": record.transaction_id,
            "reason": record.reason,
            "csr": record.csr_der,
            "extra": codec.request_extra(record),
            **_names(record.sans),
        }
        if record.serial is not None:
            doc["serial"] = codec.serial_key(record.serial)
        return doc

    @staticmethod
    def _certificate_doc(cert: CertificateRecord) -> dict[str, Any]:
        row = codec.certificate_row(cert)
        row["_id"] = row.pop("serial")
        return {**row, **_names(cert.sans), "events": [], "undelivered": []}

    async def add_request(
        self, record: RequestRecord, *, certificate: CertificateRecord | None = None, event: Event
    ) -> None:
        doc = self._request_doc(record)
        doc["events"] = [event.to_json()]
        doc["undelivered"] = [f"{c}|{event.id}" for c in self._consumers]
        if certificate is not None:
            doc.update(
                serial=codec.serial_key(certificate.serial),
                cert_pending=True,
                certificate=self._certificate_doc(certificate),
            )
        try:
            await self._db["requests"].insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"request {record.id} or its serial exists") from None
        if certificate is not None:
            await self._index_certificate(record.id, doc["certificate"])

    async def _index_certificate(self, request_id: str, cert_doc: dict[str, Any]) -> None:
        # A DuplicateKeyError means an attempt before a crash got this far: already indexed.
        with suppress(DuplicateKeyError):
            await self._db["certificates"].insert_one(dict(cert_doc))
        await self._db["requests"].update_one(
            {"_id": request_id}, {"$unset": {"cert_pending": "", "certificate": ""}}
        )

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
        changes: dict[str, Any] = {"status": str(to), "updated_at": codec.ts(event.at)}
        if reason is not None:
            changes["reason"] = reason
        cert_doc = None if certificate is None else self._certificate_doc(certificate)
        if certificate is not None:
            changes.update(
                serial=codec.serial_key(certificate.serial), cert_pending=True, certificate=cert_doc
            )
        try:
            result = await self._db["requests"].update_one(
                {"_id": request_id, "status": str(expect)}, {"$set": changes, **self._outbox(event)}
            )
        except DuplicateKeyError:
            raise Conflict("that serial number exists") from None
        if result.matched_count != 1:
            found = await self._db["requests"].find_one({"_id": request_id}, {"status": 1})
            if found is None:
                raise NotFound(f"no request {request_id}")
            raise Conflict(f"request {request_id} is {found['status']}, not {expect}")
        if cert_doc is not None:
            await self._index_certificate(request_id, cert_doc)
        return await self.get_request(request_id)

    async def get_request(self, request_id: str) -> RequestRecord:
        doc = await self._db["requests"].find_one({"_id": request_id}, {"events": 0})
        if doc is None:
            raise NotFound(f"no request {request_id}")
        return _request(doc)

    async def find_requests(self, q: RequestQuery) -> list[RequestRecord]:
        flt: dict[str, Any] = {}
        for field, value in (
            ("status", q.status),
            ("requester", q.requester),
            ("profile", q.profile),
        ):
            if value is not None:
                flt[field] = str(value)
        if q.subject:
            flt["subject"] = {"$regex": re.escape(q.subject), "$options": "i"}
        if q.san:
            flt.update(_san_filter(q.san))
        cursor = (
            self._db["requests"]
            .find(flt, {"events": 0, "undelivered": 0})
            .sort([("created_at", DESCENDING), ("_id", ASCENDING)])
            .skip(q.offset)
            .limit(q.limit)
        )
        return [_request(d) for d in await cursor.to_list(None)]

    # ------------------------------------------------------- certificates
    async def get_certificate(self, serial: int) -> CertificateRecord:
        doc = await self._db["certificates"].find_one(
            {"_id": codec.serial_key(serial)}, {"events": 0, "undelivered": 0}
        )
        if doc is None:
            raise NotFound(f"no certificate with serial {serial:x}")
        return _certificate(doc)

    async def find_certificates(self, q: CertificateQuery) -> list[CertificateRecord]:
        flt: dict[str, Any] = {}
        for field, value in (
            ("status", q.status),
            ("issuer", q.issuer),
            ("requester", q.requester),
            ("key_sha256", q.key_sha256),
        ):
            if value is not None:
                flt[field] = str(value)
        if q.subject:
            flt["subject"] = {"$regex": re.escape(q.subject), "$options": "i"}
        if q.san:
            flt.update(_san_filter(q.san))
        expiry: dict[str, str] = {}
        if q.expires_before is not None:
            expiry["$lt"] = codec.ts(q.expires_before)
        if q.expires_after is not None:
            expiry["$gt"] = codec.ts(q.expires_after)
        if expiry:
            flt["not_after"] = expiry
        cursor = (
            self._db["certificates"]
            .find(flt, {"events": 0, "undelivered": 0})
            .sort([("not_before", DESCENDING), ("_id", ASCENDING)])
            .skip(q.offset)
            .limit(q.limit)
        )
        return [_certificate(d) for d in await cursor.to_list(None)]

    async def revoke(
        self,
        serial: int,
        *,
        reason: RevocationReason,
        at: datetime,
        invalidity_date: datetime | None = None,
        event: Event,
    ) -> CertificateRecord:
        held = {"status": "revoked", "reason": str(RevocationReason.CERTIFICATE_HOLD)}
        allowed: list[dict[str, Any]] = [{"status": "valid"}]
        if reason is not RevocationReason.CERTIFICATE_HOLD:
            allowed.append(held)  # a held certificate may be revoked for good
        changes = {
            "status": "revoked",
            "revoked_at": codec.ts(at),
            "reason": str(reason),
            "invalidity_date": codec.ts(invalidity_date) if invalidity_date else None,
        }
        await self._change_certificate(
            serial, {"$or": allowed}, changes, event, "is already revoked"
        )
        return await self.get_certificate(serial)

    async def unrevoke(self, serial: int, *, event: Event) -> CertificateRecord:
        held = {"status": "revoked", "reason": str(RevocationReason.CERTIFICATE_HOLD)}
        changes = {"status": "valid", "revoked_at": None, "reason": None, "invalidity_date": None}
        await self._change_certificate(serial, held, changes, event, "is not on hold")
        return await self.get_certificate(serial)

    async def _change_certificate(
        self,
        serial: int,
        condition: dict[str, Any],
        changes: dict[str, Any],
        event: Event,
        conflict: str,
    ) -> None:
        key = codec.serial_key(serial)
        result = await self._db["certificates"].update_one(
            {"_id": key, **condition}, {"$set": changes, **self._outbox(event)}
        )
        if result.matched_count == 1:
            return
        if await self._db["certificates"].find_one({"_id": key}, {"_id": 1}) is None:
            raise NotFound(f"no certificate with serial {serial:x}")
        raise Conflict(f"certificate {serial:x} {conflict}")

    # ---------------------------------------------------------- documents
    @staticmethod
    def _unexpired() -> dict[str, Any]:
        return {"$or": [{"expires_ts": None}, {"expires_ts": {"$gt": codec.ts(datetime.now(UTC))}}]}

    async def put_doc(self, doc: Document) -> Document:
        key = f"{doc.kind}\x00{doc.id}"
        await self._db["documents"].delete_one(
            {"_id": key, "expires_ts": {"$lte": codec.ts(datetime.now(UTC))}}
        )
        try:
            await self._db["documents"].insert_one({"_id": key, **_doc_fields(doc)})
        except DuplicateKeyError:
            raise Conflict(f"{doc.kind} {doc.id} exists") from None
        return doc

    async def update_doc(self, doc: Document, *, expect_version: int) -> Document:
        new = Document(doc.kind, doc.id, doc.data, expect_version + 1, doc.lookup, doc.expires_at)
        key = f"{doc.kind}\x00{doc.id}"
        result = await self._db["documents"].update_one(
            {"_id": key, "version": expect_version}, {"$set": _doc_fields(new)}
        )
        if result.matched_count != 1:
            if await self._db["documents"].find_one({"_id": key}, {"_id": 1}) is None:
                raise NotFound(f"no {doc.kind} {doc.id}")
            raise Conflict(f"{doc.kind} {doc.id} changed meanwhile")
        return new

    async def take_doc(self, kind: str, doc_id: str) -> Document:
        found = await self._db["documents"].find_one_and_delete(
            {"_id": f"{kind}\x00{doc_id}", **self._unexpired()}
        )
        if found is None:
            raise NotFound(f"no {kind} {doc_id}")
        return _document(found)

    async def get_doc(self, kind: str, doc_id: str) -> Document:
        found = await self._db["documents"].find_one(
            {"_id": f"{kind}\x00{doc_id}", **self._unexpired()}
        )
        if found is None:
            raise NotFound(f"no {kind} {doc_id}")
        return _document(found)

    async def find_docs(self, kind: str, *, lookup: str) -> list[Document]:
        cursor = (
            self._db["documents"]
            .find({"kind": kind, "lookup": lookup, **self._unexpired()})
            .sort("id", ASCENDING)
        )
        return [_document(d) for d in await cursor.to_list(None)]

    async def purge_expired_docs(self, now: datetime) -> int:
        result = await self._db["documents"].delete_many({"expires_ts": {"$lte": codec.ts(now)}})
        return int(result.deleted_count)


def _san_filter(san: str) -> dict[str, Any]:
    if ":" in san:
        value = san.lower() if san.startswith("dns:") else san
        return {"names_full": value}
    return {"names_bare": san.lower()}


def _request(doc: dict[str, Any]) -> RequestRecord:
    return codec.request_from(doc | {"id": doc["_id"], "serial": doc.get("serial")}, doc["extra"])


def _certificate(doc: dict[str, Any]) -> CertificateRecord:
    return codec.certificate_from(doc | {"serial": doc["_id"]})


def _doc_fields(doc: Document) -> dict[str, Any]:
    return {
        "kind": doc.kind,
        "id": doc.id,
        "version": doc.version,
        "lookup": doc.lookup,
        "data": dict(doc.data),
        "expires_at": doc.expires_at,
        "expires_ts": codec.ts(doc.expires_at) if doc.expires_at else None,
    }


def _document(d: dict[str, Any]) -> Document:
    return Document(
        d["kind"], d["id"], d["data"], d["version"], d["lookup"], codec.from_ts(d["expires_ts"])
    )
