"""Real Redis Cluster and Sentinel deployments on loopback, for the store's tests.

- `LocalCluster`: three masters (`--cluster-enabled yes`, no replicas) joined with
  `redis-cli --cluster create`; `cluster` starts one per test module, `cluster_url`
  flushes it for each test.
- `LocalSentinel`: a master, a replica and one Sentinel (quorum 1); `sentinel` starts one
  per test module, `sentinel_url` flushes the current master for each test.

Every process gets its own free port and directory under pytest's tmp dir, and is killed
when its fixture ends, whatever the test did. Without `redis-server` or `redis-cli` the
tests that need them are skipped, with the reason.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
SENTINEL_SERVICE = "router-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _require(*tools: tuple[str, str | None]) -> None:
    for name, path in tools:
        if path is None:
            pytest.skip(f"{name} is not installed (apt-get install redis-server)")


def wait_until(condition: Callable[[], bool], what: str, timeout_seconds: float = 15.0) -> None:
    """Poll `condition` (errors count as not yet) until it holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Node:
    """One redis-server process (data node or Sentinel): start, SIGKILL, start again."""

    def __init__(self, workdir: Path, args: list[str], port: int | None = None) -> None:
        self.port = port or _free_port()
        self.workdir = workdir
        self._args = args
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def ask(self, *command: str) -> object:
        """One command on a short-lived connection."""
        with self.client() as client:
            return client.execute_command(*command)

    def start(self, timeout_seconds: float = 10.0) -> None:
        """Start the process; return once it answers PING."""
        assert REDIS_SERVER is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The server's log stays beside its files, for a failing test's post-mortem.
        with (self.workdir / f"redis-{self.port}.log").open("ab") as log_file:
            self._process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell or outside input
                [REDIS_SERVER, *self._args, "--port", str(self.port), "--bind", "127.0.0.1"],
                cwd=self.workdir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        process = self._process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited with {process.returncode}")
            try:
                return bool(self.ask("PING"))
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, f"redis-server on {self.port}", timeout_seconds)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, as in a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class LocalCluster:
    """Three masters on loopback, every slot assigned, no replicas."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.nodes: list[Node] = []
        for _ in range(size):
            port, bus_port = _free_port(), _free_port()
            args = [
                "--cluster-enabled",
                "yes",
                # The bus port defaults to port + 10000, which may be taken or out of range.
                "--cluster-port",
                str(bus_port),
                "--cluster-config-file",
                str(workdir / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                "3000",
                # The other masters keep serving their slots while one is down.
                "--cluster-require-full-coverage",
                "no",
                *NO_PERSISTENCE,
            ]
            self.nodes.append(Node(workdir, args, port))

    @property
    def url(self) -> str:
        """Two of the three nodes as seeds: the client finds the third itself."""
        return "redis+cluster://" + ",".join(node.name for node in self.nodes[:2])

    def start(self) -> None:
        assert REDIS_CLI is not None
        for node in self.nodes:
            node.start()
        created = subprocess.run(  # noqa: S603  # fixed argv, no shell, no outside input
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(node.name for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]!r}")
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Every node says `cluster_state:ok` and knows every other node."""

        def healthy(node: Node) -> bool:
            # "CLUSTER", "INFO" as two words: the raw `key:value` lines, no reply parser.
            lines = str(node.ask("CLUSTER", "INFO")).splitlines()
            info = dict(line.split(":", 1) for line in lines if ":" in line)
            known = int(info["cluster_known_nodes"])
            return info["cluster_state"] == "ok" and known == len(self.nodes)

        wait_until(lambda: all(healthy(node) for node in self.nodes), "cluster_state:ok")

    def node_for(self, key: str) -> Node:
        """The master that owns `key`'s slot."""
        slot = int(str(self.nodes[0].ask("CLUSTER", "KEYSLOT", key)))
        with self.nodes[0].client() as client:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"slot {slot} is not assigned")

    def node_named(self, name: str | None) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def flush(self) -> None:
        for node in self.nodes:
            node.ask("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class LocalSentinel:
    """A master, its replica, and one Sentinel (quorum 1) monitoring them."""

    def __init__(self, workdir: Path) -> None:
        # No diskless-sync delay: the replica syncs at once instead of after 5 s.
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        self.master = Node(workdir / "a", [*NO_PERSISTENCE, *fast_sync])
        self.replica = Node(
            workdir / "b",
            [*NO_PERSISTENCE, *fast_sync, "--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self._config = workdir / "sentinel.conf"
        self.sentinel = Node(workdir / "sentinel", [str(self._config), "--sentinel"])

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SENTINEL_SERVICE}"

    @property
    def data_nodes(self) -> tuple[Node, Node]:
        return self.master, self.replica

    def start(self) -> None:
        self.master.start()
        self.replica.start()

        def synced() -> bool:
            with self.replica.client() as client:
                return bool(client.info("replication").get("master_link_status") == "up")

        wait_until(synced, "the replica to sync")
        # The replica is up before the Sentinel starts, so its first INFO of the master
        # names it and a failover has a replica to promote at once.
        self._config.write_text(
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 2000\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
        )
        self.sentinel.start()
        wait_until(
            lambda: bool(self.sentinel.ask("SENTINEL", "REPLICAS", SENTINEL_SERVICE)),
            "the Sentinel to see the replica",
        )

    def current_master(self) -> Node:
        """The data node the Sentinel names as master now."""
        with self.sentinel.client() as client:
            address = client.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
        port = int(address[1])
        return next(node for node in self.data_nodes if node.port == port)

    def failover(self) -> Node:
        """`SENTINEL FAILOVER` (retried while no replica is ready); the new master."""
        old = self.current_master()

        def started() -> bool:
            try:
                return bool(self.sentinel.ask("SENTINEL", "FAILOVER", SENTINEL_SERVICE))
            except redis.ResponseError:  # NOGOODSLAVE until the Sentinel has seen the replica
                return False

        wait_until(started, "SENTINEL FAILOVER to be accepted")
        wait_until(lambda: self.current_master() is not old, "the Sentinel to switch masters")
        return self.current_master()

    def flush(self) -> None:
        self.current_master().ask("FLUSHALL")

    def stop(self) -> None:
        for node in (self.sentinel, self.replica, self.master):
            node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-master Redis Cluster shared by the tests of one module."""
    _require(("redis-server", REDIS_SERVER), ("redis-cli", REDIS_CLI))
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def cluster_url(cluster: LocalCluster) -> str:
    """The module's cluster, flushed and healthy for this test."""
    cluster.wait_healthy()
    cluster.flush()
    return cluster.url


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    """A Sentinel-managed master and replica shared by the tests of one module."""
    _require(("redis-server", REDIS_SERVER))
    local = LocalSentinel(tmp_path_factory.mktemp("sentinel"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def sentinel_url(sentinel: LocalSentinel) -> str:
    """The module's Sentinel deployment, its current master flushed for this test."""
    sentinel.flush()
    return sentinel.url
