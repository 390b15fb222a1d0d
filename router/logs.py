"""structlog set-up: one JSON object per line on stdout (pretty on a TTY), ISO timestamps."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

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
    return orjson.dumps(value, default=default or str).decode()


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once, at the edge (CLI). Commands that print results log to stderr."""
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        # One write per line (PrintLogger makes two when stdout is unbuffered, as in the
        # container image): `call.routed` is logged on every webhook.
        logger_factory=structlog.WriteLoggerFactory(out),
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
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
