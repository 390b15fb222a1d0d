"""`router serve --workers N`: gunicorn's arbiter and N real worker processes on one port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from . import alive, children, logged, serve, serve_env, stream_parameters, twilio_number

CALLS = 12


async def calls_total(http: aiohttp.ClientSession, url: str) -> float:
    """`router_calls_total` summed over every label set, from one scrape of `/metrics`."""
    # A new connection each time: any worker may answer.
    async with aiohttp.ClientSession() as fresh, fresh.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "router_calls"
        for sample in family.samples
        if sample.name == "router_calls_total"
    )


def metrics_dirs(tmp_path: Path) -> list[Path]:
    """The multiprocess metrics directories `router serve` made (its TMPDIR is tmp_path)."""
    return list(tmp_path.glob("router-metrics-*"))


async def wait_for_workers(pid: int, count: int, within: float = 20.0) -> set[int]:
    deadline = time.monotonic() + within
    while len(found := children(pid)) != count:
        assert time.monotonic() < deadline, f"{len(found)} workers, expected {count}"
        await asyncio.sleep(0.05)
    return found


async def test_two_workers_share_the_port_metrics_respawn_and_stop_together(
    tmp_path: Path, redis_url: str
) -> None:
    """Two workers under one parent, announced once; every scrape counts every call
    whichever worker took it; a worker killed with SIGKILL is replaced (`worker.died`) and
    the port keeps answering; SIGTERM to the parent stops everything with exit code 0 and
    removes the metrics directory it made."""
    async with (
        serve(tmp_path, "--workers", "2", ROUTER_REDIS_URL=redis_url) as router,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
    ):
        await router.wait_healthy(http)
        workers = await wait_for_workers(router.pid, 2)
        [listening] = logged(router.output(), "router.listening")
        assert listening["url"] == router.url
        assert listening["workers"] == 2
        assert listening["store"] == "redis"
        assert listening["redis_url"] == redis_url
        assert len(metrics_dirs(tmp_path)) == 1

        await router.api(http, "POST", "/phone-number", twilio_number(assistantId="asst-1"))
        # One connection per call (force_close): the kernel hands them to either worker.
        answers = await asyncio.gather(*(router.voice(http) for _ in range(CALLS)))
        for status, body in answers:
            assert status == 200, body
            assert stream_parameters(body)["targetId"] == "asst-1"
        for _ in range(6):
            assert await calls_total(http, router.url) == CALLS

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = await wait_for_workers_replaced(router.pid, workers, victim)
        assert len(replaced) == 2 and victim not in replaced
        status, body = await router.voice(http)
        assert status == 200, body
        # The dead worker's counts stay in the shared metrics directory.
        assert await calls_total(http, router.url) == CALLS + 1

        router.process.send_signal(signal.SIGTERM)
        assert await router.wait_exit(10) == 0
        assert not [pid for pid in replaced if alive(pid)]
        assert metrics_dirs(tmp_path) == []
    output = router.output()
    assert [line["pid"] for line in logged(output, "worker.died")] == [victim]
    assert len(logged(output, "router.listening")) == 1


async def wait_for_workers_replaced(
    parent: int, before: set[int], victim: int, within: float = 10.0
) -> set[int]:
    deadline = time.monotonic() + within
    while True:
        now = children(parent)
        if len(now) == 2 and victim not in now and now - before:
            return now
        assert time.monotonic() < deadline, f"workers now {now}, before {before}"
        await asyncio.sleep(0.05)


async def test_sighup_replaces_the_workers_without_a_worker_died(
    tmp_path: Path, redis_url: str
) -> None:
    """SIGHUP (gunicorn's reload) starts two fresh workers and retires the old ones: the
    port keeps answering, and retired workers are not reported as `worker.died`."""
    async with (
        serve(tmp_path, "--workers", "2", ROUTER_REDIS_URL=redis_url) as router,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
    ):
        await router.wait_healthy(http)
        old = await wait_for_workers(router.pid, 2)
        await router.api(http, "POST", "/phone-number", twilio_number(assistantId="asst-1"))

        router.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while (now := children(router.pid)) & old or len(now) != 2:
            assert time.monotonic() < deadline, f"workers now {now}, before {old}"
            await asyncio.sleep(0.05)
        await router.wait_healthy(http)
        status, body = await router.voice(http)
        assert status == 200, body

        router.process.send_signal(signal.SIGTERM)
        assert await router.wait_exit(10) == 0
    assert logged(router.output(), "worker.died") == []


def test_more_than_one_worker_without_redis_exits_2(tmp_path: Path) -> None:
    """The embedded store belongs to one process: `--workers 2` without Redis is refused."""
    result = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--workers", "2", "--port", "9"],
        cwd=tmp_path,
        env=serve_env(tmp_path, 9),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers > 1 needs ROUTER_REDIS_URL" in result.stderr
