"""Several server processes on one machine (``[server] workers = N``), the prefork model.

One Python process signs on one core at a time (the GIL), so a machine with N cores runs N
workers. How they share the work:

- Listeners: the parent refuses to start if a port is taken (a plain bind, as with one
  worker), then gives each worker its own listening socket bound with ``SO_REUSEPORT``, so
  the kernel spreads new connections evenly over the workers.
- State: the store, which every worker opens. SQLite in WAL mode lets processes write in
  turn (each worker still commits its own concurrent requests as one group); MongoDB is made
  for it. Nothing else is shared: every state change is the store's atomic conditional write,
  so two workers can no more double-issue than two servers can.
- First start: the parent prepares everything once (CA, store, admin token, TLS certificate)
  by running the server's start-up and shutdown without listeners, before any worker exists.
- Background jobs (the exit dispatcher, the TLS certificate's renewal, finishing approved
  requests) run in worker 0 only; the others reload the TLS certificate when it changes.
  Worker 0 re-issues the CRLs on schedule and every worker serves the newest from the data
  directory; each keeps its own OCSP signer and cache fresh, as separate servers sharing one
  store do (``server/revocation``).
- Signals: SIGTERM or SIGINT to the parent is passed to every worker, each finishes what it
  has in flight, and the parent exits 0 when they all did. A worker that dies otherwise is
  started again.
- Metrics: prometheus_client's multiprocess files in ``<data_dir>/metrics``, so ``/metrics``
  answers the sum over every worker (``share_metrics``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.config import Config, HostPort

log = logging.getLogger("certforge")

RESTART_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class Worker:
    """What one worker process is given: its number and its own listening sockets."""

    index: int
    https: socket.socket | None = None
    http: socket.socket | None = None
    parent: int | None = None  # the supervisor's pid, taken before the fork

    @property
    def primary(self) -> bool:
        return self.index == 0


def share_metrics(data_dir: Path) -> None:
    """Let every worker count into one set of metrics. Must run before prometheus_client is
    imported: it chooses where values live at import."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = data_dir / "metrics"
    shutil.rmtree(directory, ignore_errors=True)  # the counts of an earlier run
    directory.mkdir(mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def check_free(address: HostPort) -> None:
    """Raise ``OSError`` (EADDRINUSE) if something already listens there: the plain bind a
    single-process server would do, so a second certforge never silently shares a port."""
    with socket.socket(_family(address), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address.host, address.port))


def listening_socket(address: HostPort) -> socket.socket:
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((address.host, address.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _family(address: HostPort) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


def run_workers(config: Config, run_one: Callable[[Worker], int]) -> int:
    """Start ``config.server.workers`` processes running ``run_one``; supervise them until a
    stop signal; return the exit status (0 when every worker stopped cleanly)."""
    s = config.server
    check_free(s.https_listen)
    check_free(s.http_listen)
    stopping = False
    children: dict[int, int] = {}  # pid -> worker index

    def start(index: int) -> None:
        worker = Worker(
            index,
            listening_socket(s.https_listen),
            listening_socket(s.http_listen),
            parent=os.getpid(),
        )
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            status = 1
            try:
                status = run_one(worker)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        for sock in (worker.https, worker.http):
            if sock is not None:
                sock.close()  # the worker has its own; closing ours lets a dead one's go
        children[pid] = index

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(s.workers):
        start(index)
    log.info("certforge workers started", extra={"workers": s.workers})
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            if code:
                status = 1
            continue
        log.error("worker %d exited with status %d; starting it again", index, code)
        time.sleep(RESTART_DELAY)
        if not stopping:
            start(index)
    return status
