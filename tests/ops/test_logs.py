"""The JSON log format as `router serve` configures it: fields, batching, levels, capture."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from router.ops.logs import configure_logging

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class CountingBytes(io.BytesIO):
    """A byte stream that counts its `write` calls."""

    writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


class Out:
    """A text stream over a counting byte stream, as stdout is over its buffer."""

    def __init__(self) -> None:
        self.raw = CountingBytes()
        self.text = io.TextIOWrapper(self.raw, encoding="utf-8", write_through=True)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw.getvalue().splitlines()]


@pytest.fixture
def out() -> Iterator[Out]:
    """JSON logging configured onto a fresh stream; structlog and the root logger restored."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = Out()
    configure_logging("json", "info", stream.text)
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_line_has_its_fields_level_event_and_a_utc_timestamp(out: Out) -> None:
    structlog.get_logger("t").info("call.routed", route="assistant", cache_hit=True, trace=["a"])
    (line,) = out.lines()
    assert line["event"] == "call.routed"
    assert line["level"] == "info"
    assert line["route"] == "assistant"
    assert line["cache_hit"] is True
    assert line["trace"] == ["a"]
    assert TIMESTAMP.fullmatch(line["timestamp"]), line["timestamp"]


def test_outside_an_event_loop_each_line_is_written_at_once(out: Out) -> None:
    log = structlog.get_logger("t")
    log.info("one")
    assert [line["event"] for line in out.lines()] == ["one"]
    log.warning("two")
    assert [line["event"] for line in out.lines()] == ["one", "two"]
    assert out.lines()[1]["level"] == "warning"


async def test_lines_of_one_loop_iteration_go_out_together_at_its_end(out: Out) -> None:
    log = structlog.get_logger("t")
    for i in range(3):
        log.info("call.routed", n=i)
    assert out.raw.getvalue() == b""  # not yet: the iteration has not ended
    await asyncio.sleep(0)
    assert [line["n"] for line in out.lines()] == [0, 1, 2]
    assert out.raw.writes == 1


async def test_an_error_is_written_at_once_after_what_was_pending(out: Out) -> None:
    log = structlog.get_logger("t")
    log.info("first")
    log.error("broken", reason="x")
    assert [line["event"] for line in out.lines()] == ["first", "broken"]
    assert out.lines()[1]["level"] == "error"


def test_bound_values_merge_and_call_values_win(out: Out) -> None:
    log = structlog.get_logger("t").bind(org_id="o1", route="bound")
    log.info("e", route="call")
    (line,) = out.lines()
    assert line["org_id"] == "o1"
    assert line["route"] == "call"
    # Binding never leaks into another logger's lines.
    structlog.get_logger("t").info("f")
    assert "org_id" not in out.lines()[1]


def test_levels_below_the_configured_one_are_dropped(out: Out) -> None:
    log = structlog.get_logger("t")
    log.debug("hidden")
    log.info("shown %s", "here")
    assert [line["event"] for line in out.lines()] == ["shown here"]


def test_an_exception_is_rendered_and_secrets_are_redacted(out: Out) -> None:
    log = structlog.get_logger("t")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("webhook.failed", auth_token="0123456789abcdef")
    (line,) = out.lines()
    assert line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]
    assert line["auth_token"] == "[redacted]"
    assert "0123456789abcdef" not in out.raw.getvalue().decode()


def test_a_value_with_bytes_that_were_not_utf8_is_still_logged(out: Out) -> None:
    """aiohttp keeps a request's undecodable bytes as lone surrogates, which orjson refuses:
    the line is written anyway, those characters as JSON escapes (never a lost event, nor
    a failed request), the line's other fields as usual."""
    structlog.get_logger("t").warning("webhook.rejected", path="/\udcff/twilio", reason="x")
    (line,) = out.lines()
    assert line["path"] == "/\udcff/twilio"
    assert (line["event"], line["reason"], line["level"]) == ("webhook.rejected", "x", "warning")
    assert b"\\udcff" in out.raw.getvalue()


def test_a_text_stream_logs_such_a_value_too() -> None:
    """Where the stream has no byte buffer the stock JSON renderer runs: the same escape."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    try:
        structlog.get_logger("t").info("webhook.unknown_number", to="\udcff")
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
    assert json.loads(stream.getvalue())["to"] == "\udcff"


def test_capture_logs_still_sees_events_under_the_router_configuration(out: Out) -> None:
    with capture_logs() as captured:
        structlog.get_logger("t").info("call.routed", route="assistant")
    assert captured == [{"event": "call.routed", "route": "assistant", "log_level": "info"}]
