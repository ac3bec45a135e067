"""The log exit: one JSON line per event, for log shippers and audit trails.

Each line is ``Event.to_json()`` (the same object the webhook posts), compact and with sorted
keys. By default it goes to the logger ``certforge.events`` at ``level`` (default ``info``),
so it follows the server's logging set-up; with ``path`` it is appended to that file instead
(a relative path is taken inside the data directory).

The PEM blobs (``certificate_pem``, ``crl_pem``) are left out unless ``include_pem = true``:
a CRL can be megabytes, and the files exit is the place for them.

Delivery is at least once, so after a crash a line can appear twice; ``id`` tells them apart.

Options (``[[exits]]`` with ``type = "log"``): ``level``, ``path``, ``events``,
``include_pem``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.config import Config
from server.exits.base import ExitOptions
from server.model import Event, EventKind

EVENTS_LOGGER = "certforge.events"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
PEM_FIELDS = frozenset({"certificate_pem", "crl_pem"})


def event_line(event: Event, *, include_pem: bool = False) -> str:
    """The JSON line for ``event``, without a newline."""
    record = event.to_json()
    if not include_pem:
        record["data"] = {k: v for k, v in record["data"].items() if k not in PEM_FIELDS}
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


class LogExit:
    """Writes event lines to a logger or appends them to a file."""

    def __init__(
        self,
        name: str,
        *,
        level: int = logging.INFO,
        path: Path | None = None,
        events: frozenset[EventKind] | None = None,
        include_pem: bool = False,
    ) -> None:
        self.name = name
        self.path = path
        self._level = level
        self._events = events
        self._include_pem = include_pem
        self._logger = logging.getLogger(EVENTS_LOGGER)

    async def deliver(self, event: Event) -> None:
        if self._events is not None and event.kind not in self._events:
            return
        line = event_line(event, include_pem=self._include_pem)
        if self.path is None:
            self._logger.log(self._level, line)
        else:
            # Off the loop: a slow disk must not stall requests being served.
            await asyncio.to_thread(_append, self.path, line)


def create(config: Config, options: Mapping[str, Any]) -> LogExit:
    """The ``certforge.exits`` entry point ``log``."""
    opts = ExitOptions(options, default_name="log")
    module = LogExit(
        opts.name,
        level=LEVELS[opts.choice("level", "info", LEVELS)],
        path=opts.optional_path("path", config),
        events=opts.events(),
        include_pem=opts.boolean("include_pem", False),
    )
    opts.done()
    return module
