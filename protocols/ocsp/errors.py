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
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from server.errors import CertforgeError, ErrorKind
from server.web.errors import edge_errors

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


class OCSPRenderer:
    """An unsuccessful OCSPResponse with the status from ``STATUSES``. aiohttp's own HTTP
    errors (no route, wrong method) stay HTTP errors: there is no OCSP request to answer."""

    def engine_error(self, exc: CertforgeError) -> web.StreamResponse:
        return error_response(STATUSES[exc.kind])

    def own_error(self, exc: Exception) -> None:
        return None  # OCSP has no errors of its own

    def http_error(self, exc: web.HTTPException) -> None:
        return None

    def internal_error(self, request_id: str) -> web.StreamResponse:
        # RFC 6960 §4.2.1: internalError has no room for text; the id is in X-Request-Id.
        return error_response(STATUSES[ErrorKind.INTERNAL])


ocsp_error_middleware = edge_errors(OCSPRenderer())
