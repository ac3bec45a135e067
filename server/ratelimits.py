"""Rate limits: fixed one-hour windows counted in store documents, for any front end.

Each limited scope ("account:<id>", "identifier:dns:example.com", "address:192.0.2.1") has one
counter document per hour and per kind of limit, incremented with a conditional update, so
several servers sharing the store count together. Over the limit, the request fails with
``RateLimited`` (each protocol answers it in its own format, with Retry-After set to the end
of the window). Every scope is checked before any is counted, so a refused request counts
nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from server.errors import Conflict, NotFound, RateLimited
from server.model import Clock, Document
from server.store.base import Store

WINDOW = timedelta(hours=1)
ATTEMPTS = 8


def _window(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


async def _read(store: Store, kind: str, doc_id: str) -> Document | None:
    try:
        return await store.get_doc(kind, doc_id)
    except NotFound:
        return None


async def check_and_count(
    store: Store, clock: Clock, kind: str, scopes: Sequence[str], limit: int, what: str
) -> None:
    """Refuse if any scope reached ``limit`` this hour; otherwise count one for each.
    ``kind`` names the documents (one kind per front end); ``limit`` 0 means no limit."""
    if limit <= 0 or not scopes:
        return
    now = clock.now()
    start = _window(now)
    retry_after = max(1, int((start + WINDOW - now).total_seconds()))
    ids = [f"{scope}|{start.isoformat()}" for scope in scopes]
    for doc_id, scope in zip(ids, scopes, strict=True):
        doc = await _read(store, kind, doc_id)
        if doc is not None and int(doc.data["count"]) >= limit:
            raise RateLimited(
                f"too many {what} for {scope.partition(':')[2]}: {limit} per hour", retry_after
            )
    for doc_id in ids:
        await _increment(store, kind, doc_id, start + WINDOW)


async def _increment(store: Store, kind: str, doc_id: str, expires: datetime) -> None:
    for _ in range(ATTEMPTS):
        doc = await _read(store, kind, doc_id)
        try:
            if doc is None:
                await store.put_doc(Document(kind, doc_id, {"count": 1}, expires_at=expires))
            else:
                count = int(doc.data["count"]) + 1
                await store.update_doc(
                    replace(doc, data={"count": count}), expect_version=doc.version
                )
            return
        except (Conflict, NotFound):
            continue  # another server counted meanwhile: read again
    raise RateLimited("too many concurrent requests; try again", 1)
