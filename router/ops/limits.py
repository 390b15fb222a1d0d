"""Process limits: the one the worker raises for itself at start, and a quiet log when
it runs out of file descriptors all the same."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import resource
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import structlog

log = structlog.get_logger("router.serve")


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force.

    Every call in flight holds descriptors (the provider's connection, the one to the
    customer's server), and the common soft default of 1024 would cap a worker far below
    what it can carry. The hard limit is the operator's (ulimit -Hn, systemd's
    LimitNOFILE, the container runtime); an unprivileged process may go up to it, no
    further. Forked workers inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        # e.g. a sandbox that refuses the call: run on the limit we were given.
        return soft
    return hard


# One `server.out_of_descriptors` line per this many seconds, however many accepts fail.
OUT_OF_DESCRIPTORS_LOG_INTERVAL_SECONDS: Final = 10.0
_OUT_OF_DESCRIPTORS: Final = frozenset({errno.EMFILE, errno.ENFILE})


class AcceptErrorLog:
    """An event loop's exception handler that turns "out of file descriptors" errors into
    one `server.out_of_descriptors` line per interval, with how many it held back.

    asyncio's loop reports every accept that fails for want of a descriptor, up to the
    listen backlog each time it retries (once a second): a worker under a connection flood
    would write thousands of lines a second, and fill disks, when it most needs quiet.
    It keeps retrying on its own; uvloop (libuv) drops such connections silently. Every
    other error goes to the handler in place before, or to the loop's default one.
    """

    def __init__(
        self,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
        interval_seconds: float = OUT_OF_DESCRIPTORS_LOG_INTERVAL_SECONDS,
    ) -> None:
        self.previous = previous
        self.interval_seconds = interval_seconds
        self.next_line_at = -math.inf
        self.held_back = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not isinstance(exc, OSError) or exc.errno not in _OUT_OF_DESCRIPTORS:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = loop.time()
        if now < self.next_line_at:
            self.held_back += 1
            return
        log.error(
            "server.out_of_descriptors",
            errno=errno.errorcode[exc.errno],
            open_files_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            held_back=self.held_back,
            message=context.get("message"),
        )
        self.next_line_at = now + self.interval_seconds
        self.held_back = 0


@contextlib.asynccontextmanager
async def quiet_accept_errors() -> AsyncIterator[None]:
    """`AcceptErrorLog` as the running loop's exception handler while the app runs."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(AcceptErrorLog(previous))
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
