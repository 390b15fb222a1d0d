"""Operability: real `router serve` processes under signals, metrics, readiness.

The helpers here start `python -m router serve` in its own session (so its workers can be
found through /proc and are always killed with it), and sign Twilio webhooks as twilio's
own library does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from tests.conftest import free_port, router_env

API_KEY = "ops-api-key"
TOKEN = "twilio-auth-token-SECRET-ops-0001"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
NUMBER = "+14155550100"
CALLER = "+14155550123"
RUNTIME_URL = "wss://runtime.example.com/s"
START_SECONDS = 20.0

_sids = iter(range(1, 1_000_000))


def voice_form(to: str = NUMBER) -> dict[str, str]:
    """An inbound voice webhook's fields, with a fresh CallSid."""
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": f"CA{os.getpid():08x}{next(_sids):024x}",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": CALLER,
        "To": to,
    }


def signed(url: str, fields: Mapping[str, str], token: str = TOKEN) -> dict[str, str]:
    """Headers of a form POST to `url`, X-Twilio-Signature as twilio-python computes it."""
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": str(RequestValidator(token).compute_signature(url, dict(fields))),
    }


def twilio_number(**extra: object) -> dict[str, object]:
    return {
        "provider": "twilio",
        "number": NUMBER,
        "twilioAccountSid": ACCOUNT_SID,
        "twilioAuthToken": TOKEN,
        **extra,
    }


def stream_parameters(body: bytes) -> dict[str, str]:
    """The `<Parameter>`s of a `<Connect><Stream>` answer (asserting it is one)."""
    root = ET.fromstring(body)  # noqa: S314  # the router's own output, not untrusted input
    assert [child.tag for child in root] == ["Connect"], body
    return {str(p.get("name")): str(p.get("value")) for p in root.iter("Parameter")}


def logged(output: str, event: str) -> list[dict[str, object]]:
    """The JSON log lines of `output` whose `event` is `event`."""
    found: list[dict[str, object]] = []
    for line in output.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
    return found


def children(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid`, read from /proc."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    """A `python -m router serve` process and where it answers."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.returncode is not None:
                raise AssertionError(f"router exited early:\n{self.output()}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"{self.url}/healthz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"router did not answer /healthz:\n{self.output()}")
            await asyncio.sleep(0.05)

    async def wait_exit(self, within: float) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"router still running after {within}s:\n{self.output()}"
            ) from None

    async def api(
        self, http: aiohttp.ClientSession, method: str, path: str, body: object = None
    ) -> object:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.request(method, self.url + path, json=body, headers=headers) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def voice(
        self, http: aiohttp.ClientSession, fields: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """A signed `/twilio/voice` POST; (status, body)."""
        form = dict(fields) if fields is not None else voice_form()
        url = f"{self.url}/twilio/voice"
        async with http.post(url, data=urlencode(form), headers=signed(url, form)) as response:
            return response.status, await response.read()


def serve_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """The process environment: nothing inherited from ROUTER_*, everything test-local."""
    env = router_env(
        tmp_path / "data",
        API_KEY,
        ROUTER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ROUTER_RUNTIME_URL=RUNTIME_URL,
        ROUTER_TWILIO_BUDGET_SECONDS="5",
        # The metrics directory of `--workers` (mkdtemp) lands in the test's folder.
        TMPDIR=str(tmp_path),
    )
    env.update(extra)
    return env


@asynccontextmanager
async def serve(tmp_path: Path, *args: str, **env: str) -> AsyncIterator[Served]:
    """`router serve --host 127.0.0.1 --port P *args`; the whole process group is killed after."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(port)),
            *args,
            cwd=tmp_path,
            env=serve_env(tmp_path, port, **env),
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers are killed with it
        )
    try:
        yield Served(process, port, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
