"""EST's one error table: ``ErrorKind`` -> HTTP status, with a plain-text body saying why.

RFC 7030 §4.2.3: a rejected request gets "an appropriate 4xx or 5xx HTTP error code"; the
body "MAY" explain it, and certforge always does, in text/plain. §3.2.3: a request without
acceptable credentials gets 401 with ``WWW-Authenticate: Basic``. An internal error, typed or
not, is a 500 with the request id only (``server.web.errors``); its traceback goes to the log.

The issue this front end answers asks for an oversized body to be a 400 with the reason (not
aiohttp's bare 413), like every other unreadable request.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from server.errors import CertforgeError, ErrorKind, RateLimited
from server.web.errors import edge_errors, internal_text

STATUS: dict[ErrorKind, HTTPStatus] = {
    ErrorKind.MALFORMED: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_CSR: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_PUBLIC_KEY: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_SIGNATURE_ALG: HTTPStatus.BAD_REQUEST,
    ErrorKind.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ErrorKind.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.CONFLICT: HTTPStatus.CONFLICT,
    ErrorKind.UNKNOWN_PROFILE: HTTPStatus.NOT_FOUND,
    ErrorKind.RATE_LIMITED: HTTPStatus.SERVICE_UNAVAILABLE,  # RFC 7030 §4.2.3: 503 + Retry-After
    ErrorKind.TOO_LARGE: HTTPStatus.BAD_REQUEST,
    ErrorKind.UNAVAILABLE: HTTPStatus.NOT_IMPLEMENTED,
    ErrorKind.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}

WWW_AUTHENTICATE = 'Basic realm="certforge EST", charset="UTF-8"'


class UnsupportedMediaType(Exception):
    """A body of the wrong Content-Type: 415 naming the one expected."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message.rstrip() + "\n", content_type="text/plain")


class ESTRenderer:
    """Text bodies with the status from ``STATUS``."""

    def engine_error(self, exc: CertforgeError) -> web.StreamResponse:
        response = text(STATUS[exc.kind], exc.detail)
        if exc.kind is ErrorKind.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    def own_error(self, exc: Exception) -> web.StreamResponse | None:
        if isinstance(exc, UnsupportedMediaType):
            return text(415, f"the body must be {exc.expected}")
        return None

    def http_error(self, exc: web.HTTPException) -> web.StreamResponse:
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            return text(400, f"the request body is too large: {exc.text}")
        return text(exc.status, HTTPStatus(exc.status).description)

    def internal_error(self, request_id: str) -> web.StreamResponse:
        return text(500, internal_text(request_id))


est_errors = edge_errors(ESTRenderer())
