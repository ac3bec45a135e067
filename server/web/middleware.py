"""Cross-cutting middlewares of the top-level apps: the request log line, HTTP metrics, and
the last-resort error handler. Each front end's own error middleware maps typed errors to its
protocol; whatever escapes that becomes a generic 500 here, with the request id, and the
traceback goes to the log only (Boulder's rule)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from server.keys import FRONTEND, IN_FLIGHT, METRICS, REQUEST_LOG
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
    except Exception:
        entry: RequestLog | None = request.get(REQUEST_LOG)
        rid = entry.id if entry else "-"
        log.exception("unhandled error", extra={"request_id": rid})
        return web.Response(status=500, text=f"internal error (request id {rid})\n")


def record_internal_error(request: web.Request, exc: BaseException) -> str:
    """Attach an internal error to the request's log line; return the request id to show."""
    entry: RequestLog | None = request.get(REQUEST_LOG)
    log.error("internal error", exc_info=exc, extra={"request_id": entry.id if entry else "-"})
    if entry is None:
        return "-"
    entry.internal_error = f"{type(exc).__name__}: {exc}"
    return entry.id
