"""SCEP over HTTP (RFC 8894 §4): ``GET|POST /scep[/<profile>]?operation=...``.

- ``GetCACaps`` (§3.5.1): the capabilities, one per line.
- ``GetCACert`` (§4.2): the CA certificate, or the RA and CA certificates.
- ``GetNextCACert`` (§4.7): 404, since certforge has no CA rollover to announce.
- ``PKIOperation`` (§4.3): the pkiMessage, by POST (the body) or GET (base64 ``message``).

``/scep`` serves ``[scep] default_profile``; ``/scep/<profile>`` any other profile. The
Windows/Cisco path suffix ``/pkiclient.exe`` is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from protocols.scep.certrep import cert_rep
from protocols.scep.config import SECTION
from protocols.scep.envelope import ContentCipher, degenerate_crl, open_envelope, seal_envelope
from protocols.scep.failinfo import HTTP_STATUS, BadHTTP, FailInfo, SCEPFailure, failure_for
from protocols.scep.messages import (
    Addressee,
    PKIMessage,
    PKIStatus,
    SCEPMessageError,
    read_pki_message,
)
from protocols.scep.operations import Operations, Reply
from protocols.scep.ra import Identities, Identity
from server.errors import CertforgeError, Malformed, RateLimited
from server.keys import CONFIG, ENGINE, REQUEST_LOG
from server.web.body import read_body
from server.web.errors import edge_errors, internal_text

log = logging.getLogger("certforge.scep")

PKI_MESSAGE = "application/x-pki-message"


@dataclass
class SCEPState:
    """Filled by the front end's start hook (``protocols.scep.app.mount``)."""

    identities: Identities | None = None
    operations: Operations | None = None


STATE = web.AppKey("scep_state", SCEPState)


def _state(request: web.Request) -> tuple[Identities, Operations]:
    state = request.app[STATE]
    if state.identities is None or state.operations is None:
        # The start hook runs before the listeners accept anything.
        raise RuntimeError("the SCEP front end was not started")
    return state.identities, state.operations


def _profile(request: web.Request) -> str:
    config = request.config_dict[CONFIG]
    default = SECTION.of(config).default_profile
    name = request.match_info.get("profile") or default
    if name == "pkiclient.exe":
        name = default
    if name not in config.profiles:
        raise BadHTTP(HTTPStatus.NOT_FOUND, f"no SCEP endpoint for profile {name!r}")
    return name


async def _identity(request: web.Request, profile: str) -> Identity:
    identities, _ = _state(request)
    issuer = request.config_dict[CONFIG].profiles[profile].issuer
    return await identities.of(issuer)


async def scep(request: web.Request) -> web.StreamResponse:
    operation = request.query.get("operation", "")
    profile = _profile(request)
    if operation == "GetCACaps":
        return get_ca_caps(request)
    if operation == "GetCACert":
        body, content_type = (await _identity(request, profile)).ca_certs()
        return web.Response(body=body, content_type=content_type)
    if operation == "GetNextCACert":
        raise BadHTTP(HTTPStatus.NOT_FOUND, "no CA rollover is prepared")
    if operation == "PKIOperation":
        return await pki_operation(request, profile, await _pki_message_der(request))
    raise BadHTTP(HTTPStatus.BAD_REQUEST, f"unknown operation {operation!r}")


def get_ca_caps(request: web.Request) -> web.Response:
    """RFC 8894 §3.5.2: AES and SHA-256 are what a CA "MUST" offer for SCEPStandard."""
    caps = ["AES", "POSTPKIOperation", "Renewal", "SHA-256", "SHA-512", "SCEPStandard"]
    if SECTION.of(request.config_dict[CONFIG]).legacy_algorithms:
        caps += ["DES3", "SHA-1"]
    return web.Response(text="\n".join(caps) + "\n", content_type="text/plain")


async def _pki_message_der(request: web.Request) -> bytes:
    if request.method == "POST":
        try:
            body = await read_body(request)
        except Malformed as exc:  # a body that does not decode: no CertRep can answer it
            raise BadHTTP(HTTPStatus.BAD_REQUEST, exc.detail) from None
    else:
        # §4.3: with GET, the message is base64 in the query (and so URL-encoded there).
        text = request.query.get("message", "")
        try:
            body = base64.b64decode(text.replace(" ", "+"), validate=False)
        except (binascii.Error, ValueError):
            raise BadHTTP(HTTPStatus.BAD_REQUEST, "the message parameter is not base64") from None
    if not body:
        raise BadHTTP(HTTPStatus.BAD_REQUEST, "PKIOperation needs a pkiMessage")
    return body


async def pki_operation(request: web.Request, profile: str, der: bytes) -> web.Response:
    config = request.config_dict[CONFIG]
    engine = request.config_dict[ENGINE]
    identity = await _identity(request, profile)
    now = engine.clock.now()
    legacy = SECTION.of(config).legacy_algorithms
    _, operations = _state(request)
    try:
        msg = read_pki_message(der, legacy=legacy, now=now)
    except SCEPMessageError as exc:
        return _failure(request, identity, exc.addressee, exc)
    to = Addressee(msg.transaction_id, msg.sender_nonce, msg.digest)
    try:
        # RFC 8894 §3.5.2: the CertRep is enveloped to the requester's key by RSA key
        # transport; a requester signing with an EC key could never read it, so it is refused
        # before anything is spent or recorded. (Its CSR may carry an EC key.)
        if msg.signer.public_key.algorithm != "rsa":
            raise SCEPFailure(FailInfo.BAD_ALG, "the signer certificate's key must be RSA")
        if msg.envelope is None:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the pkiMessage has no pkcsPKIEnvelope")
        content, cipher = await _open(request, identity, msg.envelope, legacy=legacy)
        reply = await operations.handle(msg, content, profile=profile)
        envelope = _seal(reply, msg, cipher)
    except SCEPFailure as exc:
        return _failure(request, identity, to, exc)
    except CertforgeError as exc:
        return _failure(request, identity, to, failure_for(exc))
    body = cert_rep(
        signer=identity.signer,
        to=to,
        status=reply.status,
        now=now,
        fail_info=reply.fail_info,
        envelope=envelope,
    )
    _note(request, msg, reply)
    return web.Response(body=body, content_type=PKI_MESSAGE)


async def _open(
    request: web.Request, identity: Identity, envelope: bytes, *, legacy: bool
) -> tuple[bytes, ContentCipher]:
    try:
        return open_envelope(envelope, identity.recipients, legacy=legacy)
    except SCEPFailure as exc:
        if exc.fail_info is not FailInfo.BAD_MESSAGE_CHECK:
            raise
    # Perhaps sealed to an RA another process sharing the data directory renewed: read it.
    identities, _ = _state(request)
    fresh = await identities.reload(identity.issuer, stale=identity)
    return open_envelope(envelope, fresh.recipients, legacy=legacy)


def _seal(reply: Reply, msg: PKIMessage, cipher: ContentCipher) -> bytes | None:
    """§3.3.2: the issued certificate (or the CRL) in a degenerate certificates-only
    SignedData, enveloped to the requester's signing certificate."""
    if reply.status is not PKIStatus.SUCCESS:
        return None
    if reply.crl is not None:
        return seal_envelope(degenerate_crl(reply.crl), msg.signer, cipher)
    if reply.certificate is None:
        return None
    certs = pkcs7.serialize_certificates(
        [x509.load_der_x509_certificate(reply.certificate)], Encoding.DER
    )
    return seal_envelope(certs, msg.signer, cipher)


def _failure(
    request: web.Request, identity: Identity, to: Addressee, exc: SCEPFailure
) -> web.Response:
    log.info(
        "SCEP request refused: %s",
        exc.detail,
        extra={"fail_info": exc.fail_info.name, "detail": exc.detail, "tid": to.transaction_id},
    )
    entry = request.get(REQUEST_LOG)
    if entry is not None:
        entry.extra.update(scep_fail_info=exc.fail_info.name, scep_detail=exc.detail)
    body = cert_rep(
        signer=identity.signer,
        to=to,
        status=PKIStatus.FAILURE,
        now=request.config_dict[ENGINE].clock.now(),
        fail_info=exc.fail_info,
    )
    return web.Response(body=body, content_type=PKI_MESSAGE)


def _note(request: web.Request, msg: PKIMessage, reply: Reply) -> None:
    entry = request.get(REQUEST_LOG)
    if entry is not None:
        entry.extra.update(scep_message_type=msg.message_type, scep_status=reply.status.name)


class SCEPRenderer:
    """Errors that cannot become a CertRep: HTTP 4xx with a text body (RFC 8894 §4), the
    status from ``HTTP_STATUS``. aiohttp's own HTTP errors pass through as they are."""

    def engine_error(self, exc: CertforgeError) -> web.StreamResponse:
        response = web.Response(status=HTTP_STATUS[exc.kind], text=exc.detail + "\n")
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    def own_error(self, exc: Exception) -> web.StreamResponse | None:
        if isinstance(exc, BadHTTP):
            return web.Response(status=exc.status, text=exc.detail + "\n")
        return None

    def http_error(self, exc: web.HTTPException) -> None:
        return None

    def internal_error(self, request_id: str) -> web.StreamResponse:
        return web.Response(status=500, text=internal_text(request_id) + "\n")


scep_errors = edge_errors(SCEPRenderer())


def add_routes(app: web.Application) -> None:
    for path in ("", "/", "/pkiclient.exe", "/{profile}", "/{profile}/pkiclient.exe"):
        app.router.add_route("GET", path, scep)
        app.router.add_route("POST", path, scep)
