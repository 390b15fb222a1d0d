"""What does router's SIP edge add to a call's set-up time?

Two paths for the same SIPp caller (tests/sip/caller.xml), in alternating rounds of the
same run: through the edge (Kamailio from deploy/sip-edge/run.sh asking router's
`/sip/route` over HTTP, router on Redis deciding an assistant on a `sip` runtime, the
edge relaying the INVITE to a SIPp agent playing the runtime), and straight to that agent.
The figure is each call's set-up time on the caller's clock: from sending the INVITE to
receiving its 200 OK (SIPp's gettimeofday, in microseconds), p50 and p99 over every call
of each path, and the ratios edge/direct. Servers (Redis, router, Kamailio, the agent) run
on core 0, the caller on core 1 when the machine has two cores.

Run: `python bench/sip_edge.py` (300 calls a path at 50 calls/s, about 30 s) or `--quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    EDGE_SECRET,
    LOAD_CPUS,
    SERVER_CPUS,
    Processes,
    api,
    can_pin,
    free_port,
    processes,
    ratio,
    redis_server,
    sigterm_as_exit,
    start_redis,
    start_router,
)

REPO = Path(__file__).resolve().parent.parent
RUN_SH = REPO / "deploy" / "sip-edge" / "run.sh"
CALLER_XML = REPO / "tests" / "sip" / "caller.xml"
AGENT_XML = REPO / "tests" / "sip" / "agent.xml"
DOMAIN = "sip.bench.example.com"
USER = "bench"
CALLER = "+14155550123"
EDGE_READY_SECONDS = 20.0


def missing_tools() -> list[str]:
    missing = []
    if shutil.which("sipp") is None:
        missing.append("sipp (caller and agent): apt-get install sip-tester")
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        missing.append(
            "kamailio: apt-get install kamailio kamailio-json-modules kamailio-utils-modules"
        )
    if redis_server() is None:
        missing.append("redis-server: apt-get install redis-server")
    return missing


def start_edge(started: Processes, router_url: str, cpus: str | None) -> int:
    """Kamailio as run.sh starts it; ready once it listens (and its children started)."""
    port = free_port()
    env = {
        **os.environ,
        "EDGE_LISTEN": "127.0.0.1",
        "EDGE_RUNTIME_DIR": str(started.log_dir / "edge"),
        "EDGE_DEBUG": "1",  # warnings only: the bench is not about logging
    }
    edge = started.start(
        "edge", ["bash", str(RUN_SH), router_url, EDGE_SECRET, str(port)], cpus=cpus, env=env
    )
    deadline = time.monotonic() + EDGE_READY_SECONDS
    log = started.log_path("edge")
    while "Listening on" not in log.read_text(errors="replace"):
        if edge.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the edge did not start")
        time.sleep(0.05)
    time.sleep(0.5)  # its children bind after the banner
    return port


def run_calls(
    started: Processes, name: str, target: str, calls: int, rate: int, cpus: str | None
) -> list[float]:
    """`calls` SIPp calls to `target` at `rate` a second; each call's INVITE-to-200 in ms."""
    workdir = started.log_dir / name
    workdir.mkdir()
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    argv = [
        *pin,
        *("sipp", target, "-sf", str(CALLER_XML), "-i", "127.0.0.1", "-p", str(free_port())),
        *("-m", str(calls), "-r", str(rate), "-l", str(calls), "-d", "1"),
        *("-s", USER, "-key", "domain", DOMAIN, "-key", "caller", CALLER),
        *("-trace_logs", "-nostdin", "-timeout", "120s", "-timeout_error"),
    ]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, timeout=180, check=False)
    if done.returncode != 0:
        tail = done.stdout.decode(errors="replace")[-2000:]
        raise RuntimeError(f"sipp {name} exited with {done.returncode}:\n{tail}")
    times = []
    for path in workdir.glob("*_logs.log"):
        for line in path.read_text().splitlines():
            # "<call-id> setup <sent s> <sent us> <200 s> <200 us>" (tests/sip/caller.xml)
            _, word, *stamps = line.split()
            if word == "setup":
                sent_s, sent_us, ok_s, ok_us = (float(stamp) for stamp in stamps)
                times.append((ok_s - sent_s) * 1000 + (ok_us - sent_us) / 1000)
    if len(times) != calls:
        raise RuntimeError(f"{name}: {len(times)} response times for {calls} calls")
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(times: list[float]) -> dict[str, float]:
    return {
        "calls": len(times),
        "p50_ms": percentile(times, 0.50),
        "p99_ms": percentile(times, 0.99),
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    pin = can_pin()
    servers, load = (SERVER_CPUS, LOAD_CPUS) if pin else (None, None)
    with processes("sip-edge") as started:
        agent_port = free_port()
        started.start(
            "agent",
            ["sipp", "-sf", str(AGENT_XML), "-i", "127.0.0.1", "-p", str(agent_port), "-nostdin"],
            cpus=servers,
        )
        runtimes = started.log_dir / "runtimes.yml"
        runtimes.write_text(
            "runtimes:\n"
            f'  - {{name: agent, kind: sip, uri: "sip:agent@127.0.0.1:{agent_port}"}}\n'
            "routes:\n  - match: {provider: sip}\n    runtimes: [{name: agent}]\n"
        )
        redis = start_redis(started, servers)
        router = start_router(
            started,
            redis.url,
            cpus=servers,
            log_level="warning",
            settings={"ROUTER_RUNTIMES_FILE": str(runtimes)},
        )
        api(
            router.url,
            "POST",
            "/phone-number",
            {"provider": "vapi", "sipUri": f"sip:{USER}@{DOMAIN}", "assistantId": "asst-bench"},
        )
        edge_port = start_edge(started, router.url, servers)
        paths = {"edge": f"127.0.0.1:{edge_port}", "direct": f"127.0.0.1:{agent_port}"}
        # a warm-up call each, not counted: connections opened, code paths loaded
        for name, target in paths.items():
            run_calls(started, f"warmup-{name}", target, 5, 5, load)
        times: dict[str, list[float]] = {name: [] for name in paths}
        per_round = max(1, args.calls // args.rounds)
        for round_index in range(args.rounds):
            order = list(paths) if round_index % 2 == 0 else list(reversed(paths))
            for name in order:
                label = f"{name}-{round_index}"
                times[name] += run_calls(started, label, paths[name], per_round, args.rate, load)
    edge, direct = summary(times["edge"]), summary(times["direct"])
    return {
        "pinned": pin,
        "rate_cps": args.rate,
        "edge": edge,
        "direct": direct,
        "p50_ratio": ratio(edge["p50_ms"], direct["p50_ms"]),
        "p99_ratio": ratio(edge["p99_ms"], direct["p99_ms"]),
        "phases": [],
    }


def show(report: dict[str, Any]) -> None:
    print(f"INVITE to 200 OK at {report['rate_cps']} calls/s (pinned: {report['pinned']})")
    print(f"{'path':8} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'max ms':>8}")
    for name in ("edge", "direct"):
        row = report[name]
        print(
            f"{name:8} {row['calls']:>6} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            f" {row['mean_ms']:>8.2f} {row['max_ms']:>8.2f}"
        )
    print(f"edge/direct: p50 x{report['p50_ratio']:.1f}, p99 x{report['p99_ratio']:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="calls per path (default 300)")
    parser.add_argument("--rate", type=int, default=50, help="calls per second (default 50)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--quick", action="store_true", help="60 calls a path, one round")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 60, 1
    missing = missing_tools()
    if missing:
        print("bench/sip_edge.py needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    with sigterm_as_exit():
        try:
            report = measure(args)
        except KeyboardInterrupt:
            print("\ninterrupted; every process it started was stopped", file=sys.stderr)
            return 130
    show(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
