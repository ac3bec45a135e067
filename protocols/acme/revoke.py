"""Certificate revocation (RFC 8555 §7.6): revokeCert.

The request is signed either by an account ("kid") that was issued the certificate or holds
valid authorizations for all its identifiers, or by the certificate's own key ("jwk"). The
reason is an RFC 5280 CRLReason code; subscribers may give unspecified, keyCompromise,
affiliationChanged, superseded or cessationOfOperation (others are the CA's to give).
"""

from __future__ import annotations

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.acme.context import ACME
from protocols.acme.jws import AccountKey, b64decode
from protocols.acme.problems import ACMEProblem, ProblemType, unauthorized
from protocols.acme.records import AUTHZ, Account, Authorization, AuthzStatus
from protocols.acme.requests import KeyBy, verify_post
from server.errors import Conflict, NotFound
from server.model import (
    AuthMethod,
    CertificateRecord,
    CertStatus,
    Identifier,
    Requester,
    RevocationReason,
)

SUBSCRIBER_REASONS = {
    0: RevocationReason.UNSPECIFIED,
    1: RevocationReason.KEY_COMPROMISE,
    3: RevocationReason.AFFILIATION_CHANGED,
    4: RevocationReason.SUPERSEDED,
    5: RevocationReason.CESSATION_OF_OPERATION,
}


def parse_reason(value: object) -> RevocationReason:
    if value is None:
        return RevocationReason.UNSPECIFIED
    if not isinstance(value, int) or isinstance(value, bool) or value not in SUBSCRIBER_REASONS:
        # RFC 8555 §7.6: an unsupported reason code gets badRevocationReason.
        raise ACMEProblem(
            ProblemType.BAD_REVOCATION_REASON,
            f"reason must be one of {sorted(SUBSCRIBER_REASONS)} (RFC 5280 CRLReason codes)",
        )
    return SUBSCRIBER_REASONS[value]


async def revoke_cert(request: web.Request) -> web.Response:
    acme = ACME.of(request)
    verified = await verify_post(request, acme, key_by=KeyBy.EITHER)
    payload = verified.payload()
    der = b64decode(payload.get("certificate"), '"certificate"')
    reason = parse_reason(payload.get("reason"))
    try:
        cert = x509.load_der_x509_certificate(der)
        record = await acme.store.get_certificate(cert.serial_number)
    except (ValueError, NotFound):
        raise ACMEProblem(
            ProblemType.MALFORMED, "this is not a certificate issued here", 404
        ) from None
    if record.der != der:
        raise ACMEProblem(ProblemType.MALFORMED, "this is not a certificate issued here", 404)
    if record.status is CertStatus.REVOKED:
        raise ACMEProblem(ProblemType.ALREADY_REVOKED, "the certificate is already revoked")
    if verified.account is None:
        _check_certificate_key(cert, verified.key)
        by = Requester(AuthMethod.CLIENT_CERT, record.subject or f"serial {record.serial:x}")
    else:
        await _check_account(acme, verified.account, record)
        by = Requester(AuthMethod.ACME_ACCOUNT, acme.urls.account(verified.account.id))
    try:
        await acme.engine.revoke(record.serial, reason=reason, by=by)
    except Conflict:
        raise ACMEProblem(
            ProblemType.ALREADY_REVOKED, "the certificate is already revoked"
        ) from None
    return web.Response(status=200)


def _check_certificate_key(cert: x509.Certificate, key: AccountKey) -> None:
    spki = PublicFormat.SubjectPublicKeyInfo
    signer = key.key.public_bytes(Encoding.DER, spki)
    if cert.public_key().public_bytes(Encoding.DER, spki) != signer:
        raise unauthorized("the JWS key is not the certificate's key")


async def _check_account(acme: ACME, account: Account, record: CertificateRecord) -> None:
    """RFC 8555 §7.6: the account that was issued the certificate, or one "authorized for
    all of the identifiers in the certificate"."""
    if record.requester == f"acme_account:{acme.urls.account(account.id)}":
        return
    now = acme.clock.now()
    for san in record.sans:
        identifier = Identifier.parse(san)
        wildcard = identifier.value.startswith("*.")
        base = Identifier(identifier.type, identifier.value.removeprefix("*."))
        docs = await acme.store.find_docs(AUTHZ, lookup=f"{account.id}|{base}|{int(wildcard)}")
        if not any(
            Authorization.from_doc(d).current_status(now) is AuthzStatus.VALID for d in docs
        ):
            raise unauthorized(
                "the account neither holds this certificate nor is authorized for its names"
            )
