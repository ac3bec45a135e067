"""SCEP transactions (RFC 8894 §3.2.1.1): a transactionID names one enrollment.

"The transactionID MUST be unique" per enrollment and the client uses it for every message of
that enrollment (the request, its resends and its CertPolls). certforge keeps one store
document per transactionID (kind ``scep_transaction``) recording the request it produced,
the SHA-256 of the CSR's public key and the *sender* (message type and signer certificate)
that started it:

- the same transactionID with a different key is refused (a transactionID is not reusable
  for another key);
- the same transactionID, key and sender is a resend: it is answered with the request's
  current state, like a CertPoll (micromdm's scepclient polls by resending its PKCSReq);
- the same transactionID and key from another sender (a RenewalReq signed by the
  certificate the PKCSReq obtained: clients derive the transactionID from the key) starts
  a new enrollment, which the document then names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.errors import Conflict, NotFound
from server.model import Document
from server.store.base import Store

TRANSACTION_KIND = "scep_transaction"
KEEP = timedelta(days=400)  # long enough for any pending request to be decided


@dataclass(frozen=True, slots=True)
class Transaction:
    transaction_id: str
    request_id: str
    key_sha256: str  # of the CSR's SubjectPublicKeyInfo
    sender: str  # sender_of(message type, signer certificate)
    signer_key_sha256: str
    version: int = 1


def sender_of(message_type: str, signer_der: bytes) -> str:
    return hashlib.sha256(message_type.encode() + b"\0" + signer_der).hexdigest()


def _doc_id(transaction_id: str) -> str:
    # transactionIDs are the client's text; a digest makes a safe, bounded document id.
    return hashlib.sha256(transaction_id.encode()).hexdigest()


class Transactions:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, transaction_id: str) -> Transaction | None:
        try:
            doc = await self._store.get_doc(TRANSACTION_KIND, _doc_id(transaction_id))
        except NotFound:
            return None
        d = doc.data
        return Transaction(
            transaction_id,
            str(d["request_id"]),
            str(d["key_sha256"]),
            str(d["sender"]),
            str(d["signer_key_sha256"]),
            doc.version,
        )

    async def record(self, tx: Transaction, *, now: datetime, replaces: Transaction | None) -> None:
        """Name the request a transactionID produced (after the engine recorded it)."""
        doc = Document(
            TRANSACTION_KIND,
            _doc_id(tx.transaction_id),
            data={
                "request_id": tx.request_id,
                "key_sha256": tx.key_sha256,
                "sender": tx.sender,
                "signer_key_sha256": tx.signer_key_sha256,
            },
            expires_at=now + KEEP,
        )
        try:
            if replaces is None:
                await self._store.put_doc(doc)
            else:
                await self._store.update_doc(doc, expect_version=replaces.version)
        except (Conflict, NotFound):
            # Two messages of one transactionID raced: the first one's record stands, and a
            # resend of the other finds it. The request itself is recorded either way.
            return
