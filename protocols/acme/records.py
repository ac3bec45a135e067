"""The ACME objects (RFC 8555 §7.1.2-§7.1.6) as store documents.

Each object is one document; every change is ``update_doc`` with the version read, so two
servers changing the same order or authorization never both win (a loser re-reads or fails
with a conflict). Documents:

``acme-account``  id: random; data: the account and its current key (JWK).
``acme-key``      id: a key's RFC 7638 thumbprint -> the account using it; inserted with
                  ``put_doc``, so one key belongs to at most one account, even under races.
``acme-old-key``  id: the thumbprint of a key an account rolled over from -> that account;
                  only for finalize, which refuses CSRs for any account key, past ones too.
``acme-order``    id: random; lookup: the account id (the account's orders list).
``acme-authz``    id: random; lookup: account|identifier|wildcard (for authorization reuse);
                  its challenges are embedded (one per type).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from server.model import Document, Identifier, IdentifierType
from server.store.base import Store

ACCOUNT, ACCOUNT_KEY, ORDER, AUTHZ = "acme-account", "acme-key", "acme-order", "acme-authz"
OLD_ACCOUNT_KEY = "acme-old-key"
GRACE = timedelta(days=1)  # expired objects stay readable (as expired) this long


def ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def from_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _expires(data: Mapping[str, Any]) -> datetime:
    expires = from_ts(data["expires"])
    assert expires is not None  # noqa: S101 - always written
    return expires


def rfc3339(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class AccountStatus(StrEnum):
    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthzStatus(StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class ChallengeType(StrEnum):
    HTTP_01 = "http-01"
    DNS_01 = "dns-01"
    TLS_ALPN_01 = "tls-alpn-01"


def identifier_json(identifier: Identifier) -> dict[str, str]:
    return {"type": str(identifier.type), "value": identifier.value}


@dataclass
class Account:
    id: str
    jwk: dict[str, Any]
    thumbprint: str
    status: AccountStatus = AccountStatus.VALID
    contact: list[str] = field(default_factory=list)
    tos_agreed: bool = False
    eab_kid: str | None = None
    created_at: str = ""
    version: int = 1

    def to_doc(self) -> Document:
        data = dataclasses.asdict(self)
        del data["version"], data["id"]
        return Document(ACCOUNT, self.id, data, self.version)

    @classmethod
    def from_doc(cls, doc: Document) -> Account:
        data = dict(doc.data)
        status = AccountStatus(data.pop("status"))
        return cls(id=doc.id, version=doc.version, status=status, **data)


@dataclass
class Challenge:
    type: ChallengeType
    token: str
    status: ChallengeStatus = ChallengeStatus.PENDING
    validated: str | None = None
    error: dict[str, Any] | None = None
    started: str | None = None  # when processing began (a stuck validation is retried)

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, StrEnum) else v for k, v in vars(self).items()}


@dataclass
class Authorization:
    id: str
    account: str
    identifier: Identifier
    expires: datetime
    wildcard: bool = False
    status: AuthzStatus = AuthzStatus.PENDING
    challenges: list[Challenge] = field(default_factory=list)
    version: int = 1

    @property
    def reuse_key(self) -> str:
        return f"{self.account}|{self.identifier}|{int(self.wildcard)}"

    def current_status(self, now: datetime) -> AuthzStatus:
        """RFC 8555 §7.1.6: a pending or valid authorization past its expiry is expired."""
        if self.status in (AuthzStatus.PENDING, AuthzStatus.VALID) and now >= self.expires:
            return AuthzStatus.EXPIRED
        return self.status

    def challenge(self, type_: str) -> Challenge | None:
        return next((c for c in self.challenges if c.type == type_), None)

    def to_doc(self) -> Document:
        data = {
            "account": self.account,
            "identifier": str(self.identifier),
            "expires": ts(self.expires),
            "wildcard": self.wildcard,
            "status": str(self.status),
            "challenges": [c.to_json() for c in self.challenges],
        }
        return Document(AUTHZ, self.id, data, self.version, self.reuse_key, self.expires + GRACE)

    @classmethod
    def from_doc(cls, doc: Document) -> Authorization:
        d = doc.data
        return cls(
            id=doc.id,
            account=d["account"],
            expires=_expires(d),
            identifier=Identifier.parse(d["identifier"]),
            wildcard=d["wildcard"],
            status=AuthzStatus(d["status"]),
            challenges=[
                Challenge(
                    ChallengeType(c["type"]),
                    c["token"],
                    ChallengeStatus(c["status"]),
                    c.get("validated"),
                    c.get("error"),
                    c.get("started"),
                )
                for c in d["challenges"]
            ],
            version=doc.version,
        )


@dataclass
class Order:
    id: str
    account: str
    identifiers: list[Identifier]
    authorizations: list[str]
    expires: datetime
    status: OrderStatus = OrderStatus.PENDING
    profile: str | None = None
    replaces: str | None = None
    error: dict[str, Any] | None = None
    request_id: str | None = None
    serial: str | None = None  # hex, once valid
    processing_since: str | None = None  # when finalize began
    version: int = 1

    def to_doc(self) -> Document:
        data = {
            "account": self.account,
            "identifiers": [str(i) for i in self.identifiers],
            "authorizations": self.authorizations,
            "expires": ts(self.expires),
            "status": str(self.status),
            "profile": self.profile,
            "replaces": self.replaces,
            "error": self.error,
            "request_id": self.request_id,
            "serial": self.serial,
            "processing_since": self.processing_since,
        }
        # A valid order is kept (its certificate URL stays good); others expire.
        keep = None if self.status is OrderStatus.VALID else self.expires + GRACE
        return Document(ORDER, self.id, data, self.version, self.account, keep)

    @classmethod
    def from_doc(cls, doc: Document) -> Order:
        d = doc.data
        return cls(
            id=doc.id,
            account=d["account"],
            expires=_expires(d),
            identifiers=[Identifier.parse(i) for i in d["identifiers"]],
            authorizations=list(d["authorizations"]),
            status=OrderStatus(d["status"]),
            profile=d.get("profile"),
            replaces=d.get("replaces"),
            error=d.get("error"),
            request_id=d.get("request_id"),
            serial=d.get("serial"),
            processing_since=d.get("processing_since"),
            version=doc.version,
        )


async def save(store: Store, obj: Account | Order | Authorization) -> None:
    """Write back a changed object if nobody changed it since it was read (``Conflict``
    otherwise); the object's version follows the store's."""
    doc = await store.update_doc(obj.to_doc(), expect_version=obj.version)
    obj.version = doc.version


def dns_identifier(value: str) -> Identifier:
    return Identifier(IdentifierType.DNS, value)
