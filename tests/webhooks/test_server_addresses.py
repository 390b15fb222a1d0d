"""No server-side request forgery through `server.url`, end to end: refused when saved,
refused again when called, and nothing of an internal answer comes back to the org."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import (
    API_KEY,
    APOLOGY,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    Router,
    call_sid,
    spoken_then_hung_up,
    stream_parameters,
    voice_form,
)

# The internal service's answer an org must never read back.
INTERNAL = {"assistantId": "internal-secret-assistant", "error": "internal detail 10.0.0.8"}
FORBIDDEN = [
    "http://127.0.0.1:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://0x7f000001:{port}/hook",
    "http://0177.0.0.1:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://localhost:{port}/hook",
    "http://metadata.localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.8/hook",
]


async def save(router: Router, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with router.client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        return response.status, await response.json()


def twilio_number(url: str) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "number": "+14155550100",
        "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
        "twilioAuthToken": "twilio-auth-token-SECRET-webhooks-01",
        "server": {"url": url},
    }


@pytest.mark.parametrize("url", FORBIDDEN)
async def test_a_server_at_a_forbidden_address_is_refused_when_saved(
    make_router: MakeRouter, url: str
) -> None:
    """With several orgs and no allow-list, create and update answer 400 naming
    `server.url`, for each spelling of a loopback, private or metadata address."""
    router = await make_router(server_allowed_networks=None)
    url = url.format(port=8080)
    status, body = await save(router, "POST", "/phone-number", twilio_number(url))
    assert status == 400, body
    assert any(m.startswith("server.url must not point at") for m in body["message"])
    created = await router.create_number(server={"url": "https://customer.example.com/hook"})
    status, body = await save(
        router, "PATCH", f"/phone-number/{created['id']}", {"server": {"url": url}}
    )
    assert status == 400, body
    assert "server.url" in body["message"][0]


async def test_loopback_is_accepted_when_the_operator_allows_it(
    make_router: MakeRouter, customer: Customer
) -> None:
    """Two orgs, `server_allowed_networks` naming loopback: saved, called, routed."""
    router = await make_router(server_allowed_networks="127.0.0.0/8")
    await router.create_number(server={"url": customer.url})
    answer = await router.voice()
    assert stream_parameters(answer.root)["targetId"] == "asst-1"


async def test_a_single_org_may_use_its_own_network_but_not_metadata(
    make_router: MakeRouter, customer: Customer
) -> None:
    """One org and no setting: private and loopback servers are the operator's own and
    pass; cloud metadata does not."""
    router = await make_router(orgs=[], server_allowed_networks=None)
    await router.create_number(server={"url": customer.url})
    answer = await router.voice()
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    status, body = await save(
        router, "POST", "/phone-number", twilio_number("http://169.254.169.254/latest/")
    )
    assert status == 400, body


async def test_a_server_refused_when_called_takes_the_failure_branch_and_leaks_nothing(
    make_router: MakeRouter, customer: Customer, logs: Logs, redis_url: str
) -> None:
    """Saved while loopback was allowed, called by a worker that no longer allows it: the
    server is not contacted, the caller hears the apology, `call.routed` says
    `blocked-address`, no status-update follows, and neither the TwiML nor the call record
    carries the internal service's answer."""
    first = await make_router(redis_url=redis_url)
    customer.reply(Reply(json=INTERNAL))
    await first.create_number(server={"url": customer.url.replace("127.0.0.1", "localhost")})
    worker = await make_router(redis_url=redis_url, server_allowed_networks=None)
    sid = call_sid()
    answer = await worker.voice(voice_form(sid))
    assert spoken_then_hung_up(answer.root) == APOLOGY
    assert customer.received == []
    routed = logs.one_routed()
    assert (routed["assistant_request_outcome"], routed["ended_reason"]) == (
        "blocked-address",
        "assistant-request-failed",
    )
    await worker.status(sid, "completed")
    assert await customer.wait_for_status_updates(1, within=0.5) == []
    status, record = await worker.call_record(sid)
    seen = answer.body.decode() + json.dumps(record)
    assert "internal" not in seen and "10.0.0.8" not in seen, (status, record)
