"""ACME Renewal Information (RFC 9773).

``GET /acme/renewal-info/<certID>`` answers the suggested renewal window of a certificate
certforge issued: normally the last third of its lifetime. An administrator can mark
certificates for renewal now, one by serial, all of one key, or all of one issuing CA (after
an incident); a marked certificate, or a revoked one, gets a window already in the past, so
its client renews at once (§4.2). Marks are ``acme-ari-mark`` documents whose id is
``serial:<hex>``, ``key:<sha256 hex of the SPKI>`` or ``issuer:<name>``; a certificate issued
after its mark is not affected.

A newOrder's "replaces" (§5) names the certificate it renews: it must be one this account
was issued, share an identifier with the order, and not have been replaced already
(alreadyReplaced). The replacement is recorded (``acme-replaced``) once the new order is
valid.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography import x509

from protocols.acme.context import ACME
from protocols.acme.jws import b64decode, b64encode
from protocols.acme.problems import ACMEProblem, ProblemType, unauthorized
from protocols.acme.records import Account, Order, rfc3339
from protocols.acme.render import acme_json
from server.errors import Conflict, NotFound
from server.model import CertificateRecord, CertStatus, Clock, Document, Identifier
from server.store.base import Store

MARK, REPLACED = "acme-ari-mark", "acme-replaced"


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number
    serial_bytes = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return f"{b64encode(aki.key_identifier or b'')}.{b64encode(serial_bytes)}"


async def certificate_of(acme: ACME, text: object) -> CertificateRecord:
    """The certificate a certID names; 404 for one this server did not issue."""
    if not isinstance(text, str) or text.count(".") != 1:
        raise ACMEProblem(ProblemType.MALFORMED, "a certID is base64url(AKI).base64url(serial)")
    aki_b64, serial_b64 = text.split(".")
    aki, serial_bytes = b64decode(aki_b64, "the certID"), b64decode(serial_b64, "the certID")
    if not serial_bytes:
        raise ACMEProblem(ProblemType.MALFORMED, "the certID has no serial number")
    try:
        cert = await acme.store.get_certificate(int.from_bytes(serial_bytes, "big"))
    except NotFound:
        raise ACMEProblem(ProblemType.MALFORMED, "no certificate with this certID", 404) from None
    if acme.engine.cas.issuers.get(cert.issuer) is None or (
        acme.engine.cas.issuer(cert.issuer).ski != aki
    ):
        raise ACMEProblem(ProblemType.MALFORMED, "no certificate with this certID", 404)
    return cert


async def marked_at(store: Store, cert: CertificateRecord) -> datetime | None:
    """When an administrator asked for this certificate's renewal (if after its issuance)."""
    for mark_id in (
        f"serial:{cert.serial:x}",
        f"key:{cert.key_sha256}",
        f"issuer:{cert.issuer}",
    ):
        try:
            doc = await store.get_doc(MARK, mark_id)
        except NotFound:
            continue
        at = datetime.fromisoformat(doc.data["at"])
        if cert.not_before < at:
            return at
    return None


async def mark(store: Store, clock: Clock, mark_id: str) -> datetime:
    """Mark certificates for renewal now (replacing an older mark of the same scope)."""
    now = clock.now()
    doc = Document(MARK, mark_id, {"at": now.isoformat()})
    try:
        await store.put_doc(doc)
    except Conflict:
        old = await store.get_doc(MARK, mark_id)
        await store.update_doc(
            Document(MARK, mark_id, doc.data, old.version), expect_version=old.version
        )
    return now


async def renewal_info(request: web.Request) -> web.Response:
    """RFC 9773 §4.2: GET, no authentication; the window and Retry-After."""
    acme = ACME.of(request)
    cert = await certificate_of(acme, request.match_info["cert_id"])
    window = await suggested_window(acme, cert)
    return acme_json(
        {"suggestedWindow": {"start": rfc3339(window[0]), "end": rfc3339(window[1])}},
        retry_after=acme.settings.ari_retry_after_seconds,
    )


async def suggested_window(acme: ACME, cert: CertificateRecord) -> tuple[datetime, datetime]:
    at = await marked_at(acme.store, cert)
    if cert.status is CertStatus.REVOKED and cert.revoked_at is not None:
        at = min(at, cert.revoked_at) if at else cert.revoked_at
    if at is not None:
        # §4.2: a window in the past tells the client to renew immediately.
        return at - timedelta(hours=2), at - timedelta(hours=1)
    lifetime = cert.not_after - cert.not_before
    start = cert.not_before + lifetime * 2 / 3
    return start, start + lifetime / 6


async def check_replaces(
    acme: ACME, account: Account, value: object, identifiers: list[tuple[Identifier, bool]]
) -> str | None:
    if value is None:
        return None
    cert = await certificate_of(acme, value)
    assert isinstance(value, str)  # noqa: S101 - certificate_of checked it
    if cert.requester != f"acme_account:{acme.urls.account(account.id)}":
        raise unauthorized("the replaced certificate was not issued to this account")
    names = {s.partition(":")[2].removeprefix("*.") for s in cert.sans}
    if not names & {i.value for i, _ in identifiers}:
        raise ACMEProblem(
            ProblemType.MALFORMED, "the order shares no identifier with the replaced certificate"
        )
    try:
        await acme.store.get_doc(REPLACED, value)
    except NotFound:
        return value
    raise ACMEProblem(
        ProblemType.ALREADY_REPLACED, "this certificate has already been replaced", 409
    )


async def record_replaced(acme: ACME, order: Order) -> None:
    if order.replaces is None:
        return
    data: dict[str, Any] = {"order": order.id, "at": acme.clock.now().isoformat()}
    # Two replacement orders finishing together both got their certificate; one is recorded.
    with contextlib.suppress(Conflict):
        await acme.store.put_doc(Document(REPLACED, order.replaces, data))
