"""Wiring Twilio numbers: the real API on `create_app(settings)`, twilio-python talking to a
real local aiohttp app that stands in for Twilio's REST API.

The stand-in serves the two endpoints the library calls (list IncomingPhoneNumbers by
`PhoneNumber`, update one by its PN sid), checks HTTP basic auth against the accounts it
knows, answers errors in Twilio's JSON shape and records every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import BasicAuth, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.typing import EventDict

from router.app import create_app
from router.manage.twilio_wiring import BaseUrlHttpClient
from router.settings import Settings
from tests.conftest import free_port

API_KEY = "wiring-api-key-of-the-default-org"
PUBLIC_URL = "https://router.example.com"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
OTHER_ACCOUNT_SID = "ACfedcba9876543210fedcba9876543210"
NUMBER = "+14155550100"
OTHER_NUMBER = "+14155550199"
NOT_OWNED_NUMBER = "+14155550777"
NUMBER_SID = "PN00000000000000000000000000000100"
OTHER_NUMBER_SID = "PN00000000000000000000000000000199"
# Secrets are distinctive strings, so a leak is found by a plain substring search.
AUTH_TOKEN = "wiring-auth-token-SECRET-0001"
WRONG_TOKEN = "wiring-wrong-token-SECRET-0002"
API_KEY_SID = "SK0123456789abcdef0123456789abcdef"
API_SECRET = "wiring-api-secret-SECRET-0003"
CREDENTIAL_TOKEN = "wiring-credential-token-SECRET-04"
SECRETS = (AUTH_TOKEN, WRONG_TOKEN, API_SECRET, CREDENTIAL_TOKEN)

WIRED = {
    "VoiceUrl": f"{PUBLIC_URL}/twilio/voice",
    "VoiceMethod": "POST",
    "VoiceFallbackUrl": f"{PUBLIC_URL}/twilio/fallback",
    "VoiceFallbackMethod": "POST",
    "StatusCallback": f"{PUBLIC_URL}/twilio/status",
    "StatusCallbackMethod": "POST",
}
WIRED_SMS = {"SmsUrl": f"{PUBLIC_URL}/twilio/sms", "SmsMethod": "POST"}


# --- the stand-in for Twilio's REST API ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """One request the stand-in got."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    username: str | None


@dataclass
class FakeTwilio:
    """Accounts with their numbers and accepted (username, password) pairs."""

    numbers: dict[str, dict[str, str]] = field(
        default_factory=lambda: {ACCOUNT_SID: {NUMBER: NUMBER_SID, OTHER_NUMBER: OTHER_NUMBER_SID}}
    )
    logins: dict[str, set[tuple[str, str]]] = field(
        default_factory=lambda: {
            ACCOUNT_SID: {
                (ACCOUNT_SID, AUTH_TOKEN),
                (API_KEY_SID, API_SECRET),
                (ACCOUNT_SID, CREDENTIAL_TOKEN),
            }
        }
    )
    seen: list[Seen] = field(default_factory=list)
    # Scripted faults: an HTTP status for every request, or a delay before answering.
    fail_with: int | None = None
    delay_seconds: float = 0.0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    @property
    def updates(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]

    def app(self) -> web.Application:
        app = web.Application()
        base = "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers"
        app.router.add_get(base + ".json", self.list_numbers)
        app.router.add_post(base + "/{sid}.json", self.update_number)
        return app

    async def _admit(self, request: web.Request) -> str:
        """Record the request; raise Twilio's error answer unless it may go on."""
        header = request.headers.get("Authorization", "")
        login = BasicAuth.decode(header) if header.startswith("Basic ") else None
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                form,
                login.login if login else None,
            )
        )
        if self.delay_seconds:
            # Waits out the delay, or until the test ends: a stalled reply never holds teardown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.delay_seconds)
        if self.fail_with is not None:
            raise _twilio_error(self.fail_with, 20500, "An internal server error has occurred")
        account = request.match_info["account"]
        if login is None or (login.login, login.password) not in self.logins.get(account, set()):
            raise _twilio_error(401, 20003, "Authenticate")
        return account

    async def list_numbers(self, request: web.Request) -> web.Response:
        account = await self._admit(request)
        wanted = request.query.get("PhoneNumber", "")
        found = [
            _instance(account, number, sid)
            for number, sid in self.numbers.get(account, {}).items()
            if number.startswith(wanted)  # Twilio's filter matches partially
        ]
        uri = f"/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json"
        return web.json_response(
            {
                "incoming_phone_numbers": found,
                "first_page_uri": uri,
                "next_page_uri": None,
                "previous_page_uri": None,
                "page": 0,
                "page_size": int(request.query.get("PageSize", "50")),
                "start": 0,
                "end": len(found),
                "uri": uri,
            }
        )

    async def update_number(self, request: web.Request) -> web.Response:
        account = await self._admit(request)
        sid = request.match_info["sid"]
        owned = {s: n for n, s in self.numbers.get(account, {}).items()}
        if sid not in owned:
            raise _twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        form = self.seen[-1].form
        return web.json_response(
            _instance(account, owned[sid], sid)
            | {_snake(name): value for name, value in form.items()}
        )


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _instance(account: str, number: str, sid: str) -> dict[str, Any]:
    return {"sid": sid, "account_sid": account, "phone_number": number, "friendly_name": number}


def _twilio_error(status: int, code: int, message: str) -> web.HTTPException:
    """An error answer in the JSON shape Twilio's REST API uses."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    error = web.HTTPException(text=json.dumps(body), content_type="application/json")
    error.set_status(status)
    return error


# --- the router -------------------------------------------------------------------------------


@dataclass
class Router:
    """The router's API as the default org."""

    client: TestClient[web.Request, web.Application]

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with self.client.request(method, path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def numbers(self) -> list[dict[str, Any]]:
        status, listed = await self.call("GET", "/phone-number")
        assert status == 200
        assert isinstance(listed, list)
        return listed


StartRouter = Callable[..., Awaitable[Router]]


@pytest.fixture
async def twilio(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeTwilio]:
    """The stand-in on 127.0.0.1, knowing ACCOUNT_SID with NUMBER and OTHER_NUMBER."""
    fake = FakeTwilio()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release.set()


@pytest.fixture
def start_router(aiohttp_client: AiohttpClient, twilio: FakeTwilio, tmp_path: Path) -> StartRouter:
    """Start the real app, wiring on and pointed at the stand-in, plus overrides."""

    async def start(**overrides: Any) -> Router:
        values: dict[str, Any] = {
            "api_key": API_KEY,
            "data_dir": tmp_path / "data",
            "public_url": PUBLIC_URL,
            "wire_provider_numbers": True,
            "twilio_api_base_url": twilio.url,
            "twilio_api_timeout_seconds": 5.0,
        }
        values.update(overrides)
        return Router(await aiohttp_client(create_app(Settings(**values))))

    return start


@pytest.fixture
async def router(start_router: StartRouter) -> Router:
    return await start_router()


@pytest.fixture
def logs() -> Iterator[list[EventDict]]:
    """Every structlog event of the test; none may carry a secret."""
    with structlog.testing.capture_logs() as captured:
        yield captured
    text = repr(captured)
    assert not [s for s in SECRETS if s in text]


def twilio_number(number: str = NUMBER, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "number": number,
        "twilioAccountSid": ACCOUNT_SID,
        "twilioAuthToken": AUTH_TOKEN,
        **extra,
    }


def events(logs: list[EventDict], name: str) -> list[EventDict]:
    return [e for e in logs if e["event"] == name]


def message_of(body: Any) -> str:
    message = body["message"]
    return " | ".join(message) if isinstance(message, list) else str(message)


# --- wiring on create, import and update --------------------------------------------------------


async def test_create_sets_voice_fallback_status_and_sms_urls_with_post(
    router: Router, twilio: FakeTwilio, logs: list[EventDict]
) -> None:
    """Creating a Twilio number finds it in its account by PhoneNumber, then sets VoiceUrl,
    VoiceFallbackUrl, StatusCallback and SmsUrl to the public URL's Twilio paths, all POST,
    authenticated as the account with the number's auth token."""
    status, created = await router.call("POST", "/phone-number", twilio_number())
    assert status == 201, created

    listing, update = twilio.seen
    assert listing.method == "GET"
    assert listing.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    assert listing.query["PhoneNumber"] == NUMBER
    assert update.path == (
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/{NUMBER_SID}.json"
    )
    assert update.form == WIRED | WIRED_SMS
    assert {s.username for s in twilio.seen} == {ACCOUNT_SID}

    (wired,) = events(logs, "phone_number.wired")
    assert wired["phone_number_id"] == created["id"]
    assert wired["twilio_sid"] == NUMBER_SID
    assert wired["auth"] == "auth-token"
    assert wired["sms"] is True
    assert events(logs, "phone_number.created")


async def test_sms_disabled_leaves_the_messaging_url_alone(
    router: Router, twilio: FakeTwilio
) -> None:
    """`smsEnabled: false` sets the voice URLs and sends no SmsUrl or SmsMethod."""
    status, _ = await router.call("POST", "/phone-number", twilio_number(smsEnabled=False))
    assert status == 201
    (update,) = twilio.updates
    assert update.form == WIRED


async def test_import_twilio_wires_the_number(router: Router, twilio: FakeTwilio) -> None:
    """`POST /phone-number/import/twilio` wires the imported number like a create."""
    body = {
        "twilioPhoneNumber": NUMBER,
        "twilioAccountSid": ACCOUNT_SID,
        "twilioAuthToken": AUTH_TOKEN,
    }
    status, created = await router.call("POST", "/phone-number/import/twilio", body)
    assert status == 201, created
    (update,) = twilio.updates
    assert update.path.endswith(f"/IncomingPhoneNumbers/{NUMBER_SID}.json")
    assert update.form == WIRED | WIRED_SMS


async def test_api_key_and_secret_authenticate_as_the_key_on_the_account(
    router: Router, twilio: FakeTwilio, logs: list[EventDict]
) -> None:
    """Without an auth token, the number's API key/secret are the basic-auth pair while
    the URL names the number's account (`Client(api_key, api_secret, account_sid)`)."""
    body = twilio_number(twilioApiKey=API_KEY_SID, twilioApiSecret=API_SECRET)
    del body["twilioAuthToken"]
    status, _ = await router.call("POST", "/phone-number", body)
    assert status == 201
    assert {s.username for s in twilio.seen} == {API_KEY_SID}
    assert all(f"/Accounts/{ACCOUNT_SID}/" in s.path for s in twilio.seen)
    assert events(logs, "phone_number.wired")[0]["auth"] == "api-key"


async def test_an_org_twilio_credential_of_the_same_account_authenticates(
    router: Router, twilio: FakeTwilio
) -> None:
    """A number with neither token nor key uses the org's `twilio` credential whose
    accountSid is the number's account, not one of another account."""
    for sid, token in ((OTHER_ACCOUNT_SID, WRONG_TOKEN), (ACCOUNT_SID, CREDENTIAL_TOKEN)):
        status, _ = await router.call(
            "POST",
            "/credential",
            {"provider": "twilio", "accountSid": sid, "authToken": token},
        )
        assert status == 201
    body = twilio_number()
    del body["twilioAuthToken"]
    status, created = await router.call("POST", "/phone-number", body)
    assert status == 201, created
    assert len(twilio.updates) == 1


async def test_no_way_to_authenticate_is_a_400_and_nothing_is_stored(
    router: Router, twilio: FakeTwilio
) -> None:
    """No token, no key and no credential for the account: 400 naming the options,
    Twilio is not contacted, and the number is not kept."""
    body = twilio_number()
    del body["twilioAuthToken"]
    status, reply = await router.call("POST", "/phone-number", body)
    assert status == 400
    assert "twilioAuthToken" in message_of(reply)
    assert twilio.seen == []
    assert await router.numbers() == []


async def test_patch_of_the_number_rewires_and_of_the_name_does_not(
    router: Router, twilio: FakeTwilio
) -> None:
    """A PATCH changing `number` wires the new number; one changing `smsEnabled` re-wires
    without SmsUrl; a PATCH of `name` alone does not contact Twilio."""
    status, created = await router.call("POST", "/phone-number", twilio_number())
    assert status == 201
    path = f"/phone-number/{created['id']}"

    status, _ = await router.call("PATCH", path, {"name": "Front desk"})
    assert status == 200
    assert len(twilio.updates) == 1

    status, updated = await router.call("PATCH", path, {"number": OTHER_NUMBER})
    assert status == 200, updated
    assert updated["number"] == OTHER_NUMBER
    assert twilio.updates[-1].path.endswith(f"/IncomingPhoneNumbers/{OTHER_NUMBER_SID}.json")
    assert twilio.updates[-1].form == WIRED | WIRED_SMS

    status, _ = await router.call("PATCH", path, {"smsEnabled": False})
    assert status == 200
    assert len(twilio.updates) == 3
    assert twilio.updates[-1].form == WIRED


# --- failures: nothing is left half-done ----------------------------------------------------


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_bad_credentials_are_a_400_with_twilios_message_and_nothing_stored(
    start_router: StartRouter,
    twilio: FakeTwilio,
    logs: list[EventDict],
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """Twilio answering 401: the API answers 400 with Twilio's message (not the token),
    the just-created record is removed, so the same number can be created afterwards."""
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    router = await start_router(redis_url=redis_url, redis_connect_retries=0)
    status, reply = await router.call(
        "POST", "/phone-number", twilio_number(twilioAuthToken=WRONG_TOKEN)
    )
    assert status == 400, reply
    text = message_of(reply)
    assert "Twilio rejected the credentials" in text and "Authenticate" in text
    assert "20003" in text
    assert WRONG_TOKEN not in json.dumps(reply)
    assert twilio.updates == []
    assert await router.numbers() == []

    (failed,) = events(logs, "phone_number.wiring_failed")
    assert failed["reason"] == "twilio-refused"
    assert failed["twilio_status"] == 401
    assert failed["rolled_back"] is True
    assert not events(logs, "phone_number.created")

    status, _ = await router.call("POST", "/phone-number", twilio_number())
    assert status == 201


async def test_a_number_not_in_the_account_is_a_400_and_nothing_stored(
    router: Router, twilio: FakeTwilio
) -> None:
    """The account has no such IncomingPhoneNumber (the partial filter's near misses
    do not count): 400 saying so, no update sent, no record kept."""
    twilio.numbers[ACCOUNT_SID]["+141555507770"] = "PN00000000000000000000000000000777"
    status, reply = await router.call("POST", "/phone-number", twilio_number(NOT_OWNED_NUMBER))
    assert status == 400
    assert f"has no phone number {NOT_OWNED_NUMBER}" in message_of(reply)
    assert twilio.updates == []
    assert await router.numbers() == []


async def test_twilio_down_is_a_503_and_nothing_stored(
    start_router: StartRouter, twilio: FakeTwilio, logs: list[EventDict]
) -> None:
    """Nothing listening at the API base URL: 503 saying Twilio could not be reached,
    and the number is not kept."""
    router = await start_router(twilio_api_base_url=f"http://127.0.0.1:{free_port()}")
    status, reply = await router.call("POST", "/phone-number", twilio_number())
    assert status == 503
    assert "Twilio could not be reached" in message_of(reply)
    assert await router.numbers() == []
    (failed,) = events(logs, "phone_number.wiring_failed")
    assert failed["reason"] == "twilio-unreachable"


async def test_twilio_too_slow_is_a_503_within_the_timeout_and_nothing_stored(
    start_router: StartRouter, twilio: FakeTwilio
) -> None:
    """Twilio not answering within `twilio_api_timeout_seconds`: the API answers 503
    once the deadline passes, and the number is not kept."""
    router = await start_router(twilio_api_timeout_seconds=0.3)
    twilio.delay_seconds = 5.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, reply = await router.call("POST", "/phone-number", twilio_number())
    assert status == 503
    assert "no answer within 0.3s" in message_of(reply)
    assert loop.time() - started < 2.0
    assert await router.numbers() == []


async def test_a_twilio_server_error_is_a_502_and_nothing_stored(
    router: Router, twilio: FakeTwilio
) -> None:
    """Twilio answering 500: 502 with Twilio's message, and the number is not kept."""
    twilio.fail_with = 500
    status, reply = await router.call("POST", "/phone-number", twilio_number())
    assert status == 502
    assert "Twilio answered 500" in message_of(reply)
    assert await router.numbers() == []


async def test_a_failed_rewire_puts_the_number_back_as_it_was(
    router: Router, twilio: FakeTwilio
) -> None:
    """A PATCH to a number the account does not have, or to a wrong token, answers 400
    and leaves the stored number exactly as before (and its old number still claimed)."""
    status, created = await router.call("POST", "/phone-number", twilio_number())
    assert status == 201
    path = f"/phone-number/{created['id']}"

    status, reply = await router.call("PATCH", path, {"number": NOT_OWNED_NUMBER})
    assert status == 400, reply
    assert "change was not saved" in message_of(reply)
    status, reply = await router.call("PATCH", path, {"twilioAuthToken": WRONG_TOKEN})
    assert status == 400, reply

    status, now = await router.call("GET", path)
    assert status == 200
    assert now == created
    status, _ = await router.call("POST", "/phone-number", twilio_number())
    assert status == 409


# --- off by default, and its settings --------------------------------------------------------


async def test_wiring_off_contacts_nothing(start_router: StartRouter, twilio: FakeTwilio) -> None:
    """With `wire_provider_numbers` false, create, import and PATCH send Twilio nothing."""
    router = await start_router(wire_provider_numbers=False)
    status, created = await router.call("POST", "/phone-number", twilio_number())
    assert status == 201
    status, _ = await router.call("PATCH", f"/phone-number/{created['id']}", {"smsEnabled": False})
    assert status == 200
    body = {"twilioPhoneNumber": OTHER_NUMBER, "twilioAccountSid": ACCOUNT_SID}
    status, _ = await router.call("POST", "/phone-number/import/twilio", body)
    assert status == 201
    assert twilio.seen == []


def test_wiring_is_off_by_default() -> None:
    """`wire_provider_numbers` defaults to false: nothing contacts Twilio unless asked."""
    assert Settings.model_fields["wire_provider_numbers"].default is False


def test_wiring_without_a_public_url_fails_at_startup(tmp_path: Path) -> None:
    """Wiring on but no `public_url`: `create_app` refuses with an error naming the setting."""
    settings = Settings(api_key=API_KEY, data_dir=tmp_path, wire_provider_numbers=True)
    with pytest.raises(ValueError, match="ROUTER_PUBLIC_URL"):
        create_app(settings)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.twilio.com/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json?PhoneNumber=%2B1",
            "http://127.0.0.1:9/base/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json?PhoneNumber=%2B1",
        ),
        (
            "https://api.dublin.ie1.twilio.com/2010-04-01/Accounts.json",
            "http://127.0.0.1:9/base/2010-04-01/Accounts.json",
        ),
        ("https://example.com/elsewhere", "https://example.com/elsewhere"),
    ],
)
def test_base_url_client_rewrites_only_twilio_hosts(url: str, expected: str) -> None:
    """The HTTP client given to `twilio.rest.Client` sends Twilio's URLs (edge and region
    hosts included) to the base URL, keeping path and query; other URLs are untouched."""
    client = BaseUrlHttpClient("http://127.0.0.1:9/base/", timeout_seconds=1.0)
    try:
        assert client.rewrite(url) == expected
    finally:
        client.close()
