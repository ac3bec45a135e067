"""RFC 9457 problem details for the REST and admin APIs: the one mapping table.

Every ``ErrorKind`` has an entry (a unit test checks it). The ``detail`` of a typed error is
client-safe; an internal error, typed or not, becomes a generic ``internal`` problem with the
request id only (``server.web.errors``), and its traceback goes to the log.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

from server.errors import CertforgeError, ErrorKind, RateLimited
from server.web.errors import edge_errors, internal_text

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "urn:certforge:problem:"

PROBLEMS: dict[ErrorKind, HTTPStatus] = {
    ErrorKind.MALFORMED: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_CSR: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_PUBLIC_KEY: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_SIGNATURE_ALG: HTTPStatus.BAD_REQUEST,
    ErrorKind.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ErrorKind.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.CONFLICT: HTTPStatus.CONFLICT,
    ErrorKind.UNKNOWN_PROFILE: HTTPStatus.BAD_REQUEST,
    ErrorKind.RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorKind.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorKind.UNAVAILABLE: HTTPStatus.NOT_IMPLEMENTED,
    ErrorKind.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}

# aiohttp's own HTTP errors (no route, wrong method, body too large...) as problem types.
_HTTP_KINDS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def problem(status: int, kind: str, detail: str, **extra: object) -> web.Response:
    body = {
        "type": TYPE_BASE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE)


class UnsupportedMediaType(web.HTTPUnsupportedMediaType):
    """A 415 whose text the middleware turns into a problem document."""


class RESTRenderer:
    """RFC 9457 problem documents, from ``PROBLEMS``."""

    def engine_error(self, exc: CertforgeError) -> web.StreamResponse:
        response = problem(PROBLEMS[exc.kind], str(exc.kind), exc.detail)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        if exc.kind is ErrorKind.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="certforge"'
        return response

    def own_error(self, exc: Exception) -> None:
        return None  # REST has no errors of its own

    def http_error(self, exc: web.HTTPException) -> web.StreamResponse:
        kind = _HTTP_KINDS.get(exc.status, "http_error")
        detail = (
            exc.text
            if exc.text and not exc.text.startswith(f"{exc.status}:")
            else HTTPStatus(exc.status).description
        )
        return problem(exc.status, kind, detail.strip())

    def internal_error(self, request_id: str) -> web.StreamResponse:
        return problem(500, str(ErrorKind.INTERNAL), internal_text(request_id))


# The REST, admin and OpenAPI sub-apps, and every front end's admin routes, use this one.
problem_middleware = edge_errors(RESTRenderer())
