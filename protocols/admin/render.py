"""JSON shapes of records for the admin API (and so for ``certforge ... --json``)."""

from __future__ import annotations

import ssl
from typing import Any

from server.model import CertificateRecord, Event, RequestRecord
from server.revocation.published import PublishedCRL


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def request_json(r: RequestRecord, *, full: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": r.id,
        "status": str(r.status),
        "profile": r.profile,
        "protocol": r.protocol,
        "requester": r.requester.label(),
        "subject": r.subject,
        "sans": list(r.sans),
        "created_at": r.created_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
        "reason": r.reason,
        "serial": None if r.serial is None else serial_hex(r.serial),
        "transaction_id": r.transaction_id,
    }
    if full:
        d["csr"] = _pem("CERTIFICATE REQUEST", r.csr_der)
        d["draft"] = r.draft.to_json() if r.draft else None
        d["vouched"] = r.vouched.to_json()
    return d


def certificate_json(c: CertificateRecord, *, full: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "serial": serial_hex(c.serial),
        "request_id": c.request_id,
        "issuer": c.issuer,
        "profile": c.profile,
        "subject": c.subject,
        "sans": list(c.sans),
        "not_before": c.not_before.isoformat(),
        "not_after": c.not_after.isoformat(),
        "status": str(c.status),
        "requester": c.requester,
        "key_sha256": c.key_sha256,
        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
        "revocation_reason": str(c.revocation_reason) if c.revocation_reason else None,
        "invalidity_date": c.invalidity_date.isoformat() if c.invalidity_date else None,
    }
    if full:
        d["certificate"] = ssl.DER_cert_to_PEM_cert(c.der)
    return d


def crl_json(c: PublishedCRL) -> dict[str, Any]:
    return {
        "issuer": c.issuer,
        "shard": c.shard,
        "delta_of": c.base_number,
        "number": c.number,
        "this_update": c.this_update.isoformat(),
        "next_update": c.next_update.isoformat(),
        "entries": c.entries,
    }


def event_json(e: Event) -> dict[str, Any]:
    d = e.to_json()
    d["data"] = {k: v for k, v in d["data"].items() if k != "certificate_pem"}
    return d


def _pem(label: str, der: bytes) -> str:
    b64 = ssl.DER_cert_to_PEM_cert(der).splitlines()[1:-1]
    return f"-----BEGIN {label}-----\n" + "\n".join(b64) + f"\n-----END {label}-----\n"
