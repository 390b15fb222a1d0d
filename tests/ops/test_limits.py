"""The worker raises its own open-files limit at start, as far as the hard limit lets it."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

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
