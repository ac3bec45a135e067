"""The one edge error middleware: ``edge_errors(renderer)``, applied by every protocol
sub-app with that protocol's renderer.

The middleware decides *what* happened; the renderer only says it in its protocol's terms
(problem+json, an EST text body, an OCSP response status, ...), from that protocol's one
table ``ErrorKind -> (status, code)``. The policy is the same for every front end:

- a ``CertforgeError`` is rendered from the table; its ``detail`` is client-safe by
  construction (``server.errors``);
- the protocol's own exceptions (an ACME problem the engine has no word for, ...) are
  rendered as they are;
- aiohttp's ``HTTPException`` (no route, wrong method, body too large) is rendered in the
  protocol's form where the renderer has one, and passes through otherwise; below 400
  (redirects) it always passes through;
- an internal error, typed (``ErrorKind.INTERNAL``) or not, is logged once with the request
  id and attached to the request's log line; the client gets the request id only, never the
  error's detail or traceback (Boulder's rule).
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from server.errors import CertforgeError, ErrorKind
from server.keys import REQUEST_LOG
from server.web.requestlog import RequestLog

log = logging.getLogger("certforge.http")


class ErrorRenderer(Protocol):
    """One protocol's way of saying an error; it decides nothing about what to show."""

    def engine_error(self, exc: CertforgeError) -> web.StreamResponse:
        """A typed error of any kind but ``INTERNAL``, through the protocol's table."""
        ...

    def own_error(self, exc: Exception) -> web.StreamResponse | None:
        """One of the protocol's own exceptions, or None: then it is an internal error."""
        ...

    def http_error(self, exc: web.HTTPException) -> web.StreamResponse | None:
        """aiohttp's own error (status 400 or more), or None to let it pass through."""
        ...

    def internal_error(self, request_id: str) -> web.StreamResponse:
        """An internal error: the client is told the request id and nothing more."""
        ...


def edge_errors(renderer: ErrorRenderer) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            response = renderer.http_error(exc) if exc.status >= 400 else None
            if response is None:
                raise
            return response
        except CertforgeError as exc:
            if exc.kind is ErrorKind.INTERNAL:
                return renderer.internal_error(record_internal_error(request, exc))
            return renderer.engine_error(exc)
        except Exception as exc:
            response = renderer.own_error(exc)
            if response is None:
                return renderer.internal_error(record_internal_error(request, exc))
            return response

    return errors


def internal_text(request_id: str) -> str:
    """The one text an internal error shows a client, in every protocol that has text."""
    return f"internal error (request id {request_id})"


def record_internal_error(request: web.Request, exc: BaseException) -> str:
    """Attach an internal error to the request's log line; return the request id to show."""
    entry: RequestLog | None = request.get(REQUEST_LOG)
    log.error("internal error", exc_info=exc, extra={"request_id": entry.id if entry else "-"})
    if entry is None:
        return "-"
    entry.internal_error = f"{type(exc).__name__}: {exc}"
    return entry.id
