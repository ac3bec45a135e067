"""How a client's retry finds its pending request (RFC 7030 §4.2.3).

A pending enrollment is answered 202 with Retry-After; the client then sends its request
again, on a new connection, with no request id (EST has none). certforge finds it by what the
retry repeats: the operation, the profile, the public key of the request, and the requester's
identity. One store document maps those to the request id; it is removed once the retry has
been given the certificate or the denial.

When the pending request is a serverkeygen, the key certforge generated waits in the same
document, for the retry (the store then holds that private key until it is delivered).

Not atomic with the request's record: if the server stops between the two writes, the retry
makes a new request (also pending), and an administrator sees both.
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from server.errors import Conflict, NotFound
from server.model import Clock, Document, Requester
from server.store.base import Store

PENDING_KIND = "est_pending"
KEEP = timedelta(days=30)


def pending_id(
    operation: str, profile: str, csr: x509.CertificateSigningRequest, requester: Requester
) -> str:
    spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    text = "\0".join((operation, profile, hashlib.sha256(spki).hexdigest(), requester.label()))
    return hashlib.sha256(text.encode()).hexdigest()


async def find_pending(store: Store, doc_id: str) -> Document | None:
    try:
        return await store.get_doc(PENDING_KIND, doc_id)
    except NotFound:
        return None


async def remember_pending(
    store: Store, clock: Clock, doc_id: str, request_id: str, private_key: bytes | None = None
) -> None:
    data = {"request_id": request_id}
    if private_key is not None:
        data["private_key"] = private_key.hex()
    with suppress(Conflict):  # two retries raced; the first one's document stands
        await store.put_doc(
            Document(PENDING_KIND, doc_id, data=data, expires_at=clock.now() + KEEP)
        )


async def forget_pending(store: Store, doc_id: str) -> None:
    with suppress(NotFound):  # a concurrent retry removed it
        await store.take_doc(PENDING_KIND, doc_id)
