"""SQLite's group commit and checkpoints (``server/store/sqlite_writer.py``), beyond the
contract every back-end keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.model import Document
from server.store import sqlite_writer
from server.store.sqlite import SQLiteStore


async def test_the_wal_starts_over_under_a_steady_stream_of_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small limits, so that a few thousand writes cross them many times.
    monkeypatch.setattr(sqlite_writer, "CHECKPOINT_BYTES", 256 << 10)
    monkeypatch.setattr(sqlite_writer, "WAL_KEEP_BYTES", 64 << 10)
    monkeypatch.setattr(sqlite_writer, "CHECKPOINT_SECONDS", 0.0)
    store = SQLiteStore(f"sqlite:///{tmp_path}/db.sqlite", consumers=[])
    await store.open()
    wal = Path(f"{tmp_path}/db.sqlite-wal")
    largest = 0
    try:
        for batch in range(40):
            # Concurrent writers, never a pause: checkpoints run while writes go on.
            await asyncio.gather(
                *(
                    store.put_doc(Document("note", f"{batch}-{i}", {"text": "x" * 1000}))
                    for i in range(50)
                )
            )
            largest = max(largest, _size(wal))
        assert store.writer.writes == 2000
        assert (await store.get_doc("note", "39-49")).data["text"] == "x" * 1000
    finally:
        await store.close()
    # 2,000 writes of a kilobyte and more wrote several megabytes of frames: the WAL was
    # copied into the database and started over instead of growing with them.
    assert largest < 2 << 20


def _size(path: Path) -> int:
    return path.stat().st_size


async def test_writes_answered_at_commit_cost_no_fsync(tmp_path: Path) -> None:
    """A group of ``durable=False`` writes only is not synced (nobody waits on it); a durable
    write is answered after an fsync that covers the earlier ones too."""
    store = SQLiteStore(f"sqlite:///{tmp_path}/db.sqlite", consumers=[])
    await store.open()
    try:
        for i in range(20):
            await store.put_doc(Document("marker", str(i), {}), durable=False)
        await asyncio.sleep(0.05)  # the syncer would have had time for them
        assert (store.writer.commits, store.writer.syncs) == (20, 0)
        await store.put_doc(Document("note", "n", {"text": "kept"}))
        assert store.writer.syncs == 1
    finally:
        await store.close()
