"""Vapi's own Python SDK (`vapi-server-sdk`) as the API client of a real `router serve`:
every provider kind it knows created, read, listed, searched, updated and deleted, every
field sent coming back as sent (secrets masked, as Vapi does).

The SDK pins an older pydantic-core than router runs on, so it is not in the `test` extra:
`.ci/run` installs it with `--no-deps`. Without it these tests are skipped, saying so,
except under CI, where its absence fails them."""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from .conftest import (
    ROUTER_RINGING_HOOK,
    SIP_PASSWORD,
    TWILIO_AUTH_TOKEN,
    byo_body,
    masked,
    rich_routing,
    sip_authentication,
    telnyx_body,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    vapi_body,
    vonage_body,
    vonage_credential,
)
from .served import router_serve

_MISSING = "vapi-server-sdk is not installed: pip install --no-deps 'vapi-server-sdk>=3.0,<4'"
if importlib.util.find_spec("vapi") is None:
    if os.environ.get("CI"):
        raise ImportError(_MISSING)  # CI installs it (.ci/run): its absence is a failure
    pytest.skip(_MISSING, allow_module_level=True)

from vapi import Vapi  # noqa: E402  (after the check above, which says what is missing)
from vapi import phone_numbers as sdk  # noqa: E402
from vapi.core.api_error import ApiError  # noqa: E402

pytestmark = pytest.mark.slow

API_KEY = "vapi-sdk-test-key"
# The SDK's class suffix of each provider (`CreatePhoneNumbersRequest_Twilio`, ...).
SDK_KINDS = {
    "twilio": "Twilio",
    "telnyx": "Telnyx",
    "vonage": "Vonage",
    "vapi": "Vapi",
    "byo-phone-number": "ByoPhoneNumber",
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with router_serve(tmp_path_factory.mktemp("vapi-sdk"), API_KEY) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as session:
        yield session


@pytest.fixture
def client(base_url: str, http: httpx.Client) -> Vapi:
    return Vapi(token=API_KEY, base_url=base_url, httpx_client=http)


def credential(base_url: str, body: dict[str, Any]) -> str:
    """A credential's id: the SDK has no Credentials API of router's shape."""
    reply = httpx.post(
        f"{base_url}/credential", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert reply.status_code == 201, reply.text
    created: str = reply.json()["id"]
    return created


def sdk_routing() -> dict[str, Any]:
    """Every routing field of the seed the SDK can send. Not router's extensions (the SDK
    does not know them), nor the two fields whose type Vapi's generated spec gets wrong
    (`server.backoffPlan.type`, `excludedStatusCodes` and `transferPlan.sipVerb` declared
    as objects, docs: /openapi.json serves them fixed): the SDK refuses their real values
    before sending anything."""
    routing = rich_routing()
    routing["hooks"] = [h for h in routing["hooks"] if h is not ROUTER_RINGING_HOOK]
    del routing["server"]["backoffPlan"]
    del routing["fallbackDestination"]["transferPlan"]["sipVerb"]
    return routing


BODIES: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "twilio": lambda _url, n: twilio_body(n, **sdk_routing()),
    "telnyx": lambda url, n: telnyx_body(credential(url, telnyx_credential()), n, **sdk_routing()),
    "vonage": lambda url, n: vonage_body(credential(url, vonage_credential()), n, **sdk_routing()),
    "vapi": lambda _url, n: vapi_body(
        f"sip:desk-{n[-4:]}@sip.example.com", authentication=sip_authentication(), **sdk_routing()
    ),
    "byo-phone-number": lambda url, n: byo_body(
        credential(url, trunk_credential()), n, numberE164CheckEnabled=True, **sdk_routing()
    ),
}
NUMBERS = {
    "twilio": "+14155550170",
    "telnyx": "+14155550171",
    "vonage": "+14155550172",
    "vapi": "+14155550173",
    "byo-phone-number": "+14155550174",
}


def wire(model: BaseModel) -> dict[str, Any]:
    """A model of the SDK as JSON. Its serializer warns where the spec's wrong types meet
    real values (`transferPlan.sipVerb`, "refer" by default, typed as an object) and as it
    tries each member of a union: the values are kept as received, which is what the tests
    compare."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


def differences(sent: Any, got: Any, path: str = "") -> list[str]:
    """Where `got` does not hold `sent`: every field sent, equal (numbers as numbers), at
    any depth; fields router adds (ids, times, defaults Vapi also fills) are not compared."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [f"{path or 'body'}: {got!r}"]
        found = []
        for key, value in sent.items():
            if key not in got:
                found.append(f"{path}.{key} missing")
            else:
                found += differences(value, got[key], f"{path}.{key}")
        return found
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [f"{path}: {got!r}"]
        return [
            d
            for i, (a, b) in enumerate(zip(sent, got, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    return [] if sent == got else [f"{path}: sent {sent!r}, got {got!r}"]


def as_returned(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the API returns of `body`: secrets masked, the last four shown."""
    expected = copy.deepcopy(body)
    if provider == "twilio":
        expected["twilioAuthToken"] = masked(TWILIO_AUTH_TOKEN)
    if provider == "vapi":
        expected["authentication"]["password"] = masked(SIP_PASSWORD)
    return expected


@pytest.mark.parametrize("provider", list(SDK_KINDS))
def test_the_sdk_creates_reads_lists_updates_and_deletes_a_number(
    client: Vapi, base_url: str, provider: str
) -> None:
    """Create with the SDK's own request model, then get, list (with time filters and a
    limit), search the paginated list, update and delete: each answer parsed by the SDK
    into its model of that provider, every field sent in it as sent."""
    kind = SDK_KINDS[provider]
    body = BODIES[provider](base_url, NUMBERS[provider])
    request = getattr(sdk, f"CreatePhoneNumbersRequest_{kind}").model_validate(body)
    assert differences(body, wire(request)) == []  # the SDK sends what the test means
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    created = client.phone_numbers.create(request=request)
    assert type(created).__name__ == f"CreatePhoneNumbersResponse_{kind}"
    expected = as_returned(provider, body)
    assert differences(expected, wire(created)) == []
    assert created.id is not None and created.org_id == "default"
    assert created.created_at >= started and created.updated_at == created.created_at

    fetched = client.phone_numbers.get(created.id)
    assert wire(fetched) == wire(created)

    listed = client.phone_numbers.list(created_at_ge=started, limit=100)
    [mine] = [n for n in listed if n.id == created.id]
    assert wire(mine) == wire(created)

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    page = client.phone_numbers.phone_number_controller_find_all_paginated(
        search=NUMBERS[provider][-4:] if provider != "vapi" else f"desk-{NUMBERS[provider][-4:]}",
        page=1,
        limit=10,
        sort_order="ASC",
        sort_by="createdAt",
        created_at_ge=started,
        created_at_le=later,
    )
    assert [n.id for n in page.results] == [created.id]
    assert page.metadata.total_items == 1 and page.metadata.current_page == 1
    assert page.metadata.sort_order == "ASC" and page.metadata.created_at_le == later

    change = {
        "name": "Night desk",
        "assistantId": "assistant-2",
        "fallbackDestination": {"type": "number", "number": "+14155550111"},
    }
    update = getattr(sdk, f"UpdatePhoneNumbersRequestBody_{kind}").model_validate(change)
    updated = client.phone_numbers.update(created.id, request=update)
    assert type(updated).__name__ == f"UpdatePhoneNumbersResponse_{kind}"
    assert differences({**expected, **change}, wire(updated)) == []
    assert updated.updated_at > created.updated_at
    assert wire(client.phone_numbers.get(created.id)) == wire(updated)

    deleted = client.phone_numbers.delete(created.id)
    assert deleted.id == created.id
    with pytest.raises(ApiError) as gone:
        client.phone_numbers.get(created.id)
    assert gone.value.status_code == 404
    assert gone.value.body == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "Phone number not found",
    }


def test_the_sdk_reads_routers_errors_as_vapis(
    client: Vapi, base_url: str, http: httpx.Client
) -> None:
    """A refused body, an unknown id and a wrong key reach the SDK as its `ApiError` with
    the status and NestJS body Vapi answers."""
    bad = sdk.CreatePhoneNumbersRequest_Twilio(
        number="+14155550180", twilio_account_sid="AC" + "0" * 32, name="x" * 41
    )
    with pytest.raises(ApiError) as refused:
        client.phone_numbers.create(request=bad)
    assert refused.value.status_code == 400
    assert refused.value.body["message"] == ["name must be shorter than or equal to 40 characters"]

    with pytest.raises(ApiError) as missing:
        client.phone_numbers.delete("00000000-0000-4000-8000-000000000000")
    assert missing.value.status_code == 404

    stranger = Vapi(token="not-a-key", base_url=base_url, httpx_client=http)
    with pytest.raises(ApiError) as unauthorized:
        stranger.phone_numbers.list()
    assert unauthorized.value.status_code == 401
    assert (unauthorized.value.headers or {}).get("www-authenticate") == "Bearer"
