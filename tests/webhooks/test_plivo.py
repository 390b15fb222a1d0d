"""Plivo end to end: the real `create_app(settings)` over real HTTP, a `plivo` credential
and number created through the REST API, webhooks signed by the plivo SDK
(`plivo.utils.signature_v3`), a real local aiohttp app playing the customer's server, and
the embedded store or a real Redis."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3

from router.state import METRICS

from .conftest import (
    API_KEY,
    APOLOGY,
    CALLER,
    NUMBER,
    PUBLIC_URL,
    RUNTIME_URL,
    Answer,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    Router,
)

AUTH_ID = "MAPLIVOAUTHID0000001"
AUTH_TOKEN = "plivo-auth-token-SECRET-webhooks-e2e"
OTHER_TOKEN = "plivo-other-token-SECRET-webhooks-e2e"
NONCE = "31622599385719318125"
FALLBACK = "+14155550142"
B_URL = "wss://b.example.com/stream"
ASSISTANT_ID = "6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"

_uuids = iter(range(1, 1_000_000))


def call_uuid() -> str:
    """A fresh CallUUID, shaped as Plivo's."""
    return f"{next(_uuids):08x}-9b5e-11ee-8c90-0242ac120002"


def answer_fields(uuid: str, **overrides: str) -> dict[str, str]:
    """An answer URL's fields as Plivo sends them: numbers without `+`."""
    fields = {
        "CallUUID": uuid,
        "From": CALLER.removeprefix("+"),
        "To": NUMBER.removeprefix("+"),
        "CallStatus": "ringing",
        "Direction": "inbound",
        "Event": "StartApp",
    }
    return fields | overrides


def hangup_fields(uuid: str, status: str = "completed", **overrides: str) -> dict[str, str]:
    fields = answer_fields(uuid, CallStatus=status, Event="Hangup")
    fields |= {"HangupCauseName": "Normal Hangup", "Duration": "42", "BillDuration": "60"}
    return fields | overrides


def signature(method: str, url: str, fields: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """X-Plivo-Signature-V3 as the plivo SDK computes it."""
    base = construct_get_url(url, {}) if method == "GET" else construct_post_url(url, fields)
    signed: bytes = get_signature_v3(token.encode(), base.decode(), NONCE.encode())
    return signed.decode()


async def plivo(
    router: Router,
    path: str,
    fields: dict[str, str],
    *,
    method: str = "POST",
    token: str = AUTH_TOKEN,
    signed: bool = True,
    base: str = PUBLIC_URL,
    headers: dict[str, str] | None = None,
) -> Answer:
    """A webhook as Plivo sends it: a form POST (or a GET with the fields in its URL),
    signed over `base` (the public URL) and the path with the nonce."""
    body = b""
    headers = dict(headers or {})
    if method == "GET":
        path = f"{path}{'&' if '?' in path else '?'}{urlencode(fields)}"
        fields = {}
    else:
        body = urlencode(fields).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if signed:
        headers["X-Plivo-Signature-V3"] = signature(method, base + path, fields, token)
        headers["X-Plivo-Signature-V3-Nonce"] = NONCE
    return await router.send(method, path, body, headers)


def tags(root: ET.Element) -> list[str]:
    assert root.tag == "Response"
    return [child.tag for child in root]


def extra_headers(stream: ET.Element) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in stream.get("extraHeaders", "").split(","))


def relative(url: str) -> str:
    """A callback URL router wrote, as the path and query Plivo requests."""
    assert url.startswith(PUBLIC_URL), url
    return url.removeprefix(PUBLIC_URL)


async def plivo_number(router: Router, **fields: Any) -> dict[str, Any]:
    """A `plivo` credential and a number on it, through the REST API."""
    credential = await router.create_credential(
        {"provider": "plivo", "authId": AUTH_ID, "authToken": AUTH_TOKEN}
    )
    return await router.create_number(
        provider="plivo",
        number=NUMBER,
        credentialId=credential["id"],
        twilioAccountSid=None,
        twilioAuthToken=None,
        **fields,
    )


def no_plivo_secret_logged(logs: Logs) -> None:
    dumped = json.dumps(logs.events, default=str)
    assert AUTH_TOKEN not in dumped
    assert OTHER_TOKEN not in dumped


async def test_the_auth_token_is_a_secret_in_api_reads(router: Router, logs: Logs) -> None:
    """Created and read back: the authToken is masked, the authId shown."""
    credential = await router.create_credential(
        {"provider": "plivo", "authId": AUTH_ID, "authToken": AUTH_TOKEN}
    )
    assert credential["authId"] == AUTH_ID
    assert credential["authToken"] != AUTH_TOKEN and credential["authToken"].startswith("****")
    async with router.client.get(
        f"/credential/{credential['id']}", headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        read = await response.json()
    assert read["authToken"] == credential["authToken"]
    no_plivo_secret_logged(logs)


async def test_a_number_needs_a_plivo_credential_of_its_org(router: Router) -> None:
    twilio = await router.create_credential(
        {"provider": "twilio", "accountSid": "AC" + "0" * 32, "authToken": "x" * 32}
    )
    async with router.client.post(
        "/phone-number",
        json={"provider": "plivo", "number": NUMBER, "credentialId": twilio["id"]},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 400, await response.text()


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_signed_answer_streams_the_call_to_the_runtime(
    router_on: Router, customer: Customer, logs: Logs, method: str
) -> None:
    """The customer's server is asked once; Plivo gets a bidirectional `<Stream>` that
    keeps the call alive, the call id and target in `extraHeaders` (UUIDs without their
    dashes: Plivo takes letters and digits there), the status and the `<Redirect>` pointing
    at router."""
    router = router_on
    customer.reply(Reply(json={"assistantId": ASSISTANT_ID}))
    number = await plivo_number(router, server={"url": customer.url})
    uuid = call_uuid()
    answer = await plivo(router, "/plivo/answer", answer_fields(uuid), method=method)
    root = answer.root
    assert tags(root) == ["Stream", "Redirect"]
    stream = root[0]
    assert stream.text == RUNTIME_URL
    assert (stream.get("bidirectional"), stream.get("keepCallAlive")) == ("true", "true")
    assert extra_headers(stream) == {
        "callId": uuid.replace("-", ""),
        "target": "assistant",
        "targetId": ASSISTANT_ID.replace("-", ""),
        "phoneNumberId": number["id"].replace("-", ""),
    }
    assert stream.get("statusCallbackUrl", "").startswith(f"{PUBLIC_URL}/plivo/stream?")
    assert (root[1].text or "").startswith(f"{PUBLIC_URL}/plivo/connect?")
    assert len(customer.assistant_requests) == 1
    message = customer.assistant_requests[0].message
    assert message["call"]["phoneCallProviderId"] == uuid
    assert message["call"]["phoneCallProvider"] == "plivo"
    assert message["phoneNumber"]["provider"] == "plivo"
    assert message["customer"]["number"] == CALLER
    routed = logs.one_routed()
    assert (routed["provider"], routed["route"], routed["call_id"]) == (
        "plivo",
        "assistant-request",
        uuid,
    )
    no_plivo_secret_logged(logs)


async def test_without_a_public_url_callbacks_are_absolute_under_the_forwarded_host(
    make_router: MakeRouter,
) -> None:
    """Plivo takes only fully qualified URLs: without ROUTER_PUBLIC_URL the stream's status
    callback and the `<Redirect>` are under the scheme and host the answer arrived on
    (X-Forwarded-Proto/Host, as its signature was checked), and the callback they name is
    then verified and served."""
    router = await make_router(public_url=None)
    await plivo_number(router, assistantId="asst-1")
    edge = "https://edge.example.net:8443"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "edge.example.net:8443"}
    uuid = call_uuid()
    answer = await plivo(router, "/plivo/answer", answer_fields(uuid), base=edge, headers=forwarded)
    stream, redirect = answer.root
    status_url = stream.get("statusCallbackUrl", "")
    assert status_url.startswith(f"{edge}/plivo/stream?")
    assert (redirect.text or "").startswith(f"{edge}/plivo/connect?")
    event = {"CallUUID": uuid, "Event": "StartStream", "StreamID": "s-1"}
    path = status_url.removeprefix(edge)
    assert (await plivo(router, path, event, base=edge, headers=forwarded)).status == 200
    connect = (redirect.text or "").removeprefix(edge)
    done = await plivo(router, connect, answer_fields(uuid), base=edge, headers=forwarded)
    assert tags(done.root) == ["Hangup"]


async def test_an_unknown_number_is_rejected_unanswered(router: Router, logs: Logs) -> None:
    """Nobody configured the number: `<Hangup reason="rejected"/>`, nothing routed."""
    answer = await plivo(router, "/plivo/answer", answer_fields(call_uuid()))
    root = answer.root
    assert tags(root) == ["Hangup"]
    assert root[0].attrib == {"reason": "rejected"}
    assert logs.routed() == []
    assert [e["to"] for e in logs.named("webhook.unknown_number")] == [f"plivo:{NUMBER}"]


async def test_a_request_that_fails_verification_gets_what_an_unknown_number_gets(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """Another token, or a field changed after signing: the same reject, byte for byte, the
    customer's server never asked; no signature at all: 403 before any lookup."""
    await plivo_number(router, server={"url": customer.url})
    unknown = await plivo(router, "/plivo/answer", answer_fields(call_uuid(), To="14155550199"))
    forged = await plivo(router, "/plivo/answer", answer_fields(call_uuid()), token=OTHER_TOKEN)
    assert (forged.status, forged.body, forged.content_type) == (
        unknown.status,
        unknown.body,
        unknown.content_type,
    )
    unsigned = await plivo(router, "/plivo/answer", answer_fields(call_uuid()), signed=False)
    assert unsigned.status == 403
    assert customer.assistant_requests == []
    assert logs.routed() == []
    reasons = [e["reason"] for e in logs.named("webhook.rejected")]
    assert reasons == ["bad-signature", "missing-signature"]
    no_plivo_secret_logged(logs)


async def test_a_blocked_number_is_rejected(router: Router) -> None:
    await plivo_number(router, assistantId="asst-1", status="blocked")
    root = (await plivo(router, "/plivo/answer", answer_fields(call_uuid()))).root
    assert tags(root) == ["Hangup"]
    assert root[0].get("reason") == "rejected"


async def test_the_fallback_url_goes_to_the_fallback_destination(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """/plivo/fallback (Plivo's answer URL failed): no server asked, `<Speak>` then `<Dial>`."""
    await plivo_number(
        router,
        server={"url": customer.url},
        fallbackDestination={"type": "number", "number": FALLBACK, "message": "One moment"},
    )
    root = (await plivo(router, "/plivo/fallback", answer_fields(call_uuid()))).root
    assert tags(root) == ["Speak", "Dial"]
    assert root[0].text == "One moment"
    assert root[1][0].tag == "Number" and root[1][0].text == FALLBACK
    assert customer.assistant_requests == []
    assert logs.one_routed()["endpoint"] == "fallback"


async def test_without_anything_to_do_the_caller_hears_the_apology(router: Router) -> None:
    await plivo_number(router)  # no assistant, no server, no fallback
    root = (await plivo(router, "/plivo/answer", answer_fields(call_uuid()))).root
    assert tags(root) == ["Speak", "Hangup"]
    assert root[0].text == APOLOGY


async def test_the_hangup_url_updates_the_call_record_and_tells_the_server(
    router_on: Router, customer: Customer, logs: Logs
) -> None:
    """Plivo's hangup request: the record is `completed` with its duration, the customer's
    server gets `status-update` `ended`, Plivo an empty `<Response/>`; again is harmless."""
    router = router_on
    number = await plivo_number(router, server={"url": customer.url})
    uuid = call_uuid()
    await plivo(router, "/plivo/answer", answer_fields(uuid))
    for _ in range(2):
        answer = await plivo(router, "/plivo/hangup", hangup_fields(uuid))
        assert tags(answer.root) == []
    status, record = await router.call_record(uuid)
    assert status == 200
    assert (record["status"], record["final"], record["durationSeconds"]) == ("completed", True, 42)
    assert (record["phoneNumberId"], record["to"]) == (number["id"], NUMBER)
    updates = await customer.wait_for_status_updates(1)
    assert [u.message["status"] for u in updates] == ["ended"]
    assert updates[0].message["call"]["phoneCallProvider"] == "plivo"
    assert [e["changed"] for e in logs.named("call.status")] == [True, False]
    registry = router.client.app[METRICS].registry
    sample = registry.get_sample_value(
        "router_status_events_total", {"provider": "plivo", "status": "completed"}
    )
    assert sample == 2


async def test_a_caller_who_hangs_up_before_the_answer_is_recorded_canceled(
    router: Router,
) -> None:
    """Plivo says `completed` for it too; the empty `AnswerTime` and the cause tell."""
    await plivo_number(router, assistantId="asst-1")
    uuid = call_uuid()
    fields = hangup_fields(
        uuid, AnswerTime="", Duration="0", BillDuration="0", HangupCause="ORIGINATOR_CANCEL"
    )
    assert tags((await plivo(router, "/plivo/hangup", fields)).root) == []
    status, record = await router.call_record(uuid)
    assert status == 200
    assert (record["status"], record["final"]) == ("canceled", True)


async def test_a_forged_hangup_is_acked_and_changes_nothing(router: Router, logs: Logs) -> None:
    await plivo_number(router, assistantId="asst-1")
    uuid = call_uuid()
    answer = await plivo(router, "/plivo/hangup", hangup_fields(uuid), token=OTHER_TOKEN)
    assert tags(answer.root) == []
    assert logs.named("call.status") == []
    assert [e["reason"] for e in logs.named("webhook.rejected")] == ["bad-signature"]


async def test_a_hangup_gives_the_concurrency_slot_back(router_on: Router) -> None:
    """`maxConcurrentCalls: 1`: a second call overflows while the first runs; after the
    first's hangup a third is connected."""
    router = router_on
    await plivo_number(
        router,
        assistantId="asst-1",
        maxConcurrentCalls=1,
        overflowDestination={"type": "number", "number": FALLBACK, "message": ""},
    )
    first = call_uuid()
    assert tags((await plivo(router, "/plivo/answer", answer_fields(first))).root)[0] == "Stream"
    overflow = (await plivo(router, "/plivo/answer", answer_fields(call_uuid()))).root
    assert tags(overflow) == ["Dial"]
    assert overflow[0][0].text == FALLBACK
    await plivo(router, "/plivo/hangup", hangup_fields(first))
    third = (await plivo(router, "/plivo/answer", answer_fields(call_uuid()))).root
    assert tags(third)[0] == "Stream"


def _runtimes(tmp_path: Path) -> Path:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "runtimes": [
                    {"name": "a", "kind": "stream", "url": RUNTIME_URL},
                    {"name": "b", "kind": "stream", "url": B_URL},
                ],
                "routes": [
                    {
                        "match": {"provider": "plivo"},
                        "runtimes": [{"name": "a"}, {"name": "b", "weight": 0}],
                    }
                ],
            }
        )
    )
    return path


async def test_a_stream_that_drops_moves_to_the_next_runtime_then_hangs_up_after_it(
    make_router: MakeRouter, tmp_path: Path, logs: Logs
) -> None:
    """Runtime a's stream drops before it starts (`DroppedStream`); Plivo then follows the
    `<Redirect>`: router streams the call to b. b starts and stops normally; the next
    Redirect gets `<Hangup/>`."""
    router = await make_router(runtimes_file=_runtimes(tmp_path))
    await plivo_number(router, assistantId="asst-1")
    uuid = call_uuid()
    root = (await plivo(router, "/plivo/answer", answer_fields(uuid))).root
    stream, redirect = root
    assert stream.text == RUNTIME_URL
    status_path = relative(stream.get("statusCallbackUrl", ""))
    event = {"CallUUID": uuid, "Event": "DroppedStream", "StreamID": "s-1"}
    assert (await plivo(router, status_path, event)).status == 200
    moved = (await plivo(router, relative(redirect.text or ""), answer_fields(uuid))).root
    assert tags(moved) == ["Stream", "Redirect"]
    assert moved[0].text == B_URL
    b_status = relative(moved[0].get("statusCallbackUrl", ""))
    # Without a CallUUID among the fields (Plivo's page does not list one), the callback's
    # URL names the call.
    assert f"call={uuid}" in b_status
    for name in ("StartStream", "StopStream"):
        await plivo(router, b_status, {"Event": name, "StreamID": "s-2"})
    done = (await plivo(router, relative(moved[1].text or ""), answer_fields(uuid))).root
    assert tags(done) == ["Hangup"]
    failovers = logs.named("runtime.failover")
    assert [(e["runtime"], e["to_runtime"], e["provider"]) for e in failovers] == [
        ("a", "b", "plivo")
    ]


async def test_a_conversation_relay_route_for_plivo_is_refused_at_start(
    make_router: MakeRouter, tmp_path: Path
) -> None:
    """Plivo XML has no ConversationRelay: a route that could send Plivo calls to one is a
    configuration error, not a call that fails."""
    path = tmp_path / "relay.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "runtimes": [{"name": "r", "kind": "conversation-relay", "url": RUNTIME_URL}],
                "routes": [{"match": {"provider": "plivo"}, "runtimes": [{"name": "r"}]}],
            }
        )
    )
    from router.runtimes.config import RuntimesFileError

    with pytest.raises((RuntimesFileError, ValueError), match="plivo"):
        await make_router(runtimes_file=path)


async def test_a_slow_server_gets_the_failure_branch_inside_the_plivo_budget(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """`ROUTER_PLIVO_BUDGET_SECONDS` bounds the answer, whatever the server does: the
    server takes 5 s, Plivo hears the apology well before."""
    budget = 1.0
    router = await make_router(plivo_budget_seconds=budget)
    customer.reply(Reply(json={"assistantId": "late"}, delay=5.0))
    await plivo_number(router, server={"url": customer.url, "timeoutSeconds": 20})
    answer = await plivo(router, "/plivo/answer", answer_fields(call_uuid()))
    assert tags(answer.root) == ["Speak", "Hangup"]
    assert answer.root[0].text == APOLOGY
    assert answer.seconds < budget
    assert logs.one_routed()["assistant_request_outcome"] == "timeout"


async def test_a_plivo_number_is_unique_by_number(router: Router) -> None:
    """Plivo's webhooks name no account: the same number twice is a 409, even on another
    credential; the same digits on Twilio are another number."""
    first = await plivo_number(router, assistantId="asst-1")
    other = await router.create_credential(
        {"provider": "plivo", "authId": "MAOTHERAUTHID0000002", "authToken": OTHER_TOKEN}
    )
    async with router.client.post(
        "/phone-number",
        json={"provider": "plivo", "number": NUMBER, "credentialId": other["id"]},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 409
        assert first["id"] in (await response.json())["message"]
    await router.create_number(assistantId="asst-2")  # Twilio, same digits: no conflict
