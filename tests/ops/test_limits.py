"""The worker raises its own open-files limit at start, as far as the hard limit lets it,
and reports running out of descriptors quietly."""

from __future__ import annotations

import asyncio
import errno
import resource
import subprocess
import sys
from typing import Any

import pytest
from structlog.testing import capture_logs

from router.ops.limits import AcceptErrorLog, quiet_accept_errors

# Run in a child: the test process's own limits stay as they were.
LOWERED_THEN_RAISED = """
import resource
from router.ops.limits import raise_open_files_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
print(raise_open_files_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    """A soft limit of 256 under a higher hard limit ends at the hard limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    out = subprocess.run(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, "-c", LOWERED_THEN_RAISED], capture_output=True, text=True, check=True
    ).stdout.split()
    reported, soft, after_hard = (int(x) for x in out)
    assert soft == after_hard == reported
    assert soft > 256


def out_of_files() -> dict[str, Any]:
    """The context asyncio's loop reports a failed accept with."""
    return {
        "message": "socket.accept() out of system resource",
        "exception": OSError(errno.EMFILE, "Too many open files"),
    }


async def test_failed_accepts_are_one_line_per_interval_with_a_count_of_the_rest() -> None:
    """Out of descriptors, 1,000 failed accepts make one `server.out_of_descriptors`
    line; the first after the interval says how many were held back."""
    loop = asyncio.get_running_loop()
    handler = AcceptErrorLog(None, interval_seconds=0.2)
    with capture_logs() as logs:
        for _ in range(1000):
            handler(loop, out_of_files())
        await asyncio.sleep(0.25)
        handler(loop, out_of_files())
    lines = [line for line in logs if line["event"] == "server.out_of_descriptors"]
    assert [line["held_back"] for line in lines] == [0, 999]
    assert lines[0]["errno"] == "EMFILE"
    assert lines[0]["open_files_limit"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def test_other_loop_errors_go_to_the_handler_that_was_there_before() -> None:
    """Any other error (another errno too) reaches the previous handler, unchanged."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    handler = AcceptErrorLog(lambda _, context: seen.append(context))
    other = {"message": "boom", "exception": ValueError("x")}
    refused = {"message": "accept", "exception": OSError(errno.ECONNABORTED, "aborted")}
    with capture_logs() as logs:
        handler(loop, other)
        handler(loop, refused)
    assert seen == [other, refused]
    assert logs == []


async def test_the_handler_is_the_loops_only_while_the_app_runs() -> None:
    """`quiet_accept_errors` installs the handler and puts the previous one back."""
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    async with quiet_accept_errors():
        assert isinstance(loop.get_exception_handler(), AcceptErrorLog)
    assert loop.get_exception_handler() is before
