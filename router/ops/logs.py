"""structlog set-up: one JSON object per line on stdout (pretty on a TTY), ISO timestamps."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO, Final, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Defence in depth: a field whose name says "secret" never reaches a log line, even by mistake.
_SECRET_NAME = re.compile(
    r"(secret|password|token|authorization|api_?key|signature|credential_value)", re.IGNORECASE
)
_ALLOWED = frozenset({"signature_valid", "token_kind"})


# The secret-looking names among an event's field names, by the tuple of those names: an
# event logs the same fields each time, so the pattern runs once per shape of event, not
# once per field of every line (`call.routed` is logged on every webhook).
_secret_fields: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHAPES_KEPT = 1024  # bounded: a shape beyond it is simply checked field by field


class Timestamper:
    """`timestamp`: ISO 8601 in UTC, always with six digits of microseconds (structlog's
    `TimeStamper(fmt="iso")` drops them when they are zero), e.g.
    `2026-11-23T02:08:33.042737Z`.

    The date and time to the second are formatted once per second and kept: a busy
    worker logs many lines in each second, and formatting the whole instant for each
    (`datetime.isoformat`) was the dearest step of the `call.routed` line every call logs."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        micros = int((now - second) * 1_000_000)
        event["timestamp"] = f"{self._prefix}.{micros:06d}Z"
        return event


def redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Replace values of secret-looking fields with `[redacted]`."""
    names = tuple(event)
    secret = _secret_fields.get(names)
    if secret is None:
        secret = tuple(k for k in names if k not in _ALLOWED and _SECRET_NAME.search(k))
        if len(_secret_fields) < _SHAPES_KEPT:
            _secret_fields[names] = secret
    for key in secret:
        if event[key] is not None:
            event[key] = "[redacted]"
    return event


def _json_bytes(value: Any, default: Callable[[Any], Any]) -> bytes:
    """`value` as compact JSON. orjson refuses a string with a lone surrogate (bytes of
    a request that are not UTF-8, kept by aiohttp as surrogates): such a line is still
    written, those characters as `\\udcff` escapes, never the request lost to its log."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:
        return json.dumps(value, default=default, separators=(",", ":")).encode()


def _json_text(value: Any, default: Callable[[Any], Any]) -> str:
    return _json_bytes(value, default).decode()


# How long a line may wait for others to share its write, and how much may wait: under
# load one write carries many calls' `call.routed` lines; a write per loop iteration was
# a system call for every webhook or two.
FLUSH_SECONDS: Final = 0.05
FLUSH_BYTES: Final = 64 * 1024


class LineLogger:
    """A structlog logger writing JSON lines to a byte stream (structlog's documented way
    to choose where lines go: any object with the level methods).

    Inside a running event loop, lines are gathered and written together at most
    `FLUSH_SECONDS` after the first of them, or as soon as `FLUSH_BYTES` wait. Lines at
    `error` and above are written at once (with what waited before them), outside a loop
    every line is, and whatever waits is written when the process exits. When stdout is
    closed or gone (a pipe whose reader left), lines are dropped rather than failing the
    request that logged them.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        self._pending.append(message)
        self._pending_bytes += len(message)
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()
            return
        timer_loop = self._timer_loop
        if self._timer is not None and timer_loop is not None and timer_loop.is_running():
            return  # the flush already set writes this line too, without asking for the loop
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No loop (any more): written now, also if a loop closed before its flush ran.
            self.flush()
            return
        if self._timer is None or self._timer_loop is not loop:
            # A timer on another loop (one that ended, in tests) would never fire here.
            self._timer = loop.call_later(FLUSH_SECONDS, self.flush)
            self._timer_loop = loop

    def urgent(self, message: bytes) -> None:
        self.msg(message)
        self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        lines, self._pending, self._pending_bytes = self._pending, [], 0
        lines.append(b"")
        try:
            self._out.write(b"\n".join(lines))
            self._out.flush()
        except (OSError, ValueError):
            pass  # nowhere left to log to; the call is answered all the same

    log = debug = info = warn = warning = msg
    err = error = critical = exception = fatal = urgent


class LineLoggerFactory:
    """`logger_factory` for structlog: one `LineLogger` on `out`, shared by every logger."""

    def __init__(self, out: BinaryIO) -> None:
        self._logger = LineLogger(out)

    def __call__(self, *_: Any) -> LineLogger:
        return self._logger


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once, at the edge (CLI). Commands that print results log to stderr."""
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    binary = getattr(out, "buffer", None)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        Timestamper(),
        redact_secrets,
    ]
    text_tail: list[Processor]
    if use_console:
        # The console renderer formats exceptions itself (structlog warns if they come formatted).
        text_tail = [structlog.dev.ConsoleRenderer()]
    else:
        text_tail = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_json_text),
        ]
    logger_factory: Callable[..., Any]
    if use_console or binary is None:
        processors = [*shared, *text_tail]
        logger_factory = structlog.WriteLoggerFactory(out)
    else:
        # JSON lines in bytes straight to stdout's buffer, each written and flushed
        # (structlog's orjson set-up); text written before goes out first.
        out.flush()
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_json_bytes),
        ]
        logger_factory = LineLoggerFactory(binary)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )

    # aiohttp and redis log through the standard library: same format, same stream.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *text_tail],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
