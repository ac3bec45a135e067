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

from server import csprng


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
