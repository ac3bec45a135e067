"""Cross-cutting middlewares of the top-level apps: the request log line, HTTP metrics, and
the last-resort error handler. Each front end's sub-app maps errors to its protocol with
``server.web.errors.edge_errors``; whatever escapes that (a route outside every sub-app)
becomes a generic 500 here under the same policy: the request id only, the traceback to the
log (Boulder's rule)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from server.keys import FRONTEND, IN_FLIGHT, METRICS, REQUEST_LOG
from server.web.errors import internal_text, record_internal_error
from server.web.requestlog import RequestLog

log = logging.getLogger("certforge.http")


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    entry = RequestLog(request.method, request.path, request.remote)
    request[REQUEST_LOG] = entry
    status = 500
    in_flight = request.config_dict.get(IN_FLIGHT)
    entered = in_flight is None or in_flight.enter()
    try:
        response = await handler(request) if entered else _stopping()
        status = response.status
        response.headers.setdefault("X-Request-Id", entry.id)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        entry.frontend = (
            request.match_info.apps[-1].get(FRONTEND, "-") if request.match_info.apps else "-"
        )
        if log.isEnabledFor(logging.INFO):
            log.info("request", extra=entry.as_dict(status))
        metrics = request.config_dict.get(METRICS)
        if metrics is not None:
            metrics.http(entry.frontend, status)
        if in_flight is not None and entered:
            in_flight.leave()


def _stopping() -> web.Response:
    """A request that arrived after the store began to close: come back shortly (RFC 9110
    §15.6.4), to this server once restarted or to another."""
    body = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the server is stopping; retry",
    }
    return web.json_response(
        body, status=503, content_type="application/problem+json", headers={"Retry-After": "1"}
    )


@web.middleware
async def last_resort(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        rid = record_internal_error(request, exc)
        return web.Response(status=500, text=internal_text(rid) + "\n")
