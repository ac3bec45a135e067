"""SQLite's dedicated writer thread with group commit, and its syncer thread.

Every write is a function run on the writer's connection. The writer thread takes every
write that is queued (up to ``MAX_BATCH``), runs them in ONE transaction and commits once.
The syncer thread then makes the commit durable with one ``fsync`` of the WAL file, and only
then resolves each caller's future through ``loop.call_soon_threadsafe``: a write is
acknowledged after it is durable. Concurrent writers therefore share one commit and one
fsync, which is what lets the store keep up with thousands of issuances a second. The event
loop never blocks on sqlite3.

Why the fsync is ours and not SQLite's (``synchronous=FULL`` would fsync the WAL inside
COMMIT): the writer can run the next group's transaction while the last group's fsync is
under way, and other processes sharing the database are not kept waiting for it. The
connection runs ``synchronous=NORMAL`` (a commit writes its WAL frames without syncing them,
checkpoints still sync) and the syncer's fsync of the WAL covers every frame written before
it: the same guarantee as FULL for everything acknowledged. A kill -9 loses nothing either
way, since committed frames are in the operating system's cache. The difference: another
connection may read a commit a few milliseconds before it is durable.

Several processes may share the database (``[server] workers``). SQLite lets one write at a
time and makes the others poll, sleeping a millisecond and then longer between tries; the
writer threads therefore take turns on an exclusive ``flock`` of a file beside the database
instead, which the kernel hands to the next waiter the moment it is released, and only then
begin their transaction.

One write's failure (a ``Conflict``) must not undo the others in its group. The obvious way
is a SAVEPOINT around every write; since failures are rare, the fast path runs the group
without them, and only when some write raised does it roll the group back and replay it with
one SAVEPOINT per write. That is correct because a write is a function of the connection and
of values captured before it was queued, so running it again after a rollback does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("certforge.store.sqlite")

MAX_BATCH = 1024
WriteFn = Callable[[sqlite3.Connection], Any]
Result = tuple["asyncio.Future[Any]", bool, Any]  # (future, succeeded, value or exception)
_STOP = object()


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL. Commits are not
    synced here: the writer's syncer thread does it (see the module docstring)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    # Copy the WAL into the database every 8192 pages (32 MiB) rather than every 1000: the
    # pages every commit touches (the ends of the time indexes) are copied once per checkpoint.
    conn.execute("PRAGMA wal_autocheckpoint=8192")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class Writer:
    """Owns the write connection and the thread that uses it; see the module docstring."""

    def __init__(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, path: str
    ) -> None:
        self._loop = loop
        self._path = path
        self._lock_fd = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._committed: queue.SimpleQueue[Any] = queue.SimpleQueue()  # to the syncer
        self._conn = conn
        self._closed = False
        self.commits = 0  # transactions committed: fewer than ``writes`` when grouping works
        self.writes = 0
        self.syncs = 0
        self._thread = threading.Thread(
            target=self._run, name="certforge-sqlite-writer", daemon=True
        )
        self._syncer = threading.Thread(
            target=self._sync_forever, name="certforge-sqlite-syncer", daemon=True
        )
        self._thread.start()
        self._syncer.start()

    def submit(self, fn: WriteFn) -> asyncio.Future[Any]:
        """Queue ``fn``; the future resolves after the commit that includes it."""
        if self._closed:
            raise RuntimeError("the SQLite store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((fn, future))
        return future

    def close(self) -> None:
        """Finish every write queued so far, then stop the thread (blocking: run off-loop)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()  # it hands the syncer _STOP after its last group
        self._syncer.join()
        self._conn.close()
        os.close(self._lock_fd)

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                try:
                    with self._turn():
                        results = self._commit(batch)
                except BaseException as exc:  # never die with callers waiting on futures
                    log.exception("SQLite writer failed")
                    results = [(future, False, exc) for _, future in batch]
                self._committed.put(results)
            if stop:
                self._committed.put(_STOP)
                return

    def _sync_forever(self) -> None:
        """Make committed groups durable, one fsync for all that are waiting, then answer."""
        while True:
            item = self._committed.get()
            groups, stop = ([], True) if item is _STOP else ([item], False)
            while not stop:
                try:
                    item = self._committed.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    groups.append(item)
            if groups:
                self._deliver(self._synced([r for group in groups for r in group]))
            if stop:
                return

    def _synced(self, results: list[Result]) -> list[Result]:
        """fsync the WAL (every frame committed so far); on failure nothing is acknowledged."""
        try:
            _fsync(f"{self._path}-wal")
        except FileNotFoundError:  # checkpointed and removed: the database file has it all
            _fsync(self._path)
        except OSError as exc:
            log.critical("fsync of the SQLite WAL failed: writes are not known to be durable")
            return [(future, False, exc) for future, _, _ in results]
        self.syncs += 1
        return results

    def _take(self) -> tuple[list[tuple[WriteFn, asyncio.Future[Any]]], bool]:
        """Block for one write, then take whatever else is already queued."""
        item = self._queue.get()
        if item is _STOP:
            return [], True
        batch = [item]
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn to write, among the processes sharing the database."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # blocks without holding the GIL
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _deliver(self, results: list[Result]) -> None:
        try:
            self._loop.call_soon_threadsafe(_resolve, results)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning(
                "SQLite writer: event loop closed before %d writes were answered", len(results)
            )

    def _commit(self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]) -> list[Result]:
        """Fast path: the whole group in one transaction, without savepoints."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            values = [fn(conn) for fn, _ in batch]
            conn.execute("COMMIT")
        except BaseException:  # replayed one by one below
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return self._commit_isolated(batch)
        self.commits += 1
        self.writes += len(batch)
        return [(future, True, value) for (_, future), value in zip(batch, values, strict=True)]

    def _commit_isolated(self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]) -> list[Result]:
        """Slow path: one SAVEPOINT per write, so a failed write rolls back only itself."""
        results: list[Result] = []
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                conn.execute("SAVEPOINT w")
                try:
                    value = fn(conn)
                except Exception as exc:  # handed to its caller
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
        self.commits += 1
        self.writes += sum(1 for _, ok, _ in results if ok)
        return results


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _resolve(results: list[Result]) -> None:
    for future, ok, value in results:
        if future.done():
            continue  # the caller was cancelled; the write is durable all the same
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
