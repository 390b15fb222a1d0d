"""The `router` command: help, config check, and `simulate` without any provider."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from router.commands.cli import main

NUMBER: dict[str, Any] = {
    "provider": "twilio",
    "number": "+14155550100",
    "twilioAccountSid": "AC1",
    "twilioAuthToken": "a-token-that-must-never-be-printed",
    "hooks": [
        {
            "on": "call.ringing",
            "filters": [{"type": "startsWith", "key": "number", "startsWith": ["91"]}],
            "do": [{"type": "say", "exact": "No calls from here"}],
        }
    ],
    "fallbackDestination": {"type": "number", "number": "+14155550199"},
}


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`main` configures logging for the process; put it back for the next test.

    Loggers must not be cached while a test's captured stream is the output: a module's
    logger bound to it would write to a closed file in every later test.
    """
    import logging

    import structlog

    configure = structlog.configure
    monkeypatch.setattr(
        structlog,
        "configure",
        lambda **kw: configure(**{**kw, "cache_logger_on_first_use": False}),
    )
    handlers = logging.getLogger().handlers[:]
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | str]:
    code = main(list(argv))
    out = capsys.readouterr().out
    try:
        return code, json.loads(out)
    except ValueError:
        return code, out


def test_help_lists_every_command() -> None:
    """`router --help` names serve, simulate and check-config."""
    out = subprocess.run(
        [sys.executable, "-m", "router", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "simulate", "check-config", "numbers"):
        assert command in out


def test_check_config_reports_the_embedded_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ROUTER_REDIS_URL the worker uses the embedded store in ROUTER_DATA_DIR."""
    monkeypatch.setenv("ROUTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ROUTER_REDIS_URL", raising=False)
    code, out = _run(capsys, "check-config")
    assert code == 0
    assert f"embedded ({tmp_path})" in str(out)


def test_invalid_settings_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime URL that is not wss:// is refused before anything starts."""
    monkeypatch.setenv("ROUTER_RUNTIME_URL", "http://not-a-websocket")
    assert main(["check-config"]) == 2
    assert "wss://" in capsys.readouterr().err


def test_simulate_a_ringing_hook_from_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A caller matching a ringing hook's prefix hears the hook's text; the trace says so."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps(NUMBER))
    code, out = _run(capsys, "simulate", "--number-file", str(path), "--from", "+919876543210")
    assert code == 0 and isinstance(out, dict)
    decision = out["decision"]
    assert decision["route"] == "hook"
    assert decision["endedReason"] == "call.ringing.hook-executed-say"
    assert decision["trace"] == ["hooks.ringing:matched[0]", "say"]


POLICY_NUMBER: dict[str, Any] = {
    **NUMBER,
    "assistantId": "asst-1",
    "hooks": [
        {
            "on": "call.ringing",
            "filters": [{"type": "oneOf", "key": "attestation", "oneOf": ["failed"]}],
            "do": [{"type": "reject"}],
        },
        {
            "on": "call.ringing",
            "filters": [
                {
                    "type": "schedule",
                    "timeZone": "America/New_York",
                    "weekly": [
                        {
                            "days": ["mon", "tue", "wed", "thu", "fri"],
                            "from": "09:00",
                            "to": "17:00",
                        }
                    ],
                    "exceptDates": ["2026-12-25"],
                    "match": "outside",
                }
            ],
            "do": [{"type": "say", "exact": "We are closed."}],
        },
    ],
}


@pytest.mark.parametrize(
    ("argv", "route", "trace"),
    [
        (
            ["--at", "2026-12-24T10:00:00-05:00"],
            "assistant",
            [
                "hooks.ringing:filter[0.0]:oneOf:attestation=none:unmatched",
                "hooks.ringing:unmatched[0]",
                "hooks.ringing:filter[1.0]:schedule:open@2026-12-24T10:00-05:00:unmatched",
                "hooks.ringing:unmatched[1]",
                "assistantId",
            ],
        ),
        (
            ["--at", "2026-12-24T22:30:00Z"],  # 17:30 in New York: closed
            "hook",
            [
                "hooks.ringing:filter[0.0]:oneOf:attestation=none:unmatched",
                "hooks.ringing:unmatched[0]",
                "hooks.ringing:filter[1.0]:schedule:closed@2026-12-24T17:30-05:00:matched",
                "hooks.ringing:matched[1]",
                "say",
            ],
        ),
        (
            ["--at", "2026-12-25T10:00:00-05:00", "--attestation", "B"],
            "hook",
            [
                "hooks.ringing:filter[0.0]:oneOf:attestation=B:unmatched",
                "hooks.ringing:unmatched[0]",
                "hooks.ringing:filter[1.0]:schedule:excepted@2026-12-25T10:00-05:00:matched",
                "hooks.ringing:matched[1]",
                "say",
            ],
        ),
        (
            ["--at", "2026-12-24T10:00:00-05:00", "--attestation", "failed"],
            "hook",
            [
                "hooks.ringing:filter[0.0]:oneOf:attestation=failed:matched",
                "hooks.ringing:matched[0]",
                "reject",
            ],
        ),
    ],
)
def test_simulate_decides_at_the_given_time_and_attestation(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    route: str,
    trace: list[str],
) -> None:
    """`--at` is when the call rings (schedules read it), `--attestation` the level the
    provider reports; both are echoed in the output."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps(POLICY_NUMBER))
    code, out = _run(capsys, "simulate", "--number-file", str(path), *argv)
    assert code == 0 and isinstance(out, dict)
    assert out["decision"]["route"] == route
    assert out["decision"]["trace"] == trace
    assert out["attestation"] == (argv[3] if len(argv) > 2 else "none")
    assert datetime.fromisoformat(out["at"]) == datetime.fromisoformat(argv[1])


def test_simulate_renders_a_reject_hook_as_twiml_reject(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The reject action renders as the provider's reject."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps(POLICY_NUMBER))
    code, out = _run(
        capsys,
        "simulate",
        *("--number-file", str(path), "--attestation", "failed", "--render", "twilio"),
    )
    assert code == 0 and isinstance(out, dict)
    assert out["decision"]["endedReason"] == "call.ringing.hook-executed-reject"
    assert "<Reject/>" in out["rendered"]


def test_simulate_defaults_to_now_and_no_attestation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without `--at` the call rings now; without `--attestation` the level is `none`."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps(POLICY_NUMBER))
    before = datetime.now(UTC)
    code, out = _run(capsys, "simulate", "--number-file", str(path))
    assert code == 0 and isinstance(out, dict)
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(out["at"])
    assert datetime.fromisoformat(out["at"]) <= datetime.now(UTC)
    assert out["attestation"] == "none"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--at", "2026-12-24T10:00:00"], "has no offset"),
        (["--at", "tomorrow"], "is not an ISO 8601 time"),
        (["--attestation", "D"], "invalid choice: 'D'"),
    ],
)
def test_simulate_refuses_a_time_without_offset_or_an_unknown_level(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    """A time that names no instant, or a level router does not know, is a usage error."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps(POLICY_NUMBER))
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--number-file", str(path), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_simulate_offline_goes_to_the_fallback_and_renders_twiml(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With the server unreachable the call transfers to fallbackDestination; no secret printed."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps({**NUMBER, "server": {"url": "http://127.0.0.1:9/x"}}))
    code, out = _run(
        capsys, "simulate", "--number-file", str(path), "--offline", "--render", "twilio"
    )
    assert code == 0 and isinstance(out, dict)
    assert out["decision"]["route"] == "fallback"
    assert out["decision"]["endedReason"] == "assistant-request-failed"
    assert "<Dial><Number>+14155550199</Number></Dial>" in out["rendered"]
    assert "a-token-that-must-never-be-printed" not in json.dumps(out)


def test_simulate_with_a_canned_response(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--response` stands in for the server's answer: an assistantId connects."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps({**NUMBER, "server": {"url": "http://127.0.0.1:9/x"}}))
    code, out = _run(
        capsys, "simulate", "--number-file", str(path), "--response", '{"assistantId": "abc"}'
    )
    assert code == 0 and isinstance(out, dict)
    assert out["decision"]["route"] == "assistant-request"
    assert out["decision"]["outcome"]["targetId"] == "abc"


async def test_simulate_sends_a_real_assistant_request(tmp_path: Path) -> None:
    """Without --response the assistant-request really goes to the number's server."""
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"squadId": "squad-1"})

    app = web.Application()
    app.router.add_post("/hook", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        path = tmp_path / "number.json"
        url = str(server.make_url("/hook"))
        path.write_text(json.dumps({**NUMBER, "server": {"url": url}}))
        proc = await _subprocess("simulate", "--number-file", str(path), cwd=tmp_path)
        assert proc["decision"]["outcome"]["target"] == "squad"
        assert seen and seen[0]["message"]["type"] == "assistant-request"
    finally:
        await server.close()


async def test_simulate_finds_a_number_in_the_embedded_store(tmp_path: Path) -> None:
    """`--to` looks the number up in the store the worker uses."""
    from router.app import create_app
    from router.settings import Settings
    from router.state import PHONE_NUMBERS

    app = create_app(Settings(data_dir=tmp_path / "data", api_key="k"))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await app[PHONE_NUMBERS].create("default", {**NUMBER, "assistantId": "asst-1"})
    finally:
        await runner.cleanup()
    out = await _subprocess("simulate", "--to", "+14155550100", cwd=tmp_path)
    assert out["decision"]["route"] == "assistant"
    assert out["decision"]["outcome"]["targetId"] == "asst-1"


async def test_simulate_takes_the_account_when_several_accounts_hold_the_number(
    tmp_path: Path,
) -> None:
    """Numbers are keyed by account: with the number under two Twilio accounts, `--to`
    alone names no one number (exit 1, asking for `--account`); `--account` picks it."""
    import asyncio
    import os

    from router.app import create_app
    from router.settings import Settings
    from router.state import PHONE_NUMBERS

    app = create_app(Settings(data_dir=tmp_path / "data", api_key="k"))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await app[PHONE_NUMBERS].create("default", {**NUMBER, "assistantId": "asst-1"})
        await app[PHONE_NUMBERS].create(
            "default", {**NUMBER, "twilioAccountSid": "AC2", "assistantId": "asst-2"}
        )
    finally:
        await runner.cleanup()
    out = await _subprocess("simulate", "--to", "+14155550100", "--account", "AC2", cwd=tmp_path)
    assert out["decision"]["outcome"]["targetId"] == "asst-2"
    assert out["number"] == "twilio:AC2:+14155550100"

    env = {**os.environ, "ROUTER_DATA_DIR": str(tmp_path / "data"), "ROUTER_LOG_LEVEL": "error"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "router", "simulate", "--to", "+14155550100"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert "give --account" in err.decode()


async def _subprocess(*argv: str, cwd: Path) -> dict[str, Any]:
    import asyncio
    import os

    env = {**os.environ, "ROUTER_DATA_DIR": str(cwd / "data"), "ROUTER_LOG_LEVEL": "error"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def test_simulate_normalises_the_called_number_and_takes_an_api_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A number as `GET /phone-number/{id}` returns it (id, timestamps) simulates as is."""
    record = {
        **NUMBER,
        "assistantId": "asst-9",
        "id": "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b",
        "orgId": "default",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "status": "active",
    }
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    code, out = _run(capsys, "simulate", "--number-file", str(path))
    assert code == 0 and isinstance(out, dict)
    assert out["decision"]["outcome"]["targetId"] == "asst-9"


def test_simulate_reports_a_bad_number_file_plainly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A number that fails validation is named with the API's message, exit 1."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**NUMBER, "name": "x" * 41}))
    assert main(["simulate", "--number-file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "name must be shorter than or equal to 40 characters" in err
    assert "invalid settings" not in err


def test_serve_without_redis_exits_1_with_a_message(tmp_path: Path) -> None:
    """An unreachable Redis at start-up ends `serve` with a sentence, not a traceback."""
    import os

    from tests.conftest import free_port

    env = {
        **os.environ,
        "ROUTER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "ROUTER_REDIS_CONNECT_RETRIES": "0",
        "ROUTER_LOG_LEVEL": "error",
    }
    done = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot start: Redis is unavailable" in done.stderr
    assert "Traceback" not in done.stderr


def test_simulate_shows_the_runtime_choice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a runtimes file: the runtime the call would go to, those after it, and the
    rendered document names it (a SIP runtime: `<Dial action><Sip>`)."""
    runtimes = tmp_path / "runtimes.json"
    runtimes.write_text(
        json.dumps(
            {
                "runtimes": [
                    {"name": "oai", "kind": "sip", "uri": "sip:agent@sip.example.com"},
                    {"name": "media", "kind": "stream", "url": "wss://media.example.com/s"},
                ],
                "routes": [
                    {
                        "match": {"assistantId": "abc", "provider": "twilio"},
                        "runtimes": [{"name": "oai"}, {"name": "media", "weight": 0}],
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("ROUTER_RUNTIMES_FILE", str(runtimes))
    path = tmp_path / "number.json"
    path.write_text(json.dumps({**NUMBER, "hooks": [], "assistantId": "abc"}))
    code, out = _run(capsys, "simulate", "--number-file", str(path), "--render", "twilio")
    assert code == 0 and isinstance(out, dict)
    assert out["runtime"] == {
        "name": "oai",
        "kind": "sip",
        "address": "sip:agent@sip.example.com",
        "then": ["media"],
    }
    assert (
        '<Dial action="/twilio/connect?runtime=oai&amp;kind=sip&amp;next=media' in out["rendered"]
    )
    assert "<Sip>sip:agent@sip.example.com?x-router-call-id=" in out["rendered"]


PLIVO_NUMBER: dict[str, Any] = {
    "provider": "plivo",
    "number": "+14155550100",
    "credentialId": "cred-plivo",
    "assistantId": "7d3c0a4e-1b2f-4c5d-8e9f-0a1b2c3d4e5f",
}


def test_simulate_renders_a_plivo_number_as_plivo_xml(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A Plivo number's decision rendered for Plivo: a bidirectional `<Stream>`."""
    path = tmp_path / "number.json"
    path.write_text(json.dumps(PLIVO_NUMBER))
    code, out = _run(capsys, "simulate", "--number-file", str(path), "--render", "plivo")
    assert code == 0 and isinstance(out, dict)
    assert out["decision"]["outcome"]["targetId"] == "7d3c0a4e-1b2f-4c5d-8e9f-0a1b2c3d4e5f"
    assert '<Stream bidirectional="true" keepCallAlive="true"' in out["rendered"]
    # extraHeaders are letters and digits only: a UUID goes without its dashes.
    assert "target=assistant,targetId=7d3c0a4e1b2f4c5d8e9f0a1b2c3d4e5f" in out["rendered"]


async def test_simulate_finds_a_plivo_number_in_the_embedded_store(tmp_path: Path) -> None:
    """`--to` with `--provider plivo` finds the number under its number-only key."""
    from router.app import create_app
    from router.settings import Settings
    from router.state import CREDENTIALS, PHONE_NUMBERS

    app = create_app(Settings(data_dir=tmp_path / "data", api_key="k"))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        credential = await app[CREDENTIALS].create(
            "default", {"provider": "plivo", "authId": "MA1", "authToken": "plivo-token-1"}
        )
        await app[PHONE_NUMBERS].create("default", {**PLIVO_NUMBER, "credentialId": credential.id})
    finally:
        await runner.cleanup()
    out = await _subprocess(
        "simulate", "--to", "+14155550100", "--provider", "plivo", "--render", "plivo", cwd=tmp_path
    )
    assert out["decision"]["route"] == "assistant"
    assert out["decision"]["outcome"]["targetId"] == PLIVO_NUMBER["assistantId"]
    assert "plivo-token-1" not in json.dumps(out)
