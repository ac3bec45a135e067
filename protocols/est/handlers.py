"""EST's operations (RFC 7030 §4), at ``/.well-known/est/`` and ``/.well-known/est/<label>/``.

A label (RFC 7030 §3.2.2) names a certforge profile; no label means the default profile.

``GET cacerts``         §4.1: the issuing CA's chain and the root, certs-only. No authentication
                        (§4.1.1: the server "SHOULD NOT require client authentication").
``GET csrattrs``        §4.5: what the profile wants in a request. No authentication either.
``POST simpleenroll``   §4.2.1: a PKCS#10 request, by a client with Basic or a client certificate.
``POST simplereenroll`` §4.2.2: renewal, authenticated by the certificate being renewed.
``POST serverkeygen``   §4.4: certforge makes the key; the answer carries key and certificate,
                        the key encrypted to the client's certificate if asked (§4.4.1.2).
``POST fullcmc``        §4.3: not implemented (501).

Every enrollment is one ``EnrollmentRequest`` submitted to the engine; its ``Outcome`` is
rendered as 200 (certs-only), 202 with Retry-After (pending: the client's retry finds the
request, ``protocols.est.pending``), or 403 with the reason (denied).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import assert_never

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from protocols.est import keygen, keyvault, keywrap
from protocols.est.auth import (
    PROTOCOL,
    ClientCertificate,
    Proof,
    certified_names,
    identify,
    identify_renewal,
    tls_unique,
)
from protocols.est.context import EST
from protocols.est.errors import UnsupportedMediaType
from protocols.est.messages import (
    CSRATTRS,
    PKCS7_CERTS_ONLY,
    PKCS7_SERVER_KEY,
    PKCS8,
    PKCS10,
    base64_lines,
    certs_only,
    check_pop_linking,
    csr_attributes,
    decrypt_key_identifier,
    serverkeygen_response,
)
from protocols.est.pending import find_retried, mark_collected, retry_id
from server.app import TLS_KEY
from server.ca.csr import ParsedCSR, csr_der_from_bytes, requested_identifiers
from server.config import ProfileConfig
from server.errors import BadCSR, Forbidden, NotFound, Unauthorized, Unavailable
from server.keys import CAS, CHALLENGES, ENGINE, STORE
from server.model import (
    AuthMethod,
    Denied,
    EnrollmentRequest,
    Identifier,
    Issued,
    Outcome,
    Pending,
    Requester,
    RequestRecord,
    Vouched,
)
from server.web.body import read_body


def profile_of(request: web.Request, default: str | None = None) -> ProfileConfig:
    """The label's profile (404 for an unknown label), or ``default`` or the default one."""
    return request.config_dict[ENGINE].profile(request.match_info.get("label", default))


async def read_pkcs10(request: web.Request) -> bytes:
    # RFC 7030 §4.2.1: "the HTTP content-type of "application/pkcs10" is used here".
    if request.content_type != PKCS10:
        raise UnsupportedMediaType(f"{PKCS10} (base64 DER, RFC 8951)")
    return csr_der_from_bytes(await read_body(request))


def verify_pkcs10(request: web.Request, csr_der: bytes) -> ParsedCSR:
    """The engine's checks of the request, its key included, made before a one-time password
    is spent or a key is made; the engine reuses the result."""
    return request.config_dict[ENGINE].verify_csr(csr_der)


# -------------------------------------------------------------- distribution
async def cacerts(request: web.Request) -> web.Response:
    cas = request.config_dict[CAS]
    issuer = cas.issuer(profile_of(request).issuer)
    body = certs_only([*issuer.chain_der, cas.root.public_bytes(Encoding.DER)])
    return web.Response(body=body, headers={"Content-Type": PKCS7_CERTS_ONLY})


async def csrattrs(request: web.Request) -> web.Response:
    body = base64_lines(csr_attributes(profile_of(request)))
    return web.Response(body=body, headers={"Content-Type": CSRATTRS})


async def fullcmc(request: web.Request) -> web.Response:
    raise Unavailable("fullcmc (RFC 7030 §4.3) is not implemented; use simpleenroll")


# -------------------------------------------------------------- enrollment
@dataclass(frozen=True, slots=True)
class Enrollment:
    """One enrollment as the handlers see it, before the engine does."""

    operation: str
    profile: ProfileConfig
    csr: ParsedCSR  # verified (signature and key) once, here; the engine reuses it
    proof: Proof
    vouched: Vouched = field(default_factory=Vouched)
    key_recipient: x509.Certificate | None = None  # serverkeygen: encrypt the key to it


async def simpleenroll(request: web.Request) -> web.Response:
    profile = profile_of(request)
    csr_der = await read_pkcs10(request)
    proof = await identify(request, profile, _now(request))
    csr = verify_pkcs10(request, csr_der)
    enrollment = Enrollment("simpleenroll", profile, csr, proof, own_identity(csr, proof))
    return await enroll(request, enrollment)


async def simplereenroll(request: web.Request) -> web.Response:
    csr_der = await read_pkcs10(request)
    renewed = await identify_renewal(request, _now(request))
    assert renewed.record is not None  # noqa: S101 - identify_renewal returns only ours
    # A renewal stays in the profile the certificate was issued under: another label would
    # let a certificate of one profile (90 days, serverAuth) become one of another (730 days,
    # clientAuth) without the other profile's authentication.
    label = request.match_info.get("label")
    if label is not None and label != renewed.record.profile:
        raise Forbidden(
            f"a renewal stays in the certificate's profile {renewed.record.profile!r}, "
            f"not {label!r}"
        )
    profile = profile_of(request, default=renewed.record.profile)
    parsed = verify_pkcs10(request, csr_der)
    # RFC 7030 §4.2.2: "The request Subject field and SubjectAltName extension MUST be
    # identical to the corresponding fields in the certificate being renewed". certforge's
    # policy lets a renewal drop names, never add one; the old certificate's names are also
    # what EST vouches for, so the profiles policy holds the renewal to them too.
    if parsed.csr.subject != renewed.certificate.subject:
        raise BadCSR("the request's subject must be identical to the certificate being renewed")
    old_names = _only_certified_names(parsed.csr, renewed, "a renewal")
    vouched = Vouched(identifiers=old_names, renewal_of=renewed.certificate.serial_number)
    if str(AuthMethod.CLIENT_CERT) not in profile.auth.get(PROTOCOL, ()):
        raise Forbidden(f"profile {profile.name} does not accept TLS client certificates")
    proof = Proof(Requester(AuthMethod.CLIENT_CERT, renewed.identity), client_certificate=renewed)
    enrollment = Enrollment("simplereenroll", profile, parsed, proof, vouched)
    return await enroll(request, enrollment)


async def serverkeygen(request: web.Request) -> web.Response:
    profile = profile_of(request)
    csr_der = await read_pkcs10(request)
    proof = await identify(request, profile, _now(request))
    csr = verify_pkcs10(request, csr_der)
    keygen.check_generable(profile, csr.key_type)
    recipient = None
    if (key_id := decrypt_key_identifier(csr_der)) is not None:
        # RFC 7030 §4.4.1.2: settled before anything is recorded or generated.
        client = proof.client_certificate
        recipient = keywrap.recipient_for(key_id, client.certificate if client else None)
    vouched = own_identity(csr, proof)
    enrollment = Enrollment("serverkeygen", profile, csr, proof, vouched, key_recipient=recipient)
    return await enroll(request, enrollment)


async def enroll(request: web.Request, e: Enrollment) -> web.Response:
    """Find the request the client repeats, or submit a new one; render the outcome."""
    if e.profile.est_pop_linking:
        check_pop_linking(e.csr.csr, tls_unique(request))
    transaction_id = retry_id(e.operation, e.profile.name, e.csr, e.proof.requester)
    store, clock = request.config_dict[STORE], request.config_dict[ENGINE].clock
    retried = await find_retried(store, clock, transaction_id, e.proof.requester)
    if retried is not None:
        return await _retry(request, e, retried)
    return await _submit(request, e, transaction_id)


async def _retry(request: web.Request, e: Enrollment, record: RequestRecord) -> web.Response:
    """RFC 7030 §4.2.3: the client repeats a request that was pending. (It proved possession
    of the key again: the enrollment's request was verified.)"""
    engine, store = request.config_dict[ENGINE], request.config_dict[STORE]
    _, outcome = await engine.retrieve(record.id)
    if isinstance(outcome, Pending):
        return render(request, outcome)
    key_doc = keyvault.key_id_of_csr(record.csr_der) if e.operation == "serverkeygen" else None
    key = None
    if key_doc is not None and isinstance(outcome, Issued):
        try:
            key = await keyvault.load(store, await request.app[EST].seal(), key_doc)
        except NotFound:
            await mark_collected(store, engine.clock, record)  # the next request starts anew
            raise
    response = render(request, outcome, await _key_part(request, e, key))
    await mark_collected(store, engine.clock, record)
    if key_doc is not None:
        await keyvault.discard(store, key_doc)
    return response


async def _submit(request: web.Request, e: Enrollment, transaction_id: str) -> web.Response:
    # Bad input must change nothing: the request was verified before a one-time password is
    # used up or a key made.
    if e.proof.challenge is not None:
        await _redeem(request, e.proof.challenge, e.profile)
    engine, store = request.config_dict[ENGINE], request.config_dict[STORE]
    csr_der, key, key_doc = e.csr.der, None, None
    verified: ParsedCSR | None = e.csr
    if e.operation == "serverkeygen":
        async with request.app[EST].generations:
            csr_der, key = await asyncio.to_thread(_request_for_new_key, e)
        verified = None  # the engine verifies certforge's own request
        # Kept (sealed) before the request exists, so a held request never lacks its key.
        key_doc = await keyvault.keep(store, engine.clock, await request.app[EST].seal(), key)
    outcome: Outcome | None = None
    try:
        outcome = await engine.submit(
            EnrollmentRequest(
                csr_der=csr_der,
                protocol=PROTOCOL,
                requester=e.proof.requester,
                profile=e.profile.name,
                vouched=_with_certificate(e.vouched, e.proof),
                transaction_id=transaction_id,
            ),
            verified=verified,
        )
    finally:
        if key_doc is not None and not isinstance(outcome, Pending):
            await keyvault.discard(store, key_doc)
    key_part = await _key_part(request, e, key) if isinstance(outcome, Issued) else None
    return render(request, outcome, key_part)


async def _redeem(request: web.Request, password: str, profile: ProfileConfig) -> None:
    if not await request.config_dict[CHALLENGES].redeem(password, profile=profile.name):
        raise Unauthorized("the user name and password, or the one-time password, are not valid")


async def _key_part(
    request: web.Request, e: Enrollment, key: bytes | None
) -> tuple[str, bytes] | None:
    """serverkeygen's key as RFC 7030 §4.4.2 sends it: PKCS#8, or encrypted as asked."""
    if key is None:
        return None
    if e.key_recipient is None:
        return PKCS8, key
    tls = request.config_dict[TLS_KEY]
    signer, chain = await asyncio.to_thread(keywrap.load_signer, tls.cert_path, tls.key_path)
    wrapped = await asyncio.to_thread(
        keywrap.server_generated_key,
        key,
        recipient=e.key_recipient,
        signer=signer,
        signer_chain=chain,
    )
    return PKCS7_SERVER_KEY, wrapped


def render(
    request: web.Request, outcome: Outcome, key_part: tuple[str, bytes] | None = None
) -> web.Response:
    match outcome:
        case Issued(certificate=cert):
            if key_part is not None:
                body, ctype = serverkeygen_response(key_part, cert.der)
                return web.Response(body=body, headers={"Content-Type": ctype})
            return web.Response(
                body=certs_only([cert.der]), headers={"Content-Type": PKCS7_CERTS_ONLY}
            )
        case Pending(reason=reason):
            # RFC 7030 §4.2.3: "the server MUST respond with an HTTP 202 ... Retry-After".
            retry = str(request.app[EST].retry_after)
            return web.Response(
                status=202, text=f"pending: {reason}\n", headers={"Retry-After": retry}
            )
        case Denied(reason=reason):
            return web.Response(status=403, text=f"denied: {reason}\n")
        case _:
            assert_never(outcome)


def own_identity(csr: ParsedCSR, proof: Proof) -> Vouched:
    """A TLS client certificate that authenticates a request vouches for its own identity
    only: the request must have the certificate's subject, and no name the certificate does
    not certify (as for a renewal, RFC 7030 §4.2.2). Without this, any certificate of this CA
    (one ACME issued for another name, say) or any device certificate of a trusted
    manufacturer would get a certificate for any name. Basic credentials authorise any name
    the profile allows; the profile's policy then judges the request either way."""
    cert = proof.client_certificate
    if proof.requester.method is not AuthMethod.CLIENT_CERT or cert is None:
        return Vouched()
    if csr.csr.subject != cert.certificate.subject:
        raise Forbidden(
            "a request authenticated by a TLS client certificate must have its subject "
            f"({cert.certificate.subject.rfc4514_string()})"
        )
    return Vouched(identifiers=_only_certified_names(csr.csr, cert, "this request"))


def _only_certified_names(
    csr: x509.CertificateSigningRequest, cert: ClientCertificate, what: str
) -> frozenset[Identifier]:
    names = certified_names(cert)
    if added := sorted(set(requested_identifiers(csr)) - names):
        raise Forbidden(f"{what} cannot add names the certificate does not have: {added[0]}")
    return names


def _with_certificate(vouched: Vouched, proof: Proof) -> Vouched:
    """Record the TLS client certificate that came with Basic credentials."""
    cert = proof.client_certificate
    if cert is None or proof.requester.identity == cert.identity:
        return vouched
    return replace(vouched, attributes=(*vouched.attributes, ("tls_client_cert", cert.identity)))


def _request_for_new_key(e: Enrollment) -> tuple[bytes, bytes]:
    """serverkeygen: a request of ours for a new key of the kind the client's request has."""
    return keygen.request_for_new_key(e.csr.csr, e.csr.key_type)


def _now(request: web.Request) -> datetime:
    return request.config_dict[ENGINE].clock.now()


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/{label}"):
        app.router.add_get(f"{prefix}/cacerts", cacerts)
        app.router.add_get(f"{prefix}/csrattrs", csrattrs)
        app.router.add_post(f"{prefix}/simpleenroll", simpleenroll)
        app.router.add_post(f"{prefix}/simplereenroll", simplereenroll)
        app.router.add_post(f"{prefix}/serverkeygen", serverkeygen)
        app.router.add_post(f"{prefix}/fullcmc", fullcmc)
