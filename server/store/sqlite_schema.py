"""The SQLite schema, with the indexes administrators search by: status, requester, profile,
SAN, expiry, key, issuer; and what the issuance rate taught about each index.

Every index entry an issuance adds at a random place in a B-tree dirties a page of its own,
and every dirtied page is written whole to the WAL at the commit (and again at the
checkpoint): four kilobytes for a few dozen bytes of index. So the writes are shaped to land
on the same few pages:
- request and event ids begin with the time (``server.model.new_id``), so their indexes and
  the events' request index grow at their right edge, like the time indexes;
- a SAN is indexed once, by its bare value (``bare``); a search by full name (``dns:x``) uses
  that index and checks ``full`` in the row;
- a request issued at once keeps its names in ``cert_names`` only: the SAN search of requests
  also looks there, through the certificate's request id;
- an ``issued`` event is found through its request, so only later events (revocations) are
  indexed by serial;
- nothing indexes subjects: subject searches are case-insensitive substrings (``LIKE
  '%x%'``), which no B-tree index serves; the planner walks the time index newest first and
  stops at the page's limit;
- the transaction index (SCEP transactions, ACME orders, EST retries) holds only the requests
  that have a transaction id, newest last, so "the newest of this transaction" is no sort.
What stays random is what must: the serial number, the key hash, the bare SAN.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, protocol TEXT NOT NULL, requester TEXT NOT NULL,
    profile TEXT NOT NULL, subject TEXT NOT NULL, transaction_id TEXT, reason TEXT,
    serial TEXT, csr BLOB NOT NULL, extra TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS requests_status ON requests (status, created_at);
CREATE INDEX IF NOT EXISTS requests_requester ON requests (requester);
CREATE INDEX IF NOT EXISTS requests_profile ON requests (profile);
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at);
DROP INDEX IF EXISTS requests_transaction;
DROP INDEX IF EXISTS requests_transaction_id;
CREATE INDEX IF NOT EXISTS requests_transaction_time ON requests (transaction_id, created_at)
    WHERE transaction_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS request_names (
    request_id TEXT NOT NULL REFERENCES requests (id), full TEXT NOT NULL, bare TEXT NOT NULL);
DROP INDEX IF EXISTS request_names_full;
CREATE INDEX IF NOT EXISTS request_names_bare ON request_names (bare);

CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY, request_id TEXT NOT NULL, issuer TEXT NOT NULL,
    profile TEXT NOT NULL, subject TEXT NOT NULL, sans TEXT NOT NULL,
    not_before TEXT NOT NULL, not_after TEXT NOT NULL, der BLOB NOT NULL,
    requester TEXT NOT NULL, key_sha256 TEXT NOT NULL, status TEXT NOT NULL,
    revoked_at TEXT, reason TEXT, invalidity_date TEXT);
-- Status then notAfter, then serial so that the monitor's keyset walk over the valid
-- certificates by expiry (find_expiring) needs no sort; it also serves expiry searches.
DROP INDEX IF EXISTS certificates_status;
CREATE INDEX IF NOT EXISTS certificates_status_expiry ON certificates (status, not_after, serial);
-- The monitor's counts by profile and state (count), from this index alone. Its entries land
-- at the right edge of each (profile, status), like the time indexes.
CREATE INDEX IF NOT EXISTS certificates_profile_status ON certificates
    (profile, status, not_after);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates (not_after);
CREATE INDEX IF NOT EXISTS certificates_not_before ON certificates (not_before);
DROP INDEX IF EXISTS certificates_subject;
CREATE INDEX IF NOT EXISTS certificates_requester ON certificates (requester);
CREATE INDEX IF NOT EXISTS certificates_key ON certificates (key_sha256);
CREATE INDEX IF NOT EXISTS certificates_issuer ON certificates (issuer, status);
-- CRL entries (find_revoked): revoked certificates only, so valid ones cost it nothing, and
-- covering, so a CRL's million entries are read from the index alone.
DROP INDEX IF EXISTS certificates_revoked;
CREATE INDEX IF NOT EXISTS certificates_revoked_entries ON certificates
    (issuer, serial, not_after, revoked_at, reason, invalidity_date) WHERE status = 'revoked';
CREATE TABLE IF NOT EXISTS cert_names (
    serial TEXT NOT NULL REFERENCES certificates (serial), full TEXT NOT NULL,
    bare TEXT NOT NULL);
DROP INDEX IF EXISTS cert_names_full;
CREATE INDEX IF NOT EXISTS cert_names_bare ON cert_names (bare);

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
