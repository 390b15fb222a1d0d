"""`router serve --workers N`: N worker processes answering on one listening socket.

The parent binds the socket once and forks the workers, which inherit it (the kernel
spreads connections between them). The parent only supervises: it forwards SIGTERM and
SIGINT to every worker and waits for them to finish their in-flight webhooks, and it
replaces a worker that died unexpectedly (with a growing delay, so a worker that cannot
start does not spin). Metrics are aggregated across workers through
`PROMETHEUS_MULTIPROC_DIR`, which must be set before prometheus-client is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

RESPAWN_DELAY_MAX_SECONDS: Final = 30.0
# A worker that lived this long was healthy: the next respawn starts from no delay.
HEALTHY_LIFETIME_SECONDS: Final = 60.0
# router.ops.metrics.MULTIPROCESS_ENV, spelled out: importing router.ops.metrics imports
# prometheus-client, which picks single-process mode for good if the variable is not set yet.
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker inherits."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def prepare_metrics_dir() -> str:
    """A fresh multiprocess metrics directory, announced through the environment."""
    path = os.environ.get(MULTIPROCESS_ENV) or tempfile.mkdtemp(prefix="router-metrics-")
    os.environ[MULTIPROCESS_ENV] = path
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    return path


class Supervisor:
    """Forks and watches the workers; `run_worker(sock)` serves until SIGTERM, then returns."""

    def __init__(
        self, workers: int, sock: socket.socket, run_worker: Callable[[socket.socket], None]
    ):
        self.workers = workers
        self.sock = sock
        self.run_worker = run_worker
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self._delay = 0.0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                self.run_worker(self.sock)
            except BaseException:  # a worker reports and exits; it never returns to this loop
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        self.children[pid] = time.monotonic()

    def _stop(self, signum: int, _: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        """Serve until told to stop; 0 when every worker stopped cleanly."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.workers):
            self._spawn()
        status = 0
        while self.children:
            try:
                pid, code = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover  # PEP 475 retries, kept for clarity
                continue
            started = self.children.pop(pid, time.monotonic())
            self._mark_dead(pid)
            if self.stopping:
                # A worker still starting (no handler of its own yet) dies of the SIGTERM
                # we forwarded: it was told to stop and did, which is a clean stop too.
                clean = os.waitstatus_to_exitcode(code) in (0, -signal.SIGTERM)
                status = status or (0 if clean else 1)
                continue
            lived = time.monotonic() - started
            self._delay = (
                0.0
                if lived > HEALTHY_LIFETIME_SECONDS
                else min(max(self._delay * 2, 0.5), RESPAWN_DELAY_MAX_SECONDS)
            )
            event = {
                "event": "worker.died",
                "pid": pid,
                "exit": os.waitstatus_to_exitcode(code),
                "respawn_in_seconds": self._delay,
            }
            print(json.dumps(event), flush=True)
            time.sleep(self._delay)
            if not self.stopping:
                self._spawn()
        self.sock.close()
        return status

    @staticmethod
    def _mark_dead(pid: int) -> None:
        from prometheus_client import multiprocess

        if os.environ.get(MULTIPROCESS_ENV):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
