"""The outbox dispatcher: delivers recorded events to each exit module, at least once.

The engine writes every event in the same atomic write as its state change (the outbox), so
an event exists exactly when its fact does. This module drains the outbox: one loop per exit
module (the store keeps one cursor per consumer name), each delivering that module's pending
events oldest first and acknowledging each one only after ``deliver`` returned.

What follows from that shape:

- At least once. A stop or a crash between ``deliver`` and ``ack_event`` leaves the event
  pending, and the next dispatcher (after a restart) delivers it again. Modules are therefore
  idempotent on ``event.id``.
- In order, per module. A failing event is retried, with exponential backoff and jitter up to
  ``max_backoff``, before any later event goes to that module. A permanently failing
  event holds its module back (and says so in the log at every try) rather than being lost.
- Isolated. Each module has its own loop, so one slow or failing destination never delays
  the others.
- Prompt. ``notify()`` (the engine calls it after each recorded change) wakes every loop at
  once; polling every ``poll_interval`` is the fallback that also picks up what other servers
  sharing the store, or a crashed run, left behind.

It deliberately does not close the modules: their lifetime belongs to whoever loaded them
(``close_exit_modules`` in ``base.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import Protocol

from server.errors import NotFound
from server.exits.base import ExitModule
from server.model import CertificateRecord, Event, EventKind

log = logging.getLogger("certforge.exits")


class EventOutbox(Protocol):
    """The part of ``server.store.base.Store`` the dispatcher needs."""

    async def pending_events(self, consumer: str, limit: int = 100) -> list[Event]: ...

    async def ack_event(self, consumer: str, event_id: str) -> None: ...

    async def get_certificate(self, serial: int) -> CertificateRecord: ...


def pem_certificate(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _describe(exc: BaseException) -> str:
    """One line for the log: repeated failures must not flood it with tracebacks."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Dispatcher:
    """Delivers the outbox to exit modules; run it with ``run()`` or as a context manager."""

    def __init__(
        self,
        store: EventOutbox,
        modules: Mapping[str, ExitModule],
        *,
        poll_interval: float = 1.0,
        base_backoff: float = 1.0,
        max_backoff: float = 300.0,
        batch: int = 100,
    ) -> None:
        if min(poll_interval, base_backoff, max_backoff) <= 0 or batch <= 0:
            raise ValueError("poll_interval, backoffs and batch must be positive")
        self._store = store
        self._modules = dict(modules)
        self._poll_interval = poll_interval
        self._base_backoff = base_backoff
        self._max_backoff = max(max_backoff, base_backoff)
        self._batch = batch
        self._wakes = {name: asyncio.Event() for name in self._modules}
        self._runner: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Wake every module's loop now: something was just recorded.

        Cheap and safe to call often, but only from the event loop's thread.
        """
        for wake in self._wakes.values():
            wake.set()

    async def run(self) -> None:
        """Deliver until cancelled. Cancelling stops every loop; nothing is lost."""
        async with asyncio.TaskGroup() as tasks:
            for name, module in self._modules.items():
                tasks.create_task(self._serve(name, module), name=f"certforge-exit-{name}")

    async def start(self) -> None:
        """Run in a task this dispatcher owns until ``stop()``."""
        if self._runner is not None:
            raise RuntimeError("the dispatcher is already running")
        self._runner = asyncio.create_task(self.run(), name="certforge-exit-dispatcher")

    async def stop(self) -> None:
        """Cancel every loop and wait for them. An event whose delivery was cut short is not
        acknowledged, so a later dispatcher delivers it again."""
        task, self._runner = self._runner, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too: let that through

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, name: str, module: ExitModule) -> None:
        """One module's loop. It never ends but by cancellation: a store failure is logged
        and retried with backoff, since a dead loop would silently stop this exit."""
        wake = self._wakes[name]
        store_failures = 0
        while True:
            wake.clear()  # before fetching: a notify during the round is not lost
            try:
                caught_up = await self._deliver_batch(name, module)
            except Exception as exc:
                store_failures += 1
                delay = self._backoff(store_failures)
                log.warning(
                    "exit %r: reading or acknowledging the outbox failed (retry in %.1fs): %s",
                    name,
                    delay,
                    _describe(exc),
                    extra={"exit": name, "retry_in": delay},
                )
                await asyncio.sleep(delay)
                continue
            store_failures = 0
            if caught_up:
                await self._wait(wake)

    async def _deliver_batch(self, name: str, module: ExitModule) -> bool:
        """Deliver one batch in order; True when the module has caught up."""
        events = await self._store.pending_events(name, self._batch)
        for event in events:
            await self._deliver(name, module, await self._with_certificate(event))
            await self._store.ack_event(name, event.id)
        return len(events) < self._batch

    async def _with_certificate(self, event: Event) -> Event:
        """An ``issued`` event as exit modules get it: with ``certificate_pem``.

        The engine records the event without the certificate, which the store keeps once, in
        the certificate record; it is added back here, at delivery."""
        if event.kind is not EventKind.ISSUED or event.serial is None:
            return event
        if "certificate_pem" in event.data:
            return event
        try:
            cert = await self._store.get_certificate(event.serial)
        except NotFound:  # cannot happen: the event is written with its certificate
            return event
        return replace(event, data={**event.data, "certificate_pem": pem_certificate(cert.der)})

    async def _deliver(self, name: str, module: ExitModule, event: Event) -> None:
        """Deliver one event, retrying with backoff until the module accepts it."""
        attempt = 0
        while True:
            try:
                await module.deliver(event)
            except Exception as exc:
                attempt += 1
                delay = self._backoff(attempt)
                log.warning(
                    "exit %r: event %s (%s) not delivered, attempt %d, retry in %.1fs: %s",
                    name,
                    event.id,
                    event.kind,
                    attempt,
                    delay,
                    _describe(exc),
                    extra={
                        "exit": name,
                        "event_id": event.id,
                        "attempt": attempt,
                        "retry_in": delay,
                    },
                )
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.info(
                    "exit %r: event %s delivered after %d failed attempts",
                    name,
                    event.id,
                    attempt,
                    extra={"exit": name, "event_id": event.id},
                )
            return

    def _backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter so that servers sharing a destination that just
        came back do not all retry in the same instant."""
        delay = min(self._max_backoff, self._base_backoff * 2.0 ** min(attempt - 1, 60))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 (timing jitter, not a secret)

    async def _wait(self, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll_interval):
                await wake.wait()
