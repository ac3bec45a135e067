"""One structured log line per request (Boulder's RequestEvent).

Handlers and error middlewares attach facts (``request_log.extra``) and internal errors
(``request_log.internal_error``); the middleware writes the line when the request ends. The
client never sees the internal part.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestPayloadError

from server import csprng

PROTOCOL_LOG = "certforge.http.protocol"


@dataclass(slots=True)
class RequestLog:
    method: str
    path: str
    remote: str | None
    id: str = field(default_factory=lambda: csprng.token_hex(8))
    started: float = field(default_factory=time.perf_counter)
    frontend: str = "-"
    extra: dict[str, Any] = field(default_factory=dict)
    internal_error: str | None = None

    def as_dict(self, status: int) -> dict[str, Any]:
        d: dict[str, Any] = {
            "request_id": self.id,
            "method": self.method,
            "path": self.path,
            "status": status,
            "frontend": self.frontend,
            "remote": self.remote,
            "ms": round((time.perf_counter() - self.started) * 1000, 2),
        }
        d.update(self.extra)
        if self.internal_error:
            d["internal_error"] = self.internal_error
        return d


class JSONFormatter(logging.Formatter):
    """Structured logs: one JSON object per line, with any ``extra`` fields."""

    _skip = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        d.update({k: v for k, v in record.__dict__.items() if k not in self._skip})
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, default=str)


class RefusedHeads(logging.Filter):
    """A request head that aiohttp's parser refuses (a URL or a header line beyond its 8190
    bytes, too many headers, a malformed line) is the client's mistake, answered 400 by
    aiohttp itself before any application code runs: ``RequestHandler.handle_error`` logs it
    with ``logger.exception``, an error with a traceback, and with the line's first 100 bytes
    (a bearer token, say) in the message. This filter makes that record one info line
    without the traceback or the bytes; every other record passes unchanged.

    It sits on the logger ``protocol_logger`` gives ``web.AppRunner`` (aiohttp's documented
    ``logger`` argument of the request handler), not on the global ``aiohttp.server``: only
    our listeners' records, and nothing depends on the import order of logging set-up.
    aiohttp offers no supported hook for the status itself, so the answer stays its 400 (not
    431 or 414: its ``LineTooLong`` does not say whether the URL or a header was too long)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno > logging.INFO and isinstance(exc, RequestPayloadError):
            # A body the client sent broken (a Content-Encoding that does not decode): the
            # handler answered it (server/web/body.py); aiohttp then meets the same error
            # draining the unread rest, and logs it as unhandled.
            return self._client_error(record, "refused a request body", type(exc).__name__, 400)
        if record.levelno <= logging.INFO or not isinstance(exc, HttpProcessingError):
            return True
        if not 400 <= exc.code < 500:
            return True
        reason = (
            f"a line longer than {exc.args[1]} bytes"
            if isinstance(exc, LineTooLong)
            else type(exc).__name__
        )
        return self._client_error(record, "refused a request head", reason, exc.code)

    @staticmethod
    def _client_error(record: logging.LogRecord, msg: str, reason: str, status: int) -> bool:
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args = msg, ()
        record.reason, record.status = reason, status
        record.exc_info, record.exc_text = None, None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def protocol_logger() -> logging.Logger:
    """The logger for aiohttp's request handler on our listeners (``server.app.serve``)."""
    logger = logging.getLogger(PROTOCOL_LOG)
    if not any(isinstance(f, RefusedHeads) for f in logger.filters):
        logger.addFilter(RefusedHeads())
    return logger


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
