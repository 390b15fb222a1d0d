"""Does every dynamic call get its assistant-request when many arrive at once?

One router worker (`python -m router serve` on the embedded store, its own temporary data
dir) and a customer server on loopback (an aiohttp app in this process) that answers each
assistant-request after `--server-seconds` (default 5) with `{"assistantId": "asst-bench"}`.
A Twilio number points its `server.url` at it. Then `--calls` (default 2,000) signed Twilio
voice webhooks, each with its own CallSid, are sent at once, each on its own connection.

The load generator is wrk (`apt-get install -y wrk`), `-c <calls>`, with a Lua script that
sends exactly one request per connection (`delay()` holds each connection after its first
request) and reads every answer. wrk measures each request's latency itself, on the caller's
clock (from writing the request to reading the whole answer), so no Python load generator
is needed. Every request is signed beforehand by twilio-python's `RequestValidator` and
handed to wrk in a file. wrk opens every connection first and writes each webhook
`--connect-first-seconds` (default 2) after its connection opened (plus its share of
`--arrival-seconds`, default 0: all at once), as calls arrive over a
load balancer's pooled connections; with 0, the connections and the webhooks arrive in one
burst, and a burst of new connections larger than the worker's listen backlog waits on the
kernel's retransmissions (`listen_overflows_host_wide` counts them; the counter is the whole
host's).

Reported: answers routed to the server's assistant (the TwiML names `asst-bench`), answers
that fell back (any other 200: the apology), other statuses, calls unanswered when wrk
stopped; latency p50/p99/max against the Twilio budget (7.5 s); assistant-requests the
customer server received and the most it held at once; the router process's peak resident
memory (`VmHWM` of /proc/<pid>/status) and its most open file descriptors (/proc/<pid>/fd,
sampled every 50 ms), and the CPU it used during the load. Exit status 1 unless every call
was routed inside the budget.

    python bench/assistant_request_load.py [--calls 2000] [--server-seconds 5] [--json out.json]

Router settings can be passed through the environment (e.g.
`ROUTER_ASSISTANT_REQUEST_MAX_CONNECTIONS=100` to see the old limit). The script raises
its own RLIMIT_NOFILE to the hard limit; wrk and the router inherit it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from common import (
    API_KEY,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_NUMBER,
    api,
    free_port,
    twilio_voice_form,
)
from twilio.request_validator import RequestValidator

from router.ops.limits import raise_open_files_limit

ASSISTANT = "asst-bench"
BUDGET_SECONDS = 7.5
THREADS = 2

LUA = r"""
-- One signed webhook per connection, then the connection waits (delay) until wrk stops.
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads, marker = args[1], tonumber(args[2]), args[3]
  wanted = marker
  first_delay_ms = tonumber(args[4])
  spread_ms = tonumber(args[5])
  extra = wrk.format("GET", "/healthz")
  requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id - 1 then
      local signature, body = line:match("^([^\t]*)\t(.*)$")
      table.insert(requests, wrk.format("POST", "/twilio/voice", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = signature,
      }, body))
    end
    i = i + 1
  end
  issued, routed, fellback, other, extras = 0, 0, 0, 0, 0
  -- wrk calls request() once on the first thread to check it, before any connection.
  checking = id == 1
end

function delay()
  -- The n-th webhook of a thread goes n/#requests of the way through the arrival spread.
  if issued < #requests then return first_delay_ms + math.floor(spread_ms * issued / #requests) end
  return 3600000
end

function request()
  if checking then
    checking = false
    return requests[1]
  end
  issued = issued + 1
  -- Never a webhook twice: a connection asked for more than its share gets a health check.
  if issued > #requests then return extra end
  return requests[issued]
end

function response(status, headers, body)
  if string.find(body, '"status"', 1, true) then
    extras = extras + 1
  elseif status == 200 and string.find(body, wanted, 1, true) then
    routed = routed + 1
  elseif status == 200 then
    fellback = fellback + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local r, f, o, e = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    r = r + t:get("routed")
    f = f + t:get("fellback")
    o = o + t:get("other")
    e = e + t:get("extras")
  end
  io.write(string.format(
    'WRK {"routed": %d, "fellback": %d, "other": %d, "extras": %d, "completed": %d, '
    .. '"timeouts": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d, "min_us": %d}\n',
    r, f, o, e, summary.requests, summary.errors.timeout, summary.errors.connect,
    summary.errors.read, summary.errors.write,
    latency:percentile(50), latency:percentile(99), latency.max, latency.min))
end
"""


class Customer:
    """The customer's server: every assistant-request answered after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.first_at, self.last_at = float("inf"), 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received += 1
        now = time.monotonic()
        self.first_at = min(self.first_at, now)
        self.last_at = max(self.last_at, now)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return web.json_response({"assistantId": ASSISTANT})


class Sampler:
    """The router process's open descriptors and resident memory, every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.most_fds = 0
        self.most_rss_kb = 0

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            self.most_fds = max(self.most_fds, len(os.listdir(f"/proc/{self.pid}/fd")))
            self.most_rss_kb = max(self.most_rss_kb, self.status_kb("VmRSS"))

    def status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User and system CPU the router used so far (/proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


async def wait_ready(base: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"router exited with {process.returncode}")
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("router did not start within 30 s")


def signed_requests(public_url: str, calls: int) -> list[str]:
    """One `signature<TAB>form body` line per call, each with its own CallSid."""
    validator = RequestValidator(TWILIO_AUTH_TOKEN)
    lines = []
    for i in range(calls):
        form = twilio_voice_form(f"CA{i + 1:032x}")
        signature = validator.compute_signature(public_url + "/twilio/voice", form)
        lines.append(f"{signature}\t{urlencode(form)}")
    return lines


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    nofile = raise_open_files_limit()
    customer = Customer(args.server_seconds)
    app = web.Application()
    app.router.add_post("/assistant-request", customer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    customer_port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", customer_port, backlog=4096)
    await site.start()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "ROUTER_API_KEY": API_KEY,
            "ROUTER_DATA_DIR": str(work / "data"),
            "ROUTER_PUBLIC_URL": base,
            "ROUTER_LOG_FORMAT": "json",
        }
        env.pop("ROUTER_REDIS_URL", None)
        log_file = (work / "router.log").open("wb")
        router = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "router",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_ready(base, router)
            await asyncio.to_thread(
                api,
                base,
                "POST",
                "/phone-number",
                {
                    "provider": "twilio",
                    "number": TWILIO_NUMBER,
                    "twilioAccountSid": TWILIO_ACCOUNT_SID,
                    "twilioAuthToken": TWILIO_AUTH_TOKEN,
                    "server": {"url": f"http://127.0.0.1:{customer_port}/assistant-request"},
                },
            )
            requests_file = work / "requests.tsv"
            requests_file.write_text("\n".join(signed_requests(base, args.calls)) + "\n")
            script = work / "one_each.lua"
            script.write_text(LUA)

            sampler = Sampler(router.pid)
            sampler.sample()
            idle_fds, idle_rss_kb = sampler.most_fds, sampler.status_kb("VmRSS")
            cpu_before = sampler.cpu_seconds()
            overflows_before = listen_overflows()
            stop = asyncio.Event()
            sampling = asyncio.create_task(sampler.run(stop))
            started = time.perf_counter()
            load = await asyncio.create_subprocess_exec(
                wrk,
                "-t",
                str(THREADS),
                "-c",
                str(args.calls),
                "-d",
                f"{args.seconds}s",
                "--timeout",
                f"{args.seconds}s",
                "-s",
                str(script),
                base,
                "--",
                str(requests_file),
                str(THREADS),
                ASSISTANT,
                str(int(args.connect_first_seconds * 1000)),
                str(int(args.arrival_seconds * 1000)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await load.communicate()
            wall = time.perf_counter() - started
            cpu_seconds = sampler.cpu_seconds() - cpu_before
            overflows = listen_overflows() - overflows_before
            stop.set()
            await sampling
            peak_rss_kb = sampler.status_kb("VmHWM")
        finally:
            if router.returncode is None:
                router.terminate()
                await router.wait()
            log_file.close()
            await runner.cleanup()
        text = out.decode()
        line = next((x for x in text.splitlines() if x.startswith("WRK ")), None)
        if line is None:
            raise SystemExit(f"wrk gave no result:\n{text}")
        result: dict[str, Any] = json.loads(line.removeprefix("WRK "))
        logged = [
            json.loads(x)
            for x in (work / "router.log").read_text().splitlines()
            if x.startswith("{") and '"call.routed"' in x
        ]
    answered = result["routed"] + result["fellback"] + result["other"]
    return {
        "command": " ".join([sys.executable, *sys.argv]),
        "calls": args.calls,
        "server_seconds": args.server_seconds,
        "budget_seconds": BUDGET_SECONDS,
        "routed": result["routed"],
        "fell_back": result["fellback"],
        "other_status": result["other"],
        "unanswered": args.calls - answered,
        "health_checks_instead_of_a_second_webhook": result["extras"],
        "wrk_errors": {k: result[k] for k in ("timeouts", "connect_errors", "read_errors")},
        "latency_s": {
            "min": result["min_us"] / 1e6,
            "p50": result["p50_us"] / 1e6,
            "p99": result["p99_us"] / 1e6,
            "max": result["max_us"] / 1e6,
        },
        "over_budget": result["max_us"] / 1e6 > BUDGET_SECONDS,
        "assistant_requests_received": customer.received,
        "assistant_requests_most_at_once": customer.most_in_flight,
        "assistant_requests_arrived_over_s": round(customer.last_at - customer.first_at, 2),
        "router_logged_latency_s": _spread(e.get("latency_ms") for e in logged),
        "router_logged_assistant_request_s": _spread(
            e.get("assistant_request_latency_ms") for e in logged
        ),
        "call_routed_events": len(logged),
        "distinct_calls_logged": len({e.get("call_id") for e in logged}),
        "replayed_logged": sum(1 for e in logged if e.get("replayed")),
        "outcomes_logged": _count(e.get("assistant_request_outcome") for e in logged),
        "router_peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "router_idle_rss_mb": round(idle_rss_kb / 1024, 1),
        "router_most_fds": sampler.most_fds,
        "router_idle_fds": idle_fds,
        "router_cpu_seconds_during_load": round(cpu_seconds, 2),
        "rlimit_nofile": nofile,
        "listen_overflows_host_wide": overflows,
        "connect_first_seconds": args.connect_first_seconds,
        "arrival_seconds": args.arrival_seconds,
        "wall_seconds": round(wall, 2),
    }


def listen_overflows() -> int:
    """The host's count of connections dropped because a listen queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def _spread(values_ms: Any) -> dict[str, float]:
    """p50, p99 and max in seconds of the numbers among `values_ms` (milliseconds)."""
    ordered = sorted(v for v in values_ms if isinstance(v, int | float))
    if not ordered:
        return {}
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {"p50": at(0.5), "p99": at(0.99), "max": ordered[-1] / 1000}


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="simultaneous calls")
    parser.add_argument("--server-seconds", type=float, default=5.0, help="server latency")
    parser.add_argument(
        "--seconds", type=int, default=14, help="how long wrk runs (and its timeout)"
    )
    parser.add_argument(
        "--connect-first-seconds",
        type=float,
        default=2.0,
        help="open every connection, then send every webhook this long after its connection "
        "opened (as over a load balancer's pooled connections); 0: connect and send at once",
    )
    parser.add_argument(
        "--arrival-seconds",
        type=float,
        default=0.0,
        help="spread the webhooks evenly over this long (0: all at once)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.calls % THREADS:
        parser.error(f"--calls must be a multiple of {THREADS}")
    figures = asyncio.run(bench(args))
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = figures["routed"] == args.calls and not figures["over_budget"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
