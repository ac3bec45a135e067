"""How a client's retry finds its pending request (RFC 7030 §4.2.3).

A pending enrollment is answered 202 with Retry-After; the client then sends its request
again, on a new connection, with no request id (EST has none). certforge finds it by what the
retry repeats: the operation, the profile, the public key of the request, and the requester's
identity. Their hash is the request's ``transaction_id`` (``retry_id``), recorded by the engine
in the same atomic write as the request itself, and indexed by both stores: there is no second
write that a stop could lose, so a retry always finds the request it repeats.

The newest EST request with that id is the client's (``find_retried``) when:

- it is still pending, or approved and being signed: the retry is answered 202 again;
- it was held and has been decided since (its record changed after it was made), and the
  decision has not been collected yet: the retry gets the certificate or the denial, and the
  request is then marked collected (one small document, ``mark_collected``). A stop between
  the answer and the mark only means the next identical request gets the same answer again.

A request decided at once (never pending), or one whose decision was collected, is not a retry
target: the same request again is a new enrollment.
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from datetime import timedelta

from server.ca.csr import ParsedCSR
from server.errors import Conflict, NotFound
from server.model import Clock, Document, Requester, RequestHead, RequestRecord, Status
from server.store.base import Store, StoreReader

PROTOCOL = "est"
COLLECTED_KIND = "est_collected"
# A decided request is kept for its retry this long; after that the same request is new.
KEEP = timedelta(days=30)
_UNDECIDED = (Status.PENDING, Status.APPROVED)


def retry_id(operation: str, profile: str, csr: ParsedCSR, requester: Requester) -> str:
    """The ``transaction_id`` of an EST request: what its retry repeats, hashed."""
    text = "\0".join((operation, profile, csr.key_sha256, requester.label()))
    return "est-" + hashlib.sha256(text.encode()).hexdigest()


async def find_retried(
    store: StoreReader, clock: Clock, transaction_id: str, requester: Requester
) -> RequestRecord | None:
    """The request a retry repeats, or None when the request is a new one."""
    # The newest request only: a retry repeats the client's latest request. (Clients that send
    # the same key many times make many records with one id.) Its head first, which is all a
    # new request (nearly every one) needs read.
    head = await store.newest_in_transaction(transaction_id)
    # Other front ends' transaction ids are chosen by their clients (SCEP): only an EST
    # request of this requester counts.
    if head is None or head.protocol != PROTOCOL or head.requester != requester.label():
        return None
    if head.status not in _UNDECIDED and not await _decision_uncollected(store, clock, head):
        return None
    return await store.get_request(head.id)


async def _decision_uncollected(store: StoreReader, clock: Clock, head: RequestHead) -> bool:
    """A request held, decided since, and the decision not yet collected by its client."""
    held_then_decided = head.updated_at > head.created_at
    if not held_then_decided or head.updated_at + KEEP < clock.now():
        return False
    try:
        await store.get_doc(COLLECTED_KIND, head.id)
    except NotFound:
        return True
    return False


async def mark_collected(store: Store, clock: Clock, record: RequestRecord) -> None:
    """The decision of ``record`` reached its client: the same request again will be new."""
    with suppress(Conflict):  # two retries raced; both got the answer
        await store.put_doc(
            Document(COLLECTED_KIND, record.id, data={}, expires_at=clock.now() + KEEP)
        )
