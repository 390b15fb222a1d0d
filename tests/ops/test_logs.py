"""The log format as `router serve` configures it: fields, levels, redaction, capture."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import pytest
import structlog
from structlog.testing import capture_logs

from router.ops.logs import FLUSH_BYTES, FLUSH_SECONDS, Timestamper, configure_logging

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class Out:
    """A text stream over a byte stream, as stdout is over its buffer."""

    def __init__(self) -> None:
        self.raw = io.BytesIO()
        self.text = io.TextIOWrapper(self.raw, encoding="utf-8", write_through=True)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw.getvalue().splitlines()]


@contextmanager
def logging_to(fmt: str, stream: TextIO) -> Iterator[None]:
    """Logging configured onto `stream`; structlog and the root logger restored after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(fmt, "info", stream)
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def out() -> Iterator[Out]:
    """JSON logging configured onto a fresh stream."""
    stream = Out()
    with logging_to("json", stream.text):
        yield stream


def test_a_line_has_its_fields_level_event_and_a_utc_timestamp(out: Out) -> None:
    structlog.get_logger("t").info("call.routed", route="assistant", cache_hit=True, trace=["a"])
    (line,) = out.lines()
    assert line["event"] == "call.routed"
    assert line["level"] == "info"
    assert line["route"] == "assistant"
    assert line["cache_hit"] is True
    assert line["trace"] == ["a"]
    assert TIMESTAMP.fullmatch(line["timestamp"]), line["timestamp"]
    logged_at = datetime.fromisoformat(line["timestamp"])
    assert abs(datetime.now(UTC) - logged_at) < timedelta(seconds=5)


def test_each_line_is_written_as_it_is_logged(out: Out) -> None:
    log = structlog.get_logger("t")
    log.info("one")
    assert [line["event"] for line in out.lines()] == ["one"]
    log.warning("two")
    assert [line["event"] for line in out.lines()] == ["one", "two"]
    assert out.lines()[1]["level"] == "warning"


async def test_inside_an_event_loop_lines_go_out_together_within_the_flush_interval(
    out: Out,
) -> None:
    """Lines logged inside a loop wait to share one write, never longer than the flush
    interval; an error is written at once, with what came before it."""
    log = structlog.get_logger("t")
    for i in range(3):
        log.info("call.routed", n=i)
    await asyncio.sleep(0)
    assert out.lines() == []
    await asyncio.sleep(FLUSH_SECONDS * 2)
    assert [line["n"] for line in out.lines()] == [0, 1, 2]
    log.info("call.routed", n=3)
    log.error("broken", reason="x")
    assert [line["event"] for line in out.lines()[-2:]] == ["call.routed", "broken"]


async def test_a_line_from_another_thread_goes_out_with_the_pending_flush(out: Out) -> None:
    """A thread without a loop (an executor's) logs while a flush is set on the running
    loop: its line waits for that flush rather than forcing a write of its own."""
    log = structlog.get_logger("t")
    log.info("call.routed", n=0)
    await asyncio.to_thread(log.info, "call.routed", n=1)
    assert out.lines() == []
    await asyncio.sleep(FLUSH_SECONDS * 2)
    assert [line["n"] for line in out.lines()] == [0, 1]


async def test_lines_are_written_once_enough_of_them_wait(out: Out) -> None:
    """However short the interval so far, no more than FLUSH_BYTES wait in memory."""
    log = structlog.get_logger("t")
    padding = "x" * 1000
    count = FLUSH_BYTES // 1000 + 1
    for i in range(count):
        log.info("call.routed", n=i, padding=padding)
    written = out.lines()
    assert 0 < len(written) <= count
    assert [line["n"] for line in written] == list(range(len(written)))


def test_a_flush_left_on_an_ended_loop_does_not_hold_the_next_loops_lines(out: Out) -> None:
    """A timer set on a loop that ended before it fired (one test's loop, then the next's)
    is not waited on: the new loop gets its own."""
    log = structlog.get_logger("t")

    async def log_one(n: int, wait: float) -> None:
        log.info("call.routed", n=n)
        await asyncio.sleep(wait)

    asyncio.run(log_one(0, 0))
    assert out.lines() == []  # its loop ended first
    asyncio.run(log_one(1, FLUSH_SECONDS * 2))
    assert [line["n"] for line in out.lines()] == [0, 1]


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
    """Where the stream has no byte buffer, lines are written as text: the same escape."""
    stream = io.StringIO()
    with logging_to("json", stream):
        structlog.get_logger("t").info("webhook.unknown_number", to="\udcff")
    assert json.loads(stream.getvalue())["to"] == "\udcff"


def test_capture_logs_still_sees_events_under_the_router_configuration(out: Out) -> None:
    with capture_logs() as captured:
        structlog.get_logger("t").info("call.routed", route="assistant")
    assert captured == [{"event": "call.routed", "route": "assistant", "log_level": "info"}]


def test_standard_library_records_are_rendered_the_same_way(out: Out) -> None:
    """aiohttp and redis-py log through `logging`: a warning of theirs is a JSON line with
    `logger`, `level` and `timestamp`; below `warning` is dropped."""
    logging.getLogger("aiohttp.server").warning("Error handling request %s", "x")
    logging.getLogger("redis").info("not shown")
    logging.getLogger("aiohttp.access").warning("oops")
    first, second = out.lines()
    assert first["event"] == "Error handling request x"
    assert (first["logger"], first["level"]) == ("aiohttp.server", "warning")
    assert TIMESTAMP.fullmatch(first["timestamp"]), first["timestamp"]
    assert second["logger"] == "aiohttp.access"


def test_an_exception_from_the_standard_library_is_rendered(out: Out) -> None:
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (line,) = out.lines()
    assert line["level"] == "error"
    assert "ValueError: bad frame" in line["exception"]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_console_format() -> None:
    stream = Terminal()
    with logging_to("auto", stream):
        structlog.get_logger("t").info("call.routed", route="assistant", api_key="k-123")
    text = stream.getvalue()
    assert "call.routed" in text and "assistant" in text
    assert "k-123" not in text and "[redacted]" in text
    assert not text.startswith("{")  # not a JSON line


def test_a_stdout_whose_reader_left_never_fails_the_caller() -> None:
    """stdout a pipe whose reader has gone (`router serve | head`): lines are dropped,
    the code that logged goes on (a webhook is still answered)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        with logging_to("json", stream):
            for _ in range(3):
                structlog.get_logger("t").info("call.routed", route="assistant")
                structlog.get_logger("t").error("webhook.failed")
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def test_timestamps_are_the_instant_across_second_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-second prefix is redone when the second changes, and the microseconds are
    the instant's: each stamp reads back as the time it was taken."""
    stamp = Timestamper()
    instants = [1_796_601_599.999999, 1_796_601_600.0, 1_796_601_600.000001, 1_796_601_600.5]
    for instant in instants:
        monkeypatch.setattr("router.ops.logs.time.time", lambda instant=instant: instant)
        line = stamp(None, "info", {})["timestamp"]
        assert TIMESTAMP.fullmatch(line), line
        expected = datetime.fromtimestamp(instant, UTC)
        assert abs(datetime.fromisoformat(line) - expected) <= timedelta(microseconds=1), line
