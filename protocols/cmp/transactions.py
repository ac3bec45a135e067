"""CMP transactions (RFC 4210 §5.1.1, RFC 9483 §3.1): what certforge remembers between the
messages of one transactionID, in the store so that any server sharing it answers the next
message.

A transaction is a store document of kind ``cmp-transaction`` keyed by the transactionID
(hex). It is created with the first request (``put_doc``: a transactionID already in use is
refused, RFC 9483 §3.1, so a replayed request is refused whatever its body), moved on with
conditional writes (``update_doc``: of two concurrent continuations one wins), and kept
until it expires once finished, so that the transactionID stays used.

It keeps the senderNonce of certforge's last answer (RFC 4210 §5.1.1: the next request's
recipNonce must equal it) and how the transaction was authenticated: the MAC secret, sealed
(``protocols.cmp.secrets.Sealer``), since the one-time secret itself was used up by the
first request but certConf and pollReq are protected with it too; or the signer's key.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from protocols.cmp.failinfo import CMPFailure, FailInfo
from server.errors import Conflict, NotFound
from server.model import Document
from server.store.base import Store

TRANSACTION_KIND = "cmp-transaction"
# A held request waits for an administrator: as long as EST keeps a pending request's retry.
PENDING_LIFETIME = timedelta(days=30)
# A finished transaction's id stays used this long, against replays.
DONE_LIFETIME = timedelta(days=1)


class State(StrEnum):
    OPEN = "open"  # the first request is being decided
    WAITING = "waiting"  # the engine holds the request: pollReq
    CONFIRM = "confirm"  # issued, waiting for certConf
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str  # the transactionID, hex
    state: State
    body: str  # the request's body type: ir, cr, kur, p10cr, rr
    profile: str
    last_nonce: str  # hex of certforge's last senderNonce
    cert_req_id: int = 0
    request_id: str | None = None
    serial: int | None = None
    mac_reference: str | None = None  # hex senderKID, for MAC-protected transactions
    sealed_secret: str | None = None
    signer_key: str | None = None  # hex SHA-256 of the signer's SubjectPublicKeyInfo
    version: int = 1

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        del data["id"], data["version"]
        data["state"] = str(self.state)
        data["serial"] = None if self.serial is None else format(self.serial, "x")
        return data

    @classmethod
    def from_doc(cls, doc: Document) -> Transaction:
        d = dict(doc.data)
        serial = d.pop("serial", None)
        return cls(
            id=doc.id,
            state=State(d.pop("state")),
            serial=None if serial is None else int(serial, 16),
            version=doc.version,
            **d,
        )


class Transactions:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def find(self, transaction_id: bytes) -> Transaction | None:
        try:
            return Transaction.from_doc(
                await self._store.get_doc(TRANSACTION_KIND, transaction_id.hex())
            )
        except NotFound:
            return None

    async def open(self, tx: Transaction, *, now: datetime) -> Transaction:
        try:
            doc = await self._store.put_doc(_doc(tx, now))
        except Conflict:
            # RFC 9483 §3.1: a transactionID in use is answered transactionIdInUse.
            raise CMPFailure(
                FailInfo.TRANSACTION_ID_IN_USE, "this transactionID is already in use"
            ) from None
        return replace(tx, version=doc.version)

    async def move(self, tx: Transaction, *, now: datetime, **changes: Any) -> Transaction:
        """A conditional write: refused when another message of the transaction came first."""
        new = replace(tx, **changes)
        try:
            doc = await self._store.update_doc(_doc(new, now), expect_version=tx.version)
        except (Conflict, NotFound):
            raise CMPFailure(
                FailInfo.BAD_REQUEST, "another message of this transaction was answered first"
            ) from None
        return replace(new, version=doc.version)

    async def forget(self, tx: Transaction) -> None:
        """Drop a transaction whose first request was refused after it was opened, so that
        the client may try again with the same transactionID."""
        with contextlib.suppress(NotFound):
            await self._store.take_doc(TRANSACTION_KIND, tx.id)


def _doc(tx: Transaction, now: datetime) -> Document:
    lifetime = PENDING_LIFETIME if tx.state is State.WAITING else DONE_LIFETIME
    return Document(
        TRANSACTION_KIND, tx.id, data=tx.to_data(), version=tx.version, expires_at=now + lifetime
    )
