"""The events ops dashboards read: one `call.routed` per decided call with every documented
field, callers masked, and no secret anywhere in any event."""

from __future__ import annotations

import json

from pydantic import SecretStr

from router.models.common import Server
from router.settings import OrgConfig

from .conftest import (
    ACCOUNT_SID,
    ACME_KEY,
    ACME_ORG,
    CALLER,
    CALLER_MASKED,
    CREDENTIAL_TOKEN,
    NUMBER,
    OTHER_TOKEN,
    SECRETS,
    SERVER_HEADER_SECRET,
    SERVER_SECRET,
    SIP_PASSWORD,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    Router,
    call_sid,
    voice_form,
)

CALL_ROUTED_FIELDS = {
    "provider",
    "endpoint",
    "call_id",
    "router_call_id",
    "org_id",
    "phone_number_id",
    "to",
    "caller",
    "route",
    "target",
    "ended_reason",
    "failure_reason",
    "assistant_request_outcome",
    "assistant_request_attempts",
    "assistant_request_latency_ms",
    "assistant_request_status",
    "cache_hit",
    "replayed",
    "latency_ms",
    "trace",
}


async def test_call_routed_carries_every_documented_field(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """One `call.routed` per decided call, at info level, with the documented fields; the
    caller shows its last four digits only; the cache misses first, then hits."""
    number = await router.create_number(server={"url": customer.url})
    first_sid, second_sid = call_sid(), call_sid()
    await router.voice(voice_form(first_sid))
    await router.voice(voice_form(second_sid))
    first, second = logs.routed()
    assert set(first) >= CALL_ROUTED_FIELDS
    assert first["log_level"] == "info"
    assert {k: first[k] for k in CALL_ROUTED_FIELDS - {"router_call_id", "latency_ms"}} == {
        "provider": "twilio",
        "endpoint": "voice",
        "call_id": first_sid,
        "org_id": "default",
        "phone_number_id": number["id"],
        "to": NUMBER,
        "caller": CALLER_MASKED,
        "route": "assistant-request",
        "target": "asst-1",
        "ended_reason": None,
        "failure_reason": None,
        "assistant_request_outcome": "ok",
        "assistant_request_attempts": 1,
        "assistant_request_latency_ms": first["assistant_request_latency_ms"],
        "assistant_request_status": 200,
        "cache_hit": False,
        "replayed": False,
        "trace": ["server:number", "assistant-request:ok", "response:assistantId"],
    }
    assert customer.assistant_requests[0].message["call"]["id"] == first["router_call_id"]
    assert isinstance(first["latency_ms"], float)
    assert 0 < first["assistant_request_latency_ms"] <= first["latency_ms"]
    assert (second["call_id"], second["cache_hit"], second["replayed"]) == (second_sid, True, False)
    assert CALLER not in json.dumps(logs.events, default=str)


async def test_a_static_call_logs_no_assistant_request(router: Router, logs: Logs) -> None:
    await router.create_number(workflowId="wf-1")
    await router.voice()
    event = logs.one_routed()
    assert (event["route"], event["target"], event["ended_reason"]) == ("workflow", "wf-1", None)
    assert event["assistant_request_outcome"] is None
    assert event["assistant_request_attempts"] == 0
    assert event["assistant_request_latency_ms"] is None


async def test_the_caller_is_logged_in_full_or_not_at_all_when_configured(
    make_router: MakeRouter, logs: Logs
) -> None:
    """ROUTER_LOG_CALLER: `full` logs the number, `none` hides it."""
    full = await make_router(log_caller="full")
    await full.create_number(assistantId="asst-1")
    await full.voice()
    assert logs.routed()[-1]["caller"] == CALLER
    hidden = await make_router(log_caller="none")
    await hidden.create_number(assistantId="asst-1")
    await hidden.voice()
    assert logs.routed()[-1]["caller"] == "[hidden]"


async def test_no_secret_reaches_any_log_event(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """A representative flow touching every secret (auth tokens, server header values, the
    org's serverSecret, a SIP password): serialised, no captured event contains any."""
    acme = OrgConfig(
        id=ACME_ORG,
        apiKeys=[SecretStr(ACME_KEY)],
        server=Server(url=customer.url, headers={"Authorization": SERVER_HEADER_SECRET}),
        serverSecret=SecretStr(SERVER_SECRET),
    )
    router = await make_router(orgs=[acme])
    await router.create_credential(
        {"provider": "twilio", "accountSid": ACCOUNT_SID, "authToken": CREDENTIAL_TOKEN},
        key=ACME_KEY,
    )
    await router.create_number(
        key=ACME_KEY,
        server={"url": customer.url, "headers": {"X-Api-Key": SERVER_HEADER_SECRET}},
        fallbackDestination={
            "type": "sip",
            "sipUri": "sip:desk@pbx.example.com",
            "sipHeaders": {"X-Secret": SERVER_HEADER_SECRET},
        },
    )
    vapi = await router.create_number(
        key=ACME_KEY,
        provider="vapi",
        number=None,
        twilioAccountSid=None,
        twilioAuthToken=None,
        sipUri="sip:front@sip.example.com",
        authentication={"username": "sip-username-000000001", "password": SIP_PASSWORD},
    )
    assert vapi["authentication"]["password"] != SIP_PASSWORD
    customer.reply(Reply(status=500), Reply(json={"assistant": {"name": "Transient"}}))
    form = voice_form()
    sid = form["CallSid"]
    failed = await router.voice(form)  # 500 → fallbackDestination with its SIP header
    assert failed.root.find("./Dial/Sip") is not None
    await router.voice(voice_form())  # the transient assistant
    await router.voice(form)  # a replay
    await router.post(voice_form(), path="/twilio/fallback")
    await router.post(voice_form(), token=OTHER_TOKEN)  # rejected
    await router.status(sid, "completed", CallDuration="4")
    await customer.wait_for_status_updates(1)
    assert (await router.call_record(sid, key=ACME_KEY))[0] == 200

    assert len(logs.routed()) == 4
    assert len(logs.named("webhook.rejected")) == 1
    assert len(logs.named("call.status")) == 1
    assert len(logs.named("phone_number.created")) == 2
    dumped = json.dumps(logs.events, default=str)
    assert [secret for secret in SECRETS if secret in dumped] == []
    # The customer did get what it was owed: the header and the signature.
    assert customer.received[0].headers["X-Api-Key"] == SERVER_HEADER_SECRET
    assert "X-Router-Signature" in customer.received[0].headers
