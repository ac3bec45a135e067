"""How the Mongo store lays records out in documents, and the indexes it searches by.

Kept apart from ``mongo.py`` so that the store reads as its writes and their conditions.
Field names match the SQLite columns, so both back-ends share ``codec``'s decoding.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from server.model import CertificateRecord, Document, RequestRecord
from server.store import codec

Doc = dict[str, Any]

# What record reads leave out: the outbox, and a certificate still pending in its request.
HIDDEN: Doc = {"events": 0, "undelivered": 0, "certificate": 0}

# Each list filter's index ends with the sort's time and the tie-breaker ``_id``, so a page
# of one filter's values is a range of its index in keyset order; substring searches read
# every key of ``subject`` or ``names_full`` (see mongo_search).
_REQUEST_SEARCHES = ("status", "requester", "profile", "protocol", "transaction_id")
_REQUEST_SCANS = ("subject", "names_full")
_CERTIFICATE_SEARCHES = ("status", "issuer", "requester", "profile", "protocol")
_CERTIFICATE_SCANS = ("subject", "names_full", "key_sha256", "request_id")
_TIES = [("request_id", ASCENDING), ("_id", ASCENDING)]  # a certificate's order after its time
_OLD_INDEXES = {
    "requests": ("names_bare", "created_at"),
    "certificates": ("names_bare", "not_after", "not_before", "status", "issuer", "requester"),
}


async def create_indexes(db: AsyncDatabase[Doc]) -> None:
    """Create (or confirm) every index; ``create_index`` is a no-op when one exists."""
    requests, certificates, events = db["requests"], db["certificates"], db["events"]
    # The unique index that makes a serial issued at most once (see mongo.py).
    await requests.create_index([("serial", ASCENDING)], unique=True, sparse=True, name="serial")
    for name, fields in _OLD_INDEXES.items():  # indexes of earlier versions, now replaced
        existing = await db[name].index_information()
        for old in fields:
            if old in existing:
                await db[name].drop_index(old)
    for field in _REQUEST_SEARCHES:
        await requests.create_index(
            [(field, ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)],
            name=f"{field}_created",
        )
    for field in _REQUEST_SCANS:
        await requests.create_index([(field, ASCENDING)], name=field)
    await requests.create_index([("created_at", ASCENDING), ("_id", ASCENDING)], name="created")
    await requests.create_index([("cert_not_after", ASCENDING)], sparse=True, name="expiry")
    await requests.create_index([("cert_pending", ASCENDING)], sparse=True, name="cert_pending")
    for field in _CERTIFICATE_SEARCHES:
        await certificates.create_index(
            [(field, ASCENDING), ("not_before", ASCENDING), *_TIES],
            name=f"{field}_issued",
        )
    for field in _CERTIFICATE_SCANS:
        await certificates.create_index([(field, ASCENDING)], name=field)
    await certificates.create_index(
        [("status", ASCENDING), ("not_after", ASCENDING), *_TIES],
        name="status_expiry",
    )
    # Only revoked certificates have a reason: a partial index holds them alone.
    await certificates.create_index(
        [("reason", ASCENDING), ("not_before", ASCENDING), *_TIES],
        name="reason_issued",
        partialFilterExpression={"reason": {"$type": "string"}},
    )
    for field, name in (("not_before", "issued"), ("not_after", "expiry")):
        await certificates.create_index([(field, ASCENDING), *_TIES], name=name)
    # CRL entries (find_revoked): one issuer's revoked certificates in serial order.
    await certificates.create_index(
        [("issuer", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)], name="revoked"
    )
    # The monitor (find_expiring, count): valid certificates by (notAfter, serial), and the
    # counts by profile and state.
    await certificates.create_index(
        [("status", ASCENDING), ("not_after", ASCENDING), ("_id", ASCENDING)], name="expiring"
    )
    await certificates.create_index(
        [("profile", ASCENDING), ("status", ASCENDING), ("not_after", ASCENDING)],
        name="profile_status",
    )
    # Releases from hold (find_released): only released certificates carry released_at.
    await certificates.create_index([("released_at", ASCENDING)], sparse=True, name="released")
    await events.create_index([("events.request_id", ASCENDING)], name="request_id")
    await events.create_index([("events.serial", ASCENDING)], name="serial")
    for collection in (requests, certificates, events):
        await collection.create_index([("undelivered", ASCENDING)], name="undelivered")
        await collection.create_index([("first_event_at", ASCENDING)], name="first_event_at")
    documents = db["documents"]
    await documents.create_index([("kind", ASCENDING), ("lookup", ASCENDING)], name="lookup")
    await documents.create_index([("kind", ASCENDING), ("id", ASCENDING)], name="kind_id")
    # TTL deletion is lazy (about once a minute), so reads also filter on expires_ts.
    await documents.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl")


def _names(sans: tuple[str, ...]) -> Doc:
    return {"names_full": [s.lower() for s in sans]}


def request_doc(record: RequestRecord) -> Doc:
    doc: Doc = {
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
    if record.serial is not None:  # absent, not null: the unique serial index is sparse
        doc["serial"] = codec.serial_key(record.serial)
    return doc


def certificate_doc(cert: CertificateRecord) -> Doc:
    row = codec.certificate_row(cert)
    row["_id"] = row.pop("serial")
    return {**row, **_names(cert.sans)}


def from_request_doc(doc: Doc) -> RequestRecord:
    return codec.request_from(doc | {"id": doc["_id"], "serial": doc.get("serial")}, doc["extra"])


def from_certificate_doc(doc: Doc) -> CertificateRecord:
    return codec.certificate_from(doc | {"serial": doc["_id"]})


def doc_fields(doc: Document) -> Doc:
    return {
        "kind": doc.kind,
        "id": doc.id,
        "version": doc.version,
        "lookup": doc.lookup,
        "data": dict(doc.data),
        "expires_at": doc.expires_at,  # a BSON date, for the TTL index
        "expires_ts": codec.ts(doc.expires_at) if doc.expires_at else None,
    }


def from_document(d: Doc) -> Document:
    return Document(
        d["kind"], d["id"], d["data"], d["version"], d["lookup"], codec.from_ts(d["expires_ts"])
    )
