"""What does router's Phone Numbers API cost next to a bare aiohttp + Redis app?

Starts its own `redis-server` (no persistence), seeds numbers through router's own service
code, then measures in the same run, with the same wrk load:

- a baseline: a bare aiohttp app on uvloop (this file, `--serve-baseline`) whose GET answers
  one Redis GET of a stored number's JSON and whose POST does one Redis SET of the body;
- `router serve`: `GET /phone-number/{id}` and `POST /phone-number` (a new number each),
  in rounds that alternate with the baseline so drift on a shared machine hits both alike;
- `GET /v2/phone-number?page=1&limit=100` against the last page, one request at a time.

Servers and Redis run on core 0, wrk on core 1. Run: `python bench/api.py` (about a minute)
or `python bench/api.py --quick`. bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from common import (
    API_KEY,
    ASSISTANT_ID,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    Bench,
    HttpRequest,
    Phase,
    Processes,
    Server,
    alternate,
    can_pin,
    free_port,
    http_call,
    missing_tools,
    processes,
    ratio,
    run_bench,
    serve,
    start_redis,
    start_router,
    wait_ready,
    write_requests,
)
from redis.asyncio import BlockingConnectionPool, Redis

ORG_ID = "default"  # the org `ROUTER_API_KEY` belongs to
BLOB_PREFIX = "bench:blob:"
POST_PREFIX = "bench:post:"
GET_IDS = 1000  # ids GET phases cycle through, and the blobs the baseline serves
LIST_LIMIT = 100
# A POST phase's numbers are +1415 and 7 digits counted from its own block, so no phase
# creates a number another did.
POST_BLOCK = 1_000_000
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Plan:
    """How much to measure; `--quick` shrinks every bound."""

    rounds: int
    seconds: int  # per phase
    connections: int
    numbers: int  # seeded
    posts: int  # distinct numbers per POST phase: more than the phase can create
    pin: bool

    @property
    def last_page(self) -> int:
        return self.numbers // LIST_LIMIT


# --- the baseline ----------------------------------------------------------------------

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
        return web.Response(body=raw.encode(), content_type="application/json")

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


# --- requests and seeding ----------------------------------------------------------------


def create_body(number: str) -> bytes:
    return json.dumps(
        {
            "provider": "twilio",
            "number": number,
            "name": f"Bench {number}",
            "twilioAccountSid": TWILIO_ACCOUNT_SID,
            "twilioAuthToken": TWILIO_AUTH_TOKEN,
            "assistantId": ASSISTANT_ID,
            "server": {"url": "https://example.com/assistant-request", "timeoutSeconds": 20},
        }
    ).encode()


def creates(target: str, headers: dict[str, str], block: int, count: int) -> list[HttpRequest]:
    """`count` POSTs of new twilio numbers, +1415 and 7 digits from `block` * POST_BLOCK."""
    start = block * POST_BLOCK
    return [
        HttpRequest("POST", target, headers, create_body(f"+1415{start + i:07d}"))
        for i in range(count)
    ]


async def seed(redis_url: str, numbers: int, concurrency: int = 64) -> list[str]:
    """Create `numbers` twilio numbers with router's own service (what the API would write,
    validated alike); the baseline's blobs are copies of the first GET_IDS documents."""
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
        sample = ids[:GET_IDS]
        raws = await store.client.mget([keys.doc(KIND_PHONE_NUMBER, i) for i in sample])
        await store.client.mset(
            {BLOB_PREFIX + i: raw for i, raw in zip(sample, raws, strict=True) if raw is not None}
        )
        return sample
    finally:
        await store.close()


def check_listing(router: Server, plan: Plan) -> None:
    """The listings measured are the ones meant: full pages over exactly the seeded numbers."""
    for page in (1, plan.last_page):
        status, body = http_call(
            f"{router.url}/v2/phone-number?page={page}&limit={LIST_LIMIT}", headers=AUTH
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


# --- the run -----------------------------------------------------------------------------


def run(plan: Plan) -> dict[str, Any]:
    """Start everything, measure, stop everything; the figures as a JSON-ready dict."""
    with processes("api") as started:
        return measure(plan, started)


def measure(plan: Plan, started: Processes) -> dict[str, Any]:
    # Redis shares the servers' core: each side pays for the Redis work it causes.
    bench = Bench.pinned(plan.pin)
    bench.redis = start_redis(started, bench.server_cpus)
    print(f"seeding {plan.numbers} numbers ...", flush=True)
    seeded_at = time.perf_counter()
    ids = asyncio.run(seed(bench.redis.url, plan.numbers))
    print(f"  seeded in {time.perf_counter() - seeded_at:.1f} s", flush=True)

    port = free_port()
    baseline = Server(
        "baseline",
        started.start(
            "baseline",
            [
                sys.executable,
                __file__,
                "--serve-baseline",
                str(port),
                "--redis-url",
                bench.redis.url,
            ],
            cpus=bench.server_cpus,
        ),
        f"http://127.0.0.1:{port}",
    )
    router = start_router(started, bench.redis.url, cpus=bench.server_cpus, log_level="warning")
    wait_ready(baseline)
    check_listing(router, plan)
    body_bytes = {
        "baseline_get": len(http_call(f"{baseline.url}/blob/{ids[0]}")[1]),
        "router_get": len(http_call(f"{router.url}/phone-number/{ids[0]}", headers=AUTH)[1]),
    }

    def requests_file(name: str, requests: list[HttpRequest]) -> Path:
        return write_requests(started.log_dir / f"{name}.requests", requests)

    gets = {
        "baseline": requests_file(
            "baseline-get", [HttpRequest("GET", f"/blob/{i}", {}) for i in ids]
        ),
        "router": requests_file(
            "router-get", [HttpRequest("GET", f"/phone-number/{i}", AUTH) for i in ids]
        ),
    }
    sides = (baseline, router)
    for server in sides:
        bench.run(
            "warm-up",
            server,
            gets[server.name],
            seconds=1,
            connections=plan.connections,
            quiet=True,
        )

    print(f"GET: {plan.connections} connections, {plan.rounds} round(s)", flush=True)
    get_phases: dict[str, list[Phase]] = {"baseline": [], "router": []}
    for r in range(plan.rounds):
        for server in alternate(r, sides):
            get_phases[server.name].append(
                bench.run(
                    f"{server.name} GET",
                    server,
                    gets[server.name],
                    seconds=plan.seconds,
                    connections=plan.connections,
                )
            )

    # Listings before any POST, so the org holds exactly the seeded numbers.
    print("listing: one request at a time", flush=True)
    pages = (1, plan.last_page)
    list_phases: dict[int, list[Phase]] = {page: [] for page in pages}
    for r in range(plan.rounds):
        for page in alternate(r, pages):
            target = f"/v2/phone-number?page={page}&limit={LIST_LIMIT}"
            list_phases[page].append(
                bench.run(
                    f"list page {page}",
                    router,
                    requests_file(f"list-{page}", [HttpRequest("GET", target, AUTH)]),
                    seconds=plan.seconds,
                    connections=1,
                )
            )

    print(f"POST: {plan.connections} connections, {plan.rounds} round(s)", flush=True)
    targets = {"baseline": ("/blob", JSON), "router": ("/phone-number", {**AUTH, **JSON})}
    post_phases: dict[str, list[Phase]] = {"baseline": [], "router": []}
    for r in range(plan.rounds):
        for server in alternate(r, sides):
            target, headers = targets[server.name]
            posts = creates(target, headers, r, plan.posts)
            post_phases[server.name].append(
                bench.run(
                    f"{server.name} POST",
                    server,
                    requests_file(f"{server.name}-post-{r}", posts),
                    seconds=plan.seconds,
                    connections=plan.connections,
                )
            )
            if server is router and post_phases["router"][-1].load.requests > plan.posts:
                print("    (more POSTs than distinct numbers: raise --posts)", flush=True)

    return report(plan, get_phases, post_phases, list_phases, body_bytes, bench.phases)


def report(
    plan: Plan,
    gets: dict[str, list[Phase]],
    posts: dict[str, list[Phase]],
    listing: dict[int, list[Phase]],
    body_bytes: dict[str, int],
    phases: Sequence[Phase],
) -> dict[str, Any]:
    """Best rounds and ratios, and every phase."""

    def best(group: Sequence[Phase]) -> Phase:
        # Other work on the machine only ever slows a round down: the best is the cleanest.
        return max(group, key=lambda p: p.load.rps)

    def capacity(group: Sequence[Phase]) -> float:
        return max(p.capacity_rps for p in group)

    def per_round(a: Sequence[Phase], b: Sequence[Phase]) -> list[float]:
        return [ratio(x.load.rps, y.load.rps) for x, y in zip(a, b, strict=True)]

    first, last = best(listing[1]), best(listing[plan.last_page])
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "pinned": plan.pin},
        "plan": {**asdict(plan), "last_page": plan.last_page},
        "body_bytes": body_bytes,
        "summary": {
            "baseline_get": best(gets["baseline"]).to_json(),
            "router_get": best(gets["router"]).to_json(),
            "baseline_post": best(posts["baseline"]).to_json(),
            "router_post": best(posts["router"]).to_json(),
            "list_page_1": first.to_json(),
            f"list_page_{plan.last_page}": last.to_json(),
        },
        "ratios": {
            "get_rps_router_over_baseline": ratio(
                best(gets["router"]).load.rps, best(gets["baseline"]).load.rps
            ),
            "get_capacity_router_over_baseline": ratio(
                capacity(gets["router"]), capacity(gets["baseline"])
            ),
            "post_rps_router_over_baseline": ratio(
                best(posts["router"]).load.rps, best(posts["baseline"]).load.rps
            ),
            "post_capacity_router_over_baseline": ratio(
                capacity(posts["router"]), capacity(posts["baseline"])
            ),
            "list_p50_last_page_over_page_1": ratio(last.load.p50_ms, first.load.p50_ms),
            "list_p99_last_page_over_page_1": ratio(last.load.p99_ms, first.load.p99_ms),
        },
        "ratios_per_round": {
            "get_rps_router_over_baseline": per_round(gets["router"], gets["baseline"]),
            "post_rps_router_over_baseline": per_round(posts["router"], posts["baseline"]),
        },
        "phases": [p.to_json() for p in phases],
    }


def print_report(report: dict[str, Any]) -> None:
    header = (
        f"{'phase':<16}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv us/req':>12}{'redis us/req':>14}{'busy':>6}{'errors':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, row in report["summary"].items():
        print(
            f"{name:<16}{row['rps']:>8.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['server_cpu_us_per_req']:>12.0f}{row['redis_cpu_us_per_req']:>14.0f}"
            f"{row['core_busy']:>6.2f}{sum(row['errors'].values()):>8}"
        )
    sizes = report["body_bytes"]
    print(
        f"\none GET answers {sizes['baseline_get']} bytes (baseline), "
        f"{sizes['router_get']} bytes (router)"
    )
    print(f"rows: best of {report['plan']['rounds']} round(s) by req/s; in brackets, per round")
    ratios, per_round = report["ratios"], report["ratios_per_round"]
    width = max(len(k) for k in ratios)
    for name, value in ratios.items():
        spread = per_round.get(name)
        extra = f"  [{', '.join(f'{x:.3f}' for x in spread)}]" if spread and len(spread) > 1 else ""
        print(f"{name:<{width}}  {value:6.3f}{extra}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Ratios are against a baseline measured in the same run; absolute numbers "
        "depend on the machine. Needs wrk, redis-server, taskset and uvloop.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~25 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--connections", type=int, default=32, help="closed loop (default 32)")
    parser.add_argument("--numbers", type=int, default=None, help="seeded (10000, quick 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=int, default=None, help="per phase (default 3)")
    parser.add_argument(
        "--posts", type=int, default=None, help="distinct numbers per POST phase (40000)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.numbers is not None and not LIST_LIMIT <= args.numbers <= 100_000:
        parser.error(f"--numbers must be between {LIST_LIMIT} and 100000")
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be between 1 and 256")
    if args.seconds is not None and not 1 <= args.seconds <= 30:
        parser.error("--seconds must be between 1 and 30")
    if args.rounds is not None and not 1 <= args.rounds <= 5:
        parser.error("--rounds must be between 1 and 5")
    if args.posts is not None and not 1000 <= args.posts < POST_BLOCK:
        parser.error(f"--posts must be between 1000 and {POST_BLOCK - 1}")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    numbers: int = args.numbers or (2000 if quick else 10_000)
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        seconds=args.seconds or (2 if quick else 3),
        connections=args.connections,
        numbers=numbers - numbers % LIST_LIMIT,
        posts=args.posts or (20_000 if quick else 40_000),
        pin=not args.no_pin and can_pin(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_baseline is not None:
        serve(baseline_app(args.redis_url), args.serve_baseline)
        return 0
    return run_bench("api.py", missing_tools(), lambda: run(plan_of(args)), print_report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
