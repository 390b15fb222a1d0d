"""`router serve` at start-up: it says once where it listens, with how many workers, on
which store, and it serves on uvloop where uvloop is installed."""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import aiohttp
import pytest

from router.commands.serve import new_event_loop
from tests.conftest import free_port

from . import children, logged, serve

PASSWORD = "redis-pass-SECRET-0001"


async def test_one_worker_on_the_embedded_store_announces_url_and_data_dir(
    tmp_path: Path,
) -> None:
    """One `router.listening` line: the URL it answers on, one worker, the data directory."""
    async with serve(tmp_path) as router, aiohttp.ClientSession() as http:
        await router.wait_healthy(http)
        router.process.send_signal(signal.SIGTERM)
        assert await router.wait_exit(10) == 0
    [line] = logged(router.output(), "router.listening")
    assert line["url"] == router.url
    assert line["workers"] == 1
    assert line["store"] == "embedded"
    assert line["data_dir"] == str(tmp_path / "data")


@pytest.mark.parametrize(("workers", "code"), [("1", 1), ("2", 3)])
async def test_the_announcement_names_redis_without_its_password(
    tmp_path: Path, workers: str, code: int
) -> None:
    """The Redis URL is announced with its password masked, once however many workers,
    before the store is reached; an unreachable Redis then stops the process (exit 1, or
    gunicorn's 3 for workers that failed to boot) and its password is in no line."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    async with serve(
        tmp_path, "--workers", workers, ROUTER_REDIS_URL=url, ROUTER_REDIS_CONNECT_RETRIES="0"
    ) as router:
        assert await router.wait_exit(20) == code
    output = router.output()
    [line] = logged(output, "router.listening")
    assert line["url"] == router.url
    assert line["workers"] == int(workers)
    assert line["store"] == "redis"
    assert line["redis_url"] == url.replace(PASSWORD, "***")
    assert PASSWORD not in output


NO_UVLOOP = pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed here"
)


@NO_UVLOOP
def test_the_event_loop_of_router_serve_is_uvloops() -> None:
    """With uvloop installed, `router serve` (one process) runs on uvloop's loop."""
    import uvloop

    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def runs_uvloop(pid: int) -> bool:
    """Whether uvloop's compiled event loop is loaded in process `pid`."""
    return "uvloop/loop." in Path(f"/proc/{pid}/maps").read_text()


@NO_UVLOOP
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_every_serving_process_runs_on_uvloop(
    tmp_path: Path, workers: str, request: pytest.FixtureRequest
) -> None:
    """The one process, or each gunicorn worker, has uvloop's event loop loaded."""
    env = {"ROUTER_REDIS_URL": request.getfixturevalue("redis_url")} if workers == "2" else {}
    async with (
        serve(tmp_path, "--workers", workers, **env) as router,
        aiohttp.ClientSession() as http,
    ):
        await router.wait_healthy(http)
        serving = children(router.pid) if workers == "2" else {router.pid}
        assert len(serving) == int(workers)
        assert all(runs_uvloop(pid) for pid in serving)
