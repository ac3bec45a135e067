"""What a front end gives the process: sub-applications to mount on a listener.

Front ends live in ``protocols/`` and register in the entry-point group
``certforge.frontends`` as ``factory(config) -> Sequence[Mount]``; the engine never imports
them. A front end's handlers reach the engine, store and CA through ``server.keys``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Literal

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from server.config import Config
from server.errors import ConfigError
from server.monitor.watched import WatchSource

FRONTEND_GROUP = "certforge.frontends"


# (who holds it, the public key), as ``server.ca.reserved.ReservedKeys.add`` takes them.
HeldKeys = Callable[[], Sequence[tuple[str, PublicKeyTypes]]]


@dataclass(frozen=True, slots=True)
class Mount:
    listener: Literal["https", "http"]
    prefix: str  # e.g. "/api/v1/"; sub-apps are mounted with add_subapp
    app: web.Application
    # The keys the front end already keeps in the data directory (the SCEP RA's): read at
    # start, off the loop, and reserved in the engine, so that no request carries them even
    # before the front end loads them itself. Keys it makes later it reserves as it makes
    # them, through ``Engine.reserved_keys``.
    held_keys: HeldKeys | None = None
    # Certificates the front end uses itself (SCEP's RA), for the expiry monitor to watch.
    watched: tuple[WatchSource, ...] = ()


FrontendFactory = Callable[[Config], Sequence[Mount]]


def load_frontends(config: Config) -> list[Mount]:
    mounts: list[Mount] = []
    for ep in sorted(entry_points(group=FRONTEND_GROUP), key=lambda e: e.name):
        try:
            factory: FrontendFactory = ep.load()
            mounts.extend(factory(config))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"front end {ep.name!r} failed to load: {exc}") from exc
    # Longer prefixes first, so "/api/v1/admin/" is matched before "/api/v1/".
    return sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
