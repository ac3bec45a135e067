"""SQLite's group commit on the event loop, and the syncer thread that makes it durable.

Every write is a function run on the write connection. ``submit`` queues it; the first write
queued in a turn of the event loop schedules ``_flush`` for the end of that turn, which runs
every queued write in ONE transaction and commits once. The syncer thread then makes the
commit durable with one ``fsync`` of the WAL file, and only then resolves each caller's future
through ``loop.call_soon_threadsafe``: a write is acknowledged after it is durable. Concurrent
writers therefore share one commit and one fsync.
A write submitted with ``durable=False`` (ACME's nonce markers) is answered at the commit
instead: every reader sees it then, and only a crash of the machine, not of the process, could
still lose it.

Why on the event loop and not on a writer thread: the writes are small (a few rows each, about
a hundred microseconds of SQLite per issuance), and a thread costs more than it saves. Each
write handed to a thread, and each Python step that thread takes, moves the GIL between it and
the loop; measured here, the loop spent more on those hand-offs than SQLite spent writing, and
issuance ran 1.3 times faster with the writes inline. What could block the loop for long is
kept off it: the fsync (the syncer thread) and the checkpoint, which copies the WAL into the
database and syncs it (also the syncer thread, on its own connection; the write connection's
automatic checkpoint is off).

Why the fsync is ours and not SQLite's (``synchronous=FULL`` would fsync the WAL inside
COMMIT, on the loop): the loop runs the next group's transaction while the last group's fsync
is under way, and other processes sharing the database are not kept waiting for it. The
connection runs ``synchronous=NORMAL`` (a commit writes its WAL frames without syncing them,
checkpoints still sync) and the syncer's fsync of the WAL covers every frame written before
it: the same guarantee as FULL for everything acknowledged. A kill -9 loses nothing either
way, since committed frames are in the operating system's cache. The difference: another
connection may read a commit a few milliseconds before it is durable.

Several processes may share the database (``[server] workers``). SQLite lets one write at a
time and makes the others poll, sleeping a millisecond and then longer between tries; the
processes therefore take turns on an exclusive ``flock`` of a file beside the database
instead, which the kernel hands to the next waiter the moment it is released, and only then
begin their transaction. The loop waits for its turn: at most the other processes' group
transactions, each a few milliseconds, never their fsyncs or checkpoints.

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
import time
from collections.abc import Callable, Iterator
from typing import Any

from server.durable import fsync_path

log = logging.getLogger("certforge.store.sqlite")

MAX_BATCH = 1024
BUSY_SECONDS = 30  # how long a connection waits for another process's lock
# Copy the WAL into the database once it holds this much (32 MiB) rather than SQLite's default
# 1000 pages: the pages every commit touches (the ends of the time indexes) are copied once
# per checkpoint, not once per commit. The WAL's size tells how much it holds because SQLite
# truncates it to ``WAL_KEEP_BYTES`` when it starts it over after a checkpoint
# (``journal_size_limit``), and at most one checkpoint a second is tried, in case it cannot
# start over (a reader still on the old frames).
CHECKPOINT_BYTES = 32 << 20
WAL_KEEP_BYTES = 4 << 20
CHECKPOINT_SECONDS = 1.0
WriteFn = Callable[[sqlite3.Connection], Any]
Result = tuple["asyncio.Future[Any]", bool, Any]  # (future, succeeded, value or exception)
_STOP = object()


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL. Commits are not
    synced here, and it never checkpoints by itself: the writer's syncer thread does both (see
    the module docstring)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
    )
    conn.row_factory = sqlite3.Row
    _journal_mode_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


def _journal_mode_wal(conn: sqlite3.Connection) -> None:
    """Turn on WAL, waiting for other processes doing the same. Two connections turning a new
    database's journal to WAL at once can each hold a shared lock and want the exclusive one;
    SQLite answers one of them "database is locked" at once instead of waiting (waiting
    could deadlock), so the wait is here."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)  # the other connection's conversion takes a few milliseconds


class Writer:
    """Owns the write connection, the group commit and the syncer thread; see the module
    docstring. ``submit`` and ``close`` are called on the event loop."""

    def __init__(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, path: str
    ) -> None:
        self._loop = loop
        self._path = path
        self._lock_fd = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        # The syncer's own open of the lock file: flock excludes per open file, so this one
        # excludes this process's own writes too.
        self._checkpoint_lock_fd = os.open(f"{path}.writelock", os.O_RDWR)
        self._pending: list[tuple[WriteFn, asyncio.Future[Any]]] = []
        self._volatile: set[asyncio.Future[Any]] = set()  # answered at commit, before fsync
        self._committed: queue.SimpleQueue[Any] = queue.SimpleQueue()  # to the syncer
        self._conn = conn
        self._checkpointer = connect(path)  # used by the syncer thread only
        self._checkpointed = 0.0  # time.monotonic() of the last checkpoint
        self._closed = False
        self.commits = 0  # transactions committed: fewer than ``writes`` when grouping works
        self.writes = 0
        self.syncs = 0
        self._syncer = threading.Thread(
            target=self._sync_forever, name="certforge-sqlite-syncer", daemon=True
        )
        self._syncer.start()

    def submit(self, fn: WriteFn, *, durable: bool = True) -> asyncio.Future[Any]:
        """Queue ``fn``; the future resolves after the commit that includes it is durable, or
        with ``durable=False`` once it is committed (a process crash still loses nothing; an
        operating system crash may lose it)."""
        if self._closed:
            raise RuntimeError("the SQLite store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        if not durable:
            self._volatile.add(future)
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append((fn, future))
        return future

    def close(self) -> None:
        """Commit every write queued so far and tell the syncer to stop once it has made them
        durable and answered them (on the loop; then ``wait_closed`` off it)."""
        if self._closed:
            return
        self._closed = True
        self._flush()
        self._committed.put(_STOP)

    def wait_closed(self) -> None:
        """Wait for the syncer's last answers, then release the connections (blocking)."""
        self._syncer.join()
        log.info(
            "SQLite writer closed: %d writes in %d commits, %d fsyncs",
            self.writes,
            self.commits,
            self.syncs,
        )
        self._checkpointer.close()
        self._conn.close()
        os.close(self._lock_fd)
        os.close(self._checkpoint_lock_fd)

    def _flush(self) -> None:
        """Commit the writes queued in this turn of the loop, in groups of ``MAX_BATCH``."""
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            try:
                with _turn(self._lock_fd):
                    results = self._commit(batch)
            except BaseException as exc:  # never leave callers waiting on futures
                log.exception("SQLite group commit failed")
                results = [(future, False, exc) for _, future in batch]
            if self._volatile:
                volatile = self._volatile
                _resolve([r for r in results if r[0] in volatile])
                results = [r for r in results if r[0] not in volatile]
                volatile.difference_update(future for _, future in batch)
            if results:  # a group of volatile writes only needs no fsync: nobody waits on it
                self._committed.put(results)

    def _sync_forever(self) -> None:
        """Make committed groups durable, one fsync for all that are waiting, then answer;
        checkpoint when the WAL has grown."""
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
                wal_size = self._synced([r for group in groups for r in group])
                now = time.monotonic()
                if wal_size >= CHECKPOINT_BYTES and now - self._checkpointed >= CHECKPOINT_SECONDS:
                    self._checkpointed = now
                    self._checkpoint()
            if stop:
                return

    def _synced(self, results: list[Result]) -> int:
        """fsync the WAL (every frame committed so far), then answer; on failure nothing is
        acknowledged. Returns the WAL's size."""
        wal = f"{self._path}-wal"
        size = 0
        try:
            size = fsync_path(wal)
        except FileNotFoundError:  # checkpointed and removed: the database file has it all
            try:
                fsync_path(self._path)
            except OSError as exc:
                results = self._failed(results, exc)
        except OSError as exc:
            results = self._failed(results, exc)
        else:
            self.syncs += 1
        self._deliver(results)
        return size

    @staticmethod
    def _failed(results: list[Result], exc: OSError) -> list[Result]:
        log.critical("fsync of the SQLite WAL failed: writes are not known to be durable")
        return [(future, False, exc) for future, _, _ in results]

    def _checkpoint(self) -> None:
        """Copy the WAL into the database: first while writers go on (PASSIVE), then the
        frames they wrote meanwhile, with writers held off for that short while, so that the
        checkpoint is complete and the next write starts the WAL over from its beginning."""
        try:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with _turn(self._checkpoint_lock_fd):
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # busy with another process's checkpoint: that one does it
            log.debug("SQLite checkpoint skipped", exc_info=True)

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


@contextlib.contextmanager
def _turn(lock_fd: int) -> Iterator[None]:
    """This writer's turn, among the processes (and checkpoints) sharing the database."""
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)


def _resolve(results: list[Result]) -> None:
    for future, ok, value in results:
        if future.done():
            continue  # the caller was cancelled; the write is durable all the same
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
