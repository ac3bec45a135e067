"""The outbox dispatcher: order, acknowledgement, backoff, isolation, wake-ups, redelivery.

The store is an in-memory fake with the ``Store`` outbox semantics (per-consumer
acknowledgements, oldest first): the real back-ends are held to the same contract by
``tests/unit/store``. Exit modules are fakes that record what reached them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from server.errors import NotFound
from server.exits.base import ExitModule
from server.exits.dispatcher import Dispatcher
from server.model import CertificateRecord, Event, EventKind
from tests.unit.store.records import issued

IDLE = 60.0  # a poll interval no test waits for: only notify() or a full batch may wake


class FakeOutbox:
    """The outbox part of ``Store``: events oldest first, one cursor (ack set) per consumer."""

    def __init__(self, *, fail_reads: int = 0) -> None:
        self.events: list[Event] = []
        self.acked: dict[str, list[str]] = defaultdict(list)
        self.reads: list[str] = []
        self.fail_reads = fail_reads
        self.changed = asyncio.Event()
        self.certificates: dict[int, CertificateRecord] = {}

    async def add_event(self, event: Event) -> None:
        self.events.append(event)

    async def pending_events(self, consumer: str, limit: int = 100) -> list[Event]:
        self.reads.append(consumer)
        self.signal()
        if self.fail_reads:
            self.fail_reads -= 1
            raise ConnectionError("store unavailable")
        done = set(self.acked[consumer])
        return [e for e in self.events if e.id not in done][:limit]

    async def ack_event(self, consumer: str, event_id: str) -> None:
        self.acked[consumer].append(event_id)
        self.signal()

    async def get_certificate(self, serial: int) -> CertificateRecord:
        try:
            return self.certificates[serial]
        except KeyError:
            raise NotFound(f"no certificate {serial:x}") from None

    def signal(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait for the dispatcher to make ``predicate`` true, without sleeping."""
        async with asyncio.timeout(2.0):
            while not predicate():
                await self.changed.wait()


class RecordingExit:
    """An exit module that records attempts, and fails its first ``failures`` of them."""

    def __init__(
        self, name: str, *, failures: int = 0, on_attempt: Callable[[], None] = lambda: None
    ) -> None:
        self.name = name
        self.attempts: list[str] = []
        self.delivered: list[str] = []
        self.events: list[Event] = []
        self.failures = failures
        self.on_attempt = on_attempt

    async def deliver(self, event: Event) -> None:
        self.attempts.append(event.id)
        self.on_attempt()
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError(f"{self.name} is down")
        self.delivered.append(event.id)
        self.events.append(event)


class BlockingExit:
    """Starts a delivery and never finishes it: the state a crash or a stop interrupts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.attempts: list[str] = []

    async def deliver(self, event: Event) -> None:
        self.attempts.append(event.id)
        self.started.set()
        await asyncio.Event().wait()


def make_dispatcher(
    outbox: FakeOutbox,
    modules: Mapping[str, ExitModule],
    *,
    poll_interval: float = IDLE,
    base_backoff: float = 0.005,
    max_backoff: float = 0.02,
    batch: int = 100,
) -> Dispatcher:
    """A dispatcher with test-sized backoffs that only wakes when told to."""
    return Dispatcher(
        outbox,
        modules,
        poll_interval=poll_interval,
        base_backoff=base_backoff,
        max_backoff=max_backoff,
        batch=batch,
    )


def make_event(n: int, kind: EventKind = EventKind.ISSUED) -> Event:
    return Event(kind=kind, at=datetime(2025, 1, 1, tzinfo=UTC), serial=n, id=f"ev{n:03d}")


async def fill(outbox: FakeOutbox, count: int, start: int = 1) -> list[str]:
    events = [make_event(n) for n in range(start, start + count)]
    for e in events:
        await outbox.add_event(e)
    return [e.id for e in events]


async def test_delivers_in_order_and_acks_after_each() -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 5)
    hooks = RecordingExit("hooks")
    async with make_dispatcher(outbox, {"hooks": hooks}):
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 5)
    assert hooks.delivered == ids
    assert outbox.acked["hooks"] == ids


async def test_issued_events_reach_modules_with_their_certificate() -> None:
    """The store keeps the certificate once; the dispatcher adds it to the issued event."""
    outbox = FakeOutbox()
    _, cert = issued()
    outbox.certificates[cert.serial] = cert
    event = Event(EventKind.ISSUED, datetime(2025, 1, 1, tzinfo=UTC), serial=cert.serial)
    await outbox.add_event(event)
    hooks = RecordingExit("hooks")
    async with make_dispatcher(outbox, {"hooks": hooks}):
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 1)
    pem = hooks.events[0].data["certificate_pem"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert ssl.PEM_cert_to_DER_cert(pem) == cert.der


async def test_full_batches_are_drained_without_waiting_for_the_poll() -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 7)
    hooks = RecordingExit("hooks")
    async with make_dispatcher(outbox, {"hooks": hooks}, batch=2):
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 7)
    assert hooks.delivered == ids


async def test_each_consumer_has_its_own_cursor() -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 3)
    outbox.acked["files"].extend(ids[:2])  # "files" already took the first two earlier
    hooks, files = RecordingExit("hooks"), RecordingExit("files")
    async with make_dispatcher(outbox, {"hooks": hooks, "files": files}):
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 3 == len(outbox.acked["files"]))
    assert hooks.delivered == ids
    assert files.delivered == ids[2:]


async def test_failed_event_is_retried_before_any_later_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 2)
    flaky = RecordingExit("flaky", failures=3)
    with caplog.at_level(logging.WARNING, logger="certforge.exits"):
        async with make_dispatcher(outbox, {"flaky": flaky}):
            await outbox.until(lambda: len(outbox.acked["flaky"]) == 2)
    assert flaky.attempts == [ids[0]] * 4 + [ids[1]]
    assert outbox.acked["flaky"] == ids
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 3
    for record in failures:
        assert "'flaky'" in record.getMessage()
        assert ids[0] in record.getMessage()
        assert record.exc_info is None  # one line per failure, no traceback


async def test_backoff_grows_and_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    outbox = FakeOutbox()
    await fill(outbox, 1)
    flaky = RecordingExit("flaky", failures=6)
    with caplog.at_level(logging.WARNING, logger="certforge.exits"):
        async with make_dispatcher(outbox, {"flaky": flaky}, base_backoff=0.001, max_backoff=0.004):
            await outbox.until(lambda: len(outbox.acked["flaky"]) == 1)
    delays = [float(r.__dict__["retry_in"]) for r in caplog.records if "retry_in" in r.__dict__]
    expected = [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]  # before jitter
    assert len(delays) == len(expected)
    for delay, ceiling in zip(delays, expected, strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_a_failing_module_never_blocks_the_others() -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 2)
    down = RecordingExit("down", failures=10**9, on_attempt=outbox.signal)
    hooks = RecordingExit("hooks")
    dispatcher = make_dispatcher(outbox, {"down": down, "hooks": hooks})
    async with dispatcher:
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 2)
        more = await fill(outbox, 2, start=3)
        dispatcher.notify()
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 4)
        await outbox.until(lambda: len(down.attempts) >= 3)
    assert hooks.delivered == ids + more
    assert set(down.attempts) == {ids[0]}
    assert outbox.acked["down"] == []


async def test_notify_wakes_every_loop_at_once() -> None:
    outbox = FakeOutbox()
    hooks, files = RecordingExit("hooks"), RecordingExit("files")
    dispatcher = make_dispatcher(outbox, {"hooks": hooks, "files": files})
    async with dispatcher:
        await outbox.until(lambda: {"hooks", "files"} <= set(outbox.reads))  # both idle now
        ids = await fill(outbox, 1)
        dispatcher.notify()
        async with asyncio.timeout(1.0):  # far below the poll interval: notify did it
            await outbox.until(lambda: outbox.acked["hooks"] == ids == outbox.acked["files"])


async def test_polling_picks_up_events_nobody_notified() -> None:
    outbox = FakeOutbox()
    hooks = RecordingExit("hooks")
    async with make_dispatcher(outbox, {"hooks": hooks}, poll_interval=0.01):
        await outbox.until(lambda: "hooks" in outbox.reads)
        ids = await fill(outbox, 1)  # recorded by another server sharing the store
        await outbox.until(lambda: outbox.acked["hooks"] == ids)


async def test_store_failures_are_retried_and_the_loop_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = FakeOutbox(fail_reads=2)
    ids = await fill(outbox, 1)
    hooks = RecordingExit("hooks")
    with caplog.at_level(logging.WARNING, logger="certforge.exits"):
        async with make_dispatcher(outbox, {"hooks": hooks}):
            await outbox.until(lambda: outbox.acked["hooks"] == ids)
    assert sum("outbox failed" in r.getMessage() for r in caplog.records) == 2


async def test_delivery_cut_short_by_a_stop_is_repeated_by_the_next_dispatcher() -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 2)
    stuck = BlockingExit("hooks")
    async with make_dispatcher(outbox, {"hooks": stuck}):
        async with asyncio.timeout(2):
            await stuck.started.wait()
    assert stuck.attempts == ids[:1]
    assert outbox.acked["hooks"] == []  # the stop came before the acknowledgement

    restarted = RecordingExit("hooks")
    async with make_dispatcher(outbox, {"hooks": restarted}):
        await outbox.until(lambda: len(outbox.acked["hooks"]) == 2)
    assert restarted.delivered == ids


async def test_run_until_cancelled_inside_a_task_group() -> None:
    outbox = FakeOutbox()
    ids = await fill(outbox, 1)
    hooks = RecordingExit("hooks")
    dispatcher = make_dispatcher(outbox, {"hooks": hooks})
    async with asyncio.TaskGroup() as tasks:
        runner = tasks.create_task(dispatcher.run())
        await outbox.until(lambda: outbox.acked["hooks"] == ids)
        runner.cancel()
    assert runner.cancelled()


async def test_start_twice_is_refused_and_stop_is_idempotent() -> None:
    dispatcher = make_dispatcher(FakeOutbox(), {"hooks": RecordingExit("hooks")})
    await dispatcher.start()
    with pytest.raises(RuntimeError):
        await dispatcher.start()
    await dispatcher.stop()
    await dispatcher.stop()


async def test_no_modules_is_a_quiet_no_op() -> None:
    async with Dispatcher(FakeOutbox(), {}) as dispatcher:
        dispatcher.notify()


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"poll_interval": 0}, id="bad_interval/zero_poll"),
        pytest.param({"base_backoff": -1}, id="bad_interval/negative_backoff"),
        pytest.param({"batch": 0}, id="bad_batch/zero"),
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive"):
        Dispatcher(FakeOutbox(), {}, **kwargs)


def test_fakes_satisfy_the_protocol() -> None:
    module: ExitModule = RecordingExit("hooks")
    assert isinstance(module, ExitModule)
    assert isinstance(BlockingExit("stuck"), ExitModule)
