"""The only wiring place: configuration in, the HTTPS and HTTP applications out.

``build_apps(config)`` returns both apps. The HTTPS app owns the process's lifecycle in one
``cleanup_ctx`` entry (``core``): CA keys, store, plug-ins, engine, tokens, the exit
dispatcher, the TLS self-renewal task and the expiry monitor, closed in reverse order. The
HTTPS runner must be set up before the HTTP runner: ``core`` publishes the shared objects on
both apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from server.ca.issuers import load_or_create
from server.ca.keystore import load_passphrase
from server.challenges import Challenges
from server.config import Config
from server.engine import Engine, EngineDeps
from server.exits.base import close_exit_modules
from server.exits.dispatcher import Dispatcher
from server.frontend import (
    FrontEndContext,
    Mounted,
    by_prefix,
    installed,
    mount_frontends,
)
from server.housekeeping import purge_expired_forever
from server.keys import (
    CAS,
    CHALLENGES,
    CONFIG,
    CRLS,
    ENGINE,
    IN_FLIGHT,
    METRICS,
    OCSP,
    STORE,
    TOKENS,
)
from server.model import SystemClock
from server.monitor.service import Monitor, MonitorDeps
from server.monitor.watched import WatchSource, ca_source
from server.plugins import load_exit_modules, load_policy_modules
from server.revocation.service import Revocation
from server.store import open_store
from server.tls import ServerTLS
from server.tokens import TokenService
from server.web.inflight import InFlight
from server.web.metrics import Metrics
from server.web.middleware import last_resort, request_log
from server.web.requestlog import protocol_logger
from server.web.routes import add_http_routes, add_https_routes
from server.workers import READY, Worker

log = logging.getLogger("certforge")

TLS_KEY = web.AppKey("tls", ServerTLS)
HTTP_APP = web.AppKey("http_app", web.Application)
WORKER = web.AppKey("worker", Worker)
MOUNTED = web.AppKey("mounted", tuple[Mounted, ...])  # the front ends', started by core
# A challenge's lifetime when its creator names none; SCEP's admin route always names one
# ([scep] challenge_lifetime_seconds).
CHALLENGE_LIFETIME = timedelta(hours=1)
SINGLE = Worker(0)  # a server of one process: its own listeners, and the background jobs


def build_apps(config: Config, worker: Worker = SINGLE) -> tuple[web.Application, web.Application]:
    limit = config.server.max_body_bytes
    https = web.Application(middlewares=[request_log, last_resort], client_max_size=limit)
    http = web.Application(middlewares=[request_log, last_resort], client_max_size=limit)
    in_flight = InFlight()
    for app in (https, http):
        app[CONFIG] = config
        app[IN_FLIGHT] = in_flight
    https[HTTP_APP] = http
    https[WORKER] = worker
    https.cleanup_ctx.append(core)
    add_https_routes(https)
    add_http_routes(http)
    mounted = mount_frontends(config, installed())
    for mount in by_prefix(mounted):
        (https if mount.listener == "https" else http).add_subapp(mount.prefix, mount.app)
    https[MOUNTED] = tuple(mounted)
    return https, http


async def core(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    worker = app[WORKER]
    primary = worker.primary  # the one worker that runs the background jobs
    clock = SystemClock()
    config.server.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    start_lock = _StartLock(config.server.data_dir)
    worker.report("waiting for the start lock (another process is starting)")
    await start_lock.acquire()
    try:
        worker.report("loading the CAs")
        cas = await asyncio.to_thread(
            load_or_create, config, passphrase=load_passphrase(config.ca), now=clock.now()
        )
        policies = load_policy_modules(config)
        exits = load_exit_modules(config)
        store = open_store(config.store_url, consumers=list(exits))
        worker.report("opening the store")
        await store.open()
    except BaseException:
        start_lock.release()
        raise
    try:
        metrics = Metrics()
        dispatcher = Dispatcher(store, exits)
        engine = Engine(
            EngineDeps(
                store=store,
                cas=cas,
                profiles=config.profiles,
                default_profile=config.policy.default_profile,
                policies=policies,
                clock=clock,
                observer=metrics,
                # Other workers' events reach worker 0's dispatcher by its polling.
                notify=dispatcher.notify if primary else lambda: None,
            )
        )
        tokens = TokenService(store, clock)
        worker.report("reading the admin token")
        await tokens.bootstrap(config.server.data_dir)
        challenges = Challenges(store, clock.now, CHALLENGE_LIFETIME)
        anchors = [a for m in app[MOUNTED] for a in m.client_anchors]
        tls = ServerTLS(config, engine, client_anchors=anchors)
        worker.report("loading the TLS certificate")
        await tls.ensure()
        worker.report("loading the CRLs and OCSP signers")
        revocation = await Revocation.start(
            config, engine, passphrase=load_passphrase(config.ca), notify=dispatcher.notify
        )
        watched: list[WatchSource] = []
        worker.report("starting the front ends")
        context = FrontEndContext(
            config=config,
            data_dir=config.server.data_dir,
            engine=engine,
            store=store,
            cas=cas,
            clock=clock,
            metrics=metrics,
            challenges=challenges,
            crls=revocation.crls,
            reserve_key=engine.reserved_keys.add,
            watch=watched.append,
        )
        for mounted in app[MOUNTED]:
            if mounted.start is not None:
                await mounted.start(context)
        # After the front ends started, so that every key they hold is reserved: an approved
        # request for one of them fails rather than being signed.
        worker.report("finishing approved requests")
        if primary and (resumed := await engine.resume_approved()):
            log.info("finished approved requests left by a stop", extra={"count": resumed})
        monitor = Monitor(
            MonitorDeps(
                store=store,
                config=config.monitor,
                clock=clock,
                sources=[
                    ca_source(cas),
                    tls.watch_source(),
                    revocation.signers.watch_source(),
                    *watched,
                ],
                gauges=metrics.monitor,
                crls=revocation.crls.published,
                notify=dispatcher.notify,
            )
        )
        start_lock.release()  # everything a first start creates exists now
        for target in (app, app[HTTP_APP]):
            target[STORE], target[CAS], target[ENGINE] = store, cas, engine
            target[TOKENS], target[METRICS] = tokens, metrics
            target[CRLS], target[OCSP] = revocation.crls, revocation.ocsp
            target[CHALLENGES] = challenges
        app[TLS_KEY] = tls
        async with asyncio.TaskGroup() as tasks:
            # Every worker keeps its OCSP signer fresh and writes its tokens' last use; worker 0
            # alone re-issues the CRLs (the others serve them from the data directory), runs
            # the exit dispatcher, renews the TLS certificate and runs the expiry monitor.
            background = [tasks.create_task(job) for job in revocation.background(primary=primary)]
            background.append(tasks.create_task(tokens.record_last_used_forever()))
            if primary:
                background += [
                    tasks.create_task(dispatcher.run()),
                    tasks.create_task(tls.renew_forever()),
                    tasks.create_task(purge_expired_forever(store, clock)),
                ]
                if config.monitor.enabled:
                    background.append(tasks.create_task(monitor.run()))
            else:
                background.append(tasks.create_task(tls.reload_forever()))
            yield
            for task in background:
                task.cancel()
    finally:
        start_lock.release()
        # Requests may still be in flight (a TLS handshake under way when the listeners
        # closed becomes one only now): the store closes after the last.
        await app[IN_FLIGHT].drain(config.server.shutdown_timeout)
        await close_exit_modules(exits.values())
        await store.close()


class _StartLock:
    """A first start creates the CA, the admin token and the TLS and OCSP certificates in the
    data directory. Processes starting at once on one data directory (servers sharing it, or
    workers) take turns, so that each loads what the first created instead of creating, and
    writing over, its own: two roots and a TLS certificate chaining to neither, otherwise.
    Closing the descriptor releases the lock, also when the process dies."""

    def __init__(self, data_dir: Path) -> None:
        self._fd = os.open(data_dir / ".start.lock", os.O_RDWR | os.O_CREAT, 0o600)

    async def acquire(self) -> None:
        await asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


async def prepare(config: Config) -> None:
    """Everything a first start creates (CA, store, admin token, TLS certificate), without
    listening: run once before the workers start, so that they only ever load it."""
    https_app, _ = build_apps(config)
    runner = web.AppRunner(https_app, handle_signals=False)
    await runner.setup()
    await runner.cleanup()


async def serve(
    config: Config, worker: Worker | None = None, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Start both listeners, run until SIGTERM or SIGINT, then drain and stop.

    Alone, the server binds its listeners itself; as one of several workers
    (``server.workers``) it serves on the sockets the parent process bound for it.
    ``on_ready`` runs once both listen (``certforge serve`` records where it is)."""
    https_app, http_app = build_apps(config, worker or SINGLE)
    timeout = config.server.shutdown_timeout
    # A request head aiohttp refuses is logged through protocol_logger as one info line
    # (server.web.requestlog.RefusedHeads), on both listeners.
    https_runner = web.AppRunner(
        https_app,
        shutdown_timeout=timeout,
        handle_signals=False,
        access_log=None,
        logger=protocol_logger(),
    )
    http_runner = web.AppRunner(
        http_app,
        shutdown_timeout=timeout,
        handle_signals=False,
        access_log=None,
        logger=protocol_logger(),
    )
    await https_runner.setup()
    try:
        await http_runner.setup()
        s = config.server
        context = https_app[TLS_KEY].context
        sites: list[web.BaseSite]
        if worker is not None and worker.https is not None and worker.http is not None:
            # The sockets are bound but not listening (server/workers.py): listening starts
            # here, once this worker can answer.
            worker.report("starting the listeners")
            sites = [
                web.SockSite(https_runner, worker.https, ssl_context=context, backlog=1024),
                web.SockSite(http_runner, worker.http, backlog=1024),
            ]
        else:
            sites = [
                web.TCPSite(
                    https_runner,
                    s.https_listen.host,
                    s.https_listen.port,
                    ssl_context=context,
                    backlog=1024,
                ),
                web.TCPSite(http_runner, s.http_listen.host, s.http_listen.port, backlog=1024),
            ]
        for site in sites:
            await site.start()
        # Catch SIGTERM before telling the supervisor this worker is ready: one that arrives
        # after READY must drain, not kill (the supervisor counts a ready worker killed by
        # SIGTERM as a stop that was not clean); one before it ends a worker still starting.
        stop = _stop_signals()
        (worker or SINGLE).report(READY)
        log.info(
            "certforge is ready",
            extra={
                "https": str(s.https_listen),
                "http": str(s.http_listen),
                "worker": worker.index if worker else 0,
            },
        )
        if on_ready is not None:
            on_ready()
        await _wait_for_stop(stop, parent=worker.parent if worker else None)
        log.info("stopping: finishing requests in flight")
    finally:
        # Stop accepting on both listeners, let in-flight requests finish, then close the
        # core (store last) with the HTTPS app.
        await http_runner.cleanup()
        await https_runner.cleanup()


def _stop_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, from now on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _wait_for_stop(stop: asyncio.Event, *, parent: int | None = None) -> None:
    """Until ``stop`` is set; a worker also stops when its parent (``parent``, the pid the
    supervisor had when it started the worker) is gone, killed with SIGKILL say, rather than
    serve on alone. The pid is taken before the worker starts: a parent killed while the
    worker was still starting would otherwise go unnoticed, the worker asking only once
    adopted."""
    if parent is None:
        await stop.wait()
        return
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
