"""Store housekeeping, run by worker 0 only (``server.app.core``).

Expired documents (ACME used-nonce markers, one per POST, rate-limit counters, SCEP and EST
one-time markers...) are deleted once a minute. MongoDB's TTL index removes them by itself,
lazily; SQLite has no TTL, so without this its documents table grows with every request,
unauthenticated ones included. Reads already ignore expired documents: this is about space.
"""

from __future__ import annotations

import asyncio
import logging

from server.errors import StoreUnavailable
from server.model import Clock
from server.store.base import Store

log = logging.getLogger("certforge.store")

PURGE_INTERVAL_SECONDS = 60.0


async def purge_expired_forever(
    store: Store, clock: Clock, interval: float = PURGE_INTERVAL_SECONDS
) -> None:
    while True:
        try:
            purged = await store.purge_expired_docs(clock.now())
        except StoreUnavailable as exc:
            log.warning("could not purge expired documents: %s", exc)
        except Exception:
            # A fault of ours, but the server goes on serving; the next round tries again.
            log.exception("purging expired documents failed")
        else:
            if purged:
                log.debug("purged expired documents", extra={"count": purged})
        await asyncio.sleep(interval)
