"""Worker 0's housekeeping deletes expired documents from the store on its own (SQLite has no
TTL index: without it every ACME nonce marker stayed for ever)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.housekeeping import purge_expired_forever
from server.model import Document, SystemClock
from server.store.sqlite import SQLiteStore


def rows(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("SELECT count(*) FROM documents").fetchone()[0])


async def test_expired_documents_are_deleted_without_anyone_asking(tmp_path: Path) -> None:
    path = tmp_path / "certforge.db"
    store = SQLiteStore(f"sqlite:///{path}", consumers=[])
    await store.open()
    try:
        past = datetime.now(UTC) - timedelta(minutes=1)
        for i in range(50):
            await store.put_doc(Document("acme-nonce", f"n{i}", {}, expires_at=past))
        await store.put_doc(Document("acme-nonce", "live", {}))
        assert rows(path) == 51

        job = asyncio.create_task(purge_expired_forever(store, SystemClock(), interval=0.05))
        for _ in range(100):
            if rows(path) == 1:
                break
            await asyncio.sleep(0.05)
        job.cancel()
        assert rows(path) == 1
        assert (await store.get_doc("acme-nonce", "live")).id == "live"
    finally:
        await store.close()
