"""The SQLite schema, with the indexes administrators search by: status, requester, profile,
SAN, expiry, key, issuer; and what the issuance rate taught about each index.

Every index entry an issuance adds at a random place in a B-tree dirties a page of its own,
and every dirtied page is written whole to the WAL at the commit (and again at the
checkpoint): four kilobytes for a few dozen bytes of index. So the writes are shaped to land
on the same few pages:
- request and event ids begin with the time (``server.model.new_id``), so their indexes and
  the events' request index grow at their right edge, like the time indexes;
- an ``issued`` event is found through its request, so only later events (revocations) are
  indexed by serial;
- subjects and SANs are searched as case-insensitive substrings, which no B-tree serves: they
  go into contentless FTS5 tables with the trigram tokenizer (``cert_text``, ``request_text``,
  keyed by the row's rowid). FTS5 writes each commit's entries as one new segment and merges
  segments in the background, so a name costs no random page (the per-name index tables this
  replaced, ``cert_names`` and ``request_names``, dirtied one random page per SAN);
- the inventory lists page by keyset, so every index they walk ends with the sort's
  tie-breakers, and each filter's index is (filter, time, tie-breakers): entries of one value
  land at the right edge of that value's range, like the time indexes. For certificates the
  first tie-breaker is the request id, not the serial: notBefore is whole seconds, so a
  second's hundreds of certificates tie, and random serials would scatter their entries over
  that second's pages (it tripled the bytes written per issuance); request ids grow with time;
- the transaction index (SCEP transactions, ACME orders, EST retries) holds only the requests
  that have a transaction id, newest last, so "the newest of this transaction" is no sort.
What stays random is what must: the serial number and the key hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

# The columns a CertificateRecord is read from, in the order ``sqlite._cert`` unpacks them:
# named rather than ``*``, so that an upgraded store's column order does not matter.
CERTIFICATE_COLUMNS = (
    "serial, request_id, issuer, profile, subject, sans, not_before, not_after, der, "
    "requester, key_sha256, status, revoked_at, reason, invalidity_date"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, protocol TEXT NOT NULL, requester TEXT NOT NULL,
    profile TEXT NOT NULL, subject TEXT NOT NULL, transaction_id TEXT, reason TEXT,
    serial TEXT, csr BLOB NOT NULL, extra TEXT NOT NULL);
DROP INDEX IF EXISTS requests_status;
DROP INDEX IF EXISTS requests_requester;
DROP INDEX IF EXISTS requests_profile;
DROP INDEX IF EXISTS requests_created;
CREATE INDEX IF NOT EXISTS requests_created_id ON requests (created_at, id);
CREATE INDEX IF NOT EXISTS requests_status_created ON requests (status, created_at, id);
CREATE INDEX IF NOT EXISTS requests_requester_created ON requests (requester, created_at, id);
CREATE INDEX IF NOT EXISTS requests_profile_created ON requests (profile, created_at, id);
CREATE INDEX IF NOT EXISTS requests_protocol_created ON requests (protocol, created_at, id);
DROP INDEX IF EXISTS requests_transaction;
DROP INDEX IF EXISTS requests_transaction_id;
CREATE INDEX IF NOT EXISTS requests_transaction_time ON requests (transaction_id, created_at)
    WHERE transaction_id IS NOT NULL;
DROP TABLE IF EXISTS request_names;

CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY, request_id TEXT NOT NULL, issuer TEXT NOT NULL,
    profile TEXT NOT NULL, subject TEXT NOT NULL, sans TEXT NOT NULL,
    not_before TEXT NOT NULL, not_after TEXT NOT NULL, der BLOB NOT NULL,
    requester TEXT NOT NULL, key_sha256 TEXT NOT NULL, status TEXT NOT NULL,
    revoked_at TEXT, reason TEXT, invalidity_date TEXT, protocol TEXT NOT NULL DEFAULT '');
DROP INDEX IF EXISTS certificates_status;
DROP INDEX IF EXISTS certificates_not_after;
DROP INDEX IF EXISTS certificates_not_before;
-- The monitor's keyset walk over the valid certificates by expiry (find_expiring): status,
-- notAfter, then serial, so that it needs no sort.
CREATE INDEX IF NOT EXISTS certificates_valid_expiry ON certificates (status, not_after, serial);
-- The monitor's counts by profile and state (count), from this index alone. Its entries land
-- at the right edge of each (profile, status), like the time indexes.
CREATE INDEX IF NOT EXISTS certificates_profile_status ON certificates
    (profile, status, not_after);
DROP INDEX IF EXISTS certificates_subject;
DROP INDEX IF EXISTS certificates_requester;
DROP INDEX IF EXISTS certificates_issuer;
CREATE INDEX IF NOT EXISTS certificates_issued ON certificates (not_before, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_expiry ON certificates (not_after, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_status_issued ON certificates
    (status, not_before, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_status_expiry ON certificates
    (status, not_after, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_profile_issued ON certificates
    (profile, not_before, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_issuer_issued ON certificates
    (issuer, not_before, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_requester_issued ON certificates
    (requester, not_before, request_id, serial);
CREATE INDEX IF NOT EXISTS certificates_protocol_issued ON certificates
    (protocol, not_before, request_id, serial);
-- Only revoked certificates have a reason: the others cost this index nothing.
CREATE INDEX IF NOT EXISTS certificates_reason_issued ON certificates
    (reason, not_before, request_id, serial) WHERE reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS certificates_key ON certificates (key_sha256);
-- CRL entries (find_revoked): revoked certificates only, so valid ones cost it nothing, and
-- covering, so a CRL's million entries are read from the index alone.
DROP INDEX IF EXISTS certificates_revoked;
CREATE INDEX IF NOT EXISTS certificates_revoked_entries ON certificates
    (issuer, serial, not_after, revoked_at, reason, invalidity_date) WHERE status = 'revoked';
DROP TABLE IF EXISTS cert_names;

-- Substring search (subject, SANs): trigrams, case-insensitive; rowid = the record's rowid.
-- Contentless (the text is in the record) and without column sizes (no ranking is done).
CREATE VIRTUAL TABLE IF NOT EXISTS cert_text USING fts5
    (subject, sans, content='', columnsize=0, tokenize='trigram');
CREATE VIRTUAL TABLE IF NOT EXISTS request_text USING fts5
    (subject, sans, content='', columnsize=0, tokenize='trigram');

CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    at TEXT NOT NULL, request_id TEXT, serial TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
-- A certificate's own events but ``issued`` (those are found by its request id).
DROP INDEX IF EXISTS events_serial;
CREATE INDEX IF NOT EXISTS events_serial_later ON events (serial) WHERE kind != 'issued';
-- Releases from hold since a time (find_released, delta CRLs); other events cost it nothing.
CREATE INDEX IF NOT EXISTS events_unrevoked ON events (at) WHERE kind = 'unrevoked';
CREATE TABLE IF NOT EXISTS outbox (
    consumer TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (consumer, seq)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, lookup TEXT,
    expires_at TEXT, data TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS documents_lookup ON documents (kind, lookup);
CREATE INDEX IF NOT EXISTS documents_expiry ON documents (expires_at);
"""


def upgrade(conn: Any) -> None:
    """Bring a store made by an earlier version up to ``SCHEMA``: run before it, in the
    writer's connection. Certificates gain their request's protocol (a filter of the
    inventory), and the text tables are filled from the records when they are new."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(certificates)")}
    if columns and "protocol" not in columns:
        conn.execute("ALTER TABLE certificates ADD COLUMN protocol TEXT NOT NULL DEFAULT ''")
        conn.execute(
            "UPDATE certificates SET protocol = COALESCE((SELECT protocol FROM requests "
            "WHERE requests.id = certificates.request_id), '')"
        )
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "certificates" in tables and "cert_text" not in tables:
        _fill_text(conn)


def _fill_text(conn: Any) -> None:
    conn.executescript(SCHEMA)
    for row in conn.execute("SELECT rowid, subject, sans FROM certificates").fetchall():
        conn.execute(
            "INSERT INTO cert_text (rowid, subject, sans) VALUES (?, ?, ?)",
            (row[0], row[1], names_text(json.loads(row[2]))),
        )
    for row in conn.execute("SELECT rowid, subject, extra FROM requests").fetchall():
        conn.execute(
            "INSERT INTO request_text (rowid, subject, sans) VALUES (?, ?, ?)",
            (row[0], row[1], names_text(json.loads(row[2])["sans"])),
        )
    conn.commit()


def names_text(sans: Sequence[str]) -> str:
    """What the SAN search reads: the full names, lowercase, one a line (a newline is in no
    name, so a search never matches across two of them)."""
    return "\n".join(s.lower() for s in sans)
