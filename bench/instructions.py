"""Count the CPU instructions each server spends per `/twilio/voice` request (callgrind).

`webhooks.py` measures time, and time on a shared virtual machine moves: a fixed Python
loop can take twice as long from one second to the next. Instruction counts do not move.
This script runs the same three servers as `webhooks.py` (bare, floor, router), one at a
time under valgrind's callgrind, sends each the same pre-signed Twilio webhooks, and counts
the instructions the server process executed (user space; the kernel's share is not
counted) between two marks set with `callgrind_control`: after a warm-up, and after
`--requests` measured requests. Ratios are bare ÷ router and floor ÷ router.

Instructions are not time: a server that touches more memory per request waits more per
instruction. So the ratio here is an upper bound on the time ratio `webhooks.py` reports,
and the figure to compare changes with (a change that saves instructions saves them on
every machine). Needs valgrind (`apt-get install valgrind`) and redis-server.
Run: `python bench/instructions.py` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _load import run_load
from api import NO_PERSISTENCE, Processes, free_port, sigterm_as_exit, wait_ready, wait_redis
from webhooks import (
    API_KEY,
    ASSISTANT_ID,
    EDGE_SECRET,
    RUNTIME_URL,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_NUMBER,
    Cycle,
    api,
    check_answer,
    twilio_requests,
)

BENCH = Path(__file__).resolve().parent
# Under callgrind a server runs some 50 times slower: startup takes a while.
START_TIMEOUT_SECONDS = 300.0
REQUEST_TIMEOUT_SECONDS = 60.0


def callgrind(out: Path) -> list[str]:
    """valgrind running callgrind, collecting from the start, dumping to `out`."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]


def dumped_instructions(out: Path) -> int:
    """The instruction total of the dump `callgrind_control -d` wrote (`<out>.1`)."""
    for line in Path(f"{out}.1").read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}.1")


def measure(
    name: str, argv: list[str], env: dict[str, str] | None, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Start one server under callgrind, warm it, count `args.requests` requests.

    `{port}` and `{url}` in `argv` and in `env`'s values become the server's own."""
    processes = Processes(tmp)
    out = tmp / f"{name}.callgrind"
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def fill(text: str) -> str:
        return text.replace("{port}", str(port)).replace("{url}", url)

    argv = [fill(part) for part in argv]
    env = None if env is None else {key: fill(value) for key, value in env.items()}
    try:
        process = processes.start(name, [*callgrind(out), sys.executable, *argv], cpu=None, env=env)
        wait_ready(url + "/readyz", process, name, START_TIMEOUT_SECONDS)
        if name == "router":
            api(
                url,
                "POST",
                "/phone-number",
                {
                    "provider": "twilio",
                    "number": TWILIO_NUMBER,
                    "twilioAccountSid": TWILIO_ACCOUNT_SID,
                    "twilioAuthToken": TWILIO_AUTH_TOKEN,
                    "assistantId": ASSISTANT_ID,
                },
            )
        cycle = Cycle(url + "/twilio/voice", twilio_requests(url + "/twilio/voice", 1024))
        expected = ASSISTANT_ID.encode() if name == "router" else b""
        check_answer(name, cycle.url, cycle(0), expected)
        load = {"concurrency": args.concurrency, "engine": "raw", "timeout_s": 60.0}
        run_load(cycle, count=args.warmup, **load)
        subprocess.run(
            ["callgrind_control", "-z", str(process.pid)], check=True, capture_output=True
        )
        result = run_load(cycle, count=args.requests, **load)
        subprocess.run(
            ["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True
        )
        instructions = dumped_instructions(out)
    finally:
        processes.stop_all()
    per_request = instructions / args.requests
    print(f"  {name:8s} {per_request:12,.0f} instructions/request  errors {result.errors}")
    return {"instructions_per_request": round(per_request), "errors": result.errors}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="router-bench-instructions-") as name:
        tmp = Path(name)
        redis_processes = Processes(tmp)
        try:
            redis_port = free_port()
            redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
            redis_process = redis_processes.start(
                "redis",
                [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
                cpu=None,
            )
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            wait_redis(redis_url, redis_process)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
            router_env = env | {
                "ROUTER_REDIS_URL": redis_url,
                "ROUTER_API_KEY": API_KEY,
                "ROUTER_PUBLIC_URL": "{url}",
                "ROUTER_RUNTIME_URL": RUNTIME_URL,
                "ROUTER_SIP_EDGE_SECRET": EDGE_SECRET,
                "ROUTER_LOG_LEVEL": "info",
                "ROUTER_LOG_FORMAT": "json",
                "ROUTER_DATA_DIR": str(tmp / "data"),
            }
            webhooks = str(BENCH / "webhooks.py")
            sides = {
                "bare": ([webhooks, "--serve-bare", "{port}"], env),
                "floor": (
                    [webhooks, "--serve-floor", "{port}", "--signed-url", "{url}/twilio/voice"],
                    env,
                ),
                "router": (
                    ["-m", "router", "serve", "--host", "127.0.0.1", "--port", "{port}"],
                    router_env,
                ),
            }
            figures = {
                side: measure(side, argv, side_env, tmp, args)
                for side, (argv, side_env) in sides.items()
            }
        finally:
            redis_processes.stop_all()
    router = figures["router"]["instructions_per_request"]
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "servers": figures,
        "bare_over_router": round(figures["bare"]["instructions_per_request"] / router, 3),
        "floor_over_router": round(figures["floor"]["instructions_per_request"] / router, 3),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=600, help="measured (default 600)")
    parser.add_argument("--warmup", type=int, default=300, help="before counting (300)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed loop (32)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if not 50 <= args.requests <= 20_000:
        parser.error("--requests must be between 50 and 20000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)}: apt-get install valgrind", file=sys.stderr)
        return 2
    print(f"callgrind, {args.requests} requests per server at concurrency {args.concurrency}")
    with sigterm_as_exit():
        report = run(args)
    print(f"\nbare / router instructions   {report['bare_over_router']:.3f}")
    print(f"floor / router instructions  {report['floor_over_router']:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(side["errors"] for side in report["servers"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
