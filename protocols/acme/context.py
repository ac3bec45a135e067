"""What every ACME handler needs: the resource URLs, the store, the engine and the settings.

URLs given to clients are built from ``[server] public_https_url`` (RFC 8555 §7.1: the
server's resources are identified by URLs the directory and objects name), so several
certforge servers behind one name hand out the same URLs, and any of them answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from protocols.acme.config import SECTION, ACMEConfig
from server.config import Config
from server.engine import Engine
from server.model import Clock
from server.store.base import Store

log = logging.getLogger("certforge.acme")

PREFIX = "/acme"


@dataclass(frozen=True, slots=True)
class URLs:
    """The RFC 8555 §7.1 resources, by the names the directory gives them."""

    base: str  # public_https_url + "/acme"

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    @property
    def new_nonce(self) -> str:
        return f"{self.base}/new-nonce"

    @property
    def new_account(self) -> str:
        return f"{self.base}/new-account"

    @property
    def new_order(self) -> str:
        return f"{self.base}/new-order"

    @property
    def revoke_cert(self) -> str:
        return f"{self.base}/revoke-cert"

    @property
    def key_change(self) -> str:
        return f"{self.base}/key-change"

    @property
    def renewal_info(self) -> str:
        return f"{self.base}/renewal-info"

    def account(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}/finalize"

    def certificate(self, order_id: str) -> str:
        return f"{self.base}/cert/{order_id}"

    def authz(self, authz_id: str) -> str:
        return f"{self.base}/authz/{authz_id}"

    def challenge(self, authz_id: str, type_: str) -> str:
        return f"{self.base}/chall/{authz_id}/{type_}"

    def account_id(self, url: str) -> str | None:
        """The account id a ``kid`` URL names, or None if it is not one of ours."""
        prefix = f"{self.base}/acct/"
        rest = url.removeprefix(prefix)
        if rest == url or not rest or "/" in rest:
            return None
        return rest


@dataclass
class Background:
    """Validation tasks, owned by the ACME sub-app: cancelled and awaited at shutdown.

    A request still in flight after that (the server finishes those before it stops) starts
    no validation: its challenge stays ``processing``, and the next server to read the
    authorization after the stall limit validates it again (``authz._is_stalled``)."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    http_session: aiohttp.ClientSession | None = None  # http-01 fetches, created on first use
    closed: bool = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        if self.closed:
            coro.close()
            log.info("shutting down: a validation is left to the next server")
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("validation task failed", exc_info=task.exception())

    async def close(self) -> None:
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.http_session is not None:
            await self.http_session.close()


@dataclass
class ContextSlot:
    """The sub-app's ACME context, filled by the front end's start hook
    (``protocols.acme.app.mount``): everything in it is fixed once the server runs."""

    value: ACME | None = None


BACKGROUND = web.AppKey("acme_background", Background)
CONTEXT = web.AppKey("acme_context", ContextSlot)


@dataclass(frozen=True, slots=True)
class ACME:
    """The per-request view of the ACME front end's dependencies."""

    config: Config
    store: Store
    engine: Engine
    clock: Clock
    urls: URLs
    background: Background

    @property
    def settings(self) -> ACMEConfig:
        return SECTION.of(self.config)

    @classmethod
    def of(cls, request: web.Request) -> ACME:
        value = request.app[CONTEXT].value
        if value is None:  # the start hook runs before the listeners accept anything
            raise RuntimeError("the ACME front end was not started")
        return value

    def request_url(self, request: web.Request) -> str:
        """The URL the client addressed, as RFC 8555 §6.4 compares it with the JWS "url"."""
        return self.config.server.public_https_url + request.raw_path
