"""SQLite's dedicated writer thread with group commit.

Every write is a function run on the writer's connection. The thread takes every write that
is queued, runs each inside its own SAVEPOINT (one write's error rolls back only that write),
commits ONCE, and only then resolves each caller's future: a write is acknowledged after it is
durable (WAL, ``synchronous=FULL``). Concurrent writers therefore share one fsync. The event
loop never blocks on sqlite3.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("certforge.store.sqlite")

MAX_BATCH = 1024
WriteFn = Callable[[sqlite3.Connection], Any]
_STOP = object()


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: NORMAL survives kill -9 but may lose the last commits on power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Writer:
    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn = connect(path)
        self._thread = threading.Thread(
            target=self._run, name="certforge-sqlite-writer", daemon=True
        )
        self._thread.start()

    def submit(self, fn: WriteFn) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((fn, future))
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._loop.call_soon_threadsafe(_resolve, self._commit(batch))
            if stop:
                return

    def _commit(
        self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Fast path: the whole batch in one transaction. A write that raises (a Conflict,
        rarely) may have changed rows before it raised, so the batch is rolled back and
        replayed with one SAVEPOINT per write; writes are pure functions of the connection."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            values = [fn(conn) for fn, _ in batch]
            conn.execute("COMMIT")
        except BaseException:  # replayed one by one below
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return self._commit_isolated(batch)
        return [(future, True, value) for (_, future), value in zip(batch, values, strict=True)]

    def _commit_isolated(
        self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                conn.execute("SAVEPOINT w")
                try:
                    value = fn(conn)
                except BaseException as exc:  # handed to the caller
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    results.append((future, False, exc))
                else:
                    conn.execute("RELEASE w")
                    results.append((future, True, value))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("group commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(future, False, exc) for _, future in batch]
        return results


def _resolve(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue  # the caller was cancelled; the write is durable all the same
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
