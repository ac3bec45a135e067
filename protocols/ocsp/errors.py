"""The one mapping of the engine's error kinds to RFC 6960 §4.2.1 OCSPResponseStatus, and the
front end's error middleware.

An unsuccessful OCSPResponse carries no responseBytes and no signature (RFC 6960 §4.2.1), so
each is a constant, built once. It is sent with HTTP 200: the OCSP status, not the HTTP one,
is what clients read (RFC 5019 §5 leaves HTTP errors to transport failures).
"""

from __future__ import annotations

import logging
from functools import cache

from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from server.errors import CertforgeError, ErrorKind
from server.web.middleware import record_internal_error

log = logging.getLogger("certforge.ocsp")

CONTENT_TYPE = "application/ocsp-response"
S = ocsp.OCSPResponseStatus

STATUSES: dict[ErrorKind, ocsp.OCSPResponseStatus] = {
    ErrorKind.MALFORMED: S.MALFORMED_REQUEST,
    ErrorKind.BAD_CSR: S.MALFORMED_REQUEST,
    ErrorKind.BAD_PUBLIC_KEY: S.MALFORMED_REQUEST,
    ErrorKind.BAD_SIGNATURE_ALG: S.MALFORMED_REQUEST,
    ErrorKind.TOO_LARGE: S.MALFORMED_REQUEST,
    ErrorKind.UNAUTHORIZED: S.UNAUTHORIZED,
    ErrorKind.FORBIDDEN: S.UNAUTHORIZED,
    ErrorKind.NOT_FOUND: S.UNAUTHORIZED,
    ErrorKind.UNKNOWN_PROFILE: S.UNAUTHORIZED,
    ErrorKind.CONFLICT: S.TRY_LATER,
    ErrorKind.RATE_LIMITED: S.TRY_LATER,
    ErrorKind.UNAVAILABLE: S.TRY_LATER,
    ErrorKind.INTERNAL: S.INTERNAL_ERROR,
}


@cache
def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


def error_response(status: ocsp.OCSPResponseStatus) -> web.Response:
    return web.Response(
        body=unsuccessful(status),
        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
    )


@web.middleware
async def ocsp_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except CertforgeError as exc:
        return error_response(STATUSES[exc.kind])
    except Exception as exc:
        record_internal_error(request, exc)
        return error_response(S.INTERNAL_ERROR)
