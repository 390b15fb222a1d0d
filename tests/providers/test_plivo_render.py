"""Plivo XML for every decision kind, parsed back and asserted whole."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote

import pytest

from router.pipeline.decision import (
    Connect,
    Decision,
    Outcome,
    Reject,
    Say,
    Transfer,
    parse_destination,
)
from router.pipeline.inbound_call import InboundCall
from router.providers.plivo import EXTRA_HEADERS_LIMIT_BYTES, PlivoProvider
from router.providers.plugin import RenderContext, Rendered
from router.runtimes.config import Runtime

from .plivo_support import CALL_UUID, CALLER, NUMBER, NUMBER_ID, RUNTIME_URL, make_number

PUBLIC = "https://router.example.com"
CTX = RenderContext(runtime_url=RUNTIME_URL, call_id=CALL_UUID, public_base=PUBLIC)
CALLBACKS = "runtime=default&to=%2B14155550100"
DESTINATION = "+14155550142"
TARGET_ID = "0f8e3c1a-77aa-4b5c-9e21-d3c4b5a69788"
PLIVO = PlivoProvider()


def make_call(**fields: Any) -> InboundCall:
    base: dict[str, Any] = {
        "provider": "plivo",
        "provider_call_id": CALL_UUID,
        "from_number": CALLER,
        "to_number": NUMBER,
        "received_at": 0.0,
    }
    return InboundCall(**(base | fields))


def render(outcome: Outcome, ctx: RenderContext = CTX, **call: Any) -> Rendered:
    decision = Decision(outcome=outcome, route="assistant", ended_reason=None, trace=())
    return PLIVO.render(decision, make_call(**call), make_number(), ctx)


def document(rendered: Rendered) -> ET.Element:
    """The `<Response>` of a rendered answer served as text/xml."""
    assert (rendered.status, rendered.content_type.split(";")[0]) == (200, "text/xml")
    root = ET.fromstring(rendered.body)  # noqa: S314  # router's own output
    assert root.tag == "Response"
    return root


def tags(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def transfer(**destination: Any) -> Transfer:
    return Transfer.to(parse_destination(destination))


# --- connect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_connect_streams_both_ways_with_the_ids_as_extra_headers(target: Any) -> None:
    """`<Stream bidirectional keepCallAlive>` to the runtime, 8 kHz mu-law, the call id and
    target as `extraHeaders`, UUIDs without their dashes (Plivo takes letters and digits
    only there); without callbacks, nothing after it."""
    rendered = render(Connect(target, TARGET_ID))
    stream = document(rendered)[0]
    assert tags(document(rendered)) == ["Stream"]
    assert stream.text == RUNTIME_URL
    assert stream.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-mulaw;rate=8000",
        "extraHeaders": (
            f"callId={CALL_UUID.replace('-', '')},target={target},"
            f"targetId={TARGET_ID.replace('-', '')},phoneNumberId={NUMBER_ID.replace('-', '')}"
        ),
    }
    assert rendered.warnings == ()


def test_extra_header_values_are_letters_and_digits_only() -> None:
    """Every `extraHeaders` value matches Plivo's `[A-Za-z0-9]` rule; a UUID's dashes can be
    put back (8-4-4-4-12)."""
    headers = document(render(Connect("assistant", TARGET_ID.upper())))[0].get("extraHeaders", "")
    values = dict(pair.split("=") for pair in headers.split(","))
    assert all(value.isascii() and value.isalnum() for value in values.values())
    hex32 = values["callId"]
    assert "-".join((hex32[:8], hex32[8:12], hex32[12:16], hex32[16:20], hex32[20:])) == CALL_UUID
    assert values["targetId"] == TARGET_ID.upper().replace("-", "")


def test_a_transient_target_has_no_target_id() -> None:
    stream = document(render(Connect("assistant", None)))[0]
    assert "targetId" not in stream.get("extraHeaders", "")


def test_with_callbacks_the_stream_reports_and_a_redirect_follows_it() -> None:
    """The stream's status goes to /plivo/stream; once it ends, Plivo runs the `<Redirect>`
    to /plivo/connect, where router hangs up or moves the call on."""
    ctx = RenderContext(RUNTIME_URL, CALL_UUID, PUBLIC, callbacks=CALLBACKS)
    root = document(render(Connect("assistant", "a1"), ctx))
    assert tags(root) == ["Stream", "Redirect"]
    stream, redirect = root
    assert stream.get("statusCallbackUrl") == f"{PUBLIC}/plivo/stream?{CALLBACKS}"
    assert stream.get("statusCallbackMethod") == "POST"
    assert redirect.text == f"{PUBLIC}/plivo/connect?{CALLBACKS}"
    assert redirect.get("method") == "POST"


@pytest.mark.parametrize("kind", ["stream", "sip"])
def test_without_a_public_url_the_callbacks_are_under_the_host_the_webhook_reached(
    kind: str,
) -> None:
    """Plivo requires fully qualified callback URLs: without ROUTER_PUBLIC_URL, the
    `<Dial action>`, the stream's `statusCallbackUrl` and the `<Redirect>` are under the
    scheme and host the answer request arrived on."""
    edge = "https://edge.example.net:8443"
    runtime = None
    if kind == "sip":
        runtime = Runtime(name="oai", kind="sip", uri="sip:proj@sip.example.com")
    ctx = RenderContext(
        RUNTIME_URL, CALL_UUID, "", runtime=runtime, callbacks=CALLBACKS, request_base=edge
    )
    root = document(render(Connect("assistant", "a1"), ctx))
    urls = [
        url
        for url in (
            root[0].get("action"),
            root[0].get("statusCallbackUrl"),
            *(child.text for child in root if child.tag == "Redirect"),
        )
        if url is not None
    ]
    assert len(urls) == (1 if kind == "sip" else 2)
    assert all(url.startswith(f"{edge}/plivo/") for url in urls), urls


@pytest.mark.parametrize("target_id", ["a,b=c", "asst-1", "asst_1", "a.1", "ä1"])
def test_an_id_plivo_cannot_carry_is_left_out_whole_and_reported(target_id: str) -> None:
    """extraHeaders takes letters and digits only: an id that is no UUID and holds anything
    else (`-`, `_`, `.`, `,`, `=`, non-ASCII) is dropped, never cut, and reported."""
    rendered = render(Connect("assistant", target_id))
    headers = document(rendered)[0].get("extraHeaders", "")
    assert "targetId" not in headers
    assert headers.startswith(f"callId={CALL_UUID.replace('-', '')},target=assistant")
    assert headers.endswith(f"phoneNumberId={NUMBER_ID.replace('-', '')}")
    assert rendered.warnings == (
        "extraHeader targetId dropped: Plivo takes letters and digits only",
    )


def test_extra_headers_stay_within_plivo_s_512_bytes() -> None:
    rendered = render(Connect("assistant", "a" * 600))
    headers = document(rendered)[0].get("extraHeaders", "")
    assert len(headers.encode()) <= EXTRA_HEADERS_LIMIT_BYTES
    assert f"phoneNumberId={NUMBER_ID.replace('-', '')}" in headers
    assert any("512" in warning for warning in rendered.warnings)


def test_a_sip_runtime_is_dialled_with_the_ids_as_percent_encoded_sip_headers() -> None:
    """Plivo's sipHeaders values take letters, digits and `%` only: a UUID's dashes go as
    `%2D`, which the runtime URL-decodes from `X-PH-RouterCallId` and so on."""
    runtime = Runtime(name="oai", kind="sip", uri="sip:proj@sip.example.com;transport=tls")
    ctx = RenderContext(RUNTIME_URL, CALL_UUID, PUBLIC, runtime=runtime, callbacks=CALLBACKS)
    rendered = render(Connect("assistant", "a-1"), ctx)
    root = document(rendered)
    assert tags(root) == ["Dial"]
    dial = root[0]
    assert dial.get("action") == f"{PUBLIC}/plivo/connect?{CALLBACKS}"
    assert dial.get("method") == "POST"
    assert dial.get("timeout") == "15"
    headers = dict(pair.split("=") for pair in dial.get("sipHeaders", "").split(","))
    assert headers == {
        "RouterCallId": CALL_UUID.replace("-", "%2D"),
        "RouterTarget": "assistant",
        "RouterTargetId": "a%2D1",
        "RouterPhoneNumberId": NUMBER_ID.replace("-", "%2D"),
        "RouterOrgId": "org%2D1",
    }
    assert {unquote(value) for value in headers.values()} >= {CALL_UUID, "a-1", NUMBER_ID}
    assert rendered.warnings == ()
    assert [child.tag for child in dial] == ["User"]
    assert dial[0].text == "sip:proj@sip.example.com;transport=tls"


def test_a_conversation_relay_cannot_be_rendered() -> None:
    runtime = Runtime(name="relay", kind="conversation-relay", url="wss://relay.example.com")
    ctx = RenderContext(RUNTIME_URL, CALL_UUID, PUBLIC, runtime=runtime)
    with pytest.raises(ValueError, match="conversation-relay"):
        render(Connect("assistant", "a-1"), ctx)


# --- transfer, say, reject -------------------------------------------------------------------


def test_a_transfer_speaks_then_dials_the_number_with_its_extension_after_answer() -> None:
    root = document(
        render(
            transfer(
                type="number",
                number=DESTINATION,
                extension="123",
                callerId="{{customer.number}}",
                message="Hold on",
                transferPlan={"mode": "blind-transfer", "dialTimeout": 20},
            )
        )
    )
    assert tags(root) == ["Speak", "Dial"]
    assert root[0].text == "Hold on"
    dial = root[1]
    assert dial.attrib == {"callerId": CALLER, "timeout": "20"}
    assert [child.tag for child in dial] == ["Number"]
    assert dial[0].text == DESTINATION
    assert dial[0].get("sendDigits") == "W123"


def test_a_silent_transfer_to_sip_passes_its_headers_for_plivo_s_prefix() -> None:
    """Names keep their letters and digits, without an `X-` (Plivo sends `X-PH-<name>`);
    values are percent-encoded (UTF-8) so that only letters, digits and `%` remain."""
    rendered = render(
        transfer(
            type="sip",
            sipUri="sip:desk@pbx.example.com",
            message="",
            sipHeaders={
                "x-ticket": "T42",
                "X-Customer-Id": "c-7_a.b",
                "my_header": "a b,c=d",
                "X-Name": "Zoë",
            },
        )
    )
    root = document(rendered)
    assert tags(root) == ["Dial"]
    dial = root[0]
    assert dial.get("sipHeaders") == (
        "ticket=T42,CustomerId=c%2D7%5Fa%2Eb,myheader=a%20b%2Cc%3Dd,Name=Zo%C3%AB"
    )
    assert rendered.warnings == ()
    assert dial[0].tag == "User"
    assert dial[0].text == "sip:desk@pbx.example.com"


def test_sip_header_pairs_outside_plivo_s_limits_are_left_out_and_reported() -> None:
    """Names are cut to 24 characters; a value over 120 once encoded, or a name with no
    letter or digit (or one that repeats another once cut), is not sent."""
    rendered = render(
        transfer(
            type="sip",
            sipUri="sip:desk@pbx.example.com",
            sipHeaders={
                "X-" + "N" * 30: "v",
                "x-long": "é" * 21,  # 126 characters once encoded
                "x-ok": "z" * 120,
                "x-": "empty",
                "X-O-K": "again",
            },
        )
    )
    pairs = document(rendered)[1].get("sipHeaders", "").split(",")
    assert pairs == ["N" * 24 + "=v", "ok=" + "z" * 120]
    assert rendered.warnings == (
        "sipHeader x-long dropped: over Plivo's 120 characters once encoded",
        "sipHeader x- dropped: no name Plivo takes",
        "sipHeader X-O-K dropped: no name Plivo takes",
    )


def test_a_literal_caller_id_that_is_no_number_is_left_out() -> None:
    rendered = render(transfer(type="number", number=DESTINATION, callerId="Acme Inc"))
    assert document(rendered)[1].get("callerId") is None
    assert rendered.warnings == ("callerId dropped: Plivo takes only a phone number",)


def test_say_speaks_and_hangs_up() -> None:
    root = document(render(Say("Sorry, <nobody> & no one")))
    assert tags(root) == ["Speak", "Hangup"]
    assert root[0].text == "Sorry, <nobody> & no one"
    assert root[1].attrib == {}


def test_reject_hangs_up_as_rejected_before_answering() -> None:
    """`<Hangup reason="rejected"/>` as the first element: Plivo does not answer the call."""
    for rendered in (render(Reject()), PLIVO.reject()):
        root = document(rendered)
        assert tags(root) == ["Hangup"]
        assert root[0].attrib == {"reason": "rejected"}


def test_markup_in_a_message_cannot_change_the_document() -> None:
    evil = '</Speak><Dial><Number>+19005550000</Number></Dial><Speak a="'
    root = document(render(transfer(type="number", number=DESTINATION, message=evil)))
    assert tags(root) == ["Speak", "Dial"]
    assert root[0].text == evil


def test_a_status_is_acked_with_an_empty_response() -> None:
    assert tags(document(PLIVO.ack_status())) == []
    assert tags(document(PLIVO.finished())) == ["Hangup"]


def test_a_sip_header_value_that_is_not_valid_unicode_is_encoded_not_raised() -> None:
    """JSON can carry a lone surrogate (`\\udcff`): it is written as its bytes, never a 500."""
    rendered = render(
        transfer(type="sip", sipUri="sip:desk@pbx.example.com", sipHeaders={"x-odd": "a\udcff"})
    )
    assert document(rendered)[1].get("sipHeaders") == "odd=a%ED%B3%BF"
