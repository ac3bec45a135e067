"""A worker's watch on its parent (``server.app._wait_for_stop``)."""

from __future__ import annotations

import asyncio
import os
import time

from server.app import _wait_for_stop


async def test_a_worker_whose_parent_died_while_it_started_stops_at_once() -> None:
    """The parent's pid comes from before the worker started. If the parent was killed while
    the worker was still starting, the worker has been adopted and its parent pid is no longer
    that one: it must stop at once, not adopt the new parent as its own and serve on alone."""
    gone = os.getppid() + 1_000_000  # not our parent: as if it had died before we looked
    started = time.monotonic()
    await asyncio.wait_for(_wait_for_stop(asyncio.Event(), parent=gone), timeout=5)
    assert time.monotonic() - started < 1


async def test_a_worker_with_its_parent_waits() -> None:
    task = asyncio.ensure_future(_wait_for_stop(asyncio.Event(), parent=os.getppid()))
    await asyncio.sleep(1.5)  # past one look at the parent
    assert not task.done()
    task.cancel()
