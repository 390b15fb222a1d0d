"""How does `router serve --workers 2` compare with two bare processes on the same two cores?

Measured in one run, with the same wrk load: router with two workers (on Redis, as
`--workers` needs) against the bare app served by gunicorn with aiohttp's uvloop worker,
two workers too: the same pre-fork deployment, so what differs is what each worker does per
request. Servers and Redis are pinned to cores 0 and 1; wrk runs on the cores left over, or
shares cores 0 and 1 on a 2-core machine (then each side pays for wrk alike). The requests
are `webhooks.py`'s: signed `/twilio/voice` calls of a static route, unique CallSids.

Run: `python bench/workers.py` (about a minute) or `python bench/workers.py --quick`.
bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    ASSISTANT_ID,
    REPO,
    Bench,
    Phase,
    Processes,
    Server,
    alternate,
    check_answer,
    create_twilio_number,
    free_port,
    missing_tools,
    processes,
    ratio,
    run_bench,
    session_cpu,
    start_redis,
    start_router,
    twilio_requests,
    wait_ready,
    write_requests,
)

WORKERS = 2
SERVER_CPUS = "0,1"


@dataclass(frozen=True)
class Plan:
    """How much to measure; `--quick` shrinks every bound."""

    rounds: int
    seconds: int
    connections: int
    load_cpus: str | None  # None: not pinned
    pinned: bool


def start_bare_gunicorn(started: Processes, cpus: str | None) -> Server:
    """The bare app on gunicorn with aiohttp's uvloop worker, `WORKERS` workers."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        str(REPO / "bench"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "aiohttp.GunicornUVLoopWebWorker",
        "common:bare_app()",
    ]
    server = Server("bare", started.start("bare", argv, cpus=cpus), f"http://127.0.0.1:{port}")
    wait_ready(server)
    return server


def run(plan: Plan) -> dict[str, Any]:
    with processes("workers") as started:
        server_cpus = SERVER_CPUS if plan.pinned else None
        bench = Bench(server_cpus, plan.load_cpus)
        bench.redis = start_redis(started, server_cpus)
        bare = start_bare_gunicorn(started, server_cpus)
        router = start_router(started, bench.redis.url, cpus=server_cpus, workers=WORKERS)
        create_twilio_number(router.url)
        requests = twilio_requests(router.url + "/twilio/voice", 8192)
        requests_file = write_requests(started.log_dir / "twilio.requests", requests)
        check_answer(bare, requests[0], b"<Connect>")
        check_answer(router, requests[0], ASSISTANT_ID.encode())
        for server in (bare, router):
            # Long enough for every worker to see traffic and fill its caches.
            bench.run(
                "warm-up",
                server,
                requests_file,
                seconds=2,
                connections=plan.connections,
                quiet=True,
            )
        print(
            f"throughput: {WORKERS} workers each, {plan.connections} connections, "
            f"{plan.rounds} round(s)",
            flush=True,
        )
        phases: dict[str, list[Phase]] = {"bare": [], "router": []}
        busiest: dict[str, list[float]] = {"bare": [], "router": []}
        for r in range(plan.rounds):
            for server in alternate(r, [bare, router]):
                before = session_cpu(server.pid)
                phases[server.name].append(
                    bench.run(
                        f"{server.name} x{WORKERS} /twilio/voice",
                        server,
                        requests_file,
                        seconds=plan.seconds,
                        connections=plan.connections,
                    )
                )
                split = busiest_share(before, session_cpu(server.pid))
                busiest[server.name].append(split)
                print(f"    busiest process did {split:.0%} of the server's CPU", flush=True)
    return report(plan, phases, busiest)


def busiest_share(before: dict[int, float], after: dict[int, float]) -> float:
    """The share of a server's CPU its busiest process used: 1 ÷ workers when the kernel
    spread the connections evenly, near 1.0 when one worker accepted them all."""
    used = [seconds - before.get(pid, 0.0) for pid, seconds in after.items()]
    return round(max(used) / sum(used), 3) if sum(used) > 0 else 0.0


def report(
    plan: Plan, phases: dict[str, list[Phase]], busiest: dict[str, list[float]]
) -> dict[str, Any]:
    def best(group: Sequence[Phase]) -> Phase:
        # Other work on the machine only ever slows a round down: the best is the cleanest.
        return max(group, key=lambda p: p.load.rps)

    per_round = [
        ratio(r.load.rps, b.load.rps) for r, b in zip(phases["router"], phases["bare"], strict=True)
    ]
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
        "plan": asdict(plan),
        "rps_router_over_bare": ratio(
            best(phases["router"]).load.rps, best(phases["bare"]).load.rps
        ),
        "rps_router_over_bare_per_round": per_round,
        "rps_router_over_bare_median_round": round(statistics.median(per_round), 3),
        "capacity_router_over_bare": ratio(
            max(p.capacity_rps for p in phases["router"]),
            max(p.capacity_rps for p in phases["bare"]),
        ),
        "summary": {
            "bare": best(phases["bare"]).to_json(),
            "router": best(phases["router"]).to_json(),
        },
        "busiest_process_share": busiest,
        "phases": [p.to_json() for group in phases.values() for p in group],
    }


def print_report(report: dict[str, Any]) -> None:
    summary = report["summary"]
    spread = report["rps_router_over_bare_per_round"]
    rounds = (
        f" [rounds {min(spread):.2f}..{max(spread):.2f}, median "
        f"{report['rps_router_over_bare_median_round']:.2f}]"
        if len(spread) > 1
        else ""
    )
    print()
    print(
        f"router x{WORKERS} / bare x{WORKERS} req/s      {report['rps_router_over_bare']:.3f}"
        f"{rounds}  ({summary['router']['rps']:.0f} / {summary['bare']['rps']:.0f})"
    )
    print(
        f"router x{WORKERS} / bare x{WORKERS} capacity   {report['capacity_router_over_bare']:.3f}"
        "  (from CPU per request, all workers)"
    )
    print(
        f"p99 at full load        router {summary['router']['p99_ms']:.2f} ms, "
        f"bare {summary['bare']['p99_ms']:.2f} ms"
    )
    shares = report["busiest_process_share"]
    print(
        f"busiest process's share  router {max(shares['router']):.0%}, bare "
        f"{max(shares['bare']):.0%} of all its workers' CPU (even: {1 / WORKERS:.0%})"
    )
    if report["plan"]["pinned"] and report["plan"]["load_cpus"] == SERVER_CPUS:
        print("note: 2 cores only: wrk shared cores 0 and 1 with the servers")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Needs wrk, redis-server, taskset, uvloop and gunicorn.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~25 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--connections", type=int, default=64, help="closed loop (default 64)")
    parser.add_argument("--seconds", type=int, default=None, help="per phase (default 4)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 4, quick 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args(argv)
    if not 2 <= args.connections <= 512:
        parser.error("--connections must be between 2 and 512")
    if args.seconds is not None and not 1 <= args.seconds <= 60:
        parser.error("--seconds must be between 1 and 60")
    if args.rounds is not None and not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    cores = sorted(os.sched_getaffinity(0))
    pinned = not args.no_pin and {0, 1} <= set(cores)
    spare = [c for c in cores if c not in (0, 1)]
    if not pinned:
        load_cpus = None
    elif spare:
        load_cpus = ",".join(map(str, spare))
    else:
        load_cpus = SERVER_CPUS
    return Plan(
        rounds=args.rounds or (1 if args.quick else 4),
        seconds=args.seconds or (2 if args.quick else 4),
        connections=args.connections,
        load_cpus=load_cpus,
        pinned=pinned,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(
        "workers.py",
        missing_tools(gunicorn=True),
        lambda: run(plan_of(args)),
        print_report,
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
