"""User-supplied text in TwiML is text: nothing anyone writes can add a verb."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from .conftest import Customer, MakeRouter, Reply, Router, dialled, spoken_then_hung_up

INJECTION = "</Say><Dial>+19005551234</Dial><Say>\"&<>' &amp; ]]> <!-- -->"


def assert_single_say(root: ET.Element, text: str) -> None:
    """Exactly `<Say>text</Say><Hangup/>`: no Dial, no nested element, the text as given."""
    assert spoken_then_hung_up(root) == text
    assert root.find(".//Dial") is None
    assert [element.tag for element in root.iter()] == ["Response", "Say", "Hangup"]


async def test_an_apology_cannot_inject_twiml(make_router: MakeRouter) -> None:
    """The configured apology is spoken verbatim."""
    router = await make_router(apology_message=INJECTION)
    await router.create_number()
    assert_single_say((await router.voice()).root, INJECTION)


async def test_a_say_hook_cannot_inject_twiml(router: Router) -> None:
    hook = {"on": "call.ringing", "do": [{"type": "say", "exact": INJECTION}]}
    await router.create_number(hooks=[hook])
    assert_single_say((await router.voice()).root, INJECTION)


@pytest.mark.parametrize(
    "error",
    [INJECTION, "]]></Say><Redirect>https://evil.example.com</Redirect>", "Tom & Jerry's <b>"],
)
async def test_a_server_error_cannot_inject_twiml(
    router: Router, customer: Customer, error: str
) -> None:
    """The server's `error` is spoken as one `<Say>`, text equal to the input."""
    customer.reply(Reply(json={"error": error}))
    await router.create_number(server={"url": customer.url})
    root = (await router.voice()).root
    assert_single_say(root, error)
    assert root.find(".//Redirect") is None


async def test_a_transfer_message_and_caller_id_cannot_inject_twiml(
    router: Router, customer: Customer
) -> None:
    """A destination's message and literal callerId stay text and an attribute."""
    customer.reply(
        Reply(
            json={
                "destination": {
                    "type": "number",
                    "number": "+14155550177",
                    "message": INJECTION,
                    "callerId": '"><Hangup/><x a="',
                }
            }
        )
    )
    await router.create_number(server={"url": customer.url})
    root = (await router.voice()).root
    assert [element.tag for element in root.iter()] == ["Response", "Say", "Dial", "Number"]
    assert root[0].text == INJECTION
    assert root[1].get("callerId") == '"><Hangup/><x a="'
    assert dialled(root).text == "+14155550177"


async def test_stream_parameters_cannot_inject_twiml(router: Router, customer: Customer) -> None:
    """An assistantId full of markup is one Parameter value, unchanged."""
    target = '"/><Parameter name="target" value="squad'
    customer.reply(Reply(json={"assistantId": target}))
    await router.create_number(server={"url": customer.url})
    root = (await router.voice()).root
    parameters = root.findall("./Connect/Stream/Parameter")
    assert [p.get("name") for p in parameters] == ["callId", "target", "targetId", "phoneNumberId"]
    assert parameters[1].get("value") == "assistant"
    assert parameters[2].get("value") == target
