"""Several server processes on one machine (``[server] workers = N``), the prefork model.

One Python process signs on one core at a time (the GIL), so a machine with N cores runs N
workers. How they share the work:

- Processes: every worker is a fresh interpreter (``sys.executable``, started through
  ``subprocess``), never a bare ``fork()`` of the parent. By the time the parent starts them
  it has run threads (the first start's preparation signs on executor threads), and a fork
  copies every lock as it is at that instant, held or not, with no thread left in the child
  to release it. That hung starts: an executor thread that Python had already joined was
  still running OpenSSL's thread-exit destructor, which holds OpenSSL's registry of
  thread-event handlers; the worker forked then hung in its first signature, waiting on a
  lock whose holder (a thread id of the parent) did not exist in it. An exec'ed worker
  inherits no thread, lock or library state, whatever the parent did before.
- Listeners: the parent refuses to start if a port is taken (a plain bind, as with one
  worker), then gives each worker its own socket bound with ``SO_REUSEPORT``. The worker
  starts listening only once it is ready to serve (``server.app.serve``), so the kernel
  spreads new connections over the workers that answer, and none sits accepting
  connections it will not answer.
- Readiness: a worker reports each step of its start on a pipe (``Worker.report``). One
  not ready within ``[server] worker_start_timeout`` is named with the step it is at, killed
  and started again.
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
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.config import Config, HostPort

log = logging.getLogger("certforge")

RESTART_DELAY = 1.0
READY = "ready"  # the last step a worker reports
POLL_SECONDS = 0.2  # how often the supervisor looks at its workers when nothing is said


@dataclass(frozen=True, slots=True)
class Worker:
    """What one worker process is given: its number, its own sockets (bound, not yet
    listening) and the pipe on which it reports its start to the supervisor."""

    index: int
    https: socket.socket | None = None
    http: socket.socket | None = None
    parent: int | None = None  # the supervisor's pid, taken before the worker started
    progress: int | None = None  # write end of the pipe to the supervisor

    @property
    def primary(self) -> bool:
        return self.index == 0

    def report(self, step: str) -> None:
        """Tell the supervisor what the start is doing now (``READY`` when it serves). A
        line under PIPE_BUF is written whole; a supervisor that is gone hears nothing."""
        if self.progress is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.progress, step.encode()[:200] + b"\n")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor hands a worker on its standard input: the configuration it was
    itself started with (so both read the same file once), and who the worker is. The
    sockets and the pipe are inherited descriptors, named here by number."""

    config: Config
    index: int
    parent: int
    https_fd: int
    http_fd: int
    progress_fd: int

    def worker(self) -> Worker:
        return Worker(
            self.index,
            socket.socket(fileno=self.https_fd),
            socket.socket(fileno=self.http_fd),
            parent=self.parent,
            progress=self.progress_fd,
        )


def read_spec() -> WorkerSpec:
    """In a worker: the spec its supervisor wrote (pickle between a process and the child it
    started, never from elsewhere)."""
    spec = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by our own parent
    if not isinstance(spec, WorkerSpec):
        raise TypeError("not a worker spec")
    return spec


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


def bound_socket(address: HostPort) -> socket.socket:
    """A socket bound to ``address`` beside the other workers' (``SO_REUSEPORT``), not yet
    listening: the kernel queues connections only for workers that called ``listen``."""
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((address.host, address.port))
    sock.setblocking(False)
    return sock


def _family(address: HostPort) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes]
    progress: int  # read end of its pipe; -1 once the worker closed it
    started: float
    step: str = "starting the interpreter"
    ready: bool = False
    replaced: bool = False
    heard: bytes = field(default=b"", repr=False)

    def listen(self) -> None:
        """Read what the worker reported since the last look."""
        try:
            data = os.read(self.progress, 4096)
        except BlockingIOError:
            return
        if not data:  # the worker exited or closed the pipe
            os.close(self.progress)
            self.progress = -1
            return
        *lines, self.heard = (self.heard + data).split(b"\n")
        for line in lines:
            step = line.decode(errors="replace")
            if step == READY:
                self.ready = True
            self.step = step


def run_workers(
    config: Config, command: Sequence[str], *, on_ready: Callable[[], None] | None = None
) -> int:
    """Start ``config.server.workers`` processes, each running ``command`` (a fresh
    interpreter that reads its ``WorkerSpec`` from standard input); supervise them until a
    stop signal; return the exit status (0 when every worker stopped cleanly). ``on_ready``
    runs once, here in the parent, when the first worker serves."""
    s = config.server
    check_free(s.https_listen)
    check_free(s.http_listen)
    stopping = False
    children: dict[int, _Child] = {}  # pid -> child

    def start(index: int) -> None:
        https, http = bound_socket(s.https_listen), bound_socket(s.http_listen)
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        spec = WorkerSpec(config, index, os.getpid(), https.fileno(), http.fileno(), write_end)
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                pass_fds=(https.fileno(), http.fileno(), write_end),
            )
            if proc.stdin is not None:
                # A worker that died at once is seen, and started again, by the loop below.
                with contextlib.suppress(BrokenPipeError), proc.stdin:
                    pickle.dump(spec, proc.stdin)
        finally:
            # The worker has its own descriptors; closing ours lets a dead one's port go and
            # its pipe read end-of-file.
            os.close(write_end)
            https.close()
            http.close()
        children[proc.pid] = _Child(index, proc, read_end, time.monotonic())

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(s.workers):
        start(index)
    log.info("certforge workers started", extra={"workers": s.workers})
    status = 0
    while children:
        pipes = [c.progress for c in children.values() if c.progress >= 0]
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(pipes, [], [], POLL_SECONDS)
            for child in children.values():
                if child.progress in readable:
                    child.listen()
                if child.ready and on_ready is not None:
                    on_ready()
                    on_ready = None
        now = time.monotonic()
        for pid, child in list(children.items()):
            code = child.proc.poll()
            if code is None:
                late = now - child.started > s.worker_start_timeout
                if late and not (child.ready or child.replaced or stopping):
                    log.error(
                        "worker %d not ready after %.0f s, still %s; starting it again",
                        child.index,
                        s.worker_start_timeout,
                        child.step,
                        extra={"worker": child.index, "waiting_for": child.step},
                    )
                    child.replaced = True
                    child.proc.kill()
                continue
            del children[pid]
            if child.progress >= 0:
                os.close(child.progress)
            if stopping:
                # A worker still starting has nothing in flight: SIGTERM ends it at once.
                if code and not (code == -signal.SIGTERM and not child.ready):
                    status = 1
                continue
            if not child.replaced:
                log.error("worker %d exited with status %d; starting it again", child.index, code)
            time.sleep(RESTART_DELAY)
            if not stopping:
                start(child.index)
    return status
