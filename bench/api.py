"""Benchmark the Phone Numbers API on Redis against a bare aiohttp + Redis floor.

Starts its own `redis-server` (no persistence), seeds numbers through router's own service
code, then measures in the same run:

- a baseline: a bare aiohttp app (this file, `--serve-baseline`) whose GET answers one
  Redis GET of a stored number's JSON and whose POST does one Redis SET of the body;
- `router serve`: `GET /phone-number/{id}` and `POST /phone-number` at a fixed concurrency,
  in rounds that alternate with the baseline so drift on a shared machine hits both alike;
- `GET /v2/phone-number?page=1&limit=100` against the last page of the seeded numbers.

Servers and Redis are pinned to one core, the load generator (`bench/_load.py`, its own
process) to the other. Figures are printed as a table and ratios; `--json` writes them all.
Run: `python bench/api.py` (about a minute) or `python bench/api.py --quick`.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from _load import LoadResult, Request, merge, run_load
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
ORG_ID = "default"  # the org `ROUTER_API_KEY` belongs to
BLOB_PREFIX = "bench:blob:"
POST_PREFIX = "bench:post:"
# Ids GET phases cycle through, and the blobs the baseline serves (copies of their docs).
GET_IDS = 1000
LIST_LIMIT = 100
# A POST phase's numbers are +1415 followed by 7 digits counted from its round's block.
POST_BLOCK = 1_000_000
MAX_PHASE_REQUESTS = POST_BLOCK // 2  # far above what a phase's seconds allow; a hard bound
SERVER_CPU = 0
LOAD_CPU = 1
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


@dataclass(frozen=True)
class Plan:
    """How much to measure; `--quick` shrinks every bound."""

    rounds: int
    phase_seconds: float
    warmup: int
    concurrency: int
    numbers: int
    list_requests: int
    pin: bool

    @property
    def last_page(self) -> int:
        return self.numbers // LIST_LIMIT


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _child_setup(cpu: int | None) -> Callable[[], None]:
    """Runs in the child before exec: pin it, and have it die with this script."""

    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        # SIGTERM when the bench dies, even by SIGKILL, so no server outlives it.
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


class Processes:
    """The processes this run started; `stop_all` ends each: terminate, then kill."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[tuple[str, subprocess.Popen[bytes], TextIO]] = []

    def start(
        self, name: str, argv: Sequence[str], *, cpu: int | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self._log_dir / f"{name}.log").open("w")
        process = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches only the bench, which stops servers in order.
            start_new_session=True,
            # preexec_fn is unsafe with threads; the bench starts none.
            preexec_fn=_child_setup(cpu),
        )
        self._started.append((name, process, log))
        return process

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self._log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        while self._started:
            _, process, log = self._started.pop()
            _end(process)
            log.close()


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    name: str,
    timeout_s: float = START_TIMEOUT_SECONDS,
) -> None:
    """Poll `url` until it answers 200 (within `timeout_s`); fail early if the process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            status, _ = http_get(url)
            if status == 200:
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not ready within {timeout_s:.0f} s")
        time.sleep(0.05)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One plain GET on 127.0.0.1 (for readiness and sanity checks)."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/" + path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process's threads have run (Linux /proc), to the nanosecond if it can."""
    try:
        # schedstat: nanoseconds on a CPU, per thread; stat's ticks are 10 ms coarse.
        return (
            sum(
                int((task / "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        # After the command: utime and stime are the 12th and 13th fields, in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the baseline server ----------------------------------------------------------------

BASELINE_REDIS = web.AppKey("redis", Redis)


def baseline_app(redis_url: str) -> web.Application:
    """One Redis GET (or SET) per request and the JSON as is: the floor router is held to."""

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        # The client router's RedisStore uses, configured alike.
        pool = BlockingConnectionPool.from_url(
            redis_url, max_connections=100, timeout=2.0, decode_responses=True, protocol=2
        )
        app[BASELINE_REDIS] = Redis.from_pool(pool)
        yield
        await app[BASELINE_REDIS].aclose()

    async def get_blob(request: web.Request) -> web.Response:
        raw = await request.app[BASELINE_REDIS].get(BLOB_PREFIX + request.match_info["id"])
        if raw is None:
            raise web.HTTPNotFound()
        body = raw.encode() if isinstance(raw, str) else raw
        return web.Response(body=body, content_type="application/json")

    posted = 0

    async def post_blob(request: web.Request) -> web.Response:
        nonlocal posted
        posted += 1
        body = await request.read()
        await request.app[BASELINE_REDIS].set(f"{POST_PREFIX}{posted}", body)
        return web.Response(body=body, status=201, content_type="application/json")

    async def readyz(request: web.Request) -> web.Response:
        await request.app[BASELINE_REDIS].ping()
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(redis_ctx)
    app.router.add_get("/blob/{id}", get_blob)
    app.router.add_post("/blob", post_blob)
    app.router.add_get("/readyz", readyz)
    return app


# --- request factories (pickled to the load process) -------------------------------------


@dataclass(frozen=True)
class CycleGet:
    """GET `base + path` for each path in turn."""

    base: str
    paths: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)

    def __call__(self, i: int) -> Request:
        return Request("GET", self.base + self.paths[i % len(self.paths)], None, self.headers)


@dataclass(frozen=True)
class CreateTwilio:
    """POST a new twilio number, distinct for every `i`: +1415 and 7 digits from `start`."""

    url: str
    start: int
    headers: dict[str, str] = field(default_factory=dict)

    def __call__(self, i: int) -> Request:
        return Request("POST", self.url, create_body(f"+1415{self.start + i:07d}"), self.headers)


def create_body(number: str) -> bytes:
    return json.dumps(
        {
            "provider": "twilio",
            "number": number,
            "name": f"Bench {number}",
            "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
            "twilioAuthToken": "0123456789abcdef0123456789abcdef",
            "assistantId": "3f0c4f4e-7a40-4d55-9d55-8c7e0b5b1a01",
            "server": {"url": "https://example.com/assistant-request", "timeoutSeconds": 20},
        }
    ).encode()


# --- seeding --------------------------------------------------------------------------------


async def seed(redis_url: str, numbers: int, concurrency: int = 64) -> list[str]:
    """Create `numbers` twilio numbers with router's own service (as the API would)."""
    from router.manage.credential_service import Credentials
    from router.manage.documents import Codec
    from router.manage.number_service import PhoneNumbers
    from router.manage.secrecy import SecretBox
    from router.ops.logs import configure_logging
    from router.store import redis_keys as keys
    from router.store.interface import KIND_PHONE_NUMBER
    from router.store.redis_store import RedisStore

    configure_logging("json", "warning")  # not one audit line per seeded number
    store = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    await store.start()
    try:
        codec = Codec(SecretBox(None))  # the router under test runs without ROUTER_SECRET_KEY
        service = PhoneNumbers(store, codec, Credentials(store, codec), sip_domain="bench.local")
        ids: list[str] = []

        async def worker(offset: int) -> None:
            for n in range(offset, numbers, concurrency):
                body = json.loads(create_body(f"+1212{n:07d}"))
                ids.append((await service.create(ORG_ID, body)).id)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        # The baseline serves byte-for-byte copies of the documents GET phases read.
        sample = ids[:GET_IDS]
        raws = await store.client.mget([keys.doc(KIND_PHONE_NUMBER, i) for i in sample])
        await store.client.mset(
            {BLOB_PREFIX + i: raw for i, raw in zip(sample, raws, strict=True) if raw is not None}
        )
        return sample
    finally:
        await store.close()


# --- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A server under test."""

    name: str
    process: subprocess.Popen[bytes]
    url: str


@dataclass
class Phase:
    """One measured load against one server, with the CPU the server side spent on it."""

    name: str
    result: LoadResult
    server_us_per_req: float
    redis_us_per_req: float

    @property
    def cpu_us_per_req(self) -> float:
        return self.server_us_per_req + self.redis_us_per_req

    @property
    def core_busy(self) -> float:
        """Share of one core the server and Redis used at the measured rate.

        Near 1.0 (pinned), the server side was the limit; well below, something else was
        (the load generator, or other work on the machine), and req/s understates capacity.
        """
        return round(self.result.rps * self.cpu_us_per_req / 1e6, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.result.to_json(),
            "server_cpu_us_per_req": self.server_us_per_req,
            "redis_cpu_us_per_req": self.redis_us_per_req,
            "core_busy": self.core_busy,
        }


@dataclass(frozen=True)
class Bench:
    """Runs loads against targets sharing one Redis, by the plan."""

    plan: Plan
    redis: subprocess.Popen[bytes]

    def measure(
        self,
        name: str,
        factory: Callable[[int], Request],
        target: Target,
        *,
        expect: int,
        concurrency: int | None = None,
        count: int | None = None,
        warmup: int | None = None,
    ) -> Phase:
        """One load (for `count` requests, else the plan's seconds), with the server side's CPU.

        CPU is read before and after, so warm-up requests are counted in the per-request
        figures too; idle servers use next to none.
        """
        warm = self.plan.warmup if warmup is None else warmup
        pids = (target.process.pid, self.redis.pid)
        before = [cpu_seconds(pid) for pid in pids]
        result = run_load(
            factory,
            count=count or MAX_PHASE_REQUESTS,
            duration_s=None if count else self.plan.phase_seconds,
            concurrency=concurrency or self.plan.concurrency,
            warmup=warm,
            cpu=LOAD_CPU if self.plan.pin else None,
            expect=(expect,),
        )
        served = max(1, result.count + warm)
        server_us, redis_us = (
            round((cpu_seconds(pid) - start) / served * 1e6, 1)
            for pid, start in zip(pids, before, strict=True)
        )
        phase = Phase(name, result, server_us, redis_us)
        print(
            f"  {name:<14} {result.rps:>7.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms  server+redis {phase.cpu_us_per_req:5.0f} us/req  "
            f"errors {result.errors}",
            flush=True,
        )
        if result.errors:
            print(f"    first error: {result.first_error}", flush=True)
        return phase

    def rounds(
        self,
        method: str,
        expect: int,
        sides: Sequence[tuple[Target, Callable[[int], Callable[[int], Request]]]],
    ) -> list[list[Phase]]:
        """Each side's phases over the plan's rounds: `sides` is (target, round -> factory)."""
        phases: list[list[Phase]] = [[] for _ in sides]
        for r in range(self.plan.rounds):
            print(f"{method} round {r + 1}/{self.plan.rounds}", flush=True)
            order = list(range(len(sides)))
            if r % 2:
                order.reverse()  # alternate who goes first, so a drift in time favours no one
            for k in order:
                target, factory_of = sides[k]
                phases[k].append(
                    self.measure(f"{target.name} {method}", factory_of(r), target, expect=expect)
                )
        return phases


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def best(phases: Sequence[Phase]) -> Phase:
    """The round with the highest req/s: other work on the machine only ever slows a round."""
    return max(phases, key=lambda p: p.result.rps)


def merged(name: str, phases: Sequence[Phase]) -> Phase:
    """Interleaved chunks of one load as one phase (latencies pooled, CPU weighted)."""
    total = sum(p.result.count for p in phases) or 1
    return Phase(
        name,
        merge([p.result for p in phases]),
        round(sum(p.server_us_per_req * p.result.count for p in phases) / total, 1),
        round(sum(p.redis_us_per_req * p.result.count for p in phases) / total, 1),
    )


def figures(phase: Phase, phases: Sequence[Phase] = ()) -> dict[str, float]:
    """A phase's table row; `phases`, the rounds it was the best of."""
    return {
        "rps": phase.result.rps,
        "p50_ms": phase.result.p50_ms,
        "p99_ms": phase.result.p99_ms,
        "server_cpu_us_per_req": phase.server_us_per_req,
        "redis_cpu_us_per_req": phase.redis_us_per_req,
        "core_busy": phase.core_busy,
        "client_cpu": phase.result.client_cpu,
        "requests": sum(p.result.count for p in phases) or phase.result.count,
        "errors": sum(p.result.errors for p in phases) or phase.result.errors,
    }


def run(plan: Plan, command: str) -> dict[str, Any]:
    """Start everything, measure, stop everything; the figures as a JSON-ready dict."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        processes = Processes(Path(tmp))
        try:
            return _run(plan, command, started_at, processes, Path(tmp))
        except Exception:
            for name in ("router", "baseline", "redis"):
                tail = processes.log_tail(name)
                if tail:
                    print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            processes.stop_all()


def _run(
    plan: Plan, command: str, started_at: str, processes: Processes, tmp: Path
) -> dict[str, Any]:
    # Redis shares the servers' core: each side pays for the Redis work it causes.
    server_cpu = SERVER_CPU if plan.pin else None
    redis_port = free_port()
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis = processes.start(
        "redis",
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
        cpu=server_cpu,
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    wait_redis(redis_url, redis)

    print(f"seeding {plan.numbers} numbers ...", flush=True)
    seeded_at = time.perf_counter()
    ids = asyncio.run(seed(redis_url, plan.numbers))
    seed_seconds = round(time.perf_counter() - seeded_at, 2)
    print(f"  seeded in {seed_seconds} s", flush=True)

    base_port, router_port = free_port(), free_port()
    base_args = ["--serve-baseline", str(base_port), "--redis-url", redis_url]
    baseline = Target(
        "baseline",
        processes.start("baseline", [sys.executable, __file__, *base_args], cpu=server_cpu),
        f"http://127.0.0.1:{base_port}",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env.update(
        ROUTER_REDIS_URL=redis_url,
        ROUTER_API_KEY=API_KEY,
        ROUTER_LOG_LEVEL="warning",
        ROUTER_LOG_FORMAT="json",
        ROUTER_DATA_DIR=str(tmp / "data"),
    )
    serve = ["serve", "--host", "127.0.0.1", "--port", str(router_port)]
    router = Target(
        "router",
        processes.start(
            "router", [sys.executable, "-m", "router", *serve], cpu=server_cpu, env=env
        ),
        f"http://127.0.0.1:{router_port}",
    )
    for target in (baseline, router):
        wait_ready(target.url + "/readyz", target.process, target.name)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    check_listing(router.url, auth, plan)
    # What one GET returns on each side (similar sizes make the floor a fair one).
    body_bytes = {
        "baseline_get": len(http_get(f"{baseline.url}/blob/{ids[0]}")[1]),
        "router_get": len(http_get(f"{router.url}/phone-number/{ids[0]}", auth)[1]),
    }
    bench = Bench(plan, redis)

    blobs = tuple(f"/blob/{i}" for i in ids)
    paths = tuple(f"/phone-number/{i}" for i in ids)
    base_get, router_get = bench.rounds(
        "GET",
        200,
        [
            (baseline, lambda _: CycleGet(baseline.url, blobs)),
            (router, lambda _: CycleGet(router.url, paths, auth)),
        ],
    )

    # Listings before any POST, so the org holds exactly the seeded numbers. One request at
    # a time, in chunks alternating between the pages, pooled per page.
    print(f"listing ({plan.list_requests} requests per page, one at a time)", flush=True)
    pages = (1, plan.last_page)
    chunks: dict[int, list[Phase]] = {page: [] for page in pages}
    for r in range(plan.rounds):
        for page in pages if r % 2 == 0 else pages[::-1]:
            path = f"/v2/phone-number?page={page}&limit={LIST_LIMIT}"
            chunks[page].append(
                bench.measure(
                    f"list page {page}",
                    CycleGet(router.url, (path,), auth),
                    router,
                    expect=200,
                    concurrency=1,
                    count=max(1, plan.list_requests // plan.rounds),
                    warmup=10,
                )
            )
    listing = [merged(f"list page {page}", chunks[page]) for page in pages]

    json_only = {"Content-Type": "application/json"}
    base_post, router_post = bench.rounds(
        "POST",
        201,
        [
            (baseline, lambda r: CreateTwilio(baseline.url + "/blob", r * POST_BLOCK, json_only)),
            (
                router,
                lambda r: CreateTwilio(
                    router.url + "/phone-number", r * POST_BLOCK, {**auth, **json_only}
                ),
            ),
        ],
    )

    def rps(p: Phase) -> float:
        return p.result.rps

    def capacity(p: Phase) -> float:
        """Requests per second one core could serve at this CPU cost (server + Redis)."""
        return 1e6 / p.cpu_us_per_req if p.cpu_us_per_req else 0.0

    pairs: dict[str, tuple[list[Phase], list[Phase], Callable[[Phase], float]]] = {
        "get_rps_router_over_baseline": (router_get, base_get, rps),
        "get_capacity_router_over_baseline": (router_get, base_get, capacity),
        "post_rps_router_over_baseline_set": (router_post, base_post, rps),
        "post_capacity_router_over_baseline_set": (router_post, base_post, capacity),
        "post_rps_router_over_baseline_get": (router_post, base_get, rps),
    }
    # Headline: best round over best round.
    headline = {
        name: ratio(max(map(figure, a)), max(map(figure, b)))
        for name, (a, b, figure) in pairs.items()
    }
    # Paired: each round's router figure over that same round's baseline, for the spread.
    per_round = {
        name: [ratio(figure(x), figure(y)) for x, y in zip(a, b, strict=True)]
        for name, (a, b, figure) in pairs.items()
    }
    first, last = listing[0].result, listing[1].result
    return {
        "command": command,
        "started_at": started_at,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "pinned": {"servers_and_redis": SERVER_CPU, "load": LOAD_CPU} if plan.pin else None,
        },
        "plan": {**asdict(plan), "last_page": plan.last_page, "seed_seconds": seed_seconds},
        "body_bytes": body_bytes,
        # Throughput rows: the best round of each. Listing rows: all chunks pooled.
        "summary": {
            "baseline_get": figures(best(base_get), base_get),
            "router_get": figures(best(router_get), router_get),
            "baseline_post": figures(best(base_post), base_post),
            "router_post": figures(best(router_post), router_post),
            "list_page_1": figures(listing[0]),
            f"list_page_{plan.last_page}": figures(listing[1]),
        },
        "ratios": {
            **headline,
            "list_p50_last_page_over_page_1": ratio(last.p50_ms, first.p50_ms),
            "list_p99_last_page_over_page_1": ratio(last.p99_ms, first.p99_ms),
        },
        "ratios_per_round": per_round,
        "phases": [
            p.to_json()
            for group in (base_get, router_get, *chunks.values(), base_post, router_post)
            for p in group
        ],
    }


def wait_redis(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until the Redis at `url` answers PING."""

    async def ping() -> None:
        client = Redis.from_url(url)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {process.returncode}")
                try:
                    await client.ping()
                    return
                except (OSError, RedisError) as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not answer PING") from exc
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    asyncio.run(ping())


def check_listing(router_url: str, auth: dict[str, str], plan: Plan) -> None:
    """The listings measured are the ones meant: full pages over exactly the seeded numbers."""
    for page in (1, plan.last_page):
        status, body = http_get(
            f"{router_url}/v2/phone-number?page={page}&limit={LIST_LIMIT}", auth
        )
        data = json.loads(body) if status == 200 else {}
        meta = data.get("metadata", {})
        if (
            status != 200
            or len(data.get("results", [])) != LIST_LIMIT
            or meta.get("totalItems") != plan.numbers
            or meta.get("currentPage") != page
        ):
            raise RuntimeError(f"unexpected listing of page {page}: {status} {body[:300]!r}")


THROUGHPUT_PHASES = ("baseline_get", "router_get", "baseline_post", "router_post")
BUSY_ENOUGH = 0.85


def print_report(report: dict[str, Any]) -> None:
    """The summary table, the ratios, and a note where req/s was not server-bound."""
    summary, ratios = report["summary"], report["ratios"]
    header = (
        f"{'phase':<14}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv us/req':>12}{'redis us/req':>14}{'core busy':>11}{'errors':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, row in summary.items():
        print(
            f"{name:<14}{row['rps']:>8.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['server_cpu_us_per_req']:>12.0f}{row['redis_cpu_us_per_req']:>14.0f}"
            f"{row['core_busy']:>11.2f}{row['errors']:>8}"
        )
    sizes = report["body_bytes"]
    print(
        f"\none GET answers {sizes['baseline_get']} bytes (baseline), "
        f"{sizes['router_get']} bytes (router)"
    )
    rounds = report["plan"]["rounds"]
    print(f"\nthroughput rows: best of {rounds} round(s); ratios: best over best, and in")
    print("brackets the range of the same ratio taken round by round.")
    width = max(len(k) for k in ratios)
    per_round = report["ratios_per_round"]
    for name, value in ratios.items():
        spread = per_round.get(name)
        extra = f"  [{min(spread):.3f}..{max(spread):.3f}]" if spread and len(spread) > 1 else ""
        print(f"{name:<{width}}  {value:6.3f}{extra}")
    if report["machine"]["pinned"]:
        idle = [n for n in THROUGHPUT_PHASES if summary[n]["core_busy"] < BUSY_ENOUGH]
        if idle:
            print(
                f"\nnote: {', '.join(idle)} kept the servers' core under {BUSY_ENOUGH:.0%} busy: "
                "req/s there was limited by something else (the load generator or other work "
                "on the machine). The capacity ratios do not depend on that."
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Figures are ratios against a baseline measured in the same run; absolute "
        "numbers depend on the machine. Needs redis-server on PATH (or /usr/bin).",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~20 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight (default 32)"
    )
    parser.add_argument(
        "--numbers", type=int, default=None, help="numbers to seed (default 10000, quick 2000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds (default 3, quick 1)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="seconds per load phase (default 3)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    numbers = args.numbers if args.numbers is not None else (2000 if args.quick else 10_000)
    if numbers < LIST_LIMIT or numbers > 100_000:
        parser.error(f"--numbers must be between {LIST_LIMIT} and 100000")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    if args.seconds is not None and not 0.5 <= args.seconds <= 10:
        parser.error("--seconds must be between 0.5 and 10")
    if args.rounds is not None and not 1 <= args.rounds <= 5:
        parser.error("--rounds must be between 1 and 5")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    numbers: int = args.numbers if args.numbers is not None else (2000 if quick else 10_000)
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        phase_seconds=args.seconds or (1.5 if quick else 3.0),
        warmup=200 if quick else 500,
        concurrency=args.concurrency,
        numbers=numbers - numbers % LIST_LIMIT,
        list_requests=40 if quick else 200,
        pin=pin,
    )


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so `finally` stops every process started."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_baseline is not None:
        web.run_app(
            baseline_app(args.redis_url),
            host="127.0.0.1",
            port=args.serve_baseline,
            access_log=None,
            print=None,
        )
        return 0
    plan = plan_of(args)
    command = shlex.join([sys.executable, *sys.argv])
    with sigterm_as_exit():
        try:
            report = run(plan, command)
        except KeyboardInterrupt:
            print("\ninterrupted; every process it started was stopped", file=sys.stderr)
            return 130
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    errors = sum(s["errors"] for s in report["summary"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
