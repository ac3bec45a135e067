"""The files exit: keeps issued certificates and published CRLs as PEM files in a directory.

Layout: ``<directory>/certs/<serial hex>.pem`` for each ``issued`` event and
``<directory>/crls/<issuer>.crl`` (PEM, replaced by each newer CRL) for each
``crl_published`` event (``<directory>/crls/<issuer>/<k>.crl`` for partition k of a
partitioned CRL, ``<directory>/crls/<issuer>/delta.crl`` for a delta CRL). Other kinds are
acknowledged without writing. Directories are created on first use; a relative ``directory``
is taken inside the data directory.

Every file is written atomically (a temporary file in the same directory, fsync, rename over
the target, fsync of the directory), so a reader such as a web server or rsync never sees half a
file, and a crash leaves either the old or the new content. Redelivery rewrites the same bytes,
which is harmless. Events arrive in order, so a redelivered older CRL is always followed again by
the newer one.

An event that can never be written (no PEM in it, an issuer name that is not a file name) is
logged as an error and acknowledged: retrying it would hold back every later event forever.

Options (``[[exits]]`` with ``type = "files"``): ``directory`` (required), ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.config import Config
from server.durable import write_atomic
from server.exits.base import ExitOptions
from server.model import Event, EventKind

log = logging.getLogger("certforge.exits")

FILE_MODE = 0o644  # certificates and CRLs are public documents


def write_atomically(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == data:
            return  # a redelivery: leave the file (and its mtime) alone
    write_atomic(path, data, mode=mode)


def _is_file_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


class FilesExit:
    """Writes certificates and CRLs under ``directory``."""

    def __init__(
        self, name: str, *, directory: Path, events: frozenset[EventKind] | None = None
    ) -> None:
        self.name = name
        self.directory = directory
        self._events = events

    async def deliver(self, event: Event) -> None:
        if self._events is not None and event.kind not in self._events:
            return
        try:
            target = self._target(event)
        except _Unusable as exc:
            log.error(
                "exit %r: event %s (%s) cannot be written, skipped: %s",
                self.name,
                event.id,
                event.kind,
                exc,
                extra={"exit": self.name, "event_id": event.id},
            )
            return
        if target is not None:
            path, pem = target
            await asyncio.to_thread(write_atomically, path, pem.encode())

    def _target(self, event: Event) -> tuple[Path, str] | None:
        """Where this event goes and what it writes; None for kinds this exit ignores."""
        match event.kind:
            case EventKind.ISSUED:
                serial = _serial(event)
                pem = event.data.get("certificate_pem")
                if serial is None or not isinstance(pem, str) or not pem:
                    raise _Unusable("no serial or no certificate_pem")
                return self.directory / "certs" / f"{serial:x}.pem", pem
            case EventKind.CRL_PUBLISHED:
                issuer, pem = event.data.get("issuer"), event.data.get("crl_pem")
                if not isinstance(issuer, str) or not _is_file_name(issuer):
                    raise _Unusable(f"issuer {issuer!r} is not a file name")
                if not isinstance(pem, str) or not pem:
                    raise _Unusable("no crl_pem")
                if event.data.get("delta_of") is not None:
                    return self.directory / "crls" / issuer / "delta.crl", pem
                shard = event.data.get("shard")
                if shard is None:
                    return self.directory / "crls" / f"{issuer}.crl", pem
                if not isinstance(shard, int) or shard < 0:
                    raise _Unusable(f"shard {shard!r} is not a partition number")
                return self.directory / "crls" / issuer / f"{shard}.crl", pem
            case _:
                return None


class _Unusable(Exception):
    """The event can never be written; retrying would only hold back later events."""


def _serial(event: Event) -> int | None:
    """The serial from the payload (hex), or the event's own. It is normalized to lower hex
    so that one certificate always lands in one file."""
    text = event.data.get("serial")
    if isinstance(text, str):
        try:
            return int(text.replace(":", ""), 16)
        except ValueError:
            return None
    return event.serial


def create(config: Config, options: Mapping[str, Any]) -> FilesExit:
    """The ``certforge.exits`` entry point ``files``."""
    opts = ExitOptions(options, default_name="files")
    module = FilesExit(
        opts.name, directory=opts.required_path("directory", config), events=opts.events()
    )
    opts.done()
    return module
