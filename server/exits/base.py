"""Exit modules: where recorded events leave certforge (webhooks, files, logs, your own).

An exit module is a small object with a ``name`` and one coroutine, ``deliver(event)``. The
dispatcher (``dispatcher.py``) hands it each event recorded in the store's outbox, in order,
and acknowledges the event only once ``deliver`` returned. So a module:

- raises to have the event retried later (with backoff); it never swallows a failure it wants
  retried;
- is idempotent on ``event.id``: delivery is at least once, and an event whose delivery was
  cut short (a stop, a crash, a failed acknowledgement) is delivered again;
- returns normally for events it does not care about, which acknowledges them.

Plug-ins register a factory in the entry-point group ``certforge.exits`` (see
``server/plugins.py``)::

    [project.entry-points."certforge.exits"]
    mine = "mypackage.exit:create"      # create(config, options) -> ExitModule

``options`` is the ``[[exits]]`` table without its ``type``; ``name`` is always present (the
consumer name, which defaults to the type). ``ExitOptions`` reads it the way the built-ins do:
typed values, and ``ConfigError`` naming ``[[exits]] <name> <key>`` for a bad or unknown key.

A module that holds resources (the webhook's HTTP session) also implements ``Closable``; the
loader checks that once, and ``close_exit_modules`` closes them when the server stops.

Event payloads, as the engine fills ``event.data`` (all values JSON types; serials are hex):

- ``issued``: ``profile``, ``subject`` (RFC 4514), ``sans`` (``["dns:example.com"]``),
  ``serial``, ``issuer`` (issuing CA name), ``not_after`` (ISO 8601), ``requester``
  (``Requester.label()``), ``protocol``, ``certificate_pem`` (added by the dispatcher at
  delivery from the certificate record: the stored event does not repeat the certificate).
- ``pending``, ``denied``, ``approved``, ``failed``: ``profile``, ``subject``, ``sans``,
  ``requester``, ``protocol``, ``reason``.
- ``revoked``, ``unrevoked``: ``serial``, ``issuer``, ``reason`` (RFC 5280 reason name).
- ``crl_published``: ``issuer``, ``crl_number``, ``crl_pem``.
- ``expiring`` (``server/monitor/expiry.py``): ``role`` (``certificate``, ``ca``, ``tls``,
  ``ocsp-signer``, ``scep-ra``), ``serial``, ``threshold`` (``7d``), ``threshold_seconds``,
  ``not_after``, ``seconds_left``; a certificate from the store adds ``issuer``, ``profile``,
  ``subject``, ``sans``; the server's own adds ``name`` (the CA's, or the signer's CA),
  ``subject``, ``fingerprint_sha256``. One event per certificate and threshold: its id is the
  same whichever process records it.

``Event.to_json()`` wraps the payload as ``{"id", "kind", "at", "request_id", "serial",
"data"}``; that is what the webhook posts and the log module writes.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from server.config import Config
from server.errors import ConfigError
from server.model import Event, EventKind

log = logging.getLogger("certforge.exits")


@runtime_checkable
class ExitModule(Protocol):
    """Delivers events outside; raise to retry, idempotent on ``event.id``."""

    name: str

    async def deliver(self, event: Event) -> None: ...


@runtime_checkable
class Closable(Protocol):
    """The optional second ability: release resources (sessions, files) at stop."""

    async def close(self) -> None: ...


ExitFactory = Callable[[Config, Mapping[str, Any]], ExitModule]


def check_closable(module: object) -> bool:
    """True if ``module`` has a ``close`` to await at stop.

    Checked once at load time, so that a ``close`` that is not a coroutine function stops the
    server at start instead of failing silently at shutdown.
    """
    close = getattr(module, "close", None)
    if close is None:
        return False
    if not inspect.iscoroutinefunction(close):
        raise ConfigError("close() must be a coroutine function (async def)")
    return True


async def close_exit_modules(modules: Iterable[ExitModule]) -> None:
    """Close every ``Closable`` module; one failing close does not keep the others open."""
    for module in modules:
        if isinstance(module, Closable):
            try:
                await module.close()
            except Exception as exc:
                log.warning(
                    "exit %r: close failed: %s: %s",
                    module.name,
                    type(exc).__name__,
                    exc,
                    extra={"exit": module.name},
                )


class ExitOptions:
    """One ``[[exits]]`` table, read by a factory: typed values, errors naming the key.

    Mirrors the config loader's rules (``server/config.py``): a missing optional key gives the
    default, a value of the wrong type or a key nobody read raises ``ConfigError``.
    """

    def __init__(self, options: Mapping[str, Any], *, default_name: str) -> None:
        self.name = str(options.get("name", default_name))
        self._raw = {k: v for k, v in options.items() if k != "name"}
        self._used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"[[exits]] {self.name} {key}: {problem}")

    def _get(self, key: str, kind: type[Any] | tuple[type[Any], ...], what: str) -> Any:
        self._used.add(key)
        value = self._raw.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            raise self.error(key, f"expected {what}, got {value!r}")
        return value

    def required_string(self, key: str) -> str:
        value = self.optional_string(key)
        if not value:
            raise self.error(key, "is required")
        return value

    def optional_string(self, key: str) -> str | None:
        value: str | None = self._get(key, str, "a string")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value: bool | None = self._get(key, bool, "true or false")
        return default if value is None else value

    def positive_number(self, key: str, default: float) -> float:
        value: float | None = self._get(key, (int, float), "a number")
        if value is None:
            return default
        if not value > 0:
            raise self.error(key, f"must be positive, got {value}")
        return float(value)

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        allowed = tuple(choices)
        value = self.optional_string(key) or default
        if value not in allowed:
            raise self.error(key, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def string_table(self, key: str) -> dict[str, str]:
        value: Mapping[str, Any] | None = self._get(key, Mapping, "a table")
        for k, v in (value or {}).items():
            if not isinstance(v, str):
                raise self.error(key, f"{k}: expected a string, got {v!r}")
        return dict(value or {})

    def events(self) -> frozenset[EventKind] | None:
        """The ``events`` filter: None (every kind) or the kinds listed."""
        values: list[Any] | None = self._get("events", list, "a list of event kinds")
        if values is None:
            return None
        allowed = ", ".join(str(k) for k in EventKind)
        if not values:
            raise self.error("events", f"lists no event kind; leave it out to get all of {allowed}")
        kinds = set()
        for v in values:
            if not isinstance(v, str) or v not in {str(k) for k in EventKind}:
                raise self.error("events", f"{v!r} is not one of {allowed}")
            kinds.add(EventKind(v))
        return frozenset(kinds)

    def optional_path(self, key: str, config: Config) -> Path | None:
        """A file system path; a relative one is taken inside the data directory, so that an
        exit's output sits next to the store whatever the server's working directory."""
        text = self.optional_string(key)
        if text == "":
            raise self.error(key, "is empty; leave it out for the default")
        return None if text is None else self._path(text, config)

    def required_path(self, key: str, config: Config) -> Path:
        return self._path(self.required_string(key), config)

    @staticmethod
    def _path(text: str, config: Config) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else config.server.data_dir / path

    def done(self) -> None:
        """Reject keys no reader asked for: a misspelt option must not be ignored."""
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown key")
