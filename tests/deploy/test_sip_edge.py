"""Router's SIP edge end to end: Kamailio started by deploy/sip-edge/run.sh in front of a
real `router serve`, SIPp as the caller (tests/sip/caller.xml) and as the runtime and the
transfer target (tests/sip/agent.xml), every process on 127.0.0.1 and stopped afterwards.

Needs `kamailio` (with kamailio-json-modules and kamailio-utils-modules) and `sipp`
(sip-tester): skipped without them, except under CI, where their absence fails."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import router_env

REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "deploy" / "sip-edge" / "run.sh"
CALLER_XML = REPO / "tests" / "sip" / "caller.xml"
AGENT_XML = REPO / "tests" / "sip" / "agent.xml"
BUSY_XML = REPO / "tests" / "sip" / "busy.xml"
CANCEL_XML = REPO / "tests" / "sip" / "cancel.xml"
API_KEY = "sip-edge-e2e-api-key"
EDGE_SECRET = "sip-edge-e2e-secret-0123456789"
SIP_USERNAME = "sip-user-e2e-000000001"
SIP_PASSWORD = "sip-password-e2e-0000001"
DOMAIN = "sip.example.com"
CALLER = "+14155550123"
TRUNK_NUMBER = "+14155550100"
TRUNK_ADDRESS = "127.0.0.2"  # the carrier: calls from it are the trunk's
FALLBACK_NUMBER = "+14155550199"
START_SECONDS = 20.0
CALL_SECONDS = 25.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def missing_tools() -> list[str]:
    """What the end-to-end run needs and this machine lacks, as Debian package names."""
    missing = []
    if shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists():
        missing.append("kamailio")
    for module, package in (
        ("json.so", "kamailio-json-modules"),
        ("http_client.so", "kamailio-utils-modules"),
    ):
        if not list(Path("/usr/lib").glob(f"*/kamailio/modules/{module}")):
            missing.append(package)
    if shutil.which("sipp") is None:
        missing.append("sip-tester")
    return missing


def udp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


@dataclass
class Processes:
    """Started children, stopped in reverse order (SIGTERM, then SIGKILL)."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: Sequence[str], *, log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603  # argv built here, no shell
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.started):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Agent:
    """A SIPp UAS: logs one line per INVITE it answered (tests/sip/agent.xml)."""

    port: int
    workdir: Path

    def invites(self) -> dict[str, dict[str, str]]:
        """Each INVITE by Call-ID: its Request-URI (`uri`) and the logged headers."""
        found: dict[str, dict[str, str]] = {}
        for log in self.workdir.glob("*_logs.log"):
            for line in log.read_text().splitlines():
                call_id, _, rest = line.partition(" INVITE ")
                if not rest:
                    continue
                uri, *headers = rest.split(" | ")
                fields = {"uri": uri}
                for header in headers:
                    name, _, value = header.partition(":")
                    fields[name.strip()] = value.strip()
                found[call_id] = fields
        return found

    def invite(self, call_id: str) -> dict[str, str]:
        deadline = time.monotonic() + 5
        while call_id not in (seen := self.invites()):
            assert time.monotonic() < deadline, f"no INVITE for {call_id} at :{self.port}: {seen}"
            time.sleep(0.05)
        return seen[call_id]


@dataclass
class Stack:
    """Router, the edge and two agents, with what the tests drive them by."""

    router_url: str
    edge_port: int
    runtime: Agent
    desk: Agent
    workdir: Path
    trunk_credential: str

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310  # http://127.0.0.1 built here
            self.router_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def call(
        self,
        user: str,
        *,
        password: str = SIP_PASSWORD,
        source: str = "127.0.0.1",
        edge_port: int | None = None,
        scenario: Path = CALLER_XML,
    ) -> tuple[str, list[str]]:
        """One call to sip:<user>@sip.example.com through the edge: the SIP Call-ID and
        the final answers the caller got, in order (a 401 is answered once)."""
        workdir = self.workdir / f"caller-{time.monotonic_ns()}"
        workdir.mkdir()
        port = edge_port or self.edge_port
        argv = [
            *("sipp", f"127.0.0.1:{port}", "-sf", str(scenario)),
            *("-i", source, "-p", str(udp_port()), "-m", "1", "-d", "100"),
            *("-s", user, "-key", "domain", DOMAIN, "-key", "caller", CALLER),
            *("-au", SIP_USERNAME, "-ap", password, "-auth_uri", f"{user}@{DOMAIN}"),
            *("-trace_logs", "-nostdin", "-timeout", "20s", "-timeout_error"),
        ]
        done = subprocess.run(  # noqa: S603  # argv built here
            argv, cwd=workdir, capture_output=True, timeout=CALL_SECONDS, check=False
        )
        lines = [
            line.split()
            for log in workdir.glob("*_logs.log")
            for line in log.read_text().splitlines()
            if " final " in line
        ]
        assert lines, f"sipp logged no final answer (exit {done.returncode}): {done.stdout!r}"
        return lines[0][0], [line[-1] for line in lines]

    def metrics(self) -> str:
        with urllib.request.urlopen(self.router_url + "/metrics", timeout=10) as response:  # noqa: S310
            text: str = response.read().decode()
            return text

    def call_record(self, router_call_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self.api("GET", f"/call/{quote(router_call_id, safe='')}")
        return record


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert process.poll() is None, f"exited early:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310  # loopback URL
                return
        except (urllib.error.URLError, OSError):
            assert time.monotonic() < deadline, f"{url} not up:\n{log.read_text()}"
            time.sleep(0.05)


def wait_sip(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the edge answers an OPTIONS on UDP."""
    deadline = time.monotonic() + START_SECONDS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        local = sock.getsockname()[1]
        while True:
            assert process.poll() is None, f"edge exited early:\n{log.read_text()}"
            options = (
                f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{time.monotonic_ns()}\r\n"
                "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n"
                f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(options.encode(), ("127.0.0.1", port))
            try:
                if sock.recv(4096).startswith(b"SIP/2.0 200"):
                    return
            except TimeoutError:
                pass
            assert time.monotonic() < deadline, f"edge not answering:\n{log.read_text()}"


def start_edge(
    started: Processes,
    workdir: Path,
    router_url: str,
    *,
    trunks: Path | None = None,
    timeout_seconds: int = 3,
    pstn_gateway: str | None = None,
) -> int:
    port = udp_port()
    env = {
        **os.environ,
        "EDGE_LISTEN": "127.0.0.1",
        "EDGE_RUNTIME_DIR": str(workdir / f"edge-{port}"),
        "EDGE_HTTP_TIMEOUT": str(timeout_seconds),
        "EDGE_CHILDREN": "2",
    }
    if pstn_gateway is not None:
        env["EDGE_PSTN_GATEWAY"] = pstn_gateway
    if trunks is not None:
        env["EDGE_TRUNKS"] = str(trunks)
    log = workdir / f"edge-{port}.log"
    edge = started.start(
        ["bash", str(RUN_SH), router_url, EDGE_SECRET, str(port)], log=log, env=env
    )
    wait_sip(port, edge, log)
    return port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_tools()
    workdir = tmp_path_factory.mktemp("sip-edge")
    started = Processes()
    try:
        runtime = Agent(udp_port(), workdir / "runtime")
        desk = Agent(udp_port(), workdir / "desk")
        busy = Agent(udp_port(), workdir / "busy")
        for agent, scenario in ((runtime, AGENT_XML), (desk, AGENT_XML), (busy, BUSY_XML)):
            agent.workdir.mkdir()
            started.start(
                [
                    *("sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(agent.port)),
                    *("-trace_logs", "-trace_msg", "-nostdin"),
                ],
                log=agent.workdir / "sipp.out",
                cwd=agent.workdir,
            )
        runtimes, dead = workdir / "runtimes.yml", udp_port()
        runtimes.write_text(
            "runtimes:\n"
            f'  - {{name: agent, kind: sip, uri: "sip:agent@127.0.0.1:{runtime.port}"}}\n'
            # TCP to a port nothing listens on: refused at once
            f'  - {{name: dead, kind: sip, uri: "sip:agent@127.0.0.1:{dead};transport=tcp"}}\n'
            # answers 486: the leg fails in the edge's failure route
            f'  - {{name: busy, kind: sip, uri: "sip:busy@127.0.0.1:{busy.port}"}}\n'
            "routes:\n"
            "  - match: {assistantId: asst-failover, provider: sip}\n"
            "    runtimes: [{name: dead}, {name: agent, weight: 0}]\n"
            "  - match: {assistantId: asst-busy, provider: sip}\n"
            "    runtimes: [{name: busy}]\n"
            "  - match: {provider: sip}\n"
            "    runtimes: [{name: agent}]\n"
        )
        router_port = udp_port()
        env = router_env(
            workdir / "data",
            API_KEY,
            ROUTER_SIP_EDGE_SECRET=EDGE_SECRET,
            ROUTER_RUNTIMES_FILE=str(runtimes),
            ROUTER_SIP_BUDGET_SECONDS="2",
        )
        router_log = workdir / "router.log"
        router = started.start(
            [
                sys.executable,
                "-m",
                "router",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                f"{router_port}",
            ],
            log=router_log,
            env=env,
            cwd=workdir,
        )
        router_url = f"http://127.0.0.1:{router_port}"
        wait_http(f"{router_url}/healthz", router, router_log)
        stack = Stack(router_url, 0, runtime, desk, workdir, "")
        credential = stack.api(
            "POST",
            "/credential",
            {"provider": "byo-sip-trunk", "gateways": [{"ip": TRUNK_ADDRESS}]},
        )
        trunks = workdir / "trunks"
        trunks.write_text(
            f"# carrier address, byo-sip-trunk credential\n{TRUNK_ADDRESS} {credential['id']}\n"
        )
        stack.edge_port = start_edge(
            started, workdir, router_url, trunks=trunks, pstn_gateway=f"127.0.0.1:{desk.port}"
        )
        stack.trunk_credential = credential["id"]
        yield stack
    finally:
        started.stop()


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        reason = f"the SIP edge end-to-end test needs: apt-get install {' '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs them (.ci/run): their absence is a failure
        pytest.skip(reason)


def test_the_config_passes_kamailios_check_and_names_a_missing_setting(tmp_path: Path) -> None:
    """`kamailio -c` accepts the config with its settings, and refuses it without them."""
    require_tools()
    config = REPO / "deploy" / "sip-edge" / "kamailio.cfg"
    modules = str(next(Path("/usr/lib").glob("*/kamailio/modules")))
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    settings = {
        "EDGE_ROUTER_URL": "http://127.0.0.1:1",
        "EDGE_SECRET": "s",
        "EDGE_HTTP_TIMEOUT": "8",
    }
    argv = [kamailio, "-c", "-f", str(config), "-L", modules]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    ok = subprocess.run(argv, env=env | settings, capture_output=True, check=False, cwd=tmp_path)  # noqa: S603
    assert ok.returncode == 0, ok.stderr.decode()
    unset = subprocess.run(argv, env=env, capture_output=True, check=False, cwd=tmp_path)  # noqa: S603
    assert unset.returncode != 0
    assert b"env variable not defined [EDGE_ROUTER_URL]" in unset.stderr


def vapi_number(stack: Stack, user: str, **fields: Any) -> dict[str, Any]:
    body = {"provider": "vapi", "sipUri": f"sip:{user}@{DOMAIN}", **fields}
    number: dict[str, Any] = stack.api("POST", "/phone-number", body)
    return number


def final_record(stack: Stack, router_call_id: str) -> dict[str, Any]:
    """The call record once its final status arrived."""
    deadline = time.monotonic() + 5
    while not (record := stack.call_record(router_call_id))["final"]:
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    return record


def test_a_protected_number_challenges_then_reaches_the_runtime_with_router_headers(
    stack: Stack,
) -> None:
    """No credentials: 401 from router's challenge. The digest retry reaches the runtime
    with router's x-router-* headers (and none the caller forged, no credentials); answer
    and hang-up reach router as status events."""
    number = vapi_number(
        stack,
        "support",
        assistantId="asst-1",
        authentication={"username": SIP_USERNAME, "password": SIP_PASSWORD},
    )
    call_id, finals = stack.call("support")
    assert finals == ["401", "200"]
    invite = stack.runtime.invite(call_id)
    assert invite["uri"] == f"sip:agent@127.0.0.1:{stack.runtime.port}"
    router_call_id = invite["x-router-call-id"]
    assert router_call_id.startswith(call_id + "~")
    assert (invite["x-router-target"], invite["x-router-target-id"]) == ("assistant", "asst-1")
    assert invite["x-router-phone-number-id"] == number["id"]
    assert invite["x-router-org-id"] == "default"
    assert (invite["forged"], invite["authorization"]) == ("", "")
    record = final_record(stack, router_call_id)
    assert (record["status"], record["statusSequence"]) == ("completed", 2)
    assert record["phoneNumberId"] == number["id"]


def test_a_wrong_password_is_challenged_again_and_reaches_nobody(stack: Stack) -> None:
    vapi_number(
        stack,
        "sales",
        assistantId="asst-1",
        authentication={"username": SIP_USERNAME, "password": SIP_PASSWORD},
    )
    call_id, finals = stack.call("sales", password="not-the-password-000000")
    assert finals in (["401", "401"], ["401", "403"])
    assert call_id not in stack.runtime.invites()


def test_an_unknown_number_gets_404(stack: Stack) -> None:
    call_id, finals = stack.call("nobody")
    assert finals == ["404"]
    assert call_id not in stack.runtime.invites()


def test_a_blocked_number_is_rejected_with_routers_status(stack: Stack) -> None:
    vapi_number(stack, "closed", assistantId="asst-1", status="blocked")
    call_id, finals = stack.call("closed")
    assert finals == ["403"]
    assert call_id not in stack.runtime.invites()


def test_a_transfer_reaches_the_transfer_target_on_a_new_leg_with_its_headers(
    stack: Stack,
) -> None:
    """No assistant: the fallbackDestination; the edge dials it itself (not a 302)."""
    vapi_number(
        stack,
        "desk",
        fallbackDestination={
            "type": "sip",
            "sipUri": f"sip:desk@127.0.0.1:{stack.desk.port}",
            "sipHeaders": {"queue": "night"},
            "callerId": "{{customer.number}}",
        },
    )
    call_id, finals = stack.call("desk")
    assert finals == ["200"]
    invite = stack.desk.invite(call_id)
    assert invite["uri"] == f"sip:desk@127.0.0.1:{stack.desk.port}"
    assert invite["x-queue"] == "night"
    assert invite["p-asserted-identity"] == f"<tel:{CALLER}>"
    assert call_id not in stack.runtime.invites()


def test_a_byo_number_on_its_trunks_gateway_routes(stack: Stack) -> None:
    """A call from the trunk's gateway address carries the trunk's credentialId."""
    number = stack.api(
        "POST",
        "/phone-number",
        {
            "provider": "byo-phone-number",
            "credentialId": stack.trunk_credential,
            "number": TRUNK_NUMBER,
            "squadId": "squad-1",
        },
    )
    call_id, finals = stack.call(TRUNK_NUMBER, source=TRUNK_ADDRESS)
    assert finals == ["200"]
    invite = stack.runtime.invite(call_id)
    assert (invite["x-router-target"], invite["x-router-target-id"]) == ("squad", "squad-1")
    assert invite["x-router-phone-number-id"] == number["id"]
    # the same number from elsewhere is not the trunk's
    _, finals = stack.call(TRUNK_NUMBER)
    assert finals == ["404"]


def test_a_runtime_that_refuses_the_call_is_told_and_the_next_one_takes_it(
    stack: Stack,
) -> None:
    """The first runtime fails: the edge posts `refused` to connectUrl and dials the runtime
    router names next; that one answers and is reported `taken`."""
    vapi_number(stack, "failover", assistantId="asst-failover")
    call_id, finals = stack.call("failover")
    assert finals == ["200"]
    invite = stack.runtime.invite(call_id)
    assert invite["x-router-target-id"] == "asst-failover"
    failovers = [
        (event["runtime"], event["to_runtime"])
        for line in (stack.workdir / "router.log").read_text().splitlines()
        if line.startswith("{")
        and (event := json.loads(line)).get("event") == "runtime.failover"
        and event["call_id"].startswith(call_id + "~")
    ]
    assert failovers == [("dead", "agent")]
    # `taken` is posted from the edge's event queue, after the answer
    taken = 'router_runtime_attempts_total{result="taken",runtime="agent"}'
    deadline = time.monotonic() + 5
    while taken not in (metrics := stack.metrics()):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.05)
    assert 'router_runtime_attempts_total{result="refused",runtime="dead"} 1.0' in metrics


def test_a_router_that_does_not_answer_in_time_gets_a_clean_503(stack: Stack) -> None:
    """The edge's HTTP timer bounds router's answer: 503 after it, never a hung INVITE."""
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        started = Processes()
        try:
            port = start_edge(
                started,
                stack.workdir,
                f"http://127.0.0.1:{silent.getsockname()[1]}",
                timeout_seconds=1,
            )
            start = time.monotonic()
            _, finals = stack.call("support", edge_port=port)
            elapsed = time.monotonic() - start
        finally:
            started.stop()
    assert finals == ["503"]
    assert elapsed < 5, elapsed


def test_a_runtime_that_fails_in_the_failure_route_leads_to_the_fallback_number(
    stack: Stack,
) -> None:
    """The only runtime answers 486: the edge's failure route hands `refused` to an async
    worker and carries out router's next answer like a first one, here the failure
    branch's number transfer, dialled through EDGE_PSTN_GATEWAY (the desk agent). The new
    leg is built afresh: no credentials, no header the caller forged."""
    vapi_number(
        stack,
        "busy",
        assistantId="asst-busy",
        fallbackDestination={"type": "number", "number": FALLBACK_NUMBER},
    )
    call_id, finals = stack.call("busy")
    assert finals == ["200"]
    invite = stack.desk.invite(call_id)
    assert invite["uri"] == f"sip:{FALLBACK_NUMBER}@127.0.0.1:{stack.desk.port}"
    assert (invite["forged"], invite["authorization"]) == ("", "")
    assert call_id not in stack.runtime.invites()
    metrics = stack.metrics()
    assert 'router_runtime_attempts_total{result="refused",runtime="busy"} 1.0' in metrics


def test_headers_that_are_no_plain_ascii_are_left_out_and_the_call_routes(
    stack: Stack, tmp_path: Path
) -> None:
    """A control character, a tab or a Latin-1 byte in an X- header: the edge leaves that
    header out of the request (its JSON stays valid) instead of failing every call."""
    vapi_number(stack, "odd-headers", assistantId="asst-1")
    scenario = tmp_path / "caller.xml"
    odd = b"X-Odd-Control: a\x01b\r\n      X-Odd-Latin1: caf\xe9\r\n      X-Tab: a\tb\r\n"
    original = CALLER_XML.read_bytes()
    assert original.count(b"      Subject: router edge test\r\n") == 0  # LF line ends
    scenario.write_bytes(
        original.replace(
            b"      Subject: router edge test\n",
            odd.replace(b"\r\n", b"\n") + b"      Subject: router edge test\n",
        )
    )
    call_id, finals = stack.call("odd-headers", scenario=scenario)
    assert finals == ["200"]
    invite = stack.runtime.invite(call_id)
    assert invite["x-router-target-id"] == "asst-1"


@dataclass
class FakeRouter:
    """An HTTP server standing in for router: answers /sip/route after `delay` seconds with a
    connect to `runtime_uri`, and records what the edge posts."""

    runtime_uri: str
    delay: float
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server names it
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posts.append((self.path, body))
                answer: dict[str, Any] = {"action": "none"}
                if self.path == "/sip/route":
                    time.sleep(fake.delay)
                    answer = {
                        "action": "connect",
                        "runtimeKind": "sip",
                        "runtimeUri": fake.runtime_uri,
                        "headerLines": "",
                        "connectUrl": "/sip/connect?runtime=agent",
                    }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def test_a_caller_who_cancels_during_the_lookup_refuses_no_runtime(stack: Stack) -> None:
    """CANCEL while the edge waits for router: tm answers 487; the edge then relays
    nothing and reports the runtime router named `gone`, never `refused` (which router
    would count against the runtime's health). Callbacks carry no caller headers."""
    fake = FakeRouter(f"sip:agent@127.0.0.1:{stack.runtime.port}", delay=2.0)
    server = fake.serve()
    started = Processes()
    try:
        port = start_edge(started, stack.workdir, f"http://127.0.0.1:{server.server_address[1]}")
        call_id, finals = stack.call("cancel", edge_port=port, scenario=CANCEL_XML)
        assert finals == ["487"]
        deadline = time.monotonic() + 5
        while not any(path.startswith("/sip/connect") for path, _ in fake.posts):
            assert time.monotonic() < deadline, fake.posts
            time.sleep(0.05)
        time.sleep(0.3)  # anything else the edge would post
    finally:
        started.stop()
        server.shutdown()
        server.server_close()
    results = [body["result"] for path, body in fake.posts if path.startswith("/sip/connect")]
    assert results == ["gone"]
    gone = next(body for path, body in fake.posts if path.startswith("/sip/connect"))
    assert gone["callId"] == call_id
    assert "headers" not in gone
    assert "authorization" not in gone
    assert call_id not in stack.runtime.invites()


def test_the_edge_secret_is_never_logged_nor_on_kamailios_command_line(tmp_path: Path) -> None:
    """`kamailio -c` at debug level 3 logs every define: the secret is none. run.sh passes
    it in the environment only, and with `-` reads it from EDGE_SECRET_FILE or stdin."""
    require_tools()
    config = REPO / "deploy" / "sip-edge" / "kamailio.cfg"
    modules = str(next(Path("/usr/lib").glob("*/kamailio/modules")))
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    settings = {"EDGE_ROUTER_URL": "http://127.0.0.1:1", "EDGE_HTTP_TIMEOUT": "8"}
    checked = subprocess.run(  # noqa: S603  # argv built here
        [kamailio, "-c", "-f", str(config), "-L", modules, "--debug=3"],
        env=env | settings | {"EDGE_SECRET": EDGE_SECRET},
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr.decode()
    assert EDGE_SECRET.encode() not in checked.stdout + checked.stderr
    # a stand-in kamailio that shows what it was given
    fake = tmp_path / "kamailio"
    fake.write_text('#!/bin/sh\necho "argv: $*"\necho "env: $EDGE_SECRET"\n')
    fake.chmod(0o755)
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-0123456789\n")
    base = env | {"KAMAILIO": str(fake), "EDGE_LISTEN": "127.0.0.1"}
    base["EDGE_RUNTIME_DIR"] = str(tmp_path / "run")
    for secret, extra, stdin, expected in (
        (EDGE_SECRET, {}, "", EDGE_SECRET),
        ("-", {"EDGE_SECRET_FILE": str(secret_file)}, "", "from-a-file-0123456789"),
        ("-", {}, "from-stdin-0123456789\n", "from-stdin-0123456789"),
    ):
        ran = subprocess.run(  # noqa: S603  # argv built here
            [
                shutil.which("bash") or "/bin/bash",
                str(RUN_SH),
                "http://127.0.0.1:1",
                secret,
                "5060",
            ],
            env=base | extra,
            input=stdin.encode(),
            capture_output=True,
            check=True,
        )
        argv, environment = ran.stdout.decode().splitlines()
        assert environment == f"env: {expected}"
        assert expected not in argv
