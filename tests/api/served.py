"""A real `python -m router serve` child process on a free loopback port, for clients that
are not aiohttp's (the Vapi SDK, schemathesis): started, waited for, stopped."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port, router_env

START_SECONDS = 20.0
STOP_SECONDS = 5.0


@contextmanager
def router_serve(tmp_path: Path, api_key: str, **settings: str) -> Iterator[str]:
    """The base URL of a `router serve` on the embedded store in `tmp_path`, with the org
    `default` keyed by `api_key` and `settings` as `ROUTER_*` variables."""
    port = free_port()
    env = router_env(
        tmp_path / "data",
        api_key,
        ROUTER_LOG_LEVEL="warning",
        **{f"ROUTER_{name.upper()}": value for name, value in settings.items()},
    )
    log = (tmp_path / "router.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (the test's own interpreter and module)
        [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, base_url, tmp_path / "router.log")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise AssertionError(f"router exited early: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as reply:  # noqa: S310
                if reply.status == 200:
                    return
        except OSError:  # refused, reset or timed out while it starts
            pass
        if time.monotonic() > deadline:
            raise AssertionError("router did not answer /healthz in time")
        time.sleep(0.05)
