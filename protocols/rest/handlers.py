"""The native REST front end (the classic ICertRequest): submit a CSR, poll by request id,
fetch the CA certificates and chains.

``POST /api/v1/requests``
    JSON ``{"csr": "<PEM>", "profile": "tls-server"}``, or the CSR itself as
    ``application/pkcs10`` (DER, base64 or PEM) with ``?profile=``. An optional bearer token
    identifies the requester; without one the request is anonymous (pending by default).
    201 issued (certificate and chain), 202 pending, 200 denied (with the reason).
``GET /api/v1/requests/{id}``: the same answer for the current status (RetrievePending).
``GET /api/v1/requests/{id}/certificate``: the PEM chain, leaf first.
``GET /api/v1/ca``: the issuing CAs; ``GET /api/v1/ca/{name}/chain``: PEM chain to the root.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, assert_never

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from protocols.rest.auth import requester_of
from protocols.rest.config import SECTION
from protocols.rest.problems import UnsupportedMediaType
from server.ca.csr import csr_der_from_bytes
from server.errors import Malformed, NotFound
from server.keys import CAS, CONFIG, ENGINE
from server.model import (
    AuthMethod,
    Denied,
    EnrollmentRequest,
    Issued,
    Outcome,
    Pending,
    RequestRecord,
)
from server.ratelimits import check_and_count
from server.web.body import read_body
from server.web.jsonreader import read_json_object

PEM_CHAIN = "application/pem-certificate-chain"
RETRY_AFTER = "30"
RATE_LIMIT_KIND = "rest-ratelimit"


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


@functools.lru_cache(maxsize=64)
def _chain_pem(chain: tuple[bytes, ...]) -> list[str]:
    """The CA chain as PEM, the same for every certificate of an issuer: encoded once."""
    return [_pem(c) for c in chain]


async def _read_submission(request: web.Request) -> tuple[bytes, str | None]:
    ctype = request.content_type
    if ctype == "application/json":
        body = read_json_object(await read_body(request))
        if not isinstance(body.get("csr"), str):
            raise Malformed('the JSON body needs "csr": a PEM or base64 PKCS#10 request')
        profile = body.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise Malformed('"profile" must be a string')
        return csr_der_from_bytes(body["csr"].encode()), profile
    if ctype in ("application/pkcs10", "application/octet-stream"):
        return csr_der_from_bytes(await read_body(request)), request.query.get("profile")
    raise UnsupportedMediaType(text='send application/json {"csr": ...} or application/pkcs10')


async def submit(request: web.Request) -> web.Response:
    csr_der, profile = await _read_submission(request)
    requester = await requester_of(request, required=False)
    if requester.method is AuthMethod.ANONYMOUS:
        # Each anonymous request is kept until an administrator decides: counted per address.
        engine = request.config_dict[ENGINE]
        await check_and_count(
            engine.store,
            engine.clock,
            RATE_LIMIT_KIND,
            [f"address:{request.remote or 'unknown'}"],
            SECTION.of(request.config_dict[CONFIG]).anonymous_requests_per_hour,
            "anonymous requests",
        )
    outcome = await request.config_dict[ENGINE].submit(
        EnrollmentRequest(
            csr_der=csr_der, protocol="rest", requester=requester, profile=profile or None
        )
    )
    return render(request, outcome)


def render(
    request: web.Request, outcome: Outcome, record: RequestRecord | None = None
) -> web.Response:
    location = str(request.app.router["request"].url_for(request_id=outcome.request_id))
    body: dict[str, Any] = {"id": outcome.request_id}
    if record is not None:
        body["profile"] = record.profile
    match outcome:
        case Issued(certificate=cert, chain=chain):
            body |= {
                "status": "issued",
                "serial": format(cert.serial, "x"),
                "not_after": cert.not_after.isoformat(),
                "certificate": _pem(cert.der),
                "chain": _chain_pem(tuple(chain)),
            }
            status = 201 if record is None else 200
        case Pending(reason=reason):
            body |= {"status": "pending", "reason": reason}
            status = 202
        case Denied(reason=reason):
            body |= {"status": "denied", "reason": reason}
            status = 200
        case _:
            assert_never(outcome)
    headers = {"Location": location}
    if status == 202:
        headers["Retry-After"] = RETRY_AFTER
    return web.json_response(body, status=status, headers=headers)


async def get_request(request: web.Request) -> web.Response:
    record, outcome = await request.config_dict[ENGINE].retrieve(request.match_info["request_id"])
    if record.status == "failed":
        return web.json_response(
            {
                "id": record.id,
                "status": "failed",
                "profile": record.profile,
                "reason": record.reason,
            }
        )
    return render(request, outcome, record)


async def get_certificate(request: web.Request) -> web.Response:
    _, outcome = await request.config_dict[ENGINE].retrieve(request.match_info["request_id"])
    if not isinstance(outcome, Issued):
        raise NotFound(f"request {outcome.request_id} has no certificate (it is not issued)")
    pems = [_pem(outcome.certificate.der), *(_pem(c) for c in outcome.chain)]
    return web.Response(text="".join(pems), content_type=PEM_CHAIN)


async def list_cas(request: web.Request) -> web.Response:
    cas = request.config_dict[CAS]
    root_pem = cas.root.public_bytes(Encoding.PEM).decode()
    return web.json_response(
        {
            "root": root_pem,
            "issuers": [
                {
                    "name": ca.name,
                    "subject": ca.certificate.subject.rfc4514_string(),
                    "not_after": ca.certificate.not_valid_after_utc.isoformat(),
                    "certificate": ca.certificate.public_bytes(Encoding.PEM).decode(),
                }
                for ca in cas.issuers.values()
            ],
        }
    )


async def ca_chain(request: web.Request) -> web.Response:
    cas = request.config_dict[CAS]
    name = request.match_info["name"]
    if name not in cas.issuers:
        raise NotFound(f"no issuing CA named {name!r}")
    certs = [*cas.issuers[name].chain, cas.root]
    return web.Response(
        text="".join(c.public_bytes(Encoding.PEM).decode() for c in certs), content_type=PEM_CHAIN
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/requests", submit)
    app.router.add_get("/requests/{request_id}", get_request, name="request")
    app.router.add_get("/requests/{request_id}/certificate", get_certificate)
    app.router.add_get("/ca", list_cas)
    app.router.add_get("/ca/{name}/chain", ca_chain)
