"""The common request model every front end translates into, and what the engine answers.

A front end (ACME, SCEP, EST, REST) turns what it received into one ``EnrollmentRequest``: the
PKCS#10 request as received, who asked and how that was proved (``Requester``), the protocol's
name, the profile asked for, and what the front end itself verified (``Vouched``). The engine
answers with one ``Outcome``: ``Issued``, ``Pending`` or ``Denied``. Nothing here depends on
which protocol asked; ``protocol`` is only recorded and shown.

Everything is a frozen dataclass, built and validated once. Records and events are what the
store keeps; ``to_json``/``from_json`` helpers give both store back-ends one serialization.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from server import csprng
from server.errors import Malformed


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh identifier for a request or an event: 32 hex digits, the time in milliseconds
    (48 bits) then 80 random bits.

    Request ids are what requesters poll by, so they must not be guessable: 80 random bits
    are not. The time in front makes ids of the same moment sort together, so the store's
    indexes on them grow at one end instead of dirtying a random page per insert."""
    return f"{time.time_ns() // 1_000_000:012x}{csprng.token_hex(10)}"


def once_id(fact: str, due: datetime) -> str:
    """The id of an event that must be recorded at most once, ever (``expiring``): the same
    shape as ``new_id``, but a function of the fact it reports (``fact``) and of when that
    fact became due (``due``, in front, for the same index locality). The store refuses a
    second event with an id it holds (``Conflict``), so the event is its own marker: recording
    it and marking it recorded are one atomic write, on every back-end, from any process."""
    digest = hashlib.sha256(fact.encode()).hexdigest()[:20]
    return f"{max(0, int(due.timestamp() * 1000)):012x}{digest}"


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class AuthMethod(StrEnum):
    """How the requester's identity was established by the front end."""

    ANONYMOUS = "anonymous"
    TOKEN = "token"  # noqa: S105 - a bearer token of certforge's (REST, admin)
    CLIENT_CERT = "client_cert"  # possession of a certificate (TLS client cert, SCEP signer)
    CHALLENGE_PASSWORD = "challenge_password"  # noqa: S105 - one-time or static (SCEP, EST)
    ACME_ACCOUNT = "acme_account"
    EST_BASIC = "est_basic"  # HTTP Basic with an EST user's password


class Role(StrEnum):
    """A token's roles; what each may do in the admin API is ``server/roles.py``."""

    ADMINISTRATOR = "administrator"  # everything
    OPERATOR = "operator"  # day-to-day certificate work; no tokens, no CA operations
    AUDITOR = "auditor"  # read-only admin API
    REQUESTER = "requester"  # may enroll with immediate issuance where the profile allows


@dataclass(frozen=True, slots=True)
class Requester:
    method: AuthMethod
    identity: str = ""  # token name, account URL, certificate subject, user name...
    roles: frozenset[Role] = frozenset()

    def label(self) -> str:
        return f"{self.method}:{self.identity}" if self.identity else str(self.method)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": str(self.method),
            "identity": self.identity,
            "roles": sorted(str(r) for r in self.roles),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Requester:
        return cls(
            AuthMethod(d["method"]),
            d.get("identity", ""),
            frozenset(Role(r) for r in d.get("roles", ())),
        )


ANONYMOUS = Requester(AuthMethod.ANONYMOUS)


class IdentifierType(StrEnum):
    DNS = "dns"
    IP = "ip"
    EMAIL = "email"
    URI = "uri"


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """A subject alternative name, written ``type:value`` (``dns:example.com``)."""

    type: IdentifierType
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identifier:
        kind, sep, value = text.partition(":")
        if not sep or not value:
            raise Malformed(f"identifier {text!r} is not of the form type:value")
        try:
            ident_type = IdentifierType(kind)
        except ValueError:
            raise Malformed(f"unknown identifier type {kind!r}") from None
        if ident_type is IdentifierType.IP:
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                raise Malformed(f"{value!r} is not an IP address") from None
        elif ident_type is IdentifierType.DNS:
            value = value.lower().rstrip(".")
        return cls(ident_type, value)

    @classmethod
    def from_general_name(cls, name: x509.GeneralName) -> Identifier:
        match name:
            case x509.DNSName():
                # RFC 5280 §4.2.1.6: a dNSName is an IA5String in the preferred name syntax
                # (IDNs as A-labels, §7.2). A parsed request may carry other characters, and
                # lower() folds some onto ASCII ("\u212a", KELVIN SIGN, onto "k"): the
                # certificate would name what the request did not.
                if not name.value.isascii():
                    raise Malformed("a dNSName must be ASCII (internationalized names as A-labels)")
                return cls(IdentifierType.DNS, name.value.lower().rstrip("."))
            case x509.IPAddress():
                if not isinstance(name.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                    raise Malformed("an IP address SAN must be one address, not a range")
                return cls(IdentifierType.IP, str(name.value))
            case x509.RFC822Name():
                return cls(IdentifierType.EMAIL, name.value)
            case x509.UniformResourceIdentifier():
                return cls(IdentifierType.URI, name.value)
            case _:
                raise Malformed(f"unsupported subject alternative name type {type(name).__name__}")

    def to_general_name(self) -> x509.GeneralName:
        match self.type:
            case IdentifierType.DNS:
                return x509.DNSName(self.value)
            case IdentifierType.IP:
                return x509.IPAddress(ipaddress.ip_address(self.value))
            case IdentifierType.EMAIL:
                return x509.RFC822Name(self.value)
            case IdentifierType.URI:
                return x509.UniformResourceIdentifier(self.value)


@dataclass(frozen=True, slots=True)
class Vouched:
    """What the front end itself verified, beyond the requester's identity."""

    identifiers: frozenset[Identifier] = frozenset()  # e.g. ACME-validated identifiers
    renewal_of: int | None = None  # serial of the certificate whose possession was proved
    attributes: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "identifiers": sorted(str(i) for i in self.identifiers),
            "renewal_of": self.renewal_of,
            "attributes": [list(a) for a in self.attributes],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Vouched:
        return cls(
            frozenset(Identifier.parse(i) for i in d.get("identifiers", ())),
            d.get("renewal_of"),
            tuple((k, v) for k, v in d.get("attributes", ())),
        )


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    csr_der: bytes
    protocol: str  # "rest", "acme", "scep", "est": recorded, never branched on
    requester: Requester
    profile: str | None = None  # None: the configured default profile
    vouched: Vouched = field(default_factory=Vouched)
    transaction_id: str | None = None  # the protocol's own id (SCEP transactionID...)


# The subject is kept as (dotted OID, value) pairs, one RDN each, so that drafts serialize.
SubjectAttrs = tuple[tuple[str, str], ...]


def subject_attrs(name: x509.Name) -> SubjectAttrs:
    return tuple((a.oid.dotted_string, str(a.value)) for a in name)


def subject_name(attrs: SubjectAttrs) -> x509.Name:
    return x509.Name([x509.NameAttribute(ObjectIdentifier(oid), value) for oid, value in attrs])


@dataclass(frozen=True, slots=True)
class ExtraExtension:
    """An extension a policy module adds verbatim: OID, criticality and DER value."""

    oid: str
    critical: bool
    value_der: bytes


@dataclass(frozen=True, slots=True)
class CertificateDraft:
    """Everything the signed certificate will say, shaped by the profile and policy modules.

    The draft is stored with the request, so an approval signs exactly what policy shaped.
    The public key is the CSR's; ``key_type`` describes it for policies ("ec-p256",
    "rsa-2048", "ed25519"...).
    """

    profile: str
    issuer: str  # name of the issuing CA that signs
    subject: SubjectAttrs
    sans: tuple[Identifier, ...]
    validity: timedelta
    key_type: str
    key_usage: frozenset[str] = frozenset()  # RFC 5280 names: digitalSignature, keyEncipherment...
    extended_key_usage: tuple[str, ...] = ()  # dotted OIDs
    certificate_policies: tuple[str, ...] = ()  # dotted OIDs
    extensions: tuple[ExtraExtension, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "issuer": self.issuer,
            "subject": [list(a) for a in self.subject],
            "sans": [str(s) for s in self.sans],
            "validity_seconds": int(self.validity.total_seconds()),
            "key_type": self.key_type,
            "key_usage": sorted(self.key_usage),
            "extended_key_usage": list(self.extended_key_usage),
            "certificate_policies": list(self.certificate_policies),
            "extensions": [
                {"oid": e.oid, "critical": e.critical, "value": e.value_der.hex()}
                for e in self.extensions
            ],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CertificateDraft:
        return cls(
            profile=d["profile"],
            issuer=d["issuer"],
            subject=tuple((oid, v) for oid, v in d["subject"]),
            sans=tuple(Identifier.parse(s) for s in d["sans"]),
            validity=timedelta(seconds=d["validity_seconds"]),
            key_type=d["key_type"],
            key_usage=frozenset(d.get("key_usage", ())),
            extended_key_usage=tuple(d.get("extended_key_usage", ())),
            certificate_policies=tuple(d.get("certificate_policies", ())),
            extensions=tuple(
                ExtraExtension(e["oid"], e["critical"], bytes.fromhex(e["value"]))
                for e in d.get("extensions", ())
            ),
        )


# Decisions a policy module returns. The first Hold or Deny ends the chain.
@dataclass(frozen=True, slots=True)
class Issue:
    draft: CertificateDraft


@dataclass(frozen=True, slots=True)
class Hold:
    draft: CertificateDraft
    reason: str = "waiting for an administrator's approval"


@dataclass(frozen=True, slots=True)
class Deny:
    reason: str  # shown to the requester


Decision = Issue | Hold | Deny


class PolicyModule(Protocol):
    """A policy plug-in: decides, and may shape the draft with ``dataclasses.replace``."""

    name: str

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Decision: ...


class Status(StrEnum):
    """A request's life: PENDING -> APPROVED -> ISSUED, or -> DENIED; APPROVED -> FAILED."""

    PENDING = "pending"
    APPROVED = "approved"  # decided to issue; signing in progress (or resumed after a crash)
    ISSUED = "issued"
    DENIED = "denied"
    FAILED = "failed"


class CertStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"


class RevocationReason(StrEnum):
    """RFC 5280 §5.3.1 CRLReason names (value 7 is unused)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        for reason in cls:
            if reason.value.lower() == text.strip().lower():
                return reason
        raise Malformed(f"unknown revocation reason {text!r}; use an RFC 5280 reason name")


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    serial: int
    request_id: str
    issuer: str  # issuing CA name
    profile: str
    subject: str  # RFC 4514
    sans: tuple[str, ...]  # "dns:example.com"
    not_before: datetime
    not_after: datetime
    der: bytes
    requester: str  # Requester.label()
    key_sha256: str  # hex SHA-256 of the SubjectPublicKeyInfo
    status: CertStatus = CertStatus.VALID
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    invalidity_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revokedCertificates entry of a CRL (RFC 5280 §5.1.2.6): what the store hands the
    CRL builder, without the certificate itself."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason
    invalidity_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    id: str
    status: Status
    created_at: datetime
    updated_at: datetime
    protocol: str
    requester: Requester
    profile: str
    csr_der: bytes
    subject: str  # RFC 4514 of the CSR's subject, for search
    sans: tuple[str, ...]  # the CSR's SANs, "dns:example.com", for search
    transaction_id: str | None = None
    vouched: Vouched = field(default_factory=Vouched)
    draft: CertificateDraft | None = None
    reason: str | None = None  # why pending, denied or failed; client-safe
    serial: int | None = None  # set when issued


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request without its CSR, draft and names: what a lookup by transaction needs."""

    id: str
    status: Status
    protocol: str
    requester: str  # Requester.label()
    created_at: datetime
    updated_at: datetime


class EventKind(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    ISSUED = "issued"
    DENIED = "denied"
    FAILED = "failed"
    REVOKED = "revoked"
    UNREVOKED = "unrevoked"  # released from certificateHold
    CRL_PUBLISHED = "crl_published"
    EXPIRING = "expiring"  # a certificate crossed one of [monitor]'s expiry thresholds


@dataclass(frozen=True, slots=True)
class Event:
    """A fact recorded with its state change, delivered to exit modules at least once."""

    kind: EventKind
    at: datetime
    request_id: str | None = None
    serial: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)  # JSON-serializable
    id: str = field(default_factory=new_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "at": self.at.isoformat(),
            "request_id": self.request_id,
            "serial": None if self.serial is None else format(self.serial, "x"),
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            kind=EventKind(d["kind"]),
            at=datetime.fromisoformat(d["at"]),
            request_id=d.get("request_id"),
            serial=None if d.get("serial") is None else int(d["serial"], 16),
            data=d.get("data") or {},
            id=d["id"],
        )


class SortKey(StrEnum):
    """What an inventory list is ordered by: issuance (a request's creation) or expiry."""

    ISSUED = "issued"
    EXPIRY = "expiry"


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """A page of requests, ordered by ``created_at`` then id (newest first unless
    ``descending`` is false). ``after`` is the (created_at, id) of the last record of the
    page before: the store continues strictly after it (keyset paging, never an offset)."""

    status: Status | None = None
    requester: str | None = None  # Requester.label() exactly
    profile: str | None = None
    protocol: str | None = None
    subject: str | None = None  # substring of the RFC 4514 subject, case-insensitive
    san: str | None = None  # substring of a SAN ("example.com", "dns:www.ex"), case-insensitive
    serial_prefix: str | None = None  # lowercase hex digits: the start of the issued serial
    transaction_id: str | None = None  # the protocol's own id (SCEP transactionID), exactly
    created_after: datetime | None = None  # created at or after
    created_before: datetime | None = None  # created before
    # Issued requests whose certificate's notAfter lies in (expires_after, expires_before).
    expires_after: datetime | None = None
    expires_before: datetime | None = None
    descending: bool = True
    after: tuple[datetime, str] | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class CertificateQuery:
    """A page of certificates, ordered by ``sort`` (notBefore or notAfter), then request id
    and serial, descending unless ``descending`` is false; ``after`` is the (time, request
    id, serial) of the last certificate of the page before (keyset paging, never an offset).

    The request id breaks ties rather than the serial alone: notBefore is whole seconds, so
    hundreds of certificates share one, and a random serial would put each new index entry
    on a random page of that second's run; request ids begin with the time in milliseconds."""

    status: CertStatus | None = None
    issuer: str | None = None
    requester: str | None = None
    profile: str | None = None
    protocol: str | None = None  # the front end its request came through
    subject: str | None = None  # substring, case-insensitive
    san: str | None = None  # substring of a SAN, with or without "type:", case-insensitive
    serial_prefix: str | None = None  # lowercase hex digits: the start of the serial in hex
    key_sha256: str | None = None
    reason: RevocationReason | None = None
    expires_before: datetime | None = None  # notAfter < this
    expires_after: datetime | None = None  # notAfter > this
    issued_after: datetime | None = None  # notBefore >= this
    issued_before: datetime | None = None  # notBefore < this
    sort: SortKey = SortKey.ISSUED
    descending: bool = True
    after: tuple[datetime, str, int] | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """What the monitor's gauges show, counted by the store from its indexes."""

    # (state, profile) -> certificates; state is "valid", "revoked" (on hold included) or
    # "expired" (notAfter passed, whatever the status).
    certificates: Mapping[tuple[str, str], int]
    # window -> valid certificates whose notAfter is after now and at most now + window.
    expiring: Mapping[timedelta, int]
    pending_requests: int
    oldest_pending: datetime | None  # when the longest-waiting pending request arrived


@dataclass(frozen=True, slots=True)
class Document:
    """A protocol's own state (tokens, challenges, ACME accounts...), kept by the store.

    ``lookup`` is one secondary key the store indexes; ``version`` guards conditional updates.
    """

    kind: str
    id: str
    data: Mapping[str, Any]
    version: int = 1
    lookup: str | None = None
    expires_at: datetime | None = None


# What the engine answers.
@dataclass(frozen=True, slots=True)
class Issued:
    request_id: str
    certificate: CertificateRecord
    chain: tuple[bytes, ...]  # DER, the issuing CA first, up to (not including) the root


@dataclass(frozen=True, slots=True)
class Pending:
    request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Denied:
    request_id: str
    reason: str


Outcome = Issued | Pending | Denied
