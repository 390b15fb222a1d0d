"""NCCO for every outcome, parsed back from JSON and asserted whole."""

from __future__ import annotations

import json
from typing import Any

import orjson
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
from router.providers.plugin import RenderContext, Rendered
from router.providers.vonage import (
    TALK_TEXT_LIMIT,
    WEBSOCKET_HEADERS_LIMIT_BYTES,
    VonageProvider,
)

from .vonage_support import (
    CALL_UUID,
    CALLER,
    RUNTIME_URL,
    digits,
    make_call,
    make_number,
    ncco,
)

CTX = RenderContext(runtime_url=RUNTIME_URL, call_id=CALL_UUID, public_base="https://r.example")
OWN = digits("+14155550100")  # the called number, as Vonage spells it
DESTINATION = "+14155550142"


def render(outcome: Outcome, **call: Any) -> Rendered:
    decision = Decision(outcome=outcome, route="assistant", ended_reason=None, trace=())
    return VonageProvider().render(decision, make_call(**call), make_number(), CTX)


def actions(outcome: Outcome, **call: Any) -> list[dict[str, Any]]:
    """The rendered NCCO, after checking it is a JSON array served as application/json."""
    rendered = render(outcome, **call)
    assert (rendered.status, rendered.content_type) == (200, "application/json")
    return ncco(rendered.body)


def transfer(**destination: Any) -> Transfer:
    return Transfer.to(parse_destination(destination))


def talk(text: str) -> dict[str, Any]:
    return {"action": "talk", "text": text}


def runtime(headers: dict[str, str]) -> list[dict[str, Any]]:
    endpoint = {
        "type": "websocket",
        "uri": RUNTIME_URL,
        "content-type": "audio/l16;rate=16000",
        "headers": headers,
    }
    return [{"action": "connect", "from": OWN, "endpoint": [endpoint]}]


# --- connect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_connect_opens_a_websocket_to_the_runtime_with_the_ids_as_headers(target: Any) -> None:
    """L16 at 16 kHz to the runtime URL; callId, target, targetId and phoneNumberId ride in
    `headers` (Vonage repeats them in the socket's first message)."""
    assert actions(Connect(target, f"{target}-1")) == runtime(
        {
            "callId": CALL_UUID,
            "target": target,
            "targetId": f"{target}-1",
            "phoneNumberId": "pn-vonage-1",
        }
    )


def test_a_transient_target_has_no_target_id_and_no_config_in_the_ncco() -> None:
    """A server-sent assistant object stays in the call record; the NCCO only names it."""
    outcome = Connect("assistant", None, {"assistant": {"firstMessage": "secret prompt"}})
    assert actions(outcome) == runtime(
        {"callId": CALL_UUID, "target": "assistant", "phoneNumberId": "pn-vonage-1"}
    )
    assert b"secret prompt" not in render(outcome).body


def test_websocket_headers_stay_within_512_bytes_dropping_whole_headers_in_order() -> None:
    """A target id too long to fit is dropped (never cut), the ones after it still tried,
    with a warning; the same decision renders the same bytes every time."""
    outcome = Connect("assistant", "a" * 500)
    rendered = render(outcome)
    headers = ncco(rendered.body)[0]["endpoint"][0]["headers"]
    assert headers == {"callId": CALL_UUID, "target": "assistant", "phoneNumberId": "pn-vonage-1"}
    assert len(orjson.dumps(headers)) <= WEBSOCKET_HEADERS_LIMIT_BYTES
    assert rendered.warnings == (
        "websocket header targetId dropped: headers over the 512-byte limit",
    )
    assert render(outcome).body == rendered.body


def test_websocket_headers_up_to_exactly_512_bytes_are_kept() -> None:
    """The limit is inclusive: headers of exactly 512 bytes go out whole."""
    base = {
        "callId": CALL_UUID,
        "target": "assistant",
        "targetId": "",
        "phoneNumberId": "pn-vonage-1",
    }
    room = WEBSOCKET_HEADERS_LIMIT_BYTES - len(orjson.dumps(base))
    rendered = render(Connect("assistant", "t" * room))
    headers = ncco(rendered.body)[0]["endpoint"][0]["headers"]
    assert len(orjson.dumps(headers)) == WEBSOCKET_HEADERS_LIMIT_BYTES
    assert headers["targetId"] == "t" * room
    assert rendered.warnings == ()


def test_multibyte_header_values_are_counted_in_bytes() -> None:
    """512 is bytes of JSON, not characters: 230 `é` are 460 bytes, too many with the rest,
    though 230 characters would fit."""
    rendered = render(Connect("assistant", "é" * 230))
    headers = ncco(rendered.body)[0]["endpoint"][0]["headers"]
    assert "targetId" not in headers
    assert rendered.warnings


# --- transfer --------------------------------------------------------------------------------


def test_transfer_to_a_number_speaks_then_connects_from_the_called_number() -> None:
    """The default message, then a phone connect; `from` defaults to the number called,
    since Vonage needs a number of the account (no `+` anywhere)."""
    assert actions(transfer(type="number", number=DESTINATION)) == [
        talk("Transferring the call now"),
        {
            "action": "connect",
            "from": OWN,
            "endpoint": [{"type": "phone", "number": digits(DESTINATION)}],
        },
    ]


def test_a_silent_transfer_message_leaves_the_talk_out() -> None:
    """`message: ""` transfers without speaking."""
    silent = transfer(type="number", number=DESTINATION, message="")
    assert [action["action"] for action in actions(silent)] == ["connect"]


def test_a_custom_message_is_spoken() -> None:
    message = {"type": "custom-message", "content": "Hold on, connecting you"}
    outcome = transfer(type="number", number=DESTINATION, message=message)
    assert actions(outcome)[0] == talk("Hold on, connecting you")


@pytest.mark.parametrize(
    ("extension", "dtmf"),
    [("123", "pp123"), ("12#", "pp12#"), ("w123", "p123"), ("W9", "pp9"), ("1w2", "pp1p2")],
)
def test_an_extension_is_sent_as_dtmf_after_answer(extension: str, dtmf: str) -> None:
    """`dtmfAnswer`, after a one-second pause (`pp`) unless the extension starts with one;
    Twilio-style `w` (half a second) becomes Vonage's `p`."""
    outcome = transfer(type="number", number=DESTINATION, extension=extension)
    endpoint = actions(outcome)[1]["endpoint"][0]
    assert endpoint == {"type": "phone", "number": digits(DESTINATION), "dtmfAnswer": dtmf}


@pytest.mark.parametrize(
    ("caller_id", "expected"),
    [
        ("{{customer.number}}", digits(CALLER)),
        ("{{ customer.number }}", digits(CALLER)),
        ("{{phoneNumber.number}}", OWN),
        ("+14155550177", "14155550177"),
        ("14155550177", "14155550177"),
    ],
)
def test_caller_id_templates_and_literals_resolve_to_vonage_numbers(
    caller_id: str, expected: str
) -> None:
    outcome = transfer(type="number", number=DESTINATION, callerId=caller_id)
    rendered = render(outcome)
    assert ncco(rendered.body)[1]["from"] == expected
    assert rendered.warnings == ()


@pytest.mark.parametrize(
    ("caller_id", "caller"),
    [("{{customer.number}}", "Unknown"), ("Reception", CALLER), ("+0123", CALLER)],
    ids=["withheld-caller", "not-a-number", "not-e164"],
)
def test_a_caller_id_that_is_no_phone_number_falls_back_to_the_called_number(
    caller_id: str, caller: str
) -> None:
    """Vonage rejects a `from` that is no number; the called number goes out, with a warning."""
    outcome = transfer(type="number", number=DESTINATION, callerId=caller_id)
    rendered = render(outcome, from_number=caller)
    assert ncco(rendered.body)[1]["from"] == OWN
    assert rendered.warnings == (
        "callerId is not a phone number: the called number is used instead",
    )


@pytest.mark.parametrize(
    ("plan", "timeout"),
    [
        ({"mode": "blind-transfer"}, 60),
        ({"mode": "blind-transfer", "dialTimeout": 25}, 25),
        ({"mode": "blind-transfer", "timeout": 30}, 30),
        ({"mode": "blind-transfer", "dialTimeout": 600}, 120),
        ({"mode": "blind-transfer", "dialTimeout": 1.2}, 1),
    ],
    ids=["default", "dial-timeout", "timeout", "above-vonage-max", "rounded"],
)
def test_the_ring_timeout_comes_from_the_transfer_plan_within_vonage_bounds(
    plan: dict[str, Any], timeout: int
) -> None:
    """`dialTimeout` (else a changed `timeout`), held to Vonage's 1-120 seconds."""
    outcome = transfer(type="number", number=DESTINATION, transferPlan=plan)
    assert actions(outcome)[1]["timeout"] == timeout


def test_no_transfer_plan_leaves_vonages_default_timeout() -> None:
    assert "timeout" not in actions(transfer(type="number", number=DESTINATION))[1]


def test_transfer_to_sip_connects_the_uri_with_its_headers() -> None:
    """Vonage sends each header as `X-<name>`: an `x-` already there is not doubled;
    booleans and numbers are spelled as JSON would."""
    outcome = transfer(
        type="sip",
        sipUri="sip:support@pbx.example.com;transport=tls",
        sipHeaders={"X-Account": "acme", "queue": 7, "vip": True},
    )
    assert actions(outcome)[1] == {
        "action": "connect",
        "from": OWN,
        "endpoint": [
            {
                "type": "sip",
                "uri": "sip:support@pbx.example.com;transport=tls",
                "headers": {"Account": "acme", "queue": "7", "vip": "true"},
            }
        ],
    }


def test_user_to_user_goes_in_standard_headers() -> None:
    """`User-to-User` is a standard SIP header: Vonage takes it in `standardHeaders` under
    its own name (in `headers` it would be sent as `X-User-to-User`)."""
    outcome = transfer(
        type="sip",
        sipUri="sip:support@pbx.example.com",
        sipHeaders={"user-to-user": "56a390f3d2b7310023a2;encoding=hex", "Queue": "sales"},
    )
    (endpoint,) = actions(outcome)[1]["endpoint"]
    assert endpoint["standardHeaders"] == {"User-to-User": "56a390f3d2b7310023a2;encoding=hex"}
    assert endpoint["headers"] == {"Queue": "sales"}


def test_transfer_to_sip_without_headers_has_none() -> None:
    outcome = transfer(type="sip", sipUri="sip:support@pbx.example.com", message="")
    assert actions(outcome) == [
        {
            "action": "connect",
            "from": OWN,
            "endpoint": [{"type": "sip", "uri": "sip:support@pbx.example.com"}],
        }
    ]


# --- say and reject ------------------------------------------------------------------------


def test_say_speaks_and_then_the_call_ends() -> None:
    """One talk action: Vonage ends the call when the NCCO runs out."""
    assert actions(Say("We are closed today.")) == [talk("We are closed today.")]


@pytest.mark.parametrize("text", ["", "   ", "\x00\x07"])
def test_say_with_nothing_to_speak_is_the_empty_ncco(text: str) -> None:
    """An unspeakable error hangs up without a word: `[]` ends the call at once."""
    rendered = render(Say(text))
    assert rendered.body == b"[]"


def test_reject_is_the_empty_ncco() -> None:
    """Vonage cannot decline a call; the empty NCCO ends it with nothing played."""
    for rendered in (render(Reject()), VonageProvider().reject()):
        assert (rendered.status, rendered.content_type, rendered.body) == (
            200,
            "application/json",
            b"[]",
        )


def test_control_characters_are_stripped_from_speech() -> None:
    """Line breaks and tabs become spaces; other controls and lone surrogates go."""
    assert actions(Say("Line one\nline\ttwo\x00\x1b[31m\ud800 end")) == [
        talk("Line one line two[31m end")
    ]


@pytest.mark.parametrize(
    "text",
    ['"}]}, {"action": "connect"', "</speak><break/>", "\\u0000 \\", "[]"],
)
def test_text_that_looks_like_json_or_markup_is_spoken_verbatim(text: str) -> None:
    """Values are JSON-encoded: nothing a message says can add an action."""
    assert actions(Say(text)) == [talk(text)]


def test_talk_text_is_cut_to_vonages_limit_with_a_warning() -> None:
    """Vonage refuses a talk over 1500 characters (and with it the whole NCCO)."""
    rendered = render(Say("x" * (TALK_TEXT_LIMIT + 10)))
    assert ncco(rendered.body) == [talk("x" * TALK_TEXT_LIMIT)]
    assert rendered.warnings == ("talk text cut to Vonage's 1500-character limit",)


def test_every_ncco_is_compact_json() -> None:
    """What orjson writes parses back as the same JSON the stdlib would accept."""
    body = render(transfer(type="number", number=DESTINATION)).body
    assert json.loads(body) == orjson.loads(body)
    assert b"\n" not in body


def test_without_a_public_url_the_event_url_is_under_the_host_the_webhook_reached() -> None:
    """An NCCO's `eventUrl` is a fully qualified URL: without ROUTER_PUBLIC_URL, the
    runtime leg's events go to the scheme and host the answer request arrived on."""
    edge = "https://edge.example.net:8443"
    ctx = RenderContext(RUNTIME_URL, CALL_UUID, "", callbacks="runtime=default", request_base=edge)
    decision = Decision(Connect("assistant", "a1"), route="assistant", ended_reason=None, trace=())
    rendered = VonageProvider().render(decision, make_call(), make_number(), ctx)
    (connect,) = [a for a in ncco(rendered.body) if a["action"] == "connect"]
    assert connect["eventUrl"] == [f"{edge}/vonage/connect?runtime=default"]
