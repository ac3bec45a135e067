"""RFC 6960 Appendix A.1 and RFC 5019 §5: OCSP over HTTP.

- POST ``/ocsp`` with the DER OCSPRequest as body (``application/ocsp-request``).
- GET ``/ocsp/{url-encoding of base-64 encoding of the DER encoding of the OCSPRequest}``.

A successful response carries RFC 5019 §6.2's caching headers: Last-Modified (thisUpdate),
Expires (nextUpdate), ETag, and ``Cache-Control: max-age=..., public, no-transform,
must-revalidate``, with max-age up to nextUpdate. A response echoing a nonce is for that
request only: ``Cache-Control: no-store``.

The hot path does no ASN.1 work: a request seen before (the same bytes, or the same GET path)
maps straight to its CertID (``PARSED``), and the responder's cache to a signed answer. Only
plain requests (at most ``MAX_REMEMBERED_BYTES``: a SHA-256 CertID with a 20-octet serial is
about 130) that were answered are remembered, so requests padded with extensions, or for
issuers this responder does not serve, cannot fill the server's memory.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from aiohttp import web

from protocols.ocsp.errors import CONTENT_TYPE
from protocols.ocsp.messages import MAX_REQUEST_BYTES, parse_ocsp_request
from server.errors import Malformed, TooLarge
from server.keys import OCSP
from server.revocation.ocsp import CertID, OCSPAnswer
from server.web.body import read_body
from server.web.routes import http_date

PARSED = web.AppKey("ocsp_parsed", dict[bytes | str, CertID])
MAX_PARSED = 100_000  # requests remembered; past this the map starts over
MAX_REMEMBERED_BYTES = 256  # larger requests are parsed each time, never kept


async def ocsp_post(request: web.Request) -> web.Response:
    # A body announced (or found) larger than the limit is refused without reading it all.
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        raise TooLarge(f"an OCSPRequest is at most {MAX_REQUEST_BYTES} bytes here")
    body = await read_body(request, MAX_REQUEST_BYTES + 1)
    return await answer(request, body)


async def ocsp_get(request: web.Request) -> web.Response:
    # aiohttp has already undone the URL encoding of the path.
    text = request.match_info["request"]
    if (cert_id := request.app[PARSED].get(text)) is not None:
        return await answer_for(request, cert_id)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed("the path is not a base64-encoded OCSPRequest") from None
    return await answer(request, der, key=text)


async def answer(
    request: web.Request, der: bytes, *, key: bytes | str | None = None
) -> web.Response:
    parsed_requests = request.app[PARSED]
    if (cert_id := parsed_requests.get(der)) is not None:
        return await answer_for(request, cert_id)
    parsed = parse_ocsp_request(der)
    if parsed.nonce is not None:  # for this request only: nothing is remembered
        result = await request.config_dict[OCSP].respond(parsed.cert_id, nonce=parsed.nonce)
        return web.Response(body=result.der, headers=caching_headers(result))
    response = await answer_for(request, parsed.cert_id)  # refused: nothing remembered
    remembered = der if key is None else key
    if len(remembered) <= MAX_REMEMBERED_BYTES:
        if len(parsed_requests) >= MAX_PARSED:
            parsed_requests.clear()
        parsed_requests[remembered] = parsed.cert_id
    return response


async def answer_for(request: web.Request, cert_id: CertID) -> web.Response:
    responder = request.config_dict[OCSP]
    result = responder.cached(cert_id) or await responder.respond(cert_id)
    return web.Response(body=result.der, headers=caching_headers(result))


def caching_headers(result: OCSPAnswer) -> dict[str, str]:
    if not result.cacheable:
        return {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    max_age = max(0, int((result.next_update - datetime.now(UTC)).total_seconds()))
    return {
        "Content-Type": CONTENT_TYPE,
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
        "Last-Modified": http_date(result.this_update),
        "Expires": http_date(result.next_update),
        "ETag": result.etag,
    }


def add_routes(app: web.Application) -> None:
    app[PARSED] = {}
    app.router.add_post("", ocsp_post)
    app.router.add_post("/", ocsp_post)
    app.router.add_get("/{request:.+}", ocsp_get)
