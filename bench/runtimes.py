"""What does choosing a runtime cost on the static route?

Three servers, each one process on core 0 with Redis, the same wrk load from core 1, in
alternating rounds: the bare app (the baseline, as in `webhooks.py`); router with no
runtimes file (every call to `ROUTER_RUNTIME_URL`, which still gets its failover
callbacks); and router with a runtimes file whose route matches the static assistant and
splits its calls 50/50 between two stream runtimes, a SIP runtime as a standby, callers
sticky (a route matched, a weighted rendezvous choice, the callbacks' query, per call).
Each router answers the same pre-signed Twilio webhooks with unique CallSids. The figures
are req/s and CPU per request against the bare app's, and the difference between the two
routers: the cost of runtime selection.

Run: `python bench/runtimes.py` (about 1 minute) or `--quick`.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml
from common import (
    ASSISTANT_ID,
    Bench,
    CommandStats,
    Phase,
    alternate,
    can_pin,
    check_answer,
    create_twilio_number,
    missing_tools,
    processes,
    ratio,
    run_bench,
    start_bare,
    start_redis,
    start_router,
    twilio_requests,
    write_requests,
)

RUNTIMES = {
    "runtimes": [
        {"name": "blue", "kind": "stream", "url": "wss://blue.example.com/stream"},
        {"name": "green", "kind": "stream", "url": "wss://green.example.com/stream"},
        {"name": "agent", "kind": "sip", "uri": "sip:agent@sip.example.com"},
    ],
    "routes": [
        {"match": {"orgId": "acme"}, "runtimes": [{"name": "agent"}]},
        {
            "match": {"assistantId": ASSISTANT_ID},
            "runtimes": [
                {"name": "blue", "weight": 50},
                {"name": "green", "weight": 50},
                {"name": "agent", "weight": 0},
            ],
            "sticky": "caller",
        },
    ],
}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with processes("runtimes") as started:
        bench = Bench.pinned(not args.no_pin and can_pin())
        bench.redis = start_redis(started, bench.server_cpus)
        bench.stats = CommandStats(bench.redis.url)
        runtimes_file = started.log_dir / "runtimes.yaml"
        runtimes_file.write_text(yaml.safe_dump(RUNTIMES))
        servers = [
            start_bare(started, cpus=bench.server_cpus),
            start_router(started, f"{bench.redis.url}/1", cpus=bench.server_cpus),
            start_router(
                started,
                f"{bench.redis.url}/2",
                cpus=bench.server_cpus,
                name="router-runtimes",
                settings={"ROUTER_RUNTIMES_FILE": str(runtimes_file)},
            ),
        ]
        files = {}
        for server in servers:
            requests = twilio_requests(server.url + "/twilio/voice", args.variants)
            if server.name != "bare":
                create_twilio_number(server.url)
            expected = ASSISTANT_ID.encode() if server.name != "bare" else b"<Connect>"
            check_answer(server, requests[0], expected)
            files[server.name] = write_requests(
                started.log_dir / f"{server.name}.requests", requests
            )
            bench.run("warm-up", server, files[server.name], seconds=2, connections=32, quiet=True)
        rounds: dict[str, list[Phase]] = {server.name: [] for server in servers}
        for r in range(args.rounds):
            for server in alternate(r, servers):
                rounds[server.name].append(
                    bench.run(
                        server.name,
                        server,
                        files[server.name],
                        seconds=args.seconds,
                        connections=32,
                    )
                )
        bench.stats.close()
    return report(rounds, args)


def report(rounds: dict[str, list[Phase]], args: argparse.Namespace) -> dict[str, Any]:
    rps = {name: max(p.load.rps for p in phases) for name, phases in rounds.items()}
    us = {name: min(p.server_us_per_req for p in phases) for name, phases in rounds.items()}
    per_round = {
        name: [ratio(p.load.rps, b.load.rps) for p, b in zip(phases, rounds["bare"], strict=True)]
        for name, phases in rounds.items()
        if name != "bare"
    }
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "rps": rps,
        "server_us_per_request": us,
        "rps_over_bare": {name: ratio(value, rps["bare"]) for name, value in rps.items()},
        "rps_over_bare_median_round": {
            name: round(statistics.median(values), 3) for name, values in per_round.items()
        },
        "selection_us_per_request": round(us["router-runtimes"] - us["router"], 1),
        "phases": [
            {"name": p.name, "rps": p.load.rps, "us": p.server_us_per_req, "errors": p.load.errors}
            for phases in rounds.values()
            for p in phases
        ],
    }


def show(report: dict[str, Any]) -> None:
    print()
    for name, value in report["rps"].items():
        print(
            f"{name:<16} {value:8.0f} req/s  ÷ bare {report['rps_over_bare'][name]:.3f}"
            f"  {report['server_us_per_request'][name]:6.1f} us/req"
        )
    print(
        f"runtime selection: {report['selection_us_per_request']:+.1f} us/req "
        "(router with the runtimes file minus router without)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--variants", type=int, default=20_000, help="signed requests, cycled")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    return run_bench("runtimes.py", missing_tools(), lambda: measure(args), show, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
