"""Every family of the seed's validation rules: refused with a 400 naming the field, and the
bounds themselves accepted, on create and on PATCH."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from .conftest import (
    SIP_USERNAME,
    Api,
    byo_body,
    expect,
    rejected,
    trunk_credential,
    twilio_body,
    vapi_body,
)

_numbers = itertools.count(1000)


def fresh_number() -> str:
    """A number no other case of the test uses (accepted cases create real numbers)."""
    return f"+1415555{next(_numbers):04d}"


def server(**fields: Any) -> dict[str, Any]:
    return {"server": {"url": "https://customer.example.com/hook", **fields}}


def backoff(**fields: Any) -> dict[str, Any]:
    plan = {"type": "fixed", "maxRetries": 1, "baseDelaySeconds": 1, **fields}
    return server(backoffPlan={k: v for k, v in plan.items() if v is not None})


def to_number(**fields: Any) -> dict[str, Any]:
    return {"fallbackDestination": {"type": "number", "number": "+14155550199", **fields}}


def to_sip(**fields: Any) -> dict[str, Any]:
    return {"fallbackDestination": {"type": "sip", "sipUri": "sip:ops@pbx.example.com", **fields}}


def plan(**fields: Any) -> dict[str, Any]:
    return to_number(transferPlan={"mode": "blind-transfer", **fields})


def ringing(**fields: Any) -> dict[str, Any]:
    hook = {"on": "call.ringing", "do": [{"type": "say", "exact": "Hello"}], **fields}
    return {"hooks": [{k: v for k, v in hook.items() if v is not None}]}


def starts_with(prefixes: list[str]) -> dict[str, Any]:
    return ringing(filters=[{"type": "startsWith", "key": "number", "startsWith": prefixes}])


def ending(**fields: Any) -> dict[str, Any]:
    return {"hooks": [{"on": "call.ending", **fields}]}


def ended_filter(**fields: Any) -> dict[str, Any]:
    flt = {"type": "oneOf", "key": "call.endedReason", "oneOf": ["assistant-request-failed"]}
    return ending(filters=[{**flt, **fields}])


def message(value: Any) -> dict[str, Any]:
    return to_number(message=value)


# (case, fields added to a valid twilio body, fragment of the 400's message)
REFUSED: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "name": [
        ("41 chars", {"name": "n" * 41}, "name must be shorter than or equal to 40 characters"),
        ("not a string", {"name": 7}, "name must be a string"),
    ],
    "server": [
        ("timeout 0", server(timeoutSeconds=0), "server.timeoutSeconds must not be less than 1"),
        (
            "timeout 301",
            server(timeoutSeconds=301),
            "server.timeoutSeconds must not be greater than 300",
        ),
        ("ftp url", server(url="ftp://customer.example.com"), "http:// or https://"),
        ("no scheme", server(url="customer.example.com/hook"), "http:// or https://"),
        ("header newline", server(headers={"X-A": "a\r\nX-B: b"}), "line breaks"),
        ("header name", server(headers={"Bad Name": "x"}), "not a valid header name"),
        ("unknown field", server(retries=3), "property server.retries should not exist"),
    ],
    "backoffPlan": [
        ("maxRetries 11", backoff(maxRetries=11), "maxRetries must not be greater than 10"),
        ("maxRetries -1", backoff(maxRetries=-1), "maxRetries must not be less than 0"),
        ("maxRetries 1.5", backoff(maxRetries=1.5), "maxRetries must be an integer"),
        ("delay 10.5", backoff(baseDelaySeconds=10.5), "must not be greater than 10"),
        ("delay -1", backoff(baseDelaySeconds=-1), "baseDelaySeconds must not be less than 0"),
        ("type linear", backoff(type="linear"), "backoffPlan.type must be one of"),
        ("no type", backoff(type=None), "backoffPlan needs type"),
        ("no maxRetries", backoff(maxRetries=None), "backoffPlan needs maxRetries"),
        ("no delay", backoff(baseDelaySeconds=None), "backoffPlan needs baseDelaySeconds"),
        ("status 99", backoff(excludedStatusCodes=[99]), "HTTP status codes"),
    ],
    "hooks": [
        ("ringing without do", ringing(do=None), "hooks[0].do is required"),
        ("unknown event", {"hooks": [{"on": "call.started", "do": []}]}, "hooks[0].on must be"),
        (
            "21 prefixes",
            starts_with([str(i) for i in range(21)]),
            "hooks[0].filters[0].startsWith must contain no more than 20 elements",
        ),
        (
            "prefix 21 chars",
            starts_with(["1" * 21]),
            "hooks[0].filters[0].startsWith[0] must be shorter than or equal to 20 characters",
        ),
        (
            "ringing filter type",
            ringing(filters=[{"type": "endsWith", "key": "number", "startsWith": ["1"]}]),
            "hooks[0].filters[0].type must be one of",
        ),
        (
            "ringing filter key",
            ringing(filters=[{"type": "startsWith", "key": "name", "startsWith": ["1"]}]),
            "hooks[0].filters[0].key must be one of",
        ),
        ("ending filter type", ended_filter(type="allOf"), "filters[0].type must be one of"),
        ("ending filter key", ended_filter(key="call.status"), "filters[0].key must be one of"),
        (
            "ending reason",
            ended_filter(oneOf=["customer-ended-call"]),
            "hooks[0].filters[0].oneOf[0] must be one of",
        ),
        (
            "ending filter missing",
            ending(filters=[{"type": "oneOf"}]),
            "filters[0].key is required",
        ),
        (
            "say 4001",
            ending(do={"type": "say", "exact": "s" * 4001}),
            "hooks[0].do.exact must be shorter than or equal to 4000 characters",
        ),
        ("say without text", ending(do={"type": "say"}), "hooks[0].do.exact is required"),
        ("action type", ending(do={"type": "hangup"}), "hooks[0].do.type must be one of"),
        (
            "ringing action type",
            ringing(do=[{"type": "dial"}]),
            "hooks[0].do[0].type must be one of",
        ),
    ],
    "destination": [
        (
            "not E.164",
            to_number(number="4155550199"),
            "fallbackDestination.number: number must be a valid phone number in E.164",
        ),
        (
            "alphanumeric only",
            to_number(number="41-55", numberE164CheckEnabled=False),
            "only letters and digits",
        ),
        ("extension empty", to_number(extension=""), "extension must be longer than or equal to 1"),
        (
            "extension 11",
            to_number(extension="1" * 11),
            "extension must be shorter than or equal to 10",
        ),
        (
            "callerId 41",
            to_number(callerId="1" * 41),
            "callerId must be shorter than or equal to 40",
        ),
        (
            "sip callerId 41",
            to_sip(callerId="1" * 41),
            "callerId must be shorter than or equal to 40",
        ),
        (
            "sip uri",
            to_sip(sipUri="ops@pbx.example.com"),
            "fallbackDestination.sipUri: must be a SIP URI",
        ),
        ("sip uri control char", to_sip(sipUri="sip:ops@pbx\x00.example.com"), "SIP URI"),
        (
            "type",
            {"fallbackDestination": {"type": "queue"}},
            "fallbackDestination.type must be one of",
        ),
        ("mode", plan(mode="cold-transfer"), "transferPlan.mode must be one of"),
        ("timeout 0", plan(timeout=0), "timeout must not be less than 1"),
        ("timeout 601", plan(timeout=601), "timeout must not be greater than 600"),
        ("dialTimeout 0", plan(dialTimeout=0), "dialTimeout must not be less than 1"),
        ("dialTimeout 601", plan(dialTimeout=601), "dialTimeout must not be greater than 600"),
        (
            "twiml 4097",
            plan(twiml="x" * 4097),
            "transferPlan.twiml must be shorter than or equal to 4096",
        ),
        ("sipVerb", plan(sipVerb="invite"), "sipVerb must be one of"),
        (
            "no mode",
            to_number(transferPlan={}),
            "fallbackDestination.transferPlan.mode is required",
        ),
    ],
    "message": [
        (
            "content 1001",
            message({"type": "custom-message", "content": "c" * 1001}),
            "fallbackDestination.message.content must be shorter than or equal to 1000 characters",
        ),
        (
            "language",
            message(
                {
                    "type": "custom-message",
                    "contents": [{"type": "text", "text": "hi", "language": "xx"}],
                }
            ),
            "fallbackDestination.message.contents[0].language: language must be an ISO 639-1 code",
        ),
        (
            "text type",
            message(
                {
                    "type": "custom-message",
                    "contents": [{"type": "audio", "text": "hi", "language": "en"}],
                }
            ),
            "fallbackDestination.message.contents[0].type must be one of",
        ),
        ("message type", message({"type": "tool-message"}), "message.type must be one of"),
        ("message number", message(5), "fallbackDestination.message"),
    ],
    "json types": [
        ("boolean as text", {"smsEnabled": "no"}, "smsEnabled"),
        ("boolean as 0", {"smsEnabled": 0}, "smsEnabled"),
        ("integer as text", server(timeoutSeconds="20"), "server.timeoutSeconds"),
        ("integer as boolean", {"maxConcurrentCalls": True}, "maxConcurrentCalls"),
        ("flag as text", to_number(numberE164CheckEnabled="false"), "numberE164CheckEnabled"),
    ],
    "admission": [
        ("cap 0", {"maxConcurrentCalls": 0}, "maxConcurrentCalls must not be less than 1"),
        ("cap text", {"maxConcurrentCalls": "5"}, "maxConcurrentCalls"),
        ("cap 100001", {"maxConcurrentCalls": 100_001}, "maxConcurrentCalls must not be greater"),
        (
            "overflow without number",
            {"overflowDestination": {"type": "number"}},
            "overflowDestination",
        ),
    ],
    "unknown": [
        ("top level", {"foo": 1}, "property foo should not exist"),
        ("nested", to_number(foo=1), "property fallbackDestination.foo should not exist"),
        ("status", {"status": "activating"}, "status must be one of"),
        ("provider", {"provider": "skype"}, "provider must be one of the following values"),
    ],
}

# (case, fields added to a valid twilio body): the bounds themselves are accepted.
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("name 40", {"name": "n" * 40}),
    ("timeout 1", server(timeoutSeconds=1)),
    ("timeout 300", server(timeoutSeconds=300)),
    ("http url", server(url="http://customer.example.com:8080/hook")),
    ("backoff 0", backoff(maxRetries=0, baseDelaySeconds=0)),
    ("backoff 10", backoff(type="exponential", maxRetries=10, baseDelaySeconds=10)),
    ("20 prefixes of 20", starts_with(["1" * 20] * 20)),
    ("say 4000", ending(do={"type": "say", "exact": "s" * 4000})),
    ("ending without do", ending()),
    ("extension 10", to_number(extension="1234567890")),
    ("extension 1", to_number(extension="9")),
    ("callerId 40", to_number(callerId="1" * 40)),
    ("alphanumeric destination", to_number(number="Ops1", numberE164CheckEnabled=False)),
    ("plan bounds low", plan(timeout=1, dialTimeout=1, sipVerb="bye")),
    ("plan bounds high", plan(timeout=600, dialTimeout=600, twiml="x" * 4096)),
    ("content 1000", message({"type": "custom-message", "content": "c" * 1000})),
    ("empty message", message("")),
    (
        "contents",
        message(
            {
                "type": "custom-message",
                "contents": [{"type": "text", "text": "Hallo", "language": "de"}],
            }
        ),
    ),
    ("blocked", {"status": "blocked"}),
    ("cap 1", {"maxConcurrentCalls": 1}),
    ("cap 100000", {"maxConcurrentCalls": 100_000}),
    ("overflow sip", {"overflowDestination": {"type": "sip", "sipUri": "sip:q@pbx.example.com"}}),
]


@pytest.mark.parametrize("family", list(REFUSED))
async def test_invalid_fields_are_refused_with_a_message_naming_them(api: Api, family: str) -> None:
    """Each out-of-bounds or ill-typed field is a 400 whose message says what is wrong."""
    for case, fields, fragment in REFUSED[family]:
        reply = await api.post("/phone-number", twilio_body(fresh_number(), **fields))
        assert reply.status == 400, f"{case}: {reply.text}"
        assert fragment in rejected(reply), f"{case}: {reply.text}"
    assert await api.list_numbers() == []


async def test_the_bounds_themselves_are_accepted(api: Api) -> None:
    """Values on the bounds (40 chars, 1 and 300 s, 20 prefixes, 4000 chars...) are a 201."""
    for case, fields in ACCEPTED:
        reply = await api.post("/phone-number", twilio_body(fresh_number(), **fields))
        assert reply.status == 201, f"{case}: {reply.text}"


async def test_patch_applies_the_same_rules(api: Api) -> None:
    """Every refused create field is refused on PATCH too, and leaves the number unchanged."""
    created = await api.create_number(twilio_body(fresh_number()))
    path = f"/phone-number/{created['id']}"
    for family, cases in REFUSED.items():
        for case, fields, fragment in cases:
            if "provider" in fields:
                continue  # PATCH names its own provider error (test_phone_numbers)
            reply = await api.patch(path, fields)
            assert fragment in rejected(reply), f"{family}/{case}: {reply.text}"
    for case, fields in ACCEPTED:
        assert (await api.patch(path, fields)).status == 200, case
    assert expect(await api.get(path), 200)["createdAt"] == created["createdAt"]


async def test_sip_authentication_is_20_to_40_characters(api: Api) -> None:
    """SIP digest username and password: 20 to 40 characters, both required."""
    auth = {"username": SIP_USERNAME, "password": "p" * 20}
    for field, value, fragment in (
        ("username", "u" * 19, "authentication.username must be longer than or equal to 20"),
        ("username", "u" * 41, "authentication.username must be shorter than or equal to 40"),
        ("password", "p" * 19, "authentication.password must be longer than or equal to 20"),
        ("password", "p" * 41, "authentication.password must be shorter than or equal to 40"),
    ):
        body = vapi_body(None, authentication={**auth, field: value})
        assert fragment in rejected(await api.post("/phone-number", body))
    missing = vapi_body(None, authentication={"username": SIP_USERNAME})
    assert "authentication.password is required" in rejected(
        await api.post("/phone-number", missing)
    )
    for length in (20, 40):
        body = vapi_body(None, authentication={"username": "u" * length, "password": "p" * length})
        expect(await api.post("/phone-number", body), 201)


async def test_number_desired_area_code_must_be_three_characters(api: Api) -> None:
    """`numberDesiredAreaCode` of other than 3 characters is a length error, before anything."""
    for code, fragment in (
        ("41", "longer than or equal to 3"),
        ("4155", "shorter than or equal to 3"),
    ):
        body = vapi_body(None, numberDesiredAreaCode=code)
        assert f"numberDesiredAreaCode must be {fragment}" in rejected(
            await api.post("/phone-number", body)
        )


async def test_byo_number_length_and_format(api: Api) -> None:
    """byo `number` is 3 to 40 characters, and E.164 unless the check is off."""
    trunk = await api.create_credential(trunk_credential())
    off = {"numberE164CheckEnabled": False}
    for number, fragment in (
        ("12", "number must be longer than or equal to 3 characters"),
        ("1" * 41, "number must be shorter than or equal to 40 characters"),
        ("+1 415 555 0100", "E.164"),
    ):
        body = byo_body(trunk["id"], number)
        assert fragment in rejected(await api.post("/phone-number", body))
    expect(await api.post("/phone-number", byo_body(trunk["id"], "1" * 40, **off)), 201)
    expect(await api.post("/phone-number", byo_body(trunk["id"], "abc", **off)), 201)
