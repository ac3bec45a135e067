"""The store: a state machine over requests and certificates, with its event outbox.

Two back-ends implement it (``sqlite.py``, the embedded default, and ``mongo.py``) and one
contract suite (``tests/unit/store/test_contract.py``) holds both to it.

Rules every back-end keeps:
- Every state change is ONE atomic conditional write together with its event: a request's
  status moves only from the status the caller expects (``Conflict`` otherwise), so concurrent
  servers never double-issue or lose an update.
- Unique request ids and certificate serials: a duplicate raises ``Conflict``.
- A write is acknowledged (the coroutine returns) only once it is durable.
- Each event is delivered to every configured consumer (exit module) at least once:
  ``pending_events`` returns what a consumer has not yet acknowledged, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

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


class StoreReader(Protocol):
    """Read-only access (auditors, polling, admin search)."""

    async def get_request(self, request_id: str) -> RequestRecord:
        """Raises ``NotFound``."""
        ...

    async def find_requests(self, q: RequestQuery) -> list[RequestRecord]:
        """Newest first."""
        ...

    async def newest_in_transaction(self, transaction_id: str) -> RequestHead | None:
        """The head of the newest request with this transaction id (the order of
        ``find_requests``), or None: a lookup on every EST enrollment, kept light."""
        ...

    async def get_certificate(self, serial: int) -> CertificateRecord:
        """Raises ``NotFound``."""
        ...

    async def find_certificates(self, q: CertificateQuery) -> list[CertificateRecord]:
        """Newest (by not_before) first."""
        ...

    async def list_events(
        self, *, request_id: str | None = None, serial: int | None = None, limit: int = 100
    ) -> list[Event]:
        """The event log, oldest first, optionally for one request or one certificate."""
        ...

    async def find_revoked(
        self,
        issuer: str,
        *,
        expires_after: datetime,
        after_serial: int = 0,
        limit: int = 10_000,
        revoked_since: datetime | None = None,
    ) -> list[RevokedEntry]:
        """One page of a CRL's entries: certificates of ``issuer`` that are revoked (on hold
        included), whose notAfter is at or after ``expires_after``, with a serial above
        ``after_serial``, in serial order. Callers page with the last serial they got, so a
        CRL of a million entries is read without holding them all or one long cursor.
        ``revoked_since``: only those revoked at or after it (a delta CRL's)."""
        ...

    async def find_released(
        self, issuer: str, *, since: datetime, expires_after: datetime
    ) -> list[int]:
        """Serials of ``issuer``'s certificates released from hold at or after ``since`` and
        valid now, unexpired at ``expires_after``, in serial order (a delta CRL's
        removeFromCRL entries)."""
        ...

    async def get_doc(self, kind: str, doc_id: str) -> Document:
        """Raises ``NotFound`` (also for an expired document)."""
        ...

    # The monitor's reads (server/monitor): an index walk and counts, never a table scan.
    async def find_expiring(
        self,
        *,
        after: tuple[datetime, int],
        until: datetime,
        limit: int = 500,
        longer_than: timedelta | None = None,
    ) -> list[CertificateRecord]:
        """One page of valid certificates ordered by (notAfter, serial), from just after
        ``after`` (a notAfter and a serial) to notAfter ``until`` included. Callers page with
        the last certificate's (not_after, serial): a keyset walk over the notAfter index.
        ``longer_than``: the store may leave out certificates whose validity (notAfter -
        notBefore) is at most that long (SQLite does, within a second; MongoDB does not), never
        a longer one; the caller still checks each certificate's validity."""
        ...

    async def existing_events(self, ids: Sequence[str]) -> set[str]:
        """Which of these event ids the store holds (the markers of ``once_id`` events)."""
        ...

    async def count(self, now: datetime, *, expiring_within: Sequence[timedelta]) -> StoreCounts:
        """Certificates by state and profile, valid ones expiring within each window, and
        the pending requests, as of ``now``."""
        ...

    async def find_docs(self, kind: str, *, lookup: str) -> list[Document]:
        """Unexpired documents of ``kind`` whose ``lookup`` equals the value."""
        ...

    async def list_docs(self, kind: str, *, after: str = "", limit: int = 1000) -> list[Document]:
        """Unexpired documents of ``kind`` whose id sorts after ``after``, in id order, at most
        ``limit``: a caller reads every document of a kind (the tokens) page by page, giving
        the last id it got."""
        ...


class Store(StoreReader, Protocol):
    async def open(self) -> None:
        """Connect, create tables or indexes. Called once, on the serving loop."""
        ...

    async def close(self) -> None: ...

    async def add_request(
        self,
        record: RequestRecord,
        *,
        certificate: CertificateRecord | None = None,
        event: Event,
    ) -> None:
        """Insert a new request (and, when it was issued at once, its certificate) with its
        event, atomically. Duplicate request id or serial raises ``Conflict``."""
        ...

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
        """Move a request from ``expect`` to ``to`` (setting ``reason``; with a certificate,
        inserting it and setting the request's serial), with its event, atomically.
        Raises ``NotFound``, or ``Conflict`` when the status is not ``expect`` or the serial
        exists. Returns the updated record."""
        ...

    async def revoke(
        self,
        serial: int,
        *,
        reason: RevocationReason,
        at: datetime,
        invalidity_date: datetime | None = None,
        event: Event,
    ) -> CertificateRecord:
        """VALID -> REVOKED, or a held certificate (reason certificateHold) to another
        reason. Raises ``NotFound``, or ``Conflict`` if already revoked otherwise."""
        ...

    async def unrevoke(self, serial: int, *, event: Event) -> CertificateRecord:
        """Release a certificate on hold (reason certificateHold) back to VALID.
        Raises ``NotFound``, or ``Conflict`` if it is not on hold."""
        ...

    async def add_event(self, event: Event, *, durable: bool = True) -> None:
        """Record an event that changes no request or certificate (crl_published). With
        ``durable=False`` the caller may be answered before the write would survive a crash
        of the machine (never before other readers see it); a durable write the caller makes
        after it makes it durable too (SQLite: they share one WAL, synced in order; MongoDB:
        the client's write concern decides for every write)."""
        ...

    async def pending_events(self, consumer: str, limit: int = 100) -> list[Event]:
        """Events recorded since the store was opened with ``consumer`` among its consumers
        and not yet acknowledged by it, oldest first."""
        ...

    async def ack_event(self, consumer: str, event_id: str) -> None:
        """``consumer`` delivered ``event_id``; it is not returned to it again."""
        ...

    async def put_doc(self, doc: Document, *, durable: bool = True) -> Document:
        """Insert; ``Conflict`` if (kind, id) exists and is unexpired. With ``durable=False``
        the caller may be answered before the write would survive a crash of the machine
        (never before other readers see it): for markers whose loss is harmless."""
        ...

    async def update_doc(self, doc: Document, *, expect_version: int) -> Document:
        """Replace if the stored version is ``expect_version``; the result has version + 1.
        Raises ``NotFound`` or ``Conflict``."""
        ...

    async def take_doc(self, kind: str, doc_id: str) -> Document:
        """Atomically delete and return (one-time secrets, nonces). ``NotFound`` if absent
        or expired: of two concurrent takers exactly one gets it."""
        ...

    async def purge_expired_docs(self, now: datetime) -> int: ...


class StoreFactory(Protocol):
    def __call__(self, url: str, *, consumers: Sequence[str]) -> Store: ...
