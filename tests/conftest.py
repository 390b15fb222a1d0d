"""Shared fixtures: a real redis-server for the session, killable ones, and started stores."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from router.store.embedded import EmbeddedStore
from router.store.interface import Store
from router.store.redis_store import RedisStore

REPO = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def router_env(data_dir: Path, api_key: str, **variables: str) -> dict[str, str]:
    """The environment of a `python -m router serve` child: the caller's, without its
    ROUTER_* settings and `--workers` metrics directory; this checkout first on the
    PYTHONPATH; the test's data directory and API key, JSON logs; then `variables`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ROUTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        ROUTER_API_KEY=api_key,
        ROUTER_DATA_DIR=str(data_dir),
        ROUTER_LOG_FORMAT="json",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.update(variables)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway redis-server on a fixed port: start, SIGKILL, start again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        self._process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell, no outside input
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, as in a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing (a hung host)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot terminate
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The URL of a redis-server shared by the whole test session."""
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The session's Redis, flushed for this test."""
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server_url


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Start separate redis-servers a test may kill and restart; all stopped afterwards."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A started store of each backend, closed after the test."""
    backend: Store
    if request.param == "embedded":
        backend = EmbeddedStore(tmp_path / "data")
    else:
        url = request.getfixturevalue("redis_url")
        backend = RedisStore(url, connect_retries=0, retry_delay_seconds=0)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()
