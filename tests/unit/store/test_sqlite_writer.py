"""SQLite's group commit and checkpoints (``server/store/sqlite_writer.py``), beyond the
contract every back-end keeps."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path

import pytest

from server.errors import StoreUnavailable
from server.model import Document
from server.store import sqlite, sqlite_writer
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


def _open_schema_at_once(path: str, barrier: BarrierType, failures: Queue[str]) -> None:
    barrier.wait()
    try:
        sqlite._open_schema(path).close()  # what SQLiteStore.open does first, off the loop
    except Exception as exc:  # reported to the test, which fails on it
        failures.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_database_at_once(tmp_path: Path) -> None:
    """Worker processes (or two servers started together) may create the database at the
    same moment: turning on WAL and creating the schema must wait their turn, not fail with
    "database is locked" (SQLite answers a lock upgrade that could deadlock at once, without
    waiting)."""
    # Before the fix, about one try in four of eight processes failed; twenty tries miss
    # that with a chance of about 0.5%.
    mp = multiprocessing.get_context("fork")
    for attempt in range(20):
        path = str(tmp_path / f"db{attempt}.sqlite")
        barrier = mp.Barrier(8)
        failures: Queue[str] = mp.Queue()
        procs = [
            mp.Process(target=_open_schema_at_once, args=(path, barrier, failures))
            for _ in range(8)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert failures.empty(), failures.get()
        assert all(proc.exitcode == 0 for proc in procs)


async def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"not a database at all, not even close\n" * 4)
    store = SQLiteStore(f"sqlite:///{path}", consumers=[])
    with pytest.raises(StoreUnavailable, match="not a database"):
        await store.open()
