"""The requests a process is handling, so that it closes its store only after the last one.

aiohttp's graceful stop waits for the requests it knows of, but a connection still in its
TLS handshake when the listeners close becomes a request only afterwards, and such a request
met a closed store (a 500). The request-log middleware counts every request in and out;
the core drains the count before it closes the store, then refuses what still arrives with
503 and Retry-After instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("certforge")


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self.closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> bool:
        """Count a request in; False once drained (the store is about to close)."""
        if self.closed:
            return False
        self.count += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def drain(self, seconds: float) -> None:
        """Wait until no request is in flight (at most ``seconds``), then refuse new ones.
        The count is checked and ``closed`` set in one step of the loop, so no request slips
        in between."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.count:
                    await self._idle.wait()
        if self.count:
            log.warning("stopping with %d requests still in flight", self.count)
        self.closed = True
