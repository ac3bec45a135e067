"""The ACME sub-app's validation tasks around shutdown (``context.Background``)."""

from __future__ import annotations

import asyncio

from protocols.acme.context import Background


async def test_a_validation_started_before_shutdown_is_cancelled() -> None:
    background = Background()
    started = asyncio.Event()

    async def validation() -> None:
        started.set()
        await asyncio.sleep(60)

    task = background.spawn(validation())
    assert task is not None
    await started.wait()
    await background.close()
    assert task.cancelled()
    assert not background.tasks


async def test_no_validation_starts_once_shut_down() -> None:
    """A request still in flight during shutdown must not start a validation whose HTTP
    session is already closed (it failed with "Session is closed" and an error log)."""
    background = Background()
    await background.close()
    ran = False

    async def validation() -> None:
        nonlocal ran
        ran = True

    assert background.spawn(validation()) is None  # closed, never awaited: no warning
    await asyncio.sleep(0)
    assert not ran
    assert not background.tasks
