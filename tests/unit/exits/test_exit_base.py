"""What every exit module shares: closing at stop, and the load-time check for it."""

from __future__ import annotations

import logging

import pytest

from server.errors import ConfigError
from server.exits.base import ExitModule, check_closable, close_exit_modules
from server.model import Event


class PlainExit:
    def __init__(self, name: str) -> None:
        self.name = name

    async def deliver(self, event: Event) -> None:
        return None


class ClosingExit(PlainExit):
    def __init__(self, name: str, *, broken: bool = False) -> None:
        super().__init__(name)
        self.closed = 0
        self.broken = broken

    async def close(self) -> None:
        self.closed += 1
        if self.broken:
            raise OSError("socket already gone")


async def test_close_exit_modules_closes_each_closable_one_despite_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, fine = ClosingExit("broken", broken=True), ClosingExit("fine")
    modules: list[ExitModule] = [broken, PlainExit("plain"), fine]
    with caplog.at_level(logging.WARNING, logger="certforge.exits"):
        await close_exit_modules(modules)
    assert (broken.closed, fine.closed) == (1, 1)
    [record] = caplog.records
    assert "'broken'" in record.getMessage()
    assert "OSError" in record.getMessage()


def test_check_closable() -> None:
    class SyncClose(PlainExit):
        def close(self) -> None:
            pass

    assert check_closable(ClosingExit("c")) is True
    assert check_closable(PlainExit("p")) is False
    with pytest.raises(ConfigError, match="coroutine"):
        check_closable(SyncClose("s"))
