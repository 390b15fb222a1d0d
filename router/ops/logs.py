"""structlog set-up: one JSON object per line on stdout (pretty on a TTY), ISO timestamps."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import sys
import time
from typing import Any, BinaryIO, Final, TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

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


def _orjson_dumps(value: Any, default: Any = None) -> str:
    return _json_bytes(value, default or str).decode()


def _json_default(value: Any) -> Any:
    """What structlog's JSON renderer makes of a value JSON has no type for."""
    structlog_form = getattr(value, "__structlog__", None)
    return structlog_form() if callable(structlog_form) else repr(value)


# The ISO form of the current second, kept: `call.routed` is logged on every webhook, and
# formatting a datetime costs more than the rest of the timestamp.
_second: tuple[int, str] = (-1, "")


def add_timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """`timestamp`: ISO 8601 in UTC with microseconds, e.g. `2026-11-23T02:08:33.042737Z`."""
    global _second  # one cache per process, as the clock is
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    event["timestamp"] = f"{_second[1]}.{nanos // 1000:06d}Z"
    return event


# structlog's level names for its method names (`add_log_level`'s mapping).
_LEVEL_OF_METHOD: Final = {"warn": "warning", "exception": "error", "fatal": "critical"}


def add_level_and_timestamp(logger: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
    """`level` (as structlog's `add_log_level` names it) and `timestamp`, in one step."""
    event["level"] = _LEVEL_OF_METHOD.get(method_name, method_name)
    return add_timestamp(logger, method_name, event)


def format_exc_info(logger: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
    """structlog's `format_exc_info`, looked for only when the event carries `exc_info`."""
    if "exc_info" in event:
        return structlog.processors.format_exc_info(logger, method_name, event)
    return event


def render_json_line(logger: WrappedLogger, method_name: str, event: EventDict) -> bytes:
    """The JSON chain's steps after the context, in one call (`call.routed` is logged on
    every webhook): `level` (as structlog's `add_log_level` names it) and `timestamp`,
    secret-looking fields redacted, `exc_info` formatted, then one line of JSON in bytes
    for the byte stream (structlog's `JSONRenderer` with orjson)."""
    event["level"] = _LEVEL_OF_METHOD.get(method_name, method_name)
    add_timestamp(logger, method_name, event)
    redact_secrets(logger, method_name, event)
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(logger, method_name, event)
    return _json_bytes(event, _json_default)


def _json_bytes(value: Any, default: Any) -> bytes:
    """`value` as compact JSON. orjson refuses a string with a lone surrogate (bytes of
    a request that are not UTF-8, kept by aiohttp as surrogates): such a line is still
    written, those characters as `\\udcff` escapes, never the request lost to its log."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:
        return json.dumps(value, default=default, separators=(",", ":")).encode()


class LineWriter:
    """A structlog logger that writes each rendered line to a binary stream.

    Inside a running event loop the lines of one loop iteration go out in one `write` at
    its end (they are a few KiB at most: one line per call answered in that iteration);
    elsewhere, and for anything logged at `error` or above, each line is written at once.
    A line is written within one loop iteration of being logged, and on exit.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending: list[bytes] = []
        self._scheduled = False
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        self._pending.append(message)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        lines.append(b"")
        try:
            self._out.write(b"\n".join(lines))
            self._out.flush()
        except (OSError, ValueError):
            pass  # stdout closed or gone (a pipe whose reader left): nowhere to log to

    def urgent(self, message: bytes) -> None:
        self.msg(message)
        self.flush()

    log = debug = info = msg
    warn = warning = msg
    err = error = critical = exception = fatal = urgent


class LineWriterFactory:
    """`logger_factory` for structlog: one LineWriter per stream, shared by every logger."""

    def __init__(self, out: BinaryIO) -> None:
        self._writer = LineWriter(out)

    def __call__(self, *_: Any) -> LineWriter:
        return self._writer


# structlog's level names by number, highest first (`warn` and `fatal` are aliases).
_LEVEL_NAMES: Final = (
    (logging.CRITICAL, ("critical", "fatal")),
    (logging.ERROR, ("error",)),
    (logging.WARNING, ("warning", "warn")),
    (logging.INFO, ("info",)),
    (logging.DEBUG, ("debug",)),
)


def _direct(name: str) -> Any:
    # `self` and `event` positional-only: the call's keywords (two dozen for `call.routed`)
    # then go straight into `kw`, not compared against each parameter name first.
    def method(self: Any, event: str, /, *args: Any, **kw: Any) -> Any:
        if args:
            event = event % args
        # structlog's `_process_event`, inline and without its copy when nothing is bound:
        # the event is built in the keyword dict this call made (a new one per call).
        event_dict: Any = {**self._context, **kw} if self._context else kw
        event_dict["event"] = event
        try:
            for processor in self._processors:
                event_dict = processor(self._logger, name, event_dict)
        except structlog.DropEvent:
            return None  # a processor dropped it (as `capture_logs` does): nothing to write
        if isinstance(event_dict, str | bytes | bytearray):
            return getattr(self._logger, name)(event_dict)
        if isinstance(event_dict, tuple):
            args_out, kw_out = event_dict
            return getattr(self._logger, name)(*args_out, **kw_out)
        if isinstance(event_dict, dict):
            return getattr(self._logger, name)(**event_dict)
        raise ValueError("the last processor returned neither a str, bytes, tuple nor dict")

    method.__name__ = name
    return method


def bound_logger_class(min_level: int) -> type[Any]:
    """structlog's filtering bound logger for `min_level`, two calls shallower per line.

    A wrapper class of our own, as structlog suggests for hot paths: each enabled level
    runs the processors itself instead of through `_proxy_to_logger` and
    `_process_event`, each keyword passed on once rather than twice. `call.routed` has two
    dozen fields and is logged on every webhook. Levels below `min_level` stay structlog's
    no-ops.
    """
    base = structlog.make_filtering_bound_logger(min_level)
    attrs: dict[str, Any] = {}
    for level, names in _LEVEL_NAMES:
        if level >= min_level:
            method = _direct(names[0])
            for name in names:
                attrs[name] = method
    return type("RouterBoundLogger", (base,), attrs)


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once, at the edge (CLI). Commands that print results log to stderr."""
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    text_renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_timestamp,
        redact_secrets,
    ]
    binary = getattr(out, "buffer", None)
    logger_factory: Any
    processors: list[Any] = [structlog.contextvars.merge_contextvars]
    if use_console or binary is None:
        # One write per line (PrintLogger makes two when stdout is unbuffered).
        processors += [add_level_and_timestamp, redact_secrets, format_exc_info, text_renderer]
        logger_factory = structlog.WriteLoggerFactory(out)
    else:
        # JSON lines straight to the byte stream: no decode, re-encode and flush per line.
        out.flush()
        processors.append(render_json_line)
        logger_factory = LineWriterFactory(binary)
    structlog.configure(
        processors=processors,
        wrapper_class=bound_logger_class(
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
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                text_renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
