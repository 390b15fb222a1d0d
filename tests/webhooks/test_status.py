"""`/twilio/status`: status callbacks update the call record and reach the customer's server
as `status-update` messages, without delaying Twilio's answer."""

from __future__ import annotations

import asyncio

from .conftest import (
    CALLER,
    NUMBER,
    Customer,
    Logs,
    Reply,
    Router,
    call_sid,
    stream_parameters,
    voice_form,
)


async def test_a_status_callback_updates_the_call_record(router_on: Router, logs: Logs) -> None:
    """`completed` with CallDuration: the record shows the final status and the duration;
    Twilio gets an empty `<Response/>`."""
    router = router_on
    number = await router.create_number(assistantId="asst-1")
    sid = call_sid()
    await router.voice(voice_form(sid))
    answer = await router.status(sid, "in-progress", SequenceNumber="0")
    assert answer.root.tag == "Response"
    assert len(answer.root) == 0
    status, record = await router.call_record(sid)
    assert status == 200
    assert (record["status"], record["final"]) == ("in-progress", False)
    await router.status(sid, "completed", CallDuration="42", SequenceNumber="1")
    status, record = await router.call_record(sid)
    assert (record["status"], record["final"], record["durationSeconds"]) == ("completed", True, 42)
    assert (record["phoneNumberId"], record["from"], record["to"]) == (number["id"], CALLER, NUMBER)
    events = logs.named("call.status")
    assert [(e["status"], e["final"], e["changed"]) for e in events] == [
        ("in-progress", False, True),
        ("completed", True, True),
    ]
    assert events[-1]["duration_seconds"] == 42


async def test_duplicate_status_callbacks_are_harmless(router_on: Router, logs: Logs) -> None:
    """The same `completed` twice: one change, the same record."""
    router = router_on
    await router.create_number(assistantId="asst-1")
    sid = call_sid()
    for _ in range(2):
        answer = await router.status(sid, "completed", CallDuration="7", SequenceNumber="2")
        assert answer.status == 200
    _, record = await router.call_record(sid)
    assert (record["status"], record["final"], record["durationSeconds"]) == ("completed", True, 7)
    assert [e["changed"] for e in logs.named("call.status")] == [True, False]


async def test_a_late_ringing_does_not_undo_a_final_status(router_on: Router) -> None:
    """`completed` then `ringing` (delivered out of order, no sequence): still completed."""
    router = router_on
    await router.create_number(assistantId="asst-1")
    sid = call_sid()
    await router.status(sid, "completed", CallDuration="12")
    await router.status(sid, "ringing")
    _, record = await router.call_record(sid)
    assert (record["status"], record["final"], record["durationSeconds"]) == ("completed", True, 12)


async def test_an_older_sequence_number_loses(router_on: Router) -> None:
    """SequenceNumber 3 (in-progress) then 1 (ringing): in-progress stays."""
    router = router_on
    await router.create_number(assistantId="asst-1")
    sid = call_sid()
    await router.status(sid, "in-progress", SequenceNumber="3")
    await router.status(sid, "ringing", SequenceNumber="1")
    _, record = await router.call_record(sid)
    assert (record["status"], record["statusSequence"]) == ("in-progress", 3)
    await router.status(sid, "completed", SequenceNumber="4", CallDuration="5")
    await router.status(sid, "in-progress", SequenceNumber="2")
    _, record = await router.call_record(sid)
    assert (record["status"], record["final"]) == ("completed", True)


async def test_the_call_record_of_a_decided_call_keeps_its_decision(
    router_on: Router, customer: Customer
) -> None:
    """Status callbacks after an assistant-request decision update the same record."""
    router = router_on
    customer.reply(Reply(json={"assistant": {"name": "Transient"}}))
    await router.create_number(server={"url": customer.url})
    sid = call_sid()
    await router.voice(voice_form(sid))
    await router.status(sid, "completed", CallDuration="3")
    _, record = await router.call_record(sid)
    assert record["decision"]["outcome"]["config"] == {"assistant": {"name": "Transient"}}
    assert (record["status"], record["durationSeconds"]) == ("completed", 3)


async def test_a_status_callback_during_the_decision_does_not_lose_it(
    router_on: Router, customer: Customer
) -> None:
    """A status callback that arrives while the assistant-request is in flight (out of
    order) must not keep the decision from being recorded: the runtime still reads the
    transient assistant, and a retry still replays without a second assistant-request."""
    router = router_on
    customer.reply(Reply(json={"assistant": {"name": "Transient"}}, delay=0.3))
    await router.create_number(server={"url": customer.url})
    form = voice_form()
    sid = form["CallSid"]
    deciding = asyncio.create_task(router.voice(form))
    await asyncio.sleep(0.1)
    await router.status(sid, "ringing")
    first = await deciding
    status, record = await router.call_record(sid)
    assert status == 200
    assert record["decision"] is not None
    assert record["decision"]["outcome"]["config"] == {"assistant": {"name": "Transient"}}
    assert (await router.voice(form)).body == first.body
    assert len(customer.assistant_requests) == 1


async def test_a_final_status_reaches_the_customer_as_a_status_update(
    router_on: Router, customer: Customer
) -> None:
    """With a server configured, `completed` is forwarded as `status-update` (`ended`)."""
    router = router_on
    number = await router.create_number(server={"url": customer.url})
    sid = call_sid()
    params = stream_parameters((await router.voice(voice_form(sid))).root)
    assert params["targetId"] == "asst-1"
    await router.status(sid, "completed", CallDuration="9")
    [update] = await customer.wait_for_status_updates(1)
    message = update.message
    assert (message["type"], message["status"]) == ("status-update", "ended")
    call = message["call"]
    assert (call["phoneCallProviderId"], call["phoneNumberId"], call["orgId"]) == (
        sid,
        number["id"],
        "default",
    )
    assert (call["providerStatus"], call["durationSeconds"]) == ("completed", 9)
    assert message["customer"] == {"number": CALLER}
    assert "twilioAuthToken" not in message["phoneNumber"]
    # The router's call id is the one the assistant-request carried.
    [request] = customer.assistant_requests
    assert call["id"] == request.message["call"]["id"]


async def test_a_duplicate_final_status_is_forwarded_once(
    router: Router, customer: Customer
) -> None:
    """Only a change is forwarded: a repeated `completed` sends nothing new."""
    await router.create_number(server={"url": customer.url}, assistantId="asst-1")
    sid = call_sid()
    await router.status(sid, "completed")
    await router.status(sid, "completed")
    await customer.wait_for_status_updates(1)
    await asyncio.sleep(0.1)
    assert len(customer.status_updates) == 1


async def test_a_slow_server_does_not_delay_the_status_answer(
    router: Router, customer: Customer
) -> None:
    """The server takes 3 s to accept a status-update; Twilio's answer takes well under 0.5 s."""
    customer.reply_to_status(Reply(delay=3.0))
    await router.create_number(server={"url": customer.url}, assistantId="asst-1")
    sid = call_sid()
    answer = await router.status(sid, "completed", CallDuration="1")
    assert answer.status == 200
    assert answer.seconds < 0.5
    [update] = await customer.wait_for_status_updates(1)
    assert update.message["status"] == "ended"
    customer.release.set()  # let the forward finish before the app shuts down


async def test_a_status_callback_for_an_unknown_number_is_acknowledged(
    router: Router, logs: Logs
) -> None:
    """Nobody's number: an empty `<Response/>`, nothing recorded."""
    sid = call_sid()
    answer = await router.status(sid, "completed", To="+14155550999")
    assert (answer.status, len(answer.root)) == (200, 0)
    assert len(logs.named("webhook.unknown_number")) == 1
    assert (await router.call_record(sid))[0] == 404


async def test_a_status_callback_leaves_the_transient_config_byte_for_byte(
    router_on: Router, customer: Customer
) -> None:
    """The customer's transient assistant survives status updates exactly: empty lists stay
    lists, empty objects stay objects, big integers and precise floats keep every digit."""
    assistant = {
        "name": "Exact",
        "model": {"messages": [], "tools": [], "temperature": 0.123456789012345},
        "metadata": {},
        "variableValues": {"accountNumber": 12345678901234567, "ratio": 1e-7, "tags": [[]]},
    }
    router = router_on
    customer.reply(Reply(json={"assistant": assistant}))
    await router.create_number(server={"url": customer.url})
    sid = call_sid()
    await router.voice(voice_form(sid))
    await router.status(sid, "in-progress", SequenceNumber="1")
    await router.status(sid, "completed", SequenceNumber="2", CallDuration="8")
    _, record = await router.call_record(sid)
    assert record["decision"]["outcome"]["config"] == {"assistant": assistant}
    assert (record["status"], record["durationSeconds"]) == ("completed", 8)


async def test_a_ringing_status_reaches_the_customer_once(
    router_on: Router, customer: Customer
) -> None:
    """`ringing` is forwarded as a `status-update` too (SPEC §8: ringing, ended), once."""
    router = router_on
    await router.create_number(server={"url": customer.url}, assistantId="asst-1")
    sid = call_sid()
    await router.status(sid, "ringing", SequenceNumber="0")
    await router.status(sid, "ringing", SequenceNumber="0")
    await router.status(sid, "completed", SequenceNumber="1")
    updates = await customer.wait_for_status_updates(2)
    await asyncio.sleep(0.05)
    assert [u.message["status"] for u in customer.status_updates] == ["ringing", "ended"]
    assert updates[0].message["call"]["phoneCallProviderId"] == sid
