"""Random input never breaks the API: no 5xx, and every 4xx in the NestJS error shape.

Bodies are random JSON (recursive dicts, lists, strings, numbers, booleans, null), and
dicts biased towards the real field names with realistic or random values, so the
generator reaches deep into the models. `Api` checks each reply: 2xx bodies against the
spec, errors against the NestJS shape; the tests add "never a 5xx". Embedded backend
for speed: validation happens before the store is touched.
"""

from __future__ import annotations

import weakref
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    Api,
    Reply,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    twilio_credential,
    vapi_body,
)

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    # One app serves every example of a test (fresh apps per example would be slow);
    # each example only adds data, which is what a real API sees too.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def either(*realistic: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly realistic values of a field, sometimes anything at all."""
    return st.one_of(*realistic, json_values)


def some_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


phone_numbers = st.sampled_from(
    ["+14155550100", "14155550101", "+0123", "1234", "abc", "+1" + "9" * 20, ""]
) | st.from_regex(r"\+?[0-9]{1,16}", fullmatch=True)
sip_uris = st.sampled_from(
    ["sip:a@b.example", "SIP:A@B.EXAMPLE", "sips:x@y", "sip:@", "a@b", "sip:a@b\x00"]
) | st.from_regex(r"sips?:[a-z0-9.]{0,8}@[a-z0-9.]{0,8}", fullmatch=True)
seconds = st.sampled_from([0, 1, 1.5, 10, 60, 300, 301, 600, 601, -1]) | st.floats(-1e3, 1e3)
short_text = st.text(max_size=45)
messages = either(
    short_text,
    some_of(
        {
            "type": either(st.just("custom-message")),
            "content": either(st.text(max_size=1002)),
            "contents": either(
                st.lists(
                    some_of(
                        {
                            "type": either(st.just("text")),
                            "text": short_text,
                            "language": either(st.sampled_from(["en", "es", "xx", "yue"])),
                        }
                    ),
                    max_size=2,
                )
            ),
        }
    ),
)
transfer_plans = some_of(
    {
        "mode": either(st.sampled_from(["blind-transfer", "warm-transfer-twiml", "cold"])),
        "message": messages,
        "timeout": either(seconds),
        "dialTimeout": either(seconds),
        "sipVerb": either(st.sampled_from(["refer", "bye", "dial", "invite"])),
        "twiml": either(st.text(max_size=50)),
        "contextEngineeringPlan": either(
            some_of(
                {
                    "type": either(st.sampled_from(["all", "none", "lastNMessages"])),
                    "maxMessages": either(st.integers(-2, 10)),
                }
            )
        ),
        "fallbackPlan": either(some_of({"message": messages, "endCallEnabled": json_values})),
    }
)
destinations = some_of(
    {
        "type": either(st.sampled_from(["number", "sip", "queue"])),
        "number": either(phone_numbers),
        "sipUri": either(sip_uris),
        "numberE164CheckEnabled": either(st.booleans()),
        "extension": either(st.text(max_size=12)),
        "callerId": either(st.text(max_size=42)),
        "message": messages,
        "transferPlan": either(transfer_plans),
        "sipHeaders": either(st.dictionaries(st.text(max_size=10), st.text(max_size=10))),
    }
)
actions = some_of(
    {
        "type": either(st.sampled_from(["transfer", "say", "hangup"])),
        "exact": either(st.text(max_size=20)),
        "destination": either(destinations),
    }
)
hooks = st.lists(
    some_of(
        {
            "on": either(st.sampled_from(["call.ringing", "call.ending", "call.started"])),
            "do": either(actions, st.lists(actions, max_size=2)),
            "filters": either(
                st.lists(
                    some_of(
                        {
                            "type": either(st.sampled_from(["startsWith", "oneOf"])),
                            "key": either(st.sampled_from(["number", "call.endedReason"])),
                            "startsWith": either(st.lists(st.text(max_size=22), max_size=22)),
                            "oneOf": either(
                                st.lists(
                                    st.sampled_from(
                                        ["assistant-request-failed", "customer-ended-call"]
                                    ),
                                    max_size=3,
                                )
                            ),
                        }
                    ),
                    max_size=2,
                )
            ),
        }
    ),
    max_size=3,
)
servers = some_of(
    {
        "url": either(st.sampled_from(["https://x.example/hook", "ftp://x", "", "http://[::1]"])),
        "timeoutSeconds": either(seconds),
        "headers": either(st.dictionaries(st.text(max_size=10), scalars, max_size=3)),
        "backoffPlan": either(
            some_of(
                {
                    "type": either(st.sampled_from(["fixed", "exponential", "linear"])),
                    "maxRetries": either(st.integers(-1, 11)),
                    "baseDelaySeconds": either(seconds),
                    "excludedStatusCodes": either(st.lists(st.integers(0, 700), max_size=3)),
                }
            )
        ),
    }
)
ROUTING_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": either(short_text),
    "assistantId": either(short_text),
    "squadId": either(short_text),
    "workflowId": either(short_text),
    "status": either(st.sampled_from(["active", "blocked", "activating"])),
    "server": either(servers),
    "hooks": either(hooks),
    "fallbackDestination": either(destinations),
}
NUMBER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **ROUTING_FIELDS,
    "provider": either(
        st.sampled_from(
            ["twilio", "telnyx", "vonage", "plivo", "vapi", "byo-phone-number", "skype"]
        )
    ),
    "number": either(phone_numbers),
    "numberE164CheckEnabled": either(st.booleans()),
    "credentialId": either(st.uuids().map(str)),
    "twilioAccountSid": either(st.text(max_size=70)),
    "twilioAuthToken": either(st.text(max_size=30)),
    "twilioApiKey": either(short_text),
    "twilioApiSecret": either(short_text),
    "smsEnabled": either(st.booleans()),
    "sipUri": either(sip_uris),
    "numberDesiredAreaCode": either(st.text(max_size=4)),
    "authentication": either(
        some_of(
            {
                "username": either(st.text(min_size=18, max_size=42)),
                "password": either(st.text(min_size=18, max_size=42)),
                "realm": short_text,
            }
        )
    ),
}
IMPORT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **ROUTING_FIELDS,
    "twilioPhoneNumber": either(phone_numbers),
    "twilioAccountSid": either(st.text(max_size=70)),
    "twilioAuthToken": either(st.text(max_size=30)),
    "twilioApiKey": either(short_text),
    "twilioApiSecret": either(short_text),
    "smsEnabled": either(st.booleans()),
}
CREDENTIAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "provider": either(st.sampled_from(["telnyx", "vonage", "twilio", "byo-sip-trunk", "x"])),
    "name": either(short_text),
    "apiKey": either(short_text),
    "publicKey": either(st.sampled_from([telnyx_credential()["publicKey"], "AAAA", "!!"])),
    "apiSecret": either(short_text),
    "signatureSecret": either(short_text),
    "accountSid": either(short_text),
    "authToken": either(short_text),
    "gateways": either(
        st.lists(
            some_of(
                {
                    "ip": either(st.sampled_from(["203.0.113.1", ""])),
                    "port": either(st.integers(-1, 70000)),
                    "netmask": either(st.integers(0, 40)),
                    "outboundProtocol": either(st.sampled_from(["udp", "tls", "sctp"])),
                }
            ),
            max_size=2,
        )
    ),
    "outboundAuthenticationPlan": either(
        some_of({"authUsername": either(short_text), "authPassword": either(short_text)})
    ),
}


def bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Random JSON, or a dict of real field names with realistic-or-random values."""
    return json_values | some_of(fields) | some_of(fields).map(lambda d: {**d, "extra": 1})


def check(reply: Reply) -> None:
    """Never a 5xx (`Api` has already checked the shape of the 4xx and the 2xx body)."""
    assert reply.status < 500, reply.text


@FUZZ
@given(body=bodies(NUMBER_FIELDS))
async def test_random_create_bodies(api: Api, body: Any) -> None:
    """POST /phone-number with random bodies: 201 or a 4xx, never a 5xx."""
    check(await api.post("/phone-number", body))


@FUZZ
@given(body=bodies(IMPORT_FIELDS))
async def test_random_import_bodies(api: Api, body: Any) -> None:
    """POST /phone-number/import/twilio with random bodies."""
    check(await api.post("/phone-number/import/twilio", body))


@FUZZ
@given(body=bodies(CREDENTIAL_FIELDS))
async def test_random_credential_bodies(api: Api, body: Any) -> None:
    """POST /credential with random bodies."""
    check(await api.post("/credential", body))


_targets: weakref.WeakKeyDictionary[object, list[str]] = weakref.WeakKeyDictionary()


async def targets(api: Api) -> list[str]:
    """Paths of one number of each kind and one credential, created once per app."""
    key = api.client
    if key not in _targets:
        trunk = await api.create_credential(trunk_credential())
        twilio_cred = await api.create_credential(twilio_credential())
        _targets[key] = [
            f"/phone-number/{(await api.create_number(twilio_body()))['id']}",
            f"/phone-number/{(await api.create_number(vapi_body()))['id']}",
            "/phone-number/"
            + (
                await api.create_number(
                    {"provider": "byo-phone-number", "credentialId": trunk["id"]}
                )
            )["id"],
            f"/credential/{twilio_cred['id']}",
            f"/credential/{trunk['id']}",
        ]
    return _targets[key]


@FUZZ
@given(body=bodies(NUMBER_FIELDS) | bodies(CREDENTIAL_FIELDS), which=st.integers(0, 4))
async def test_random_patch_bodies(api: Api, body: Any, which: int) -> None:
    """PATCH numbers (twilio, vapi, byo) and credentials with random bodies."""
    path = (await targets(api))[which]
    check(await api.patch(path, body))
    # Whatever was refused or applied, the record still reads back.
    after = await api.get(path)
    assert after.status == 200, after.text


QUERY_VALUES = ["", "0", "1", "1000", "1001", "-1", "1.5", "1e400", "nan", "ASC", "DESC"]
QUERY_MOMENTS = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00+14:00", "9999-12-31T23:59:59"]
query_values = st.sampled_from([*QUERY_VALUES, *QUERY_MOMENTS, "createdAt", "x"]) | st.text(
    max_size=30
)
TIME_FILTERS = [f"{f}{op}" for f in ("createdAt", "updatedAt") for op in ("Gt", "Lt", "Ge", "Le")]
query_names = st.sampled_from(
    ["limit", "page", "sortOrder", "sortBy", "search", "foo", *TIME_FILTERS]
)


@FUZZ
@given(
    query=st.dictionaries(query_names, query_values, max_size=5),
    path=st.sampled_from(["/phone-number", "/v2/phone-number", "/credential"]),
)
async def test_random_list_queries(api: Api, query: dict[str, str], path: str) -> None:
    """Random query strings on the three lists: 200 (spec-valid) or a 400, never a 5xx."""
    reply = await api.get(path, query)
    check(reply)
    assert reply.status in (200, 400), reply.text


@FUZZ
@given(
    raw_id=st.text(min_size=1, max_size=40),
    kind=st.sampled_from(["phone-number", "credential"]),
    method=st.sampled_from(["GET", "PATCH", "DELETE"]),
)
async def test_random_ids(api: Api, raw_id: str, kind: str, method: str) -> None:
    """Any id in the path: 400 (not a UUID), 404, or another route's 4xx; never a 5xx."""
    reply = await api.call(method, f"/{kind}/{quote(raw_id, safe='')}", {"name": "x"})
    check(reply)


@FUZZ
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: repr(v).encode()))
async def test_random_bytes_as_json(api: Api, raw: bytes) -> None:
    """Arbitrary bytes declared as JSON: a 400 (or what the bytes happen to mean)."""
    reply = await api.post("/phone-number", data=raw, headers={"Content-Type": "application/json"})
    check(reply)
