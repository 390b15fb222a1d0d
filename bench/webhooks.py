"""Benchmark the webhook hot path: router's `/twilio/voice` against a bare aiohttp app.

The issue's requirement, measured in one run: drive `/twilio/voice` for a number with a
static `assistantId` (signature checked, cache warm) and a bare aiohttp app that only
reads the form and returns constant TwiML, with the same load generator, one worker
process each, pinned to the same core. Router must reach at least 40% of the bare app's
requests per second (aim: 50%), answer with p99 under 10 ms at 1,000 requests per second,
and a warm static route must make no Redis call. Then one line per provider (Twilio,
Telnyx TeXML, Vonage NCCO, the SIP edge), each a static-assistant route, properly signed.

Starts its own `redis-server` (no persistence), `python -m router serve` (logging at
`info`: one JSON `call.routed` line per call, written to a file), the bare app and a
reference "floor" app (both this file: `--serve-bare`, `--serve-floor`); the servers and
Redis run on core 0, the load generator (`bench/_load.py`, its own process) on core 1.
Numbers and credentials are created through the REST API; every request is signed before
the load starts. Figures are printed as a table and verdicts; `--json` writes them all.
Run: `python bench/webhooks.py` (about 2.5 minutes) or `python bench/webhooks.py --quick`
(about 30 s). bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import redis
from _load import Engine, LoadResult, Request, run_load
from aiohttp import web
from api import (
    NO_PERSISTENCE,
    Processes,
    cpu_seconds,
    free_port,
    sigterm_as_exit,
    wait_ready,
    wait_redis,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twilio.request_validator import RequestValidator

SERVER_CPU = 0
LOAD_CPU = 1
API_KEY = "bench-key"
EDGE_SECRET = "bench-sip-edge-secret-0123456789"
RUNTIME_URL = "wss://runtime.example.com/stream"
ASSISTANT_ID = "3f0c4f4e-7a40-4d55-9d55-8c7e0b5b1a01"
CALLER = "+14155550123"
TWILIO_NUMBER = "+14155550100"
TWILIO_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
TELNYX_NUMBER = "+14155550101"
VONAGE_NUMBER = "+14155550102"
VONAGE_API_KEY = "a1b2c3d4"
VONAGE_SIGNATURE_SECRET = "bench-vonage-signature-secret-0123456789abcdef"
SIP_URI = "sip:bench@sip.bench.example.com"
FORM = "application/x-www-form-urlencoded"
# Commands that are not the webhook path's: the subscription's keepalive and the bench's
# own INFO (and the client's handshake on connecting).
NOT_THE_HOT_PATH = frozenset({"ping", "subscribe", "info", "client|setinfo", "client"})
# The bare app answers what router answers for a Connect (same verbs, similar length).
BARE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    f'<Stream url="{RUNTIME_URL}">'
    '<Parameter name="callId" value="CA00000000000000000000000000000000"/>'
    '<Parameter name="target" value="assistant"/>'
    f'<Parameter name="targetId" value="{ASSISTANT_ID}"/>'
    f'<Parameter name="phoneNumberId" value="{ASSISTANT_ID}"/>'
    "</Stream></Connect></Response>"
).encode()
TARGET_RPS_RATIO = 0.40
AIM_RPS_RATIO = 0.50
TARGET_P99_MS = 10.0


@dataclass(frozen=True)
class Plan:
    """How much to measure; `--quick` shrinks every bound."""

    rounds: int  # alternating bare/router throughput rounds, and latency rounds
    seconds: float  # per throughput phase
    rate: float  # open-loop requests per second
    rate_seconds: float  # per latency phase
    provider_seconds: float  # per provider phase (throughput and latency)
    warmup: int
    concurrency: int
    variants: int  # distinct signed requests per provider (distinct CallSids), cycled
    engine: Engine
    pin: bool


# --- the bare app ---------------------------------------------------------------------------


def bare_app() -> web.Application:
    """Reads the form, answers constant TwiML: the floor router's `/twilio/voice` is held to."""

    async def voice(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(body=BARE_TWIML, headers={"Content-Type": "text/xml; charset=utf-8"})

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get("/readyz", readyz)
    return app


def floor_app(signed_url: str) -> web.Application:
    """The bare app plus the work no router can skip per call, done as plainly as possible:
    check the Twilio signature (HMAC-SHA1 over `signed_url` and the sorted fields), count
    and time the call in Prometheus, and log one `call.routed` line with router's own
    logging set-up and the same fields. A reference: router's ratio can hardly beat its."""
    import structlog
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from router.ops.logs import configure_logging

    configure_logging("json", "info")
    log = structlog.get_logger("router.pipeline.call_records")
    registry = CollectorRegistry()
    calls = Counter(
        "calls_total", "Calls.", ["provider", "route", "ended_reason"], registry=registry
    )
    seconds = Histogram("decision_seconds", "Latency.", ["provider", "route"], registry=registry)
    token = TWILIO_AUTH_TOKEN.encode()

    async def voice(request: web.Request) -> web.Response:
        started = time.perf_counter()
        form = await request.post()
        fields = sorted((name, str(value)) for name, value in form.items())
        signed = signed_url + "".join(name + value for name, value in fields)
        expected = base64.b64encode(hmac.digest(token, signed.encode(), "sha1"))
        if not hmac.compare_digest(
            expected, request.headers.get("X-Twilio-Signature", "").encode()
        ):
            return web.Response(status=403)
        latency = time.perf_counter() - started
        calls.labels("twilio", "assistant", "").inc()
        seconds.labels("twilio", "assistant").observe(latency)
        log.info(
            "call.routed",
            provider="twilio",
            endpoint="voice",
            call_id=str(form.get("CallSid", "")),
            router_call_id=str(uuid.uuid4()),
            org_id="default",
            phone_number_id=ASSISTANT_ID,
            to=str(form.get("To", "")),
            caller="********0123",
            route="assistant",
            target=ASSISTANT_ID,
            ended_reason=None,
            failure_reason=None,
            assistant_request_outcome=None,
            assistant_request_attempts=0,
            assistant_request_latency_ms=None,
            assistant_request_status=None,
            cache_hit=True,
            replayed=False,
            latency_ms=round(latency * 1000, 2),
            trace=["assistantId"],
        )
        return web.Response(body=BARE_TWIML, headers={"Content-Type": "text/xml; charset=utf-8"})

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get("/readyz", readyz)
    return app


# --- request factories (pickled to the load process) ---------------------------------------


@dataclass(frozen=True)
class Cycle:
    """POST `url` with the pre-built (body, headers) pairs in turn."""

    url: str
    requests: tuple[tuple[bytes, dict[str, str]], ...]

    def __call__(self, i: int) -> Request:
        body, headers = self.requests[i % len(self.requests)]
        return Request("POST", self.url, body, headers)


def twilio_voice_form(call_sid: str) -> dict[str, str]:
    """The fields of a real inbound voice webhook (a captured request, ids replaced)."""
    return {
        "AccountSid": TWILIO_ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9%22%7D",
        "Called": TWILIO_NUMBER,
        "CalledCity": "SAN FRANCISCO",
        "CalledCountry": "US",
        "CalledState": "CA",
        "CalledZip": "94105",
        "Caller": CALLER,
        "CallerCity": "OAKLAND",
        "CallerCountry": "US",
        "CallerState": "CA",
        "CallerZip": "94607",
        "Direction": "inbound",
        "From": CALLER,
        "FromCity": "OAKLAND",
        "FromCountry": "US",
        "FromState": "CA",
        "FromZip": "94607",
        "StirVerstat": "TN-Validation-Passed-A",
        "To": TWILIO_NUMBER,
        "ToCity": "SAN FRANCISCO",
        "ToCountry": "US",
        "ToState": "CA",
        "ToZip": "94105",
    }


def twilio_requests(signed_url: str, count: int) -> tuple[tuple[bytes, dict[str, str]], ...]:
    """Form POSTs, one CallSid each, signed by twilio-python over `signed_url`."""
    validator = RequestValidator(TWILIO_AUTH_TOKEN)
    out = []
    for i in range(count):
        form = twilio_voice_form(f"CA{i:032x}")
        signature = validator.compute_signature(signed_url, form)
        out.append(
            (urlencode(form).encode(), {"Content-Type": FORM, "X-Twilio-Signature": signature})
        )
    return tuple(out)


def telnyx_requests(key: Ed25519PrivateKey, count: int) -> tuple[tuple[bytes, dict[str, str]], ...]:
    """TeXML form POSTs, one call control id each, Ed25519-signed over `{timestamp}|{body}`."""
    stamp = str(int(time.time()))
    out = []
    for i in range(count):
        sid = f"v3:bench{i:08d}-aiQ_x"
        form = {
            "AccountSid": "f5586561-8ff0-4291-a51b-c7dfe4139ff9",
            "CallSid": sid,
            "CallSidLegacy": sid,
            "CallStatus": "ringing",
            "ConnectionId": "1494404757140276705",
            "Direction": "inbound",
            "From": CALLER,
            "To": TELNYX_NUMBER,
        }
        body = urlencode(form).encode()
        signature = base64.b64encode(key.sign(stamp.encode() + b"|" + body)).decode()
        headers = {
            "Content-Type": FORM,
            "telnyx-timestamp": stamp,
            "telnyx-signature-ed25519": signature,
        }
        out.append((body, headers))
    return tuple(out)


def vonage_requests(count: int) -> tuple[tuple[bytes, dict[str, str]], ...]:
    """JSON answer POSTs, one call uuid each, with Vonage's HS256 JWT binding the body."""
    now = int(time.time())
    out = []
    for i in range(count):
        body = json.dumps(
            {
                "to": VONAGE_NUMBER.removeprefix("+"),
                "from": CALLER.removeprefix("+"),
                "uuid": str(uuid.UUID(int=i)),
                "conversation_uuid": f"CON-{uuid.UUID(int=i)}",
            }
        ).encode()
        token = jwt.encode(
            {
                "iat": now,
                "jti": str(uuid.uuid4()),
                "iss": "Vonage",
                "payload_hash": hashlib.sha256(body).hexdigest(),
                "api_key": VONAGE_API_KEY,
                "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            },
            VONAGE_SIGNATURE_SECRET,
            algorithm="HS256",
        )
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        out.append((body, headers))
    return tuple(out)


def sip_requests(count: int) -> tuple[tuple[bytes, dict[str, str]], ...]:
    """SIP edge route requests, one Call-ID each, with the edge's bearer secret."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {EDGE_SECRET}"}
    out = []
    for i in range(count):
        body = json.dumps(
            {
                "callId": f"{i:032x}@pbx.bench.example.com",
                "from": f"<sip:{CALLER}@carrier.example.com>;tag=1",
                "to": "bench",
                "toUri": SIP_URI,
                "sourceIp": "203.0.113.7",
                "method": "INVITE",
            }
        ).encode()
        out.append((body, headers))
    return tuple(out)


# --- plain HTTP for set-up and checks ------------------------------------------------------


def http_call(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on 127.0.0.1 (set-up and sanity checks, never measured)."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, "/" + path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def api(base: str, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A REST API call as the operator makes it; raises on anything but 2xx."""
    status, raw = http_call(
        base + path,
        method,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {raw[:300]!r}")
    data: dict[str, Any] = json.loads(raw)
    return data


# --- Redis commands -------------------------------------------------------------------------


class CommandStats:
    """Counts of the commands Redis ran (INFO commandstats), over one open connection."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._client.ping()  # connect now: its handshake is not counted in any phase

    def snapshot(self) -> dict[str, int]:
        info: dict[str, Any] = self._client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in info.items()
            if isinstance(stats, dict)
        }

    def close(self) -> None:
        self._client.close()


def command_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Commands run between two snapshots, by name (zero counts left out)."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return {name: n for name, n in sorted(delta.items()) if n}


def hot_path_commands(delta: Mapping[str, int]) -> int:
    return sum(n for name, n in delta.items() if name not in NOT_THE_HOT_PATH)


# --- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    pid: int
    url: str


@dataclass
class Phase:
    """One measured load against one server, with the CPU and Redis commands it caused."""

    name: str
    mode: str  # "closed" (throughput) or "open" (latency at a rate)
    result: LoadResult
    server_us_per_req: float
    redis_us_per_req: float
    commands: dict[str, int]  # Redis commands run during the load (warm-up included)
    served: int  # requests the server answered, warm-up included

    @property
    def core_busy(self) -> float:
        """Share of core 0 the server and Redis used; near 1.0, the server was the limit."""
        us = self.server_us_per_req + self.redis_us_per_req
        return round(self.result.rps * us / 1e6, 3)

    @property
    def capacity_rps(self) -> float:
        """Requests per second one core could serve at this CPU cost (server + Redis)."""
        us = self.server_us_per_req + self.redis_us_per_req
        return round(1e6 / us, 1) if us else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            **self.result.to_json(),
            "server_cpu_us_per_req": self.server_us_per_req,
            "redis_cpu_us_per_req": self.redis_us_per_req,
            "core_busy": self.core_busy,
            "capacity_rps": self.capacity_rps,
            "redis_commands": self.commands,
            "redis_hot_path_commands": hot_path_commands(self.commands),
            "served": self.served,
        }


@dataclass
class Bench:
    plan: Plan
    redis_pid: int
    stats: CommandStats
    phases: list[Phase]

    def measure(
        self,
        name: str,
        target: Target,
        factory: Callable[[int], Request],
        *,
        seconds: float,
        rate: float | None = None,
    ) -> Phase:
        """One load: closed loop at the plan's concurrency, or open loop at `rate`."""
        pids = (target.pid, self.redis_pid)
        before_cpu = [cpu_seconds(pid) for pid in pids]
        before_cmds = self.stats.snapshot()
        result = run_load(
            factory,
            duration_s=seconds,
            concurrency=self.plan.concurrency if rate is None else max(64, self.plan.concurrency),
            rate=rate,
            warmup=self.plan.warmup,
            cpu=LOAD_CPU if self.plan.pin else None,
            expect=(200,),
            engine=self.plan.engine,
        )
        commands = command_delta(before_cmds, self.stats.snapshot())
        served = max(1, result.count + self.plan.warmup)
        server_us, redis_us = (
            round((cpu_seconds(pid) - start) / served * 1e6, 1)
            for pid, start in zip(pids, before_cpu, strict=True)
        )
        phase = Phase(
            name,
            "closed" if rate is None else "open",
            result,
            server_us,
            redis_us,
            commands,
            served,
        )
        self.phases.append(phase)
        print(
            f"  {name:<34} {result.rps:>7.0f} req/s  p50 {result.p50_ms:6.2f}  "
            f"p99 {result.p99_ms:6.2f} ms  server {server_us:5.0f} us/req  "
            f"redis cmds {hot_path_commands(commands)}  errors {result.errors}",
            flush=True,
        )
        if result.errors:
            print(f"    first error: {result.first_error}", flush=True)
        return phase


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def check_answer(name: str, url: str, request: Request, expect: bytes) -> int:
    """Send one request; it must be a 200 carrying `expect` (the static assistant's id)."""
    status, body = http_call(url, "POST", request.body, request.headers)
    if status != 200 or expect not in body:
        raise RuntimeError(f"{name}: unexpected answer {status} {body[:400]!r}")
    return len(body)


def count_routed(log: Path) -> int:
    """`call.routed` lines router wrote (its stdout)."""
    count = 0
    with log.open("rb") as lines:
        for line in lines:
            if b'"call.routed"' in line:
                count += 1
    return count


# --- the run --------------------------------------------------------------------------------


def run(plan: Plan, command: str) -> dict[str, Any]:
    """Start everything, measure, stop everything; the figures as a JSON-ready dict."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="router-bench-webhooks-") as tmp:
        processes = Processes(Path(tmp))
        stats: CommandStats | None = None
        try:
            redis_port = free_port()
            redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
            server_cpu = SERVER_CPU if plan.pin else None
            redis_process = processes.start(
                "redis",
                [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
                cpu=server_cpu,
            )
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            wait_redis(redis_url, redis_process)
            stats = CommandStats(redis_url)
            return _run(
                plan, command, started_at, processes, Path(tmp), redis_url, redis_process.pid, stats
            )
        except Exception:
            for name in ("router", "bare", "floor", "redis"):
                tail = processes.log_tail(name)
                if tail:
                    print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            if stats is not None:
                stats.close()
            processes.stop_all()


def _run(
    plan: Plan,
    command: str,
    started_at: str,
    processes: Processes,
    tmp: Path,
    redis_url: str,
    redis_pid: int,
    stats: CommandStats,
) -> dict[str, Any]:
    server_cpu = SERVER_CPU if plan.pin else None
    bare_port, floor_port, router_port = free_port(), free_port(), free_port()
    router_url = f"http://127.0.0.1:{router_port}"
    bare_process = processes.start(
        "bare", [sys.executable, __file__, "--serve-bare", str(bare_port)], cpu=server_cpu
    )
    floor_argv = ["--serve-floor", str(floor_port), "--signed-url", router_url + "/twilio/voice"]
    floor_process = processes.start(
        "floor", [sys.executable, __file__, *floor_argv], cpu=server_cpu
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env.update(
        ROUTER_REDIS_URL=redis_url,
        ROUTER_API_KEY=API_KEY,
        ROUTER_PUBLIC_URL=router_url,
        ROUTER_RUNTIME_URL=RUNTIME_URL,
        ROUTER_SIP_EDGE_SECRET=EDGE_SECRET,
        ROUTER_LOG_LEVEL="info",
        ROUTER_LOG_FORMAT="json",
        ROUTER_DATA_DIR=str(tmp / "data"),
    )
    serve = ["serve", "--host", "127.0.0.1", "--port", str(router_port)]
    router_process = processes.start(
        "router", [sys.executable, "-m", "router", *serve], cpu=server_cpu, env=env
    )
    bare = Target("bare", bare_process.pid, f"http://127.0.0.1:{bare_port}")
    floor = Target("floor", floor_process.pid, f"http://127.0.0.1:{floor_port}")
    router = Target("router", router_process.pid, router_url)
    wait_ready(bare.url + "/readyz", bare_process, "bare")
    wait_ready(floor.url + "/readyz", floor_process, "floor")
    wait_ready(router.url + "/readyz", router_process, "router")

    # The numbers and credentials, through the REST API as an operator makes them.
    routing = {"assistantId": ASSISTANT_ID}
    api(
        router.url,
        "POST",
        "/phone-number",
        {
            "provider": "twilio",
            "number": TWILIO_NUMBER,
            "twilioAccountSid": TWILIO_ACCOUNT_SID,
            "twilioAuthToken": TWILIO_AUTH_TOKEN,
            **routing,
        },
    )
    telnyx_key = Ed25519PrivateKey.generate()
    public = telnyx_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    telnyx_credential = api(
        router.url,
        "POST",
        "/credential",
        {
            "provider": "telnyx",
            "apiKey": "KEY-bench-telnyx-api-key",
            "publicKey": base64.b64encode(public).decode(),
        },
    )
    api(
        router.url,
        "POST",
        "/phone-number",
        {
            "provider": "telnyx",
            "number": TELNYX_NUMBER,
            "credentialId": telnyx_credential["id"],
            **routing,
        },
    )
    vonage_credential = api(
        router.url,
        "POST",
        "/credential",
        {
            "provider": "vonage",
            "apiKey": VONAGE_API_KEY,
            "apiSecret": "bench-vonage-api-secret",
            "signatureSecret": VONAGE_SIGNATURE_SECRET,
        },
    )
    api(
        router.url,
        "POST",
        "/phone-number",
        {
            "provider": "vonage",
            "number": VONAGE_NUMBER,
            "credentialId": vonage_credential["id"],
            **routing,
        },
    )
    api(router.url, "POST", "/phone-number", {"provider": "vapi", "sipUri": SIP_URI, **routing})

    # Every request signed now, before any load: signing is the provider's cost, not ours.
    n = plan.variants
    built_at = time.perf_counter()
    twilio = twilio_requests(router.url + "/twilio/voice", n)
    factories: dict[str, tuple[str, tuple[tuple[bytes, dict[str, str]], ...]]] = {
        "twilio": ("/twilio/voice", twilio),
        "telnyx": ("/telnyx/voice", telnyx_requests(telnyx_key, n)),
        "vonage": ("/vonage/answer", vonage_requests(n)),
        "sip": ("/sip/route", sip_requests(n)),
    }
    print(f"signed {n} requests per provider in {time.perf_counter() - built_at:.1f} s", flush=True)

    def factory(side: Target, provider: str) -> Cycle:
        path, requests = factories[provider]
        return Cycle(side.url + path, requests)

    # Each answer is the static assistant's; then warm the caches (numbers, credentials).
    expected = ASSISTANT_ID.encode()
    answer_bytes = {
        side.name: check_answer(
            side.name, side.url + "/twilio/voice", factory(side, "twilio")(0), b""
        )
        for side in (bare, floor)
    }
    for provider in factories:
        f = factory(router, provider)
        answer_bytes[provider] = check_answer(provider, f.url, f(0), expected)
        for i in range(1, 20):
            check_answer(provider, f.url, f(i), expected)
    sanity_requests = 20 * len(factories)

    bench = Bench(plan, redis_pid, stats, [])
    before_all = stats.snapshot()

    print(
        f"A: throughput, closed loop at concurrency {plan.concurrency}, "
        f"{plan.seconds:g} s per phase, {plan.rounds} round(s)",
        flush=True,
    )
    bare_a: list[Phase] = []
    floor_a: list[Phase] = []
    router_a: list[Phase] = []
    for r in range(plan.rounds):
        sides = [(bare, bare_a), (router, router_a), (floor, floor_a)]
        for side, out in sides if r % 2 == 0 else sides[::-1]:
            out.append(
                bench.measure(
                    f"{side.name} /twilio/voice c={plan.concurrency}",
                    side,
                    factory(side, "twilio"),
                    seconds=plan.seconds,
                )
            )

    print(f"B: latency, open loop at {plan.rate:g} req/s, {plan.rate_seconds:g} s", flush=True)
    router_b: list[Phase] = []
    bare_b: list[Phase] = []
    for r in range(plan.rounds):
        sides = [(router, router_b), (bare, bare_b)]
        for side, out in sides if r % 2 == 0 else sides[::-1]:
            out.append(
                bench.measure(
                    f"{side.name} /twilio/voice @{plan.rate:g}/s",
                    side,
                    factory(side, "twilio"),
                    seconds=plan.rate_seconds,
                    rate=plan.rate,
                )
            )

    print("providers: static assistant, signed", flush=True)
    providers: dict[str, dict[str, Phase]] = {}
    for provider, (path, _) in factories.items():
        f = factory(router, provider)
        providers[provider] = {
            "throughput": bench.measure(
                f"{provider} {path} c={plan.concurrency}", router, f, seconds=plan.provider_seconds
            ),
            "latency": bench.measure(
                f"{provider} {path} @{plan.rate:g}/s",
                router,
                f,
                seconds=plan.provider_seconds,
                rate=plan.rate,
            ),
        }
    after_all = stats.snapshot()

    routed = count_routed(tmp / "router.log")
    router_served = sanity_requests + sum(
        p.served for p in bench.phases if not p.name.startswith(("bare", "floor"))
    )
    return report(
        plan=plan,
        command=command,
        started_at=started_at,
        bare_a=bare_a,
        floor_a=floor_a,
        router_a=router_a,
        bare_b=bare_b,
        router_b=router_b,
        providers=providers,
        commands=command_delta(before_all, after_all),
        routed=routed,
        router_served=router_served,
        answer_bytes=answer_bytes,
        phases=bench.phases,
    )


def report(
    *,
    plan: Plan,
    command: str,
    started_at: str,
    bare_a: Sequence[Phase],
    floor_a: Sequence[Phase],
    router_a: Sequence[Phase],
    bare_b: Sequence[Phase],
    router_b: Sequence[Phase],
    providers: Mapping[str, Mapping[str, Phase]],
    commands: Mapping[str, int],
    routed: int,
    router_served: int,
    answer_bytes: Mapping[str, int],
    phases: Sequence[Phase],
) -> dict[str, Any]:
    """The figures: best rounds, ratios, verdicts, and every phase."""

    def fastest(group: Sequence[Phase]) -> Phase:
        return max(group, key=lambda p: p.result.rps)

    def cheapest(group: Sequence[Phase]) -> Phase:
        return max(group, key=lambda p: p.capacity_rps)

    def calmest(group: Sequence[Phase]) -> Phase:
        return min(group, key=lambda p: p.result.p99_ms)

    bare_best, router_best = fastest(bare_a), fastest(router_a)
    floor_best = fastest(floor_a)
    rps_ratio = ratio(router_best.result.rps, bare_best.result.rps)
    capacity_ratio = ratio(cheapest(router_a).capacity_rps, cheapest(bare_a).capacity_rps)
    per_round = [ratio(r.result.rps, b.result.rps) for r, b in zip(router_a, bare_a, strict=True)]
    latency = calmest(router_b)
    hot = hot_path_commands(commands)
    provider_rows = {
        name: {
            "rps": pair["throughput"].result.rps,
            "rps_over_bare": ratio(pair["throughput"].result.rps, bare_best.result.rps),
            "capacity_over_bare": ratio(
                pair["throughput"].capacity_rps, cheapest(bare_a).capacity_rps
            ),
            "server_cpu_us_per_req": pair["throughput"].server_us_per_req,
            "p50_ms_at_rate": pair["latency"].result.p50_ms,
            "p99_ms_at_rate": pair["latency"].result.p99_ms,
            "redis_hot_path_commands": hot_path_commands(pair["throughput"].commands)
            + hot_path_commands(pair["latency"].commands),
            "errors": pair["throughput"].result.errors + pair["latency"].result.errors,
            "answer_bytes": answer_bytes[name],
        }
        for name, pair in providers.items()
    }
    return {
        "command": command,
        "started_at": started_at,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "pinned": {"servers_and_redis": SERVER_CPU, "load": LOAD_CPU} if plan.pin else None,
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
        "plan": asdict(plan),
        "logging": {
            "router_log_level": "info",
            "call_routed_lines": routed,
            "router_requests_answered": router_served,
        },
        "verdicts": {
            "rps_router_over_bare": rps_ratio,
            "rps_router_over_bare_per_round": per_round,
            "rps_router_over_bare_median_round": round(statistics.median(per_round), 3),
            "capacity_router_over_bare": capacity_ratio,
            "floor_over_bare": ratio(floor_best.result.rps, bare_best.result.rps),
            "capacity_floor_over_bare": ratio(
                cheapest(floor_a).capacity_rps, cheapest(bare_a).capacity_rps
            ),
            "rps_target": TARGET_RPS_RATIO,
            "rps_aim": AIM_RPS_RATIO,
            "rps_ratio_met": rps_ratio >= TARGET_RPS_RATIO,
            "p99_ms_at_rate": latency.result.p99_ms,
            "p99_ms_at_rate_per_round": [p.result.p99_ms for p in router_b],
            "rate": plan.rate,
            "achieved_rate": latency.result.rps,
            "p99_target_ms": TARGET_P99_MS,
            "p99_met": latency.result.p99_ms < TARGET_P99_MS and latency.result.errors == 0,
            "redis_commands_all_phases": dict(commands),
            "redis_hot_path_commands": hot,
            "no_redis_call": hot == 0,
        },
        "summary": {
            "bare_throughput": row(bare_best),
            "router_throughput": row(router_best),
            "floor_throughput": row(floor_best),
            "router_at_rate": row(latency),
            "bare_at_rate": row(calmest(bare_b)),
        },
        "providers": provider_rows,
        "phases": [p.to_json() for p in phases],
    }


def row(phase: Phase) -> dict[str, Any]:
    r = phase.result
    return {
        "name": phase.name,
        "rps": r.rps,
        "p50_ms": r.p50_ms,
        "p90_ms": r.p90_ms,
        "p99_ms": r.p99_ms,
        "max_ms": r.max_ms,
        "server_cpu_us_per_req": phase.server_us_per_req,
        "core_busy": phase.core_busy,
        "client_cpu": r.client_cpu,
        "send_lag_p99_ms": r.send_lag_p99_ms,
        "errors": r.errors,
    }


def print_report(report: dict[str, Any]) -> None:
    summary, verdicts = report["summary"], report["verdicts"]
    header = (
        f"{'phase':<34}{'req/s':>8}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>7}"
        f"{'srv us':>8}{'busy':>6}{'load cpu':>9}{'err':>5}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in summary.values():
        print(
            f"{r['name']:<34}{r['rps']:>8.0f}{r['p50_ms']:>7.2f}{r['p90_ms']:>7.2f}"
            f"{r['p99_ms']:>7.2f}{r['max_ms']:>7.1f}{r['server_cpu_us_per_req']:>8.0f}"
            f"{r['core_busy']:>6.2f}{r['client_cpu']:>9.2f}{r['errors']:>5}"
        )
    print("(ms; throughput rows: best round by req/s; rate rows: best round by p99)")
    print()
    provider_header = (
        f"{'provider':<10}{'req/s':>8}{'÷ bare':>8}{'cpu ÷ bare':>11}{'srv us':>8}"
        f"{'p50@rate':>9}{'p99@rate':>9}{'redis':>7}{'err':>5}"
    )
    print(provider_header)
    print("-" * len(provider_header))
    for name, p in report["providers"].items():
        print(
            f"{name:<10}{p['rps']:>8.0f}{p['rps_over_bare']:>8.2f}{p['capacity_over_bare']:>11.2f}"
            f"{p['server_cpu_us_per_req']:>8.0f}{p['p50_ms_at_rate']:>9.2f}"
            f"{p['p99_ms_at_rate']:>9.2f}{p['redis_hot_path_commands']:>7}{p['errors']:>5}"
        )
    print()

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    spread = verdicts["rps_router_over_bare_per_round"]
    extra = (
        f" [rounds {min(spread):.2f}..{max(spread):.2f}, median "
        f"{verdicts['rps_router_over_bare_median_round']:.2f}]"
        if len(spread) > 1
        else ""
    )
    print(
        f"router / bare req/s      {verdicts['rps_router_over_bare']:.3f}{extra}  "
        f"(target >= {TARGET_RPS_RATIO}, aim {AIM_RPS_RATIO})  "
        f"{mark(verdicts['rps_ratio_met'])}"
    )
    print(
        f"router / bare capacity   {verdicts['capacity_router_over_bare']:.3f}  "
        "(from CPU per request: steady on a busy machine)"
    )
    print(
        f"floor / bare req/s       {verdicts['floor_over_bare']:.3f}  (capacity "
        f"{verdicts['capacity_floor_over_bare']:.3f}; bare + signature + one call.routed line "
        "+ 2 metrics, written plainly with the stock libraries)"
    )
    print(
        f"p99 at {verdicts['rate']:g} req/s         {verdicts['p99_ms_at_rate']:.2f} ms  "
        f"(target < {TARGET_P99_MS:g} ms; achieved {verdicts['achieved_rate']:.0f} req/s; "
        f"generator late by {summary['router_at_rate']['send_lag_p99_ms']:.2f} ms at p99)  "
        f"{mark(verdicts['p99_met'])}"
    )
    residual = {
        k: v for k, v in verdicts["redis_commands_all_phases"].items() if k in NOT_THE_HOT_PATH
    }
    print(
        f"redis commands, webhooks {verdicts['redis_hot_path_commands']}  "
        f"(excluded: {residual or 'none'})  {mark(verdicts['no_redis_call'])}"
    )
    logging = report["logging"]
    print(
        f"call.routed lines logged {logging['call_routed_lines']} for "
        f"{logging['router_requests_answered']} router answers (logging on, level info)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Ratios are against a bare app measured in the same run; absolute numbers "
        "depend on the machine. Needs redis-server on PATH (or /usr/bin).",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~30 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop (default 32)")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop req/s (1000)")
    parser.add_argument("--seconds", type=float, default=None, help="per throughput phase (4)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 4, quick 1)")
    parser.add_argument(
        "--engine",
        choices=("raw", "aiohttp"),
        default="raw",
        help="the load generator's client (default raw: cheaper, so fast servers show)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--signed-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    if not 10 <= args.rate <= 20_000:
        parser.error("--rate must be between 10 and 20000")
    if args.seconds is not None and not 0.5 <= args.seconds <= 20:
        parser.error("--seconds must be between 0.5 and 20")
    if args.rounds is not None and not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    seconds = args.seconds or (1.5 if quick else 4.0)
    return Plan(
        rounds=args.rounds or (1 if quick else 4),
        seconds=seconds,
        rate=args.rate,
        rate_seconds=seconds,
        provider_seconds=1.0 if quick else 3.0,
        warmup=200 if quick else 1000,
        concurrency=args.concurrency,
        variants=512 if quick else 4096,
        engine=args.engine,
        pin=pin,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare is not None:
        web.run_app(bare_app(), host="127.0.0.1", port=args.serve_bare, access_log=None, print=None)
        return 0
    if args.serve_floor is not None:
        app = floor_app(args.signed_url)
        web.run_app(app, host="127.0.0.1", port=args.serve_floor, access_log=None, print=None)
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
    errors = sum(p["errors"] for p in report["phases"])
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
