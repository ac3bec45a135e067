"""The plug-in boundary of a front end: what it owns, and what it gets when the server starts.

A front end is one package in ``protocols/`` registered in the entry-point group
``certforge.frontends`` as a ``FrontEnd`` object; the server never imports it. It owns:

- its configuration table (``section``: dataclass, parser, example text; ``server.config``
  reads the core tables and hands the front end its own, unknown keys still named);
- the methods of its protocol in ``[profiles.NAME.auth]`` and any method names it adds
  (``auth``; ``server.model.AuthMethod`` holds the core's);
- its command group (``cli``, given ``server.cli.Commands``);
- its sub-applications (``mount``), its admin routes among them: a sub-app of its own at
  ``/api/v1/admin/<name>/`` (mounts are matched longest prefix first), so that the admin API
  needs no edit and the front end keeps its own middleware and body limit;
- its metrics, registered in the process's registry (``FrontEndContext.metrics``).

It gets the engine, store, CAs and clock through one start hook (``Mounted.start``), called
by ``server.app.core`` once these exist, before the listeners accept anything and while the
start lock is held (so what a first start creates in the data directory is created once).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from server.config import installed_frontends
from server.errors import ConfigError

if TYPE_CHECKING:  # for annotations only: server.cli imports this module
    from server.ca.issuers import CAHierarchy
    from server.challenges import Challenges
    from server.cli import Commands
    from server.config import Config, ProtocolAuth, Section
    from server.engine import Engine
    from server.model import Clock
    from server.monitor.watched import WatchSource
    from server.revocation.publisher import CRLPublisher
    from server.store.base import Store
    from server.web.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Mount:
    listener: Literal["https", "http"]
    prefix: str  # e.g. "/api/v1/"; sub-apps are mounted with add_subapp
    app: web.Application


@dataclass(frozen=True, slots=True)
class FrontEndContext:
    """What a front end's start hook gets: the process's shared objects, built by the core."""

    config: Config
    data_dir: Path
    engine: Engine
    store: Store
    cas: CAHierarchy
    clock: Clock
    metrics: Metrics  # its ``registry`` takes the front end's own metrics
    challenges: Challenges  # one-time challenge passwords (SCEP, EST)
    crls: CRLPublisher
    # Keys the front end holds itself (the SCEP RA's): reserved in the engine, so that no
    # request carries one (``server.ca.reserved.ReservedKeys.add`` takes (holder, key)).
    reserve_key: Callable[[str, PublicKeyTypes], None]
    # Certificates the front end uses itself, for the expiry monitor to watch. Only during
    # the start hook: the monitor is built after every front end started.
    watch: Callable[[WatchSource], None]


StartHook = Callable[[FrontEndContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Mounted:
    mounts: tuple[Mount, ...]
    start: StartHook | None = None
    # Issuers of TLS client certificates the front end accepts besides this CA's (EST's
    # [est] trust_anchors): the HTTPS listener asks clients for certificates of these too.
    client_anchors: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True, slots=True)
class FrontEnd:
    name: str  # the entry point's name, and the request log's "frontend"
    mount: Callable[[Config], Mounted]
    section: Section[Any] | None = None
    auth: ProtocolAuth | None = None
    cli: Callable[[Commands], None] | None = None


@functools.cache
def installed() -> tuple[FrontEnd, ...]:
    """The front ends of the entry-point group, by name; loaded once per process."""
    found: list[FrontEnd] = []
    for frontend in installed_frontends():
        if not isinstance(frontend, FrontEnd):
            raise ConfigError(f"front end {frontend!r} is not a server.frontend.FrontEnd")
        found.append(frontend)
    check_distinct(found)
    return tuple(found)


def check_distinct(frontends: Sequence[FrontEnd]) -> None:
    """Two front ends may not claim one table, one protocol or one method name."""
    for what, names in (
        ("table", [f.section.name for f in frontends if f.section is not None]),
        ("protocol", [f.auth.protocol for f in frontends if f.auth is not None]),
        ("method", [m for f in frontends if f.auth is not None for m in f.auth.methods]),
    ):
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"front ends: two claim the {what} {dupes[0]!r}")


def mount_frontends(config: Config, frontends: Sequence[FrontEnd]) -> list[Mounted]:
    mounted: list[Mounted] = []
    for frontend in frontends:
        try:
            mounted.append(frontend.mount(config))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"front end {frontend.name!r} failed to load: {exc}") from exc
    return mounted


def by_prefix(mounted: Sequence[Mounted]) -> list[Mount]:
    # Longer prefixes first, so "/api/v1/admin/" is matched before "/api/v1/".
    mounts = [m for each in mounted for m in each.mounts]
    return sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
