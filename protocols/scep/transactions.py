"""SCEP transactions (RFC 8894 §3.2.1.1): a transactionID names one enrollment.

"The transactionID MUST be unique" per enrollment and the client uses it for every message of
that enrollment (the request, its resends and its CertPolls). certforge finds a transaction
through the request records themselves (``RequestRecord.transaction_id``), which carry in
their ``vouched.attributes`` what the SCEP front end verified: the SHA-256 of the CSR's key,
the *sender* (message type and signer certificate) and the signer's key. So the transaction
is recorded in the same atomic write as its request, never half-way:

- the same transactionID with a different key is refused (a transactionID is not reusable
  for another key);
- the same transactionID, key and sender is a resend: it is answered with the request's
  current state, like a CertPoll (micromdm's scepclient polls by resending its PKCSReq);
- the same transactionID and key from another sender (a RenewalReq signed by the
  certificate the PKCSReq obtained: clients derive the transactionID from the key) starts
  a new enrollment, and the newest request of a transactionID is the one that counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from server.model import RequestQuery
from server.store.base import StoreReader

PROTOCOL = "scep"
KEY = "scep_key_sha256"
SENDER = "scep_sender"
SIGNER_KEY = "scep_signer_key_sha256"


@dataclass(frozen=True, slots=True)
class Transaction:
    request_id: str
    key_sha256: str  # of the CSR's SubjectPublicKeyInfo
    sender: str  # sender_of(message type, signer certificate)
    signer_key_sha256: str

    def attributes(self) -> tuple[tuple[str, str], ...]:
        """What the request record carries (``Vouched.attributes``)."""
        return ((KEY, self.key_sha256), (SENDER, self.sender), (SIGNER_KEY, self.signer_key_sha256))


def sender_of(message_type: str, signer_der: bytes) -> str:
    return hashlib.sha256(message_type.encode() + b"\0" + signer_der).hexdigest()


async def find_transaction(store: StoreReader, transaction_id: str) -> Transaction | None:
    """The newest SCEP enrollment with this transactionID."""
    for record in await store.find_requests(RequestQuery(transaction_id=transaction_id, limit=5)):
        attrs = dict(record.vouched.attributes)
        if record.protocol == PROTOCOL and KEY in attrs:
            return Transaction(record.id, attrs[KEY], attrs[SENDER], attrs[SIGNER_KEY])
    return None
