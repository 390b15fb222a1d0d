"""How many CPU instructions does each server spend per `/twilio/voice` request (callgrind)?

`webhooks.py` measures time, and time on a shared virtual machine moves: a fixed Python
loop can take twice as long from one second to the next. Instruction counts do not move.
This script runs the bare app and router (the same servers and settings as `webhooks.py`),
one at a time under valgrind's callgrind, sends each the same pre-signed Twilio webhooks
with wrk, and counts the instructions the server process executed (user space; the
kernel's share is not counted) between two marks set with `callgrind_control`: after a
warm-up, and after `--seconds` of measured load. The ratio is bare ÷ router.

Instructions are not time: a server that touches more memory per request waits more per
instruction. So the ratio here is an upper bound on the time ratio `webhooks.py` reports,
and the figure to compare changes with (a change that saves instructions saves them on
every machine). Needs valgrind (`apt-get install valgrind`), wrk and redis-server.
Run: `python bench/instructions.py` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    ASSISTANT_ID,
    REPO,
    Processes,
    Server,
    check_answer,
    create_twilio_number,
    free_port,
    missing_tools,
    processes,
    router_env,
    run_bench,
    start_redis,
    twilio_requests,
    wait_ready,
    write_requests,
    wrk,
)

# Under callgrind a server runs some 50 times slower: startup takes a while.
START_TIMEOUT_SECONDS = 300.0
# Few connections: the requests in flight when a mark is set are counted on one side of it
# only, and with few of them against hundreds measured the error stays small.
CONNECTIONS = 4
# A moment for requests still in flight after a warm-up to finish before the counter resets.
SETTLE_SECONDS = 1.0


def dumped_instructions(out: Path) -> int:
    """The instruction total of the dump `callgrind_control -d` wrote (`<out>.1`)."""
    for line in Path(f"{out}.1").read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}.1")


def measure(
    name: str, argv: list[str], started: Processes, redis_url: str, args: argparse.Namespace
) -> int:
    """Instructions per request of one server under callgrind (`{port}` in `argv` filled
    in); a router is started on `redis_url` and gets the Twilio number first."""
    out = started.log_dir / f"{name}.callgrind"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [part.replace("{port}", str(port)) for part in argv]
    env = None
    if name == "router":
        env = router_env(redis_url, url, started.log_dir / "data")
    callgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    server = Server(name, started.start(name, [*callgrind, *argv], cpus=None, env=env), url)
    wait_ready(server, timeout_s=START_TIMEOUT_SECONDS)
    if name == "router":
        create_twilio_number(url)
    requests = twilio_requests(url + "/twilio/voice", 1024)
    check_answer(server, requests[0], ASSISTANT_ID.encode() if name == "router" else b"")
    requests_file = write_requests(started.log_dir / f"{name}.requests", requests)
    load = {"connections": CONNECTIONS, "timeout_s": 60.0}
    wrk(url, requests_file, seconds=args.warmup_seconds, **load)
    time.sleep(SETTLE_SECONDS)
    subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
    result = wrk(url, requests_file, seconds=args.seconds, **load)
    subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
    if result.errors:
        raise RuntimeError(f"{name}: errors under load: {dict(result.errors)}")
    per_request = dumped_instructions(out) // max(1, result.requests)
    print(f"  {name:8s} {per_request:12,d} instructions/request over {result.requests} requests")
    return per_request


def run(args: argparse.Namespace) -> dict[str, Any]:
    with processes("instructions") as started:
        redis = start_redis(started, None)
        bare = [sys.executable, str(REPO / "bench" / "common.py"), "bare", "--port", "{port}"]
        router = [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1"]
        figures = {
            "bare": measure("bare", bare, started, redis.url, args),
            "router": measure("router", [*router, "--port", "{port}"], started, redis.url, args),
        }
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "seconds": args.seconds,
        "connections": CONNECTIONS,
        "instructions_per_request": figures,
        "bare_over_router": round(figures["bare"] / figures["router"], 3),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=20, help="measured load (default 20)")
    parser.add_argument("--warmup-seconds", type=int, default=10, help="before counting (10)")
    parser.add_argument("--quick", action="store_true", help="5 s of warm-up, 5 s measured")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup_seconds = 5, 5
    if not 1 <= args.seconds <= 300 or not 1 <= args.warmup_seconds <= 300:
        parser.error("--seconds and --warmup-seconds must be between 1 and 300")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"callgrind, {args.seconds} s of wrk per server at {CONNECTIONS} connections")

    def show(report: dict[str, Any]) -> None:
        print(f"\nbare / router instructions   {report['bare_over_router']:.3f}")

    return run_bench(
        "instructions.py", missing_tools(valgrind=True), lambda: run(args), show, args.json
    )


if __name__ == "__main__":
    raise SystemExit(main())
