"""assistant-request end to end: the router asks a real local customer server where a call
goes, and answers Twilio accordingly."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import unused_port
from pydantic import SecretStr

from router.models.common import Server
from router.settings import OrgConfig

from .conftest import (
    ACCOUNT_SID,
    ACME_KEY,
    ACME_ORG,
    API_KEY,
    APOLOGY,
    CALLER,
    NUMBER,
    OTHER_KEY,
    SERVER_HEADER_SECRET,
    SERVER_SECRET,
    TOKEN,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    Router,
    call_sid,
    dialled,
    said,
    spoken_then_hung_up,
    stream_parameters,
    verbs,
    voice_form,
)

TRANSIENT_ASSISTANT = {"name": "Night shift", "firstMessage": "Hello!", "model": {"provider": "x"}}
TRANSIENT_SQUAD = {"members": [{"assistantId": "asst-a"}, {"assistantId": "asst-b"}]}
TRANSIENT_WORKFLOW = {"name": "Triage", "nodes": [{"name": "start"}]}

Check = Callable[[ET.Element], None]


def connects(target: str, target_id: str | None) -> Check:
    def check(root: ET.Element) -> None:
        params = stream_parameters(root)
        assert params["target"] == target
        assert params.get("targetId") == target_id

    return check


def transfers(tag: str, to: str, message: str = "Transferring the call now") -> Check:
    def check(root: ET.Element) -> None:
        assert said(root) == [message]
        noun = dialled(root)
        assert (noun.tag, noun.text) == (tag, to)

    return check


def says(text: str) -> Check:
    def check(root: ET.Element) -> None:
        assert spoken_then_hung_up(root) == text

    return check


def hangs_up_silently(root: ET.Element) -> None:
    assert verbs(root) == ["Hangup"]


# reply, TwiML check, route, ended reason, assistant-request outcome
CLASSIFICATIONS: list[Any] = [
    pytest.param(
        Reply(json={"assistantId": "asst-9"}),
        connects("assistant", "asst-9"),
        "assistant-request",
        None,
        "ok",
        id="assistantId",
    ),
    pytest.param(
        Reply(json={"assistant": TRANSIENT_ASSISTANT}),
        connects("assistant", None),
        "assistant-request",
        None,
        "ok",
        id="assistant",
    ),
    pytest.param(
        Reply(json={"squadId": "squad-9"}),
        connects("squad", "squad-9"),
        "assistant-request",
        None,
        "ok",
        id="squadId",
    ),
    pytest.param(
        Reply(json={"squad": TRANSIENT_SQUAD}),
        connects("squad", None),
        "assistant-request",
        None,
        "ok",
        id="squad",
    ),
    pytest.param(
        Reply(json={"workflowId": "wf-9"}),
        connects("workflow", "wf-9"),
        "assistant-request",
        None,
        "ok",
        id="workflowId",
    ),
    pytest.param(
        Reply(json={"workflow": TRANSIENT_WORKFLOW}),
        connects("workflow", None),
        "assistant-request",
        None,
        "ok",
        id="workflow",
    ),
    pytest.param(
        Reply(json={"assistantId": "asst-9", "assistantOverrides": {"variableValues": {"a": 1}}}),
        connects("assistant", "asst-9"),
        "assistant-request",
        None,
        "ok",
        id="assistantId-with-overrides",
    ),
    pytest.param(
        Reply(json={"destination": {"type": "number", "number": "+14155550177"}}),
        transfers("Number", "+14155550177"),
        "assistant-request",
        "assistant-request-returned-forwarding-phone-number",
        "ok",
        id="destination-number",
    ),
    pytest.param(
        Reply(
            json={
                "destination": {
                    "type": "sip",
                    "sipUri": "sip:desk@pbx.example.com",
                    "message": "Hold on",
                }
            }
        ),
        transfers("Sip", "sip:desk@pbx.example.com", "Hold on"),
        "assistant-request",
        "assistant-request-returned-forwarding-phone-number",
        "ok",
        id="destination-sip",
    ),
    pytest.param(
        Reply(json={"error": "Our office is closed today."}),
        says("Our office is closed today."),
        "say",
        "assistant-request-returned-error",
        "ok",
        id="error-string",
    ),
    pytest.param(
        Reply(json={"error": {"code": 42}}),
        hangs_up_silently,
        "say",
        "assistant-request-returned-unspeakable-error",
        "ok",
        id="unspeakable-error",
    ),
    pytest.param(
        Reply(json={"error": "x" * 1001}),
        hangs_up_silently,
        "say",
        "assistant-request-returned-unspeakable-error",
        "ok",
        id="error-too-long",
    ),
    pytest.param(
        Reply(json={"assistantId": 42}),
        says(APOLOGY),
        "say",
        "assistant-request-returned-invalid-assistant",
        "ok",
        id="invalid-assistant",
    ),
    pytest.param(
        Reply(json={"destination": {"type": "number", "number": "not a number"}}),
        says(APOLOGY),
        "say",
        "assistant-request-returned-invalid-assistant",
        "ok",
        id="invalid-destination",
    ),
    pytest.param(
        Reply(json={}),
        says(APOLOGY),
        "say",
        "assistant-request-returned-no-assistant",
        "ok",
        id="empty-object",
    ),
    pytest.param(
        Reply(status=500, json={"assistantId": "ignored"}),
        says(APOLOGY),
        "say",
        "assistant-request-failed",
        "http-500",
        id="http-500",
    ),
    pytest.param(
        Reply(body=b"<html>definitely not json"),
        says(APOLOGY),
        "say",
        "assistant-request-failed",
        "non-json",
        id="garbage-body",
    ),
    pytest.param(
        Reply(json=["assistantId", "asst-1"]),
        says(APOLOGY),
        "say",
        "assistant-request-failed",
        "not-object",
        id="non-object-json",
    ),
    pytest.param(
        Reply(status=302, json={}),
        says(APOLOGY),
        "say",
        "assistant-request-failed",
        "http-302",
        id="redirect-not-followed",
    ),
]


@pytest.mark.parametrize(("reply", "check", "route", "ended_reason", "outcome"), CLASSIFICATIONS)
async def test_each_server_answer_gets_its_twiml_and_ended_reason(
    router: Router,
    customer: Customer,
    logs: Logs,
    reply: Reply,
    check: Check,
    route: str,
    ended_reason: str | None,
    outcome: str,
) -> None:
    """Every classification of SPEC §5 step 4, from a real HTTP answer to TwiML and the
    `call.routed` event."""
    customer.reply(reply)
    await router.create_number(server={"url": customer.url})
    answer = await router.voice()
    check(answer.root)
    assert len(customer.assistant_requests) == 1
    event = logs.one_routed()
    assert (event["route"], event["ended_reason"]) == (route, ended_reason)
    assert event["assistant_request_outcome"] == outcome
    assert event["assistant_request_attempts"] == 1


async def test_the_assistant_request_message_has_vapis_shape_and_no_secrets(
    router: Router, customer: Customer
) -> None:
    """The POST body is `{"message": {"type": "assistant-request", "call", "phoneNumber",
    "customer"}}`; `phoneNumber` carries the configuration but no token or server header."""
    server = {
        "url": customer.url,
        "headers": {"Authorization": SERVER_HEADER_SECRET, "X-Tenant": "tenant-7"},
    }
    number = await router.create_number(server=server, name="Front desk")
    sid = call_sid()
    before = time.time()
    await router.voice(voice_form(sid))
    [request] = customer.assistant_requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    message = request.message
    assert set(message) == {"type", "timestamp", "call", "phoneNumber", "customer"}
    assert message["type"] == "assistant-request"
    assert before * 1000 - 1000 <= message["timestamp"] <= time.time() * 1000 + 1000
    call = message["call"]
    uuid.UUID(call["id"])
    assert {k: v for k, v in call.items() if k not in ("id", "createdAt", "updatedAt")} == {
        "orgId": "default",
        "type": "inboundPhoneCall",
        "phoneCallProvider": "twilio",
        "phoneCallProviderId": sid,
        "phoneCallTransport": "pstn",
        "status": "ringing",
        "phoneNumberId": number["id"],
        "customer": {"number": CALLER},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", call["createdAt"])
    assert message["customer"] == {"number": CALLER}
    phone_number = message["phoneNumber"]
    assert (phone_number["id"], phone_number["number"]) == (number["id"], NUMBER)
    assert (phone_number["name"], phone_number["twilioAccountSid"]) == ("Front desk", ACCOUNT_SID)
    assert "twilioAuthToken" not in phone_number
    assert phone_number["server"] == {"url": customer.url}
    assert TOKEN not in request.body.decode()
    assert SERVER_HEADER_SECRET not in request.body.decode()


async def test_the_servers_headers_are_sent(router: Router, customer: Customer) -> None:
    """`server.headers` arrive as HTTP headers; booleans in JSON spelling."""
    headers = {"Authorization": SERVER_HEADER_SECRET, "X-Tenant": "tenant-7", "X-Flag": True}
    await router.create_number(server={"url": customer.url, "headers": headers})
    await router.voice()
    [request] = customer.assistant_requests
    assert request.headers["Authorization"] == SERVER_HEADER_SECRET
    assert request.headers["X-Tenant"] == "tenant-7"
    assert request.headers["X-Flag"] == "true"
    assert "X-Router-Signature" not in request.headers


async def test_the_orgs_server_is_asked_and_its_request_is_signed(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """A number without a server uses its org's; the org's serverSecret signs the body so
    the receiver can check `X-Router-Signature` against `X-Router-Timestamp` and the raw body."""
    acme = OrgConfig(
        id=ACME_ORG,
        apiKeys=[SecretStr(ACME_KEY)],
        server=Server(url=customer.url, headers={"X-Org": "acme"}),
        serverSecret=SecretStr(SERVER_SECRET),
    )
    router = await make_router(orgs=[acme])
    await router.create_number(key=ACME_KEY)
    answer = await router.voice()
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    [request] = customer.assistant_requests
    assert request.headers["X-Org"] == "acme"
    assert request.message["call"]["orgId"] == ACME_ORG
    timestamp = request.headers["X-Router-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        SERVER_SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(request.headers["X-Router-Signature"], f"v1={expected}")
    assert logs.one_routed()["trace"][:2] == ["server:org", "assistant-request:ok"]


async def test_a_number_without_any_server_takes_the_failure_branch(
    router: Router, logs: Logs
) -> None:
    """No target and no server anywhere: the apology, with the no-server ended reason."""
    await router.create_number()
    answer = await router.voice()
    assert spoken_then_hung_up(answer.root) == APOLOGY
    event = logs.one_routed()
    assert event["ended_reason"] == "call-start-error-neither-assistant-nor-server-set"
    assert event["assistant_request_outcome"] is None


def backoff(kind: str, retries: int, delay: float, excluded: list[int] | None = None) -> Any:
    plan: dict[str, Any] = {"type": kind, "maxRetries": retries, "baseDelaySeconds": delay}
    if excluded is not None:
        plan["excludedStatusCodes"] = excluded
    return plan


def gaps(customer: Customer) -> list[float]:
    times = [r.at for r in customer.assistant_requests]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_a_fixed_backoff_plan_retries_until_the_server_answers(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """`fixed`: 500, 500, then 200 → three requests, connected, three attempts logged."""
    customer.reply(Reply(status=500), Reply(status=500), Reply(json={"assistantId": "asst-3"}))
    plan = backoff("fixed", 3, 0.05)
    await router.create_number(server={"url": customer.url, "backoffPlan": plan})
    answer = await router.voice()
    assert stream_parameters(answer.root)["targetId"] == "asst-3"
    assert len(customer.assistant_requests) == 3
    assert all(gap >= 0.045 for gap in gaps(customer))
    event = logs.one_routed()
    assert (event["assistant_request_outcome"], event["assistant_request_attempts"]) == ("ok", 3)


async def test_an_exponential_backoff_plan_doubles_its_delay(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """`exponential`: waits base, then 2 x base; gives up after maxRetries with the last
    failure as the outcome, and the call takes the failure branch."""
    customer.reply(Reply(status=503))
    plan = backoff("exponential", 2, 0.05)
    await router.create_number(
        server={"url": customer.url, "backoffPlan": plan},
        fallbackDestination={"type": "number", "number": "+14155550142", "message": ""},
    )
    answer = await router.voice()
    noun = dialled(answer.root)
    assert verbs(answer.root) == ["Dial"]  # an empty message speaks nothing
    assert (noun.tag, noun.text) == ("Number", "+14155550142")
    assert len(customer.assistant_requests) == 3
    first, second = gaps(customer)
    assert first >= 0.045
    assert second >= 0.095
    event = logs.one_routed()
    assert (event["route"], event["ended_reason"]) == ("fallback", "assistant-request-failed")
    assert (event["assistant_request_outcome"], event["assistant_request_attempts"]) == (
        "http-503",
        3,
    )


async def test_an_excluded_status_code_is_not_retried(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """A status in `excludedStatusCodes` is final: one request only."""
    customer.reply(Reply(status=401), Reply(json={"assistantId": "never"}))
    plan = backoff("fixed", 3, 0.01, excluded=[401])
    await router.create_number(server={"url": customer.url, "backoffPlan": plan})
    answer = await router.voice()
    assert spoken_then_hung_up(answer.root) == APOLOGY
    assert len(customer.assistant_requests) == 1
    event = logs.one_routed()
    assert (event["assistant_request_outcome"], event["assistant_request_attempts"]) == (
        "http-401",
        1,
    )


async def test_without_a_backoff_plan_a_failure_is_not_retried(
    router: Router, customer: Customer
) -> None:
    customer.reply(Reply(status=500), Reply(json={"assistantId": "never"}))
    await router.create_number(server={"url": customer.url})
    await router.voice()
    assert len(customer.assistant_requests) == 1


async def test_a_2xx_with_an_unusable_body_is_final_not_retried(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """A 200 with garbage is a failed request, but a final one: no retry."""
    customer.reply(Reply(body=b"garbage"), Reply(json={"assistantId": "never"}))
    plan = backoff("fixed", 3, 0.01)
    await router.create_number(server={"url": customer.url, "backoffPlan": plan})
    await router.voice()
    assert len(customer.assistant_requests) == 1
    assert logs.one_routed()["assistant_request_outcome"] == "non-json"


async def test_an_unreachable_server_is_a_transport_failure(router: Router, logs: Logs) -> None:
    """Nothing listens at the URL: the failure branch, `transport` as the outcome."""
    await router.create_number(server={"url": f"http://127.0.0.1:{unused_port()}/hook"})
    answer = await router.voice()
    assert spoken_then_hung_up(answer.root) == APOLOGY
    event = logs.one_routed()
    assert (event["ended_reason"], event["assistant_request_outcome"]) == (
        "assistant-request-failed",
        "transport",
    )


ENDING_SAY = {
    "on": "call.ending",
    "filters": [
        {"type": "oneOf", "key": "call.endedReason", "oneOf": ["assistant-request-failed"]}
    ],
    "do": {"type": "say", "exact": "The line is busy, call back later."},
}
ENDING_TRANSFER = {
    "on": "call.ending",
    "do": {
        "type": "transfer",
        "destination": {"type": "sip", "sipUri": "sip:oncall@pbx.example.com", "message": ""},
    },
}


async def test_a_matching_call_ending_hook_runs_on_failure(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """A failed request with an ending hook filtered on `assistant-request-failed` speaks the
    hook's text; the original reason is kept as `failure_reason`."""
    customer.reply(Reply(status=500))
    await router.create_number(
        server={"url": customer.url},
        hooks=[ENDING_SAY],
        fallbackDestination={"type": "number", "number": "+14155550142"},
    )
    answer = await router.voice()
    assert spoken_then_hung_up(answer.root) == "The line is busy, call back later."
    event = logs.one_routed()
    assert (event["route"], event["ended_reason"], event["failure_reason"]) == (
        "hook",
        "call.ending.hook-executed-say",
        "assistant-request-failed",
    )


async def test_an_ending_hook_filtered_on_another_reason_does_not_run(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """`{}` is `no-assistant`: the hook for `failed` is passed over; fallbackDestination."""
    customer.reply(Reply(json={}))
    await router.create_number(
        server={"url": customer.url},
        hooks=[ENDING_SAY],
        fallbackDestination={"type": "number", "number": "+14155550142"},
    )
    answer = await router.voice()
    noun = dialled(answer.root)
    assert (noun.tag, noun.text) == ("Number", "+14155550142")
    assert said(answer.root) == ["Transferring the call now"]
    assert logs.one_routed()["ended_reason"] == "assistant-request-returned-no-assistant"


async def test_an_unfiltered_ending_hook_transfers_on_an_error(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """An ending hook without filters takes over a returned error: it transfers instead of
    speaking the server's error."""
    customer.reply(Reply(json={"error": "closed"}))
    await router.create_number(server={"url": customer.url}, hooks=[ENDING_TRANSFER])
    answer = await router.voice()
    assert verbs(answer.root) == ["Dial"]
    assert dialled(answer.root).text == "sip:oncall@pbx.example.com"
    event = logs.one_routed()
    assert (event["ended_reason"], event["failure_reason"]) == (
        "call.ending.hook-executed-transfer",
        "assistant-request-returned-error",
    )


async def test_an_unfiltered_ending_hook_does_not_override_a_forwarding(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """The server's `destination` stands against an ending hook without filters."""
    customer.reply(Reply(json={"destination": {"type": "number", "number": "+14155550177"}}))
    await router.create_number(server={"url": customer.url}, hooks=[ENDING_TRANSFER])
    answer = await router.voice()
    assert dialled(answer.root).text == "+14155550177"
    assert logs.one_routed()["ended_reason"] == "assistant-request-returned-forwarding-phone-number"


@pytest.mark.parametrize("reply", [Reply(status=500), Reply(json={}), Reply(json={"squad": 1})])
async def test_fallback_destination_answers_failed_empty_and_invalid(
    router: Router, customer: Customer, reply: Reply
) -> None:
    """failed / no-assistant / invalid-assistant transfer to `fallbackDestination`."""
    customer.reply(reply)
    await router.create_number(
        server={"url": customer.url},
        fallbackDestination={
            "type": "number",
            "number": "+14155550142",
            "message": "Please hold",
            "callerId": "{{phoneNumber.number}}",
        },
    )
    answer = await router.voice()
    assert said(answer.root) == ["Please hold"]
    assert dialled(answer.root).text == "+14155550142"
    assert answer.root[-1].get("callerId") == NUMBER


async def test_a_returned_error_is_spoken_even_with_a_fallback_destination(
    router: Router, customer: Customer
) -> None:
    """The server's own error wins over fallbackDestination."""
    customer.reply(Reply(json={"error": "Wrong number, sorry."}))
    await router.create_number(
        server={"url": customer.url},
        fallbackDestination={"type": "number", "number": "+14155550142"},
    )
    assert spoken_then_hung_up((await router.voice()).root) == "Wrong number, sorry."


async def test_a_transient_assistant_is_readable_by_the_runtime(
    router: Router, customer: Customer
) -> None:
    """The server's `assistant` object is kept in the call record the runtime reads at
    `GET /call/{CallSid}` with a bearer key; another org's key gets a 404."""
    customer.reply(Reply(json={"assistant": TRANSIENT_ASSISTANT, "assistantOverrides": {"x": 1}}))
    number = await router.create_number(server={"url": customer.url})
    sid = call_sid()
    params = stream_parameters((await router.voice(voice_form(sid))).root)
    assert params == {
        "callId": sid,
        "target": "assistant",
        "phoneNumberId": number["id"],
    }
    status, record = await router.call_record(params["callId"], key=API_KEY)
    assert status == 200
    assert (record["callId"], record["orgId"], record["phoneNumberId"]) == (
        sid,
        "default",
        number["id"],
    )
    outcome = record["decision"]["outcome"]
    assert outcome["kind"] == "connect"
    assert outcome["config"] == {"assistant": TRANSIENT_ASSISTANT, "assistantOverrides": {"x": 1}}
    assert record["from"] == CALLER
    assert (await router.call_record(sid, key=OTHER_KEY))[0] == 404
    assert (await router.call_record(sid, key="not-a-key"))[0] == 401
    assert (await router.call_record(call_sid(), key=API_KEY))[0] == 404
    assert json.dumps(record).find(TOKEN) == -1
