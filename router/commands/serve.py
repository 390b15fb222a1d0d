"""`router serve`: the worker in one process, or N processes on gunicorn's pre-fork server.

One process runs the app with aiohttp's `web.run_app`. With `--workers N`, gunicorn's
arbiter binds the port, forks N workers that run aiohttp's gunicorn worker class (the
deployment aiohttp documents), replaces a worker that dies, and on SIGTERM closes the
port and lets every worker finish its in-flight webhooks. Both run on uvloop where it
is installed, on asyncio's own event loop elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import math
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.worker import GunicornWebWorker
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.config import Config
from gunicorn.errors import HaltServer
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.base import Worker

from router.ops.limits import quiet_accept_errors
from router.settings import Settings

log = structlog.get_logger("router.serve")

# Connections the kernel queues for accept: a burst of calls opening connections at once
# (a carrier's retries, a load balancer's pool refilling) beyond it waits on SYN
# retransmissions, a second or more, out of the provider's budget. Linux caps it at
# net.core.somaxconn (4096 since 5.4); docs/runbook.md says when to raise that.
BACKLOG: Final = 4096
# How long aiohttp reads on (and drops) a body its handler answered without reading whole,
# e.g. one that came too slowly (408): the connection then closes. aiohttp's 10 s would let
# a client that trickles bytes keep it that much longer.
LINGERING_SECONDS: Final = 1.0
# After the in-flight webhooks, background forwards get 2 s (router/app.py) and the store
# closes: the time a worker may still need once its handlers are done.
CLEANUP_SECONDS: Final = 5
# router.ops.metrics.MULTIPROCESS_ENV, spelled out: importing router.ops.metrics imports
# prometheus-client, which picks single-process mode for good if the variable is not set yet.
METRICS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:  # a platform uvloop does not support (Windows, PyPy)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def worker_class() -> str:
    """aiohttp's gunicorn worker, on uvloop where it is installed."""
    if importlib.util.find_spec("uvloop") is not None:
        return "aiohttp.worker.GunicornUVLoopWebWorker"
    return "aiohttp.worker.GunicornWebWorker"


def shutdown_seconds(settings: Settings) -> float:
    """How long in-flight requests may run after SIGTERM: a webhook that arrived just
    before it still gets its whole budget (and 2 s to render and log its answer)."""
    budget = max(
        settings.twilio_budget_seconds,
        settings.telnyx_budget_seconds,
        settings.vonage_budget_seconds,
        settings.plivo_budget_seconds,
        settings.sip_budget_seconds,
    )
    return budget + 2


def announce(settings: Settings, host: str, port: int, workers: int) -> None:
    """The one line that says where router listens, with how many workers, on which store."""
    where = f"[{host}]" if ":" in host else host
    if settings.redis_url:
        from router.store.redis_store import redact_url

        store = {"store": "redis", "redis_url": redact_url(settings.redis_url)}
    else:
        store = {"store": "embedded", "data_dir": str(settings.data_dir.resolve())}
    log.info("router.listening", url=f"http://{where}:{port}", workers=workers, **store)


async def _freeze_heap(_: web.Application) -> None:
    """What startup built (modules, models, settings, the app) lives as long as the
    worker: moved out of the garbage collector's reach, so a full collection walks only
    what calls create and never stalls a webhook for the whole heap."""
    gc.freeze()


async def _quiet_accept_errors(_: web.Application) -> AsyncIterator[None]:
    async with quiet_accept_errors():
        yield


def _app(settings: Settings) -> web.Application:
    from router.app import create_app

    app = create_app(settings)
    app.on_startup.append(_freeze_heap)
    app.cleanup_ctx.append(_quiet_accept_errors)
    return app


def serve_one(settings: Settings, host: str, port: int) -> None:
    """One process: serve until SIGTERM or SIGINT, then finish in-flight requests."""
    # Bound here, before the store starts, so a port in use fails at once and the
    # announcement is true when it is logged.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    announce(settings, host, port, workers=1)
    web.run_app(
        _app(settings),
        sock=sock,
        loop=new_event_loop(),
        access_log=None,
        print=None,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        lingering_time=LINGERING_SECONDS,
        shutdown_timeout=shutdown_seconds(settings),
        handle_signals=True,
    )


def serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """N processes on gunicorn's pre-fork server; returns (through SystemExit) when it stops."""
    created = not os.environ.get(METRICS_DIR_ENV)
    metrics_dir = _prepare_metrics_dir()
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    shutdown = shutdown_seconds(settings)

    def when_ready(_: Arbiter) -> None:
        announce(settings, host, port, workers)

    def on_exit(_: Arbiter) -> None:
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    options: dict[str, Any] = {
        "bind": [bind],
        "workers": workers,
        "worker_class": worker_class(),
        "backlog": BACKLOG,
        # gunicorn kills a worker still running this long after SIGTERM.
        "graceful_timeout": math.ceil(shutdown) + CLEANUP_SECONDS,
        "proc_name": "router",
        "logger_class": "router.commands.serve.JsonLogger",
        "loglevel": "warning",
        # gunicornc's control socket: router is driven by signals only.
        "control_socket_disable": True,
        "when_ready": when_ready,
        "post_worker_init": _post_worker_init,
        "child_exit": _child_exit,
        "on_exit": on_exit,
    }

    async def runner() -> web.AppRunner:
        # Called in each worker after the fork: nothing of the app lives in the arbiter.
        return web.AppRunner(
            _app(settings),
            access_log=None,
            keepalive_timeout=settings.keepalive_timeout_seconds,
            lingering_time=LINGERING_SECONDS,
            shutdown_timeout=shutdown,
            handle_signals=False,  # the gunicorn worker handles them
        )

    try:
        PreforkServer(runner, options).run()
    except HaltServer as exc:
        # gunicorn halts when a worker fails to boot (e.g. Redis unreachable); when another
        # one fails too while it stops them, its HaltServer escapes the halt: exit the same.
        raise SystemExit(exc.exit_status) from None


def _prepare_metrics_dir() -> str:
    """prometheus-client's multiprocess directory, empty, announced through the
    environment before any worker imports prometheus-client."""
    path = os.environ.get(METRICS_DIR_ENV) or tempfile.mkdtemp(prefix="router-metrics-")
    os.environ[METRICS_DIR_ENV] = path
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    return path


def _post_worker_init(worker: Worker) -> None:
    # aiohttp's worker notices SIGTERM only at its next once-a-second check; its SIGINT and
    # SIGQUIT handler (the same graceful stop) acts at once, so the port closes at once.
    if isinstance(worker, GunicornWebWorker):
        worker.loop.add_signal_handler(signal.SIGTERM, worker.handle_quit, signal.SIGTERM, None)


def _child_exit(server: Arbiter, worker: Worker) -> None:
    # prometheus-client's documented gunicorn hook: the dead worker's live gauges go.
    # Imported only now: it must not be imported before `_prepare_metrics_dir` ran.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    # A worker the arbiter still wants died: it is not stopping (it closes its listeners
    # first) nor retiring workers (a HUP starts the new ones before it stops the old).
    # gunicorn has just logged how the worker ended.
    if server.LISTENERS and len(server.WORKERS) < server.num_workers:
        log.error("worker.died", pid=worker.pid)


class PreforkServer(BaseApplication):
    """gunicorn's custom application: its settings from code, the app from `load`."""

    def __init__(
        self, load: Callable[[], Awaitable[web.AppRunner]], options: dict[str, Any]
    ) -> None:
        self.options = options
        self.loader = load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    # gunicorn's stubs know WSGI and ASGI apps; aiohttp's worker awaits this factory in
    # each worker instead and serves the runner it returns.
    def load(self) -> Callable[[], Awaitable[web.AppRunner]]:  # type: ignore[override]
        return self.loader


class JsonLogger(GunicornLogger):
    """gunicorn's own lines (a worker killed, timed out or failing to boot) through the
    root logger, so they come out in router's log format on router's stream."""

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
