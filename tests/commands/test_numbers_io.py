"""`router numbers export|import` against real routers served on loopback ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import yaml
from aiohttp import web
from structlog.testing import capture_logs
from structlog.typing import EventDict

from router.app import create_app
from router.commands import numbers_io
from router.commands.cli import main
from router.settings import Settings
from router.state import PHONE_NUMBERS
from router.store.interface import ListQuery
from tests.conftest import free_port

API_KEY = "transfer-test-key"
TWILIO_TOKEN = "twilio-auth-token-SECRET-transfer-1"
TWILIO_API_SECRET = "twilio-api-secret-SECRET-transfer-2"
SIP_PASSWORD = "sip-password-SECRET-transfer-03"
TELNYX_API_KEY = "KEY-telnyx-SECRET-transfer-4"
SECRETS = (TWILIO_TOKEN, TWILIO_API_SECRET, SIP_PASSWORD, TELNYX_API_KEY)
# The placeholders the export writes for the numbers below.
TOKEN_VAR = "TWILIO_AUTH_TOKEN_14155550100"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
KEY = f"twilio:{ACCOUNT}:+14155550100"  # the lookup key of `twilio()`
SIP_VAR = "AUTHENTICATION_PASSWORD_FRONT_DESK_SIP_EXAMPLE_COM"


def twilio(number: str = "+14155550100", **extra: Any) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "number": number,
        "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
        "twilioAuthToken": TWILIO_TOKEN,
        "assistantId": "assistant-1",
        **extra,
    }


def vapi(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "vapi",
        "sipUri": "sip:front-desk@sip.example.com",
        "authentication": {
            "realm": "sip.example.com",
            "username": "sip-digest-username-0001",
            "password": SIP_PASSWORD,
        },
        "server": {"url": "https://customer.example.com/hook", "timeoutSeconds": 20},
        "hooks": [
            {
                "on": "call.ringing",
                "filters": [{"type": "startsWith", "key": "number", "startsWith": ["91"]}],
                "do": [{"type": "say", "exact": "No calls from here"}],
            }
        ],
        **extra,
    }


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    """The routers' logs, captured (not printed into the CLI's output); none holds a secret."""
    with capture_logs() as logs:
        yield logs
    structlog.reset_defaults()
    assert not [s for s in SECRETS if s in repr(logs)]


@dataclass
class Router:
    """A real app on a loopback port, and a plain HTTP client of its API."""

    url: str
    app: web.Application
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with self.http.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.call("POST", "/phone-number", body)
        return created

    async def numbers(self) -> dict[str, dict[str, Any]]:
        """Every number of the org by id, as the API returns them."""
        listed = await self.call("GET", "/phone-number?limit=1000")
        return {n["id"]: n for n in listed}

    async def stored(self) -> list[dict[str, Any]]:
        """The numbers as stored, secrets in clear (read in process, not through the API)."""
        numbers, _ = await self.app[PHONE_NUMBERS].list("default", ListQuery(limit=1000))
        return [n.wire() for n in numbers]


@asynccontextmanager
async def router(data_dir: Path, redis_url: str | None = None) -> AsyncIterator[Router]:
    """`create_app(settings)` served by AppRunner + TCPSite on a free loopback port."""
    settings = Settings(
        api_key=API_KEY,
        data_dir=data_dir,
        redis_url=redis_url,
        orgs=[],
        orgs_file=None,
        redis_connect_retries=0,
        redis_retry_delay_seconds=0,
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Router(f"http://127.0.0.1:{port}", app, http)
    finally:
        await runner.cleanup()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`router ...` in a thread (it runs its own event loop); exit code, stdout, stderr."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in captured.out and secret not in captured.err
    return code, captured.out, captured.err


def write(path: Path, numbers: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"numbers": numbers}, sort_keys=False))
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """ROUTER_API_KEY for the CLI and the secrets the export's placeholders name."""
    monkeypatch.setenv("ROUTER_API_KEY", API_KEY)
    monkeypatch.setenv(TOKEN_VAR, TWILIO_TOKEN)
    monkeypatch.setenv(SIP_VAR, SIP_PASSWORD)
    return monkeypatch


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("target_store", ["embedded", "redis"])
async def test_export_import_into_an_empty_router_and_export_again_is_identical(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    fmt: str,
    target_store: str,
) -> None:
    """Every number moves, secrets included (from the environment), and the second export
    equals the first byte for byte: ids, timestamps and masked secrets never enter a file."""
    redis_url = request.getfixturevalue("redis_url") if target_store == "redis" else None
    async with router(tmp_path / "a") as a, router(tmp_path / "b", redis_url) as b:
        await a.create(twilio(status="blocked", name="Front desk"))
        await a.create(
            twilio(
                "+14155550101",
                twilioApiKey="SK0123",
                twilioApiSecret=TWILIO_API_SECRET,
                twilioAuthToken=None,
            )
        )
        await a.create(vapi())
        env.setenv("TWILIO_API_SECRET_14155550101", TWILIO_API_SECRET)

        first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        code, _, err = await cli(capsys, "numbers", "export", "--url", a.url, "-o", str(first))
        assert code == 0, err
        assert f"exported 3 numbers to {first}" in err
        assert TOKEN_VAR in err and SIP_VAR in err  # what import will need

        code, out, err = await cli(capsys, "numbers", "import", str(first), "--url", b.url)
        assert code == 0, err
        assert "3 created, 0 updated, 0 unchanged, 0 failed" in out

        code, _, err = await cli(capsys, "numbers", "export", "--url", b.url, "-o", str(second))
        assert code == 0, err
        assert second.read_text() == first.read_text()

        # The secrets really arrived (stored in clear, read in process).
        moved = {n.get("number") or n["sipUri"]: n for n in await b.stored()}
        assert moved["+14155550100"]["twilioAuthToken"] == TWILIO_TOKEN
        assert moved["+14155550100"]["status"] == "blocked"
        assert moved["+14155550101"]["twilioApiSecret"] == TWILIO_API_SECRET
        assert moved["sip:front-desk@sip.example.com"]["authentication"]["password"] == SIP_PASSWORD


async def test_the_export_is_the_create_shape_sorted_by_key_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """No server fields, `status` only when blocked, secrets as placeholders, key order."""
    async with router(tmp_path / "a") as a:
        await a.create(twilio("+14155550102"))
        await a.create(vapi())
        await a.create(twilio(status="blocked"))
        code, out, _ = await cli(capsys, "numbers", "export", "--url", a.url)
    assert code == 0
    assert out.startswith("# Phone numbers exported by `router numbers export`")
    numbers = yaml.safe_load(out)["numbers"]
    assert [n.get("number") or n["sipUri"] for n in numbers] == [
        "sip:front-desk@sip.example.com",
        "+14155550100",
        "+14155550102",
    ]
    for number in numbers:
        assert not {"id", "orgId", "createdAt", "updatedAt"} & set(number)
        assert next(iter(number)) == "provider"
    assert numbers[1]["status"] == "blocked" and "status" not in numbers[2]
    assert numbers[1]["twilioAuthToken"] == f"${{{TOKEN_VAR}}}"
    assert numbers[0]["authentication"]["password"] == f"${{{SIP_VAR}}}"


async def test_export_pages_through_every_number(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: pytest.MonkeyPatch,
) -> None:
    """More numbers than one page holds (the API caps a page at 1000; 2 here): all exported."""
    env.setattr(numbers_io, "PAGE_SIZE", 2)
    async with router(tmp_path / "a") as a:
        for i in range(5):
            await a.create(twilio(f"+1415555020{i}"))
        code, out, _ = await cli(capsys, "numbers", "export", "--url", a.url, "--format", "json")
    assert code == 0
    numbers = json.loads(out)["numbers"]
    assert [n["number"] for n in numbers] == [f"+1415555020{i}" for i in range(5)]


async def test_a_second_import_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """Import is idempotent: the second run reports 0 changes and no updatedAt moves."""
    file = write(tmp_path / "numbers.yml", [twilio(), vapi(), twilio("+14155550103")])
    async with router(tmp_path / "b") as b:
        code, out, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 0, err
        assert "3 created" in out
        before = await b.numbers()

        code, out, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 0, err
        assert out.strip() == "0 created, 0 updated, 3 unchanged, 0 failed"
        assert await b.numbers() == before


async def test_dry_run_prints_the_diff_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """Creates list their fields, updates their changed fields before → after; secrets are
    `********`; the target is untouched."""
    async with router(tmp_path / "b") as b:
        existing = await b.create(twilio(name="Old name"))
        before = await b.numbers()
        file = write(
            tmp_path / "numbers.yml",
            [
                twilio(name="New name", twilioAuthToken="a-brand-new-SECRET-token-5"),
                twilio("+14155550104"),
            ],
        )
        code, out, err = await cli(
            capsys, "numbers", "import", str(file), "--url", b.url, "--dry-run"
        )
        assert code == 0, err
        assert await b.numbers() == before
    assert "a-brand-new-SECRET-token-5" not in out
    assert out.splitlines() == [
        f"update {KEY} ({existing['id']})",
        '    name: "Old name" → "New name"',
        '    twilioAuthToken: "********" → "********"',
        f"create twilio:{ACCOUNT}:+14155550104",
        '    provider: "twilio"',
        '    number: "+14155550104"',
        '    twilioAccountSid: "AC0123456789abcdef0123456789abcdef"',
        '    assistantId: "assistant-1"',
        "    smsEnabled: true",
        '    twilioAuthToken: "********"',
        "dry run: 1 to create, 1 to update, 0 unchanged; nothing was written",
    ]


async def test_a_changed_field_is_patched_alone(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: pytest.MonkeyPatch,
    logs: list[EventDict],
) -> None:
    """One field edited in the file: one PATCH carrying that field; other numbers untouched.

    The SIP URI matches case-insensitively (the same number, its spelling updated).
    """
    async with router(tmp_path / "b") as b:
        number = await b.create(vapi())
        other = await b.create(twilio())
        edited = vapi(sipUri="sip:Front-Desk@sip.example.com")
        edited["hooks"][0]["do"][0]["exact"] = "Not from here, sorry"
        file = write(tmp_path / "numbers.yml", [edited, twilio()])
        logs.clear()
        code, out, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 0, err
        assert f"updated {'sip:front-desk@sip.example.com'}: hooks, sipUri" in out
        assert "0 created, 1 updated, 1 unchanged, 0 failed" in out
        updates = [e for e in logs if e["event"] == "phone_number.updated"]
        assert [(e["phone_number_id"], e["fields"]) for e in updates] == [
            (number["id"], ["hooks", "sipUri"])
        ]
        after = await b.numbers()
    assert after[other["id"]] == other
    changed = after[number["id"]]
    assert changed["hooks"][0]["do"][0]["exact"] == "Not from here, sorry"
    assert changed["authentication"] == number["authentication"]  # password kept
    assert changed["updatedAt"] > number["updatedAt"]


async def test_fields_the_file_drops_are_cleared_and_left_out_secrets_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """The file is each number's whole configuration: a removed field is PATCHed to null,
    `status` back to active; a secret the file leaves out (or whose variable is unset)
    keeps its stored value."""
    env.delenv(SIP_VAR)
    async with router(tmp_path / "b") as b:
        await b.create(twilio(status="blocked", name="Desk"))
        await b.create(vapi())
        slim = {k: v for k, v in twilio().items() if k not in ("assistantId", "twilioAuthToken")}
        bare = {k: v for k, v in vapi().items() if k not in ("server", "hooks")}
        bare["authentication"]["password"] = f"${{{SIP_VAR}}}"  # unset: kept
        file = write(tmp_path / "numbers.yml", [slim, bare])
        code, out, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 0, err
        assert f"updated {KEY}: assistantId, name, status" in out
        assert "updated sip:front-desk@sip.example.com: hooks, server" in out
        stored = {n.get("number") or n["sipUri"]: n for n in await b.stored()}
    twilio_number = stored["+14155550100"]
    assert "assistantId" not in twilio_number and "name" not in twilio_number
    assert twilio_number["status"] == "active"
    assert twilio_number["twilioAuthToken"] == TWILIO_TOKEN
    sip_number = stored["sip:front-desk@sip.example.com"]
    assert "server" not in sip_number and "hooks" not in sip_number
    assert sip_number["authentication"]["password"] == SIP_PASSWORD


async def test_a_bad_file_exits_2_with_every_problem_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """Every problem of the file is reported at once, before any request is made."""
    file = tmp_path / "numbers.json"
    file.write_text(
        json.dumps(
            [
                twilio(),
                {"provider": "twilio", "number": "not a number", "twilioAccountSid": "AC1"},
                {"provider": "fax"},
                "just text",
                vapi(name="x" * 41),
                twilio(),  # the first one again
                {"provider": "vapi", "name": "no sipUri"},
                {**twilio("+14155550105"), "extra": 1},
            ]
        )
    )
    async with router(tmp_path / "b") as b:
        code, out, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 2
        assert await b.numbers() == {}
    assert out == ""
    assert err.splitlines() == [
        f"router: {file}: nothing was written:",
        "  numbers[1]: number must be a valid phone number in E.164 format (e.g. +14155551234)",
        "  numbers[2].provider must be one of: "
        "twilio, telnyx, vonage, plivo, vapi, byo-phone-number",
        "  numbers[3] must be an object",
        "  numbers[4]: name must be shorter than or equal to 40 characters",
        f"  numbers[5]: {KEY} is already numbers[0]",
        "  numbers[6]: a vapi number needs a sipUri to be imported (its key)",
        "  numbers[7]: property extra should not exist",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("numbers: [1, 2\n", "not valid YAML or JSON"),
        ('{"provider": "twilio"}', 'expected a list of numbers or {"numbers": [...]}'),
    ],
)
async def test_a_file_that_is_not_a_list_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: pytest.MonkeyPatch,
    text: str,
    problem: str,
) -> None:
    """Not YAML/JSON, or not a list: exit 2 without contacting the router."""
    file = tmp_path / "numbers.yml"
    file.write_text(text)
    code, _, err = await cli(capsys, "numbers", "import", str(file), "--url", "http://127.0.0.1:9")
    assert code == 2
    assert problem in err


async def test_a_secret_that_is_not_supplied_for_a_new_number_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """Creating a number whose secret placeholder is unset, or masked, would store nonsense:
    refused before anything is written, naming the variable to set."""
    env.delenv(TOKEN_VAR)
    masked = vapi()
    masked["authentication"]["password"] = "*" * 27 + "T-03"
    file = write(
        tmp_path / "numbers.yml",
        [twilio(twilioAuthToken=f"${{{TOKEN_VAR}}}"), twilio("+14155550106"), masked],
    )
    async with router(tmp_path / "b") as b:
        code, _, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 2
        assert await b.numbers() == {}
    assert f"numbers[0] ({KEY}): twilioAuthToken is not supplied to create it: " in err
    assert f"set ${TOKEN_VAR}" in err
    assert "numbers[2] (sip:front-desk@sip.example.com): authentication.password" in err


async def test_a_number_the_api_refuses_exits_1_and_the_rest_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    """A telnyx number whose credential does not exist on the target: the API's message is
    printed, the other numbers are still created, exit 1."""
    missing = "00000000-0000-4000-8000-000000000000"
    file = write(
        tmp_path / "numbers.yml",
        [
            {"provider": "telnyx", "number": "+14155550107", "credentialId": missing},
            twilio(),
        ],
    )
    async with router(tmp_path / "b") as b:
        code, out, err = await cli(capsys, "numbers", "import", str(file), "--url", b.url)
        assert code == 1
        assert len(await b.numbers()) == 1
    assert f"failed telnyx:+14155550107: 400 credentialId {missing} does not name" in err
    assert "1 created, 0 updated, 0 unchanged, 1 failed" in out


async def test_usage_and_connection_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key: exit 2. A wrong key: exit 1 with the API's 401. No router there: exit 1."""
    monkeypatch.delenv("ROUTER_API_KEY", raising=False)
    code, _, err = await cli(capsys, "numbers", "export", "--url", "http://127.0.0.1:9")
    assert code == 2 and "ROUTER_API_KEY" in err
    async with router(tmp_path / "b") as b:
        code, _, err = await cli(capsys, "numbers", "export", "--url", b.url, "--api-key", "nope")
        assert code == 1 and "401 Unauthorized: the API key is not valid" in err
    code, _, err = await cli(
        capsys, "numbers", "export", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "k"
    )
    assert code == 1 and "Cannot connect" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["numbers", "import"])
    assert exit_info.value.code == 2


def test_key_of_agrees_with_the_models_lookup_key() -> None:
    """The CLI matches numbers exactly as the router finds them for inbound calls."""
    from router.models.phone_numbers import RECORD_MODELS, lookup_key

    server = {"id": "x", "orgId": "o", "createdAt": "2024-01-01T00:00:00Z"}
    server["updatedAt"] = server["createdAt"]
    bodies: list[dict[str, Any]] = [
        twilio(),
        vapi(sipUri="sips:Front-Desk@SIP.example.com;transport=tls"),
        {
            "provider": "byo-phone-number",
            "credentialId": "c1",
            "number": "5551234",
            "numberE164CheckEnabled": False,
        },
        {"provider": "vonage", "credentialId": "c1", "number": "+14155550100"},
        {"provider": "plivo", "credentialId": "c1", "number": "+14155550100"},
    ]
    for body in bodies:
        record = RECORD_MODELS[body["provider"]].model_validate({**body, **server})
        assert numbers_io.key_of(record.wire()) == lookup_key(record)


def test_help_describes_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`router numbers --help` names export and import and states the matching rule."""
    with pytest.raises(SystemExit) as exit_info:
        main(["numbers", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "export" in out and "import" in out and "lookup key" in out
