"""What the bench scripts share: processes pinned with taskset, Redis, router, the bare app,
signed requests, and wrk driving the load.

Each script answers one question (bench/README.md). They start every process they need on
free loopback ports and stop all of them when they exit, Ctrl-C and SIGTERM included. Load
comes from wrk (`apt-get install wrk`) running bench/requests.lua over requests built and
signed here beforehand, so the load generator only sends bytes.

`python bench/common.py bare --port N` serves the bare app: read the form,
answer constant TwiML, on uvloop. It is the baseline router's webhooks are compared with.
`python bench/common.py essentials --port N` serves the same answer after a signature
check and a `call.routed` line: the floor under router's cost (`essentials_app`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import hashlib
import hmac
import http.client
import importlib.util
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

import jwt
import redis
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twilio.request_validator import RequestValidator

REPO = Path(__file__).resolve().parent.parent
WRK_SCRIPT = REPO / "bench" / "requests.lua"
# Pinned layout on a 2-core machine: servers and Redis on core 0, wrk on core 1.
SERVER_CPUS = "0"
LOAD_CPUS = "1"
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")

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
# Redis commands that are not the webhook path's: the subscription's keepalive, and the
# bench's own INFO (with the client's handshake when it connects).
NOT_THE_HOT_PATH = frozenset({"ping", "subscribe", "info", "client|setinfo", "client"})
# What the bare app answers: the shape and size of router's answer for a Connect.
BARE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    f'<Stream url="{RUNTIME_URL}">'
    '<Parameter name="callId" value="CA00000000000000000000000000000000"/>'
    '<Parameter name="target" value="assistant"/>'
    f'<Parameter name="targetId" value="{ASSISTANT_ID}"/>'
    f'<Parameter name="phoneNumberId" value="{ASSISTANT_ID}"/>'
    "</Stream></Connect></Response>"
).encode()


# --- what must be installed -------------------------------------------------------------


def missing_tools(*, valgrind: bool = False, gunicorn: bool = False) -> list[str]:
    """What this machine lacks for a run, each with how to get it; empty when all is there."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk (the load generator): apt-get install wrk")
    if redis_server() is None:
        missing.append("redis-server: apt-get install redis-server")
    if shutil.which("taskset") is None:
        missing.append("taskset (pins processes to cores): apt-get install util-linux")
    if importlib.util.find_spec("uvloop") is None:
        missing.append("uvloop (the bare app's event loop, and router's): pip install -e .")
    if gunicorn and importlib.util.find_spec("gunicorn") is None:
        missing.append("gunicorn (router's --workers runs on it): pip install -e .")
    if valgrind and shutil.which("callgrind_control") is None:
        missing.append("valgrind (callgrind and callgrind_control): apt-get install valgrind")
    return missing


def redis_server() -> str | None:
    if found := shutil.which("redis-server"):
        return found
    return "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None


def can_pin(cores: int = 2) -> bool:
    """Whether this machine has the cores for the pinned layout."""
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= cores


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # SIGTERM when the bench dies, even by SIGKILL, so no server outlives it.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Processes:
    """The processes a run started, with their logs; `stop_all` ends each in reverse order."""

    log_dir: Path
    started: list[tuple[str, subprocess.Popen[bytes], TextIO]] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: str | None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`, pinned with taskset to `cpus` (say "0" or "0,1") unless None."""
        pin = ["taskset", "-c", cpus] if cpus is not None else []
        log = (self.log_dir / f"{name}.log").open("w")
        process = subprocess.Popen(
            [*pin, *argv],
            # Not the repository: `python -m router` puts its working directory first on
            # sys.path, which would shadow a checkout given in PYTHONPATH.
            cwd=self.log_dir,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches only the bench, which stops servers in order.
            start_new_session=True,
            # preexec_fn is unsafe with threads; the bench starts none.
            preexec_fn=_die_with_parent,
        )
        self.started.append((name, process, log))
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def print_log_tails(self, lines: int = 20) -> None:
        for name, _, _ in self.started:
            path = self.log_path(name)
            text = path.read_text(errors="replace") if path.exists() else ""
            if text:
                tail = "\n".join(text.splitlines()[-lines:])
                print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)

    def stop_all(self) -> None:
        while self.started:
            _, process, log = self.started.pop()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()


@contextlib.contextmanager
def processes(prefix: str) -> Iterator[Processes]:
    """A temporary directory for logs and data, and every process started in it stopped at
    the end; on an error, the tail of each process's log is printed first."""
    with tempfile.TemporaryDirectory(prefix=f"router-bench-{prefix}-") as tmp:
        started = Processes(Path(tmp))
        try:
            yield started
        except Exception:
            started.print_log_tails()
            raise
        finally:
            started.stop_all()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so `finally` stops every process started."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def session_cpu(session: int) -> dict[int, float]:
    """CPU seconds run so far by each process of a session, all its threads: one server
    with its workers, started by `Processes.start` (each start is a session of its own).
    Linux schedstat, to the nanosecond."""
    seconds = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        # A process may exit while it is read: it no longer counts, nor runs.
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The session id is the 4th field after the command, which may hold spaces.
            if int((proc / "stat").read_text().rpartition(")")[2].split()[3]) != session:
                continue
            seconds[int(proc.name)] = (
                sum(
                    int((task / "schedstat").read_text().split()[0])
                    for task in (proc / "task").iterdir()
                )
                / 1e9
            )
    return seconds


def cpu_seconds(session: int) -> float:
    """CPU seconds run so far by all the processes of a session (see `session_cpu`)."""
    return sum(session_cpu(session).values())


@dataclass(frozen=True)
class Server:
    """A server under test. taskset execs what it pins, so the process is the server's."""

    name: str
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def wait_ready(
    server: Server, path: str = "/readyz", timeout_s: float = START_TIMEOUT_SECONDS
) -> None:
    """Poll `path` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        with contextlib.suppress(OSError):  # not listening yet
            if http_call(server.url + path)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} was not ready within {timeout_s:.0f} s")
        time.sleep(0.05)


def start_redis(started: Processes, cpus: str | None) -> Server:
    """A `redis-server` without persistence; ready when this returns."""
    port = free_port()
    argv = [redis_server() or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    server = Server(
        "redis",
        started.start("redis", [*argv, *NO_PERSISTENCE], cpus=cpus),
        f"redis://127.0.0.1:{port}/0",
    )
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {server.process.returncode}")
            try:
                client.ping()
                return server
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def router_env(
    redis_url: str | None, public_url: str, data_dir: Path, *, log_level: str = "info"
) -> dict[str, str]:
    """The caller's environment without its ROUTER_*, and router's settings for a run
    (on the embedded store in `data_dir` when `redis_url` is None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    if redis_url is not None:
        env["ROUTER_REDIS_URL"] = redis_url
    env.update(
        ROUTER_API_KEY=API_KEY,
        ROUTER_PUBLIC_URL=public_url,
        ROUTER_RUNTIME_URL=RUNTIME_URL,
        ROUTER_SIP_EDGE_SECRET=EDGE_SECRET,
        ROUTER_LOG_LEVEL=log_level,
        ROUTER_LOG_FORMAT="json",
        ROUTER_DATA_DIR=str(data_dir),
        # As in the container image: each log line is one write.
        PYTHONUNBUFFERED="1",
    )
    return env


def start_router(
    started: Processes,
    redis_url: str,
    *,
    cpus: str | None,
    log_level: str = "info",
    workers: int = 1,
    name: str = "router",
    settings: Mapping[str, str] | None = None,
) -> Server:
    """`python -m router serve` as a user starts it, on Redis; ready when this returns.
    `settings`: more `ROUTER_*` variables; `name` tells several routers' logs apart."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = router_env(redis_url, url, started.log_dir / f"{name}-data", log_level=log_level)
    env.update(settings or {})
    argv = [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    server = Server(name, started.start(name, argv, cpus=cpus, env=env), url)
    wait_ready(server)
    return server


def start_bare(started: Processes, *, cpus: str | None, app: str = "bare") -> Server:
    """The bare app (or `app`: `essentials`) in a process of its own, on uvloop; ready
    when this returns."""
    port = free_port()
    argv = [sys.executable, __file__, app, "--port", str(port)]
    server = Server(app, started.start(app, argv, cpus=cpus), f"http://127.0.0.1:{port}")
    wait_ready(server)
    return server


# --- plain HTTP for set-up and checks (never measured) ----------------------------------


def http_call(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request to a plain http:// URL on loopback."""
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
    """A REST API call as an operator makes it; raises on anything but 2xx."""
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


def create_twilio_number(router_url: str, **extra: Any) -> None:
    """The Twilio number every Twilio request calls, routed to the static assistant
    (`extra`: more of its fields)."""
    api(
        router_url,
        "POST",
        "/phone-number",
        {
            "provider": "twilio",
            "number": TWILIO_NUMBER,
            "twilioAccountSid": TWILIO_ACCOUNT_SID,
            "twilioAuthToken": TWILIO_AUTH_TOKEN,
            "assistantId": ASSISTANT_ID,
            **extra,
        },
    )


# --- requests, built and signed before any load ------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One request wrk will send as it is (its Host header is added by wrk)."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""

    def send(self, base_url: str) -> tuple[int, bytes]:
        """Send it once outside any load (sanity checks)."""
        return http_call(base_url + self.target, self.method, self.body or None, self.headers)


def write_requests(path: Path, requests: Iterable[HttpRequest]) -> Path:
    """The file bench/requests.lua reads: per request a line `METHOD TARGET HEADERS BYTES`,
    the headers one per line, then the body."""
    with path.open("wb") as out:
        for r in requests:
            out.write(f"{r.method} {r.target} {len(r.headers)} {len(r.body)}\n".encode())
            for name, value in r.headers.items():
                out.write(f"{name}: {value}\n".encode())
            out.write(r.body)
    return path


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


def twilio_requests(signed_url: str, count: int) -> list[HttpRequest]:
    """`/twilio/voice` form POSTs, one CallSid each, signed by twilio-python over
    `signed_url` (router's public URL of the route)."""
    validator = RequestValidator(TWILIO_AUTH_TOKEN)
    out = []
    for i in range(count):
        form = twilio_voice_form(f"CA{i:032x}")
        headers = {
            "Content-Type": FORM,
            "X-Twilio-Signature": validator.compute_signature(signed_url, form),
        }
        out.append(HttpRequest("POST", "/twilio/voice", headers, urlencode(form).encode()))
    return out


def telnyx_requests(private_key: Ed25519PrivateKey, count: int) -> list[HttpRequest]:
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
        signature = base64.b64encode(private_key.sign(stamp.encode() + b"|" + body)).decode()
        headers = {
            "Content-Type": FORM,
            "telnyx-timestamp": stamp,
            "telnyx-signature-ed25519": signature,
        }
        out.append(HttpRequest("POST", "/telnyx/voice", headers, body))
    return out


def vonage_requests(count: int) -> list[HttpRequest]:
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
        out.append(HttpRequest("POST", "/vonage/answer", headers, body))
    return out


def sip_requests(count: int) -> list[HttpRequest]:
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
        out.append(HttpRequest("POST", "/sip/route", headers, body))
    return out


def check_answer(server: Server, request: HttpRequest, expect: bytes, status: int = 200) -> int:
    """Send `request` once: it must answer `status` with `expect` in the body. Its length."""
    got, body = request.send(server.url)
    if got != status or expect not in body:
        raise RuntimeError(f"{server.name}: unexpected answer {got} {body[:400]!r}")
    return len(body)


# --- wrk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What one wrk run measured (bench/requests.lua's done() prints it as JSON)."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # connect, read, write, timeout: transport errors; status: answers >= 400.
    errors: Mapping[str, int]
    # Share of a core wrk itself used: near 1.0, wrk rather than the server may be the limit.
    wrk_cpu: float

    @property
    def rps(self) -> float:
        return round(self.requests / self.seconds, 1) if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def wrk(
    base_url: str,
    requests_file: Path,
    *,
    seconds: int,
    connections: int,
    rate: float | None = None,
    cpus: str | None = None,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> Load:
    """Run wrk over `requests_file` for `seconds`: closed loop at `connections`, or paced
    at `rate` requests per second (bench/requests.lua's delay())."""
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    script_args = [str(requests_file), str(threads)]
    if rate is not None:
        script_args.append(f"{rate:g}")
    argv = [
        *pin,
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        f"--timeout={timeout_s:g}s",
        f"--script={WRK_SCRIPT}",
        base_url,
        "--",
        *script_args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    figures = json.loads(line.removeprefix("WRK_JSON "))
    latency = figures["latency_ms"]
    return Load(
        requests=figures["requests"],
        seconds=figures["duration_s"],
        p50_ms=latency["p50"],
        p90_ms=latency["p90"],
        p99_ms=latency["p99"],
        max_ms=latency["max"],
        errors={k: v for k, v in figures["errors"].items() if v},
        wrk_cpu=round(wrk_seconds / figures["duration_s"], 3) if figures["duration_s"] else 0.0,
    )


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


@dataclass(frozen=True)
class Phase:
    """One wrk run against one server, with the CPU the server side spent on it."""

    name: str
    load: Load
    server_us_per_req: float  # the server process, all threads
    redis_us_per_req: float  # 0 when the run had no Redis
    redis_commands: Mapping[str, int]

    @property
    def core_busy(self) -> float:
        """Share of a core the server and Redis used: near 1.0, the server side was the limit;
        well under it, something else was (wrk, or other work on the machine)."""
        us = self.server_us_per_req + self.redis_us_per_req
        return round(self.load.rps * us / 1e6, 3)

    @property
    def capacity_rps(self) -> float:
        """Requests per second one core could serve at this CPU cost (server + Redis)."""
        us = self.server_us_per_req + self.redis_us_per_req
        return round(1e6 / us, 1) if us else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": self.load.requests,
            "seconds": self.load.seconds,
            "rps": self.load.rps,
            "p50_ms": self.load.p50_ms,
            "p90_ms": self.load.p90_ms,
            "p99_ms": self.load.p99_ms,
            "max_ms": self.load.max_ms,
            "errors": dict(self.load.errors),
            "wrk_cpu": self.load.wrk_cpu,
            "server_cpu_us_per_req": self.server_us_per_req,
            "redis_cpu_us_per_req": self.redis_us_per_req,
            "capacity_rps": self.capacity_rps,
            "core_busy": self.core_busy,
            "redis_commands": dict(self.redis_commands),
        }


@dataclass
class Bench:
    """Runs wrk phases on the load cores, measuring CPU and Redis commands around each."""

    server_cpus: str | None  # taskset's list for servers and Redis; None: not pinned
    load_cpus: str | None  # and for wrk
    redis: Server | None = None
    stats: CommandStats | None = None
    phases: list[Phase] = field(default_factory=list)

    @classmethod
    def pinned(cls, pin: bool) -> Bench:
        """The 2-core layout (servers and Redis on core 0, wrk on core 1), or none."""
        return cls(SERVER_CPUS, LOAD_CPUS) if pin else cls(None, None)

    def run(
        self,
        name: str,
        server: Server,
        requests_file: Path,
        *,
        seconds: int,
        connections: int,
        rate: float | None = None,
        quiet: bool = False,
    ) -> Phase:
        """One wrk run against `server`; `quiet` for warm-ups (not printed nor kept)."""
        # Sessions: a server's workers count with it.
        pids = [server.pid] + ([self.redis.pid] if self.redis else [])
        cpu_before = [cpu_seconds(pid) for pid in pids]
        commands_before = self.stats.snapshot() if self.stats else {}
        load = wrk(
            server.url,
            requests_file,
            seconds=seconds,
            connections=connections,
            rate=rate,
            cpus=self.load_cpus,
        )
        commands = command_delta(commands_before, self.stats.snapshot()) if self.stats else {}
        # wrk counts answers; the few requests in flight when it stopped (at most one per
        # connection, against thousands answered) add their CPU to the measured requests'.
        served = max(1, load.requests)
        us = [
            round((cpu_seconds(pid) - before) / served * 1e6, 1)
            for pid, before in zip(pids, cpu_before, strict=True)
        ]
        phase = Phase(name, load, us[0], us[1] if len(us) > 1 else 0.0, commands)
        if quiet:
            return phase
        self.phases.append(phase)
        print(
            f"  {name:<30} {load.rps:>8.0f} req/s  p50 {load.p50_ms:6.2f}"
            f"  p99 {load.p99_ms:6.2f} ms  server {phase.server_us_per_req:5.0f} us/req"
            f"  busy {phase.core_busy:4.2f}  wrk cpu {load.wrk_cpu:4.2f}"
            + (f"  redis cmds {hot_path_commands(commands)}" if self.stats else "")
            + (f"  ERRORS {dict(load.errors)}" if load.errors else ""),
            flush=True,
        )
        return phase


def run_bench(
    script: str,
    missing: Sequence[str],
    measure: Callable[[], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
    json_path: Path | None,
) -> int:
    """A bench script's main: say what is missing (2), or measure with every process it
    started stopped on SIGTERM or Ctrl-C (130), show the report, write it as JSON when
    asked; 1 when a phase had errors."""
    if missing:
        print(f"bench/{script} needs:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    with sigterm_as_exit():
        try:
            report = measure()
        except KeyboardInterrupt:
            print("\ninterrupted; every process it started was stopped", file=sys.stderr)
            return 130
    show(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {json_path}")
    return 1 if any(phase["errors"] for phase in report.get("phases", ())) else 0


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def alternate(round_index: int, sides: Sequence[Any]) -> list[Any]:
    """The sides in the order of this round: who goes first switches every round, so a
    drift in the machine's speed favours no one."""
    return list(sides) if round_index % 2 == 0 else list(sides)[::-1]


# --- the bare app ----------------------------------------------------------------------


def bare_app(voice: Handler | None = None) -> web.Application:
    """Reads the form, answers constant TwiML: what router's `/twilio/voice` is held to
    (`voice`: another handler of that route, `essentials_app`'s)."""

    async def bare_voice(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(body=BARE_TWIML, headers={"Content-Type": "text/xml; charset=utf-8"})

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/twilio/voice", voice or bare_voice)
    app.router.add_get("/readyz", readyz)
    return app


def essentials_app() -> web.Application:
    """The bare app plus only what router must do for every call it answers: the Twilio
    signature checked (router's `signing_fields` and `hmac_digest`, the token known)
    and one `call.routed` line with router's fields, through router's own structlog set-up.
    No number lookup, no decision, no metrics, no rendering. Not a router: the floor under
    router's cost on the day's machine, so a ratio can be read against what is possible."""
    # Imported here: the bare app needs none of router.
    import structlog

    from router.ops.logs import configure_logging
    from router.providers.forms import form_pairs, signing_fields
    from router.providers.plugin import hmac_digest

    configure_logging("json", "info")
    log = structlog.get_logger("router.pipeline.call_records").bind()

    async def voice(request: web.Request) -> web.Response:
        # The form parsed, the signed string made and its HMAC taken as router does them.
        pairs = form_pairs(await request.read())
        signed = str(request.url).encode() + signing_fields(pairs)
        expected = base64.b64encode(hmac_digest(TWILIO_AUTH_TOKEN, signed, "sha1"))
        given = request.headers.get("X-Twilio-Signature", "").encode()
        if not hmac.compare_digest(expected, given):
            return web.Response(status=403)
        form = dict(pairs)
        log.info(
            "call.routed",
            provider="twilio",
            endpoint="voice",
            call_id=form.get("CallSid"),
            router_call_id=str(uuid.uuid4()),
            org_id=ASSISTANT_ID,
            phone_number_id=ASSISTANT_ID,
            to=form.get("To"),
            caller=form.get("From"),
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
            latency_ms=0.0,
            trace=["assistant"],
            runtime="default",
        )
        return web.Response(body=BARE_TWIML, headers={"Content-Type": "text/xml; charset=utf-8"})

    return bare_app(voice)


def serve(app: web.Application, port: int) -> None:
    """Serve `app` on 127.0.0.1:`port` on uvloop, without access log."""
    # Imported here so that a machine without uvloop still gets `missing_tools`'s message.
    import uvloop

    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the bench's bare app (on uvloop).")
    sub = parser.add_subparsers(dest="command", required=True)
    bare = sub.add_parser("bare", help="read the form, answer constant TwiML")
    bare.add_argument("--port", type=int, required=True)
    essentials = sub.add_parser(
        "essentials", help="the bare app, and a signature check and a call.routed line"
    )
    essentials.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(essentials_app() if args.command == "essentials" else bare_app(), args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# --- router variants against the bare app (runtimes.py, admission.py) -----------------


@dataclass(frozen=True)
class Variant:
    """A router started with `settings` (more ROUTER_* variables) whose Twilio number is
    made by `setup(router_url)`; each variant has a Redis database of its own."""

    name: str
    settings: Mapping[str, str] = field(default_factory=dict)
    setup: Callable[[str], None] = create_twilio_number
    # Files written to the run's log directory first (`{log_dir}` in settings names it).
    files: Mapping[str, str] = field(default_factory=dict)


def compare_variants(
    script: str, variants: Sequence[Variant], args: argparse.Namespace
) -> dict[str, Any]:
    """The bare app and each variant, one process each on the server core with Redis, the
    same wrk load of pre-signed Twilio webhooks (unique CallSids, `args.variants` of them,
    cycled), in alternating rounds: req/s, CPU and Redis commands per request, against
    the bare app's, and each round's req/s over the bare app's in that round."""
    with processes(script) as started:
        bench = Bench.pinned(not args.no_pin and can_pin())
        bench.redis = start_redis(started, bench.server_cpus)
        bench.stats = CommandStats(bench.redis.url)
        servers = [start_bare(started, cpus=bench.server_cpus)]
        for index, variant in enumerate(variants, start=1):
            for file_name, content in variant.files.items():
                (started.log_dir / file_name).write_text(content)
            settings = {
                k: v.replace("{log_dir}", str(started.log_dir)) for k, v in variant.settings.items()
            }
            router = start_router(
                started,
                f"{bench.redis.url}/{index}",
                cpus=bench.server_cpus,
                name=variant.name,
                settings=settings,
            )
            variant.setup(router.url)
            servers.append(router)
        files = {}
        for server in servers:
            requests = twilio_requests(server.url + "/twilio/voice", args.variants)
            expected = b"<Connect>" if server.name == "bare" else ASSISTANT_ID.encode()
            check_answer(server, requests[0], expected)
            path = started.log_dir / f"{server.name}.requests"
            files[server.name] = write_requests(path, requests)
            bench.run("warm-up", server, files[server.name], seconds=2, connections=32, quiet=True)
        rounds: dict[str, list[Phase]] = {server.name: [] for server in servers}
        for r in range(args.rounds):
            for server in alternate(r, servers):
                phase = bench.run(
                    server.name, server, files[server.name], seconds=args.seconds, connections=32
                )
                rounds[server.name].append(phase)
        bench.stats.close()
    rps = {name: max(p.load.rps for p in phases) for name, phases in rounds.items()}
    us = {name: min(p.server_us_per_req for p in phases) for name, phases in rounds.items()}
    redis_per_request = {
        name: round(
            sum(hot_path_commands(p.redis_commands) for p in phases)
            / max(1, sum(p.load.requests for p in phases)),
            3,
        )
        for name, phases in rounds.items()
    }
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "rps": rps,
        "server_us_per_request": us,
        "redis_commands_per_request": redis_per_request,
        "rps_over_bare": {name: ratio(value, rps["bare"]) for name, value in rps.items()},
        # Each round's req/s over the bare app's in the same round, sorted.
        "rps_over_bare_per_round": {
            name: sorted(
                ratio(p.load.rps, b.load.rps) for p, b in zip(phases, rounds["bare"], strict=True)
            )
            for name, phases in rounds.items()
            if name != "bare"
        },
        "phases": [
            {"name": p.name, "rps": p.load.rps, "us": p.server_us_per_req, "errors": p.load.errors}
            for phases in rounds.values()
            for p in phases
        ],
    }


def show_variants(report: dict[str, Any]) -> None:
    print()
    for name, value in report["rps"].items():
        print(
            f"{name:<18} {value:8.0f} req/s  ÷ bare {report['rps_over_bare'][name]:.3f}"
            f"  {report['server_us_per_request'][name]:6.1f} us/req"
            f"  redis cmds/req {report['redis_commands_per_request'][name]:.3f}"
        )
    for name, ratios in report["rps_over_bare_per_round"].items():
        print(
            f"{name:<18} rounds ÷ bare {ratios[0]:.3f}..{ratios[-1]:.3f},"
            f" median {statistics.median(ratios):.3f}"
        )


def variant_arguments(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--variants", type=int, default=20_000, help="signed requests, cycled")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def parse_variant_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line of a script made with `variant_arguments`: `--quick` is one round
    of 3 s."""
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    return args
