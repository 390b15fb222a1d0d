"""TwiML for every outcome, parsed back with ElementTree and asserted as a tree."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from router.models.common import CustomMessage
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
from router.providers.twilio import TwilioProvider

from .conftest import CALL_SID, CALLER, NUMBER, RUNTIME_URL, make_call, make_number, parse_twiml

CTX = RenderContext(runtime_url=RUNTIME_URL, call_id=CALL_SID, public_base="https://r.example")
Tree = tuple[str, dict[str, str], str | None, list[Any]]


def tree(element: ET.Element) -> Tree:
    """An element as (tag, attributes, text, children): easy to compare whole."""
    return (element.tag, dict(element.attrib), element.text, [tree(c) for c in element])


def render(outcome: Outcome, **call: Any) -> Rendered:
    decision = Decision(outcome=outcome, route="assistant", ended_reason=None, trace=())
    return TwilioProvider().render(decision, make_call(**call), make_number(), CTX)


def twiml(outcome: Outcome, **call: Any) -> Tree:
    """The rendered document's tree, after checking it is well-formed TwiML."""
    rendered = render(outcome, **call)
    assert rendered.status == 200
    assert rendered.content_type == "text/xml; charset=utf-8"
    assert rendered.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Response>')
    root = parse_twiml(rendered.body)
    assert root.tag == "Response"
    return tree(root)


def transfer(**destination: Any) -> Transfer:
    return Transfer.to(parse_destination(destination))


def stream(*params: tuple[str, str]) -> Tree:
    children: list[Any] = [("Parameter", {"name": n, "value": v}, None, []) for n, v in params]
    return (
        "Response",
        {},
        None,
        [("Connect", {}, None, [("Stream", {"url": RUNTIME_URL}, None, children)])],
    )


def dial(noun: Tree, say: str | None = "Transferring the call now", **attrs: str) -> Tree:
    verbs: list[Any] = [] if say is None else [("Say", {}, say, [])]
    return ("Response", {}, None, [*verbs, ("Dial", attrs, None, [noun])])


# --- connect --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_connect_streams_to_the_runtime_with_call_and_target_ids(target: Any) -> None:
    """Connect is a bidirectional <Stream> to the runtime carrying callId, target and its id."""
    assert twiml(Connect(target, f"{target}-1")) == stream(
        ("callId", CALL_SID),
        ("target", target),
        ("targetId", f"{target}-1"),
        ("phoneNumberId", "pn-1"),
    )


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_transient_target_is_only_referenced_by_call_id(target: Any) -> None:
    """A transient config stays in the call record: the TwiML names no targetId and no config."""
    config = {target: {"firstMessage": "secret-plan-7f3a", "model": {"provider": "openai"}}}
    rendered = render(Connect(target, None, config))
    assert b"secret-plan-7f3a" not in rendered.body
    assert b"openai" not in rendered.body
    assert tree(parse_twiml(rendered.body)) == stream(
        ("callId", CALL_SID), ("target", target), ("phoneNumberId", "pn-1")
    )


def test_connect_refuses_a_runtime_url_twilio_would_reject() -> None:
    """Twilio streams only to wss:// (error 31922): a misconfiguration fails loudly."""
    ctx = RenderContext(
        runtime_url="https://runtime.example.com/stream", call_id="CA1", public_base=""
    )
    decision = Decision(Connect("assistant", "a1"), "assistant", None, ())
    with pytest.raises(ValueError, match="wss://"):
        TwilioProvider().render(decision, make_call(), make_number(), ctx)


def test_parameter_over_twilio_limit_is_dropped_whole_and_reported() -> None:
    """name + value must stay under 500 characters; an id is never cut, it is dropped and named."""
    rendered = render(Connect("assistant", "a" * 492))  # 8 + 492 = 500
    params = [p.get("name") for p in parse_twiml(rendered.body).iter("Parameter")]
    assert params == ["callId", "target", "phoneNumberId"]
    assert rendered.warnings == ("stream parameter targetId dropped: over the 500-character limit",)
    kept = render(Connect("assistant", "a" * 491))  # 8 + 491 = 499 < 500
    assert [p.get("value") for p in parse_twiml(kept.body).iter("Parameter")][2] == "a" * 491
    assert kept.warnings == ()


def test_runtime_url_query_string_is_reported() -> None:
    ctx = RenderContext(runtime_url=RUNTIME_URL + "?token=x", call_id="CA1", public_base="")
    decision = Decision(Connect("assistant", "a1"), "assistant", None, ())
    rendered = TwilioProvider().render(decision, make_call(), make_number(), ctx)
    assert rendered.warnings == ("stream URL query string: Twilio <Stream> drops it",)


# --- transfer to a number -----------------------------------------------------------------


def test_transfer_to_number_speaks_the_default_message_then_dials() -> None:
    assert twiml(transfer(type="number", number="+14155559999")) == dial(
        ("Number", {}, "+14155559999", [])
    )


@pytest.mark.parametrize(
    ("message", "spoken"),
    [
        ("Please hold", "Please hold"),
        ("", None),
        ("   ", None),
        (CustomMessage(type="custom-message", content="Un momento").wire(), "Un momento"),
    ],
    ids=["custom", "silent", "blank", "custom-message"],
)
def test_transfer_message_is_spoken_or_left_out(message: Any, spoken: str | None) -> None:
    """A custom message is spoken; "" (or only spaces) transfers silently."""
    outcome = transfer(type="number", number="+14155559999", message=message)
    assert twiml(outcome) == dial(("Number", {}, "+14155559999", []), say=spoken)


@pytest.mark.parametrize(
    ("extension", "digits"), [("123", "ww123"), ("4#", "ww4#"), ("w5", "w5"), ("W*9", "W*9")]
)
def test_extension_is_sent_after_answer(extension: str, digits: str) -> None:
    """sendDigits waits a second (`ww`) unless the extension starts with its own pause."""
    outcome = transfer(type="number", number="+14155559999", extension=extension, message="")
    assert twiml(outcome) == dial(("Number", {"sendDigits": digits}, "+14155559999", []), say=None)


@pytest.mark.parametrize(
    ("caller_id", "from_number", "expected"),
    [
        ("{{customer.number}}", CALLER, CALLER),
        ("{{ customer.number }}", CALLER, CALLER),
        ("{{phoneNumber.number}}", CALLER, NUMBER),
        ("+15550001111", CALLER, "+15550001111"),
        ("{{customer.number}}", "anonymous", None),
        (None, CALLER, None),
    ],
    ids=["caller", "caller-spaced", "called-number", "literal", "withheld-caller", "absent"],
)
def test_caller_id_templates(caller_id: str | None, from_number: str, expected: str | None) -> None:
    """callerId: the caller, the called number, or a literal; absent → Twilio's default."""
    outcome = transfer(type="number", number="+14155559999", callerId=caller_id, message="")
    attrs = {} if expected is None else {"callerId": expected}
    assert twiml(outcome, from_number=from_number) == dial(
        ("Number", {}, "+14155559999", []), say=None, **attrs
    )


@pytest.mark.parametrize(
    ("plan", "timeout"),
    [
        ({"dialTimeout": 20}, "20"),
        ({"timeout": 45}, "45"),
        ({"dialTimeout": 25, "timeout": 45}, "25"),
        ({"dialTimeout": 2}, "5"),
        ({"dialTimeout": 12.6}, "13"),
        ({}, "60"),
    ],
)
def test_dial_timeout_comes_from_the_transfer_plan_within_twilio_bounds(
    plan: dict[str, Any], timeout: str
) -> None:
    """dialTimeout, else timeout, held to Twilio's 5-600 s; no plan → Twilio's default."""
    outcome = transfer(
        type="number",
        number="+14155559999",
        message="",
        transferPlan={"mode": "blind-transfer", **plan},
    )
    assert twiml(outcome) == dial(("Number", {}, "+14155559999", []), say=None, timeout=timeout)
    no_plan = transfer(type="number", number="+14155559999", message="")
    assert twiml(no_plan) == dial(("Number", {}, "+14155559999", []), say=None)


# --- transfer to SIP ------------------------------------------------------------------------


def test_sip_headers_become_x_headers_in_the_uri_query() -> None:
    """sipHeaders join the URI query URL-encoded, `x-` added where missing; `&` is escaped."""
    outcome = transfer(
        type="sip",
        sipUri="sip:agent@pbx.example.com",
        sipHeaders={"X-Tenant": "acme corp", "queue": "a&b=c", "vip": True, "User-to-User": "1f"},
    )
    rendered = render(outcome)
    assert b"?X-Tenant=acme%20corp&amp;x-queue=a%26b%3Dc&amp;x-vip=true&amp;User-to-User=1f" in (
        rendered.body
    )
    assert tree(parse_twiml(rendered.body)) == dial(
        (
            "Sip",
            {},
            "sip:agent@pbx.example.com?X-Tenant=acme%20corp&x-queue=a%26b%3Dc&x-vip=true"
            "&User-to-User=1f",
            [],
        )
    )


def test_sip_uri_that_has_a_query_gets_headers_appended() -> None:
    outcome = transfer(
        type="sip", sipUri="sip:a@b.example?x-a=1", sipHeaders={"b": "2"}, message=""
    )
    assert twiml(outcome) == dial(("Sip", {}, "sip:a@b.example?x-a=1&x-b=2", []), say=None)


def test_sip_headers_over_the_limit_are_dropped_deterministically() -> None:
    """Headers are added in order; one that would pass 1024 characters is dropped and named."""
    headers = {f"h{i}": str(i) * 300 for i in range(1, 6)} | {"small": "1"}
    outcome = transfer(type="sip", sipUri="sip:a@b.example", sipHeaders=headers, message="")
    first, again = render(outcome), render(outcome)
    assert first == again
    sip = parse_twiml(first.body).find("Dial/Sip")
    assert sip is not None
    assert sip.text is not None
    query = sip.text.split("?", 1)[1]
    assert len(query) < 1024
    assert [pair.split("=")[0] for pair in query.split("&")] == ["x-h1", "x-h2", "x-h3", "x-small"]
    assert first.warnings == (
        "SIP header x-h4 dropped: headers over the 1024-character limit",
        "SIP header x-h5 dropped: headers over the 1024-character limit",
    )


def test_sip_caller_id_must_be_plain() -> None:
    """<Sip> callerId takes letters, digits and +-_. only; anything else is left out."""
    ok = transfer(type="sip", sipUri="sip:a@b.example", callerId="front.desk_1", message="")
    assert twiml(ok) == dial(("Sip", {}, "sip:a@b.example", []), say=None, callerId="front.desk_1")
    bad = transfer(type="sip", sipUri="sip:a@b.example", callerId="Front Desk!", message="")
    assert twiml(bad) == dial(("Sip", {}, "sip:a@b.example", []), say=None)
    assert render(bad).warnings == ("callerId dropped: <Sip> takes only letters, digits and +-_.",)


# --- say and reject -------------------------------------------------------------------------


def test_say_speaks_then_hangs_up() -> None:
    assert twiml(Say("We are closed.")) == (
        "Response",
        {},
        None,
        [("Say", {}, "We are closed.", []), ("Hangup", {}, None, [])],
    )


@pytest.mark.parametrize("text", ["", " \n "])
def test_silent_say_only_hangs_up(text: str) -> None:
    assert twiml(Say(text)) == ("Response", {}, None, [("Hangup", {}, None, [])])


def test_reject_is_not_answered() -> None:
    """<Reject/> as the only verb: Twilio does not pick up and does not bill."""
    expected: Tree = ("Response", {}, None, [("Reject", {}, None, [])])
    assert twiml(Reject()) == expected
    rejected = TwilioProvider().reject()
    assert rejected == render(Reject())
    assert tree(parse_twiml(rejected.body)) == expected


def test_replayed_decision_renders_the_same_twiml() -> None:
    """A stored decision (to_dict → from_dict) renders byte for byte what the first did."""
    outcomes: list[Outcome] = [
        Connect("assistant", "a1"),
        transfer(
            type="number",
            number="+14155559999",
            extension="12",
            callerId="{{customer.number}}",
            transferPlan={"mode": "blind-transfer", "timeout": 30},
        ),
        transfer(type="sip", sipUri="sip:a@b.example", sipHeaders={"k": "v"}),
        Say("bye"),
        Reject(),
    ]
    for outcome in outcomes:
        decision = Decision(outcome, "assistant", None, ("step",))
        replayed = Decision.from_dict(decision.to_dict())
        first = TwilioProvider().render(decision, make_call(), make_number(), CTX)
        again = TwilioProvider().render(replayed, make_call(), make_number(), CTX)
        assert first == again


@pytest.mark.parametrize(
    ("call_id", "runtime_url", "target_id"),
    [
        (CALL_SID, RUNTIME_URL, "asst-1"),  # a route's document, its call id spliced in
        ("CA" + "f" * 32, RUNTIME_URL, None),  # a transient target: no targetId
        ("v3:a_b-1.2~x", RUNTIME_URL, "asst-1"),  # plain, though not only letters and digits
        ('CA"1<&>', RUNTIME_URL, "asst-1"),  # an id to escape: built in full
        ("CA" + "9" * 500, RUNTIME_URL, "asst-1"),  # over the limit: dropped, with a warning
        (CALL_SID, RUNTIME_URL + "?x=1", "asst-1"),  # a warning to give on every call
        (CALL_SID, RUNTIME_URL, "a" * 600),  # a target id over the limit
    ],
)
def test_a_connect_is_the_same_document_however_it_is_made(
    call_id: str, runtime_url: str, target_id: str | None
) -> None:
    """Every call of a route gets what building its document in full gives: the same
    bytes and the same warnings, the second time (kept) as the first."""
    from router.providers import twiml
    from router.providers.twiml_dialect import stream_parameters

    number = make_number()
    ctx = RenderContext(runtime_url=runtime_url, call_id=call_id, public_base="https://r.x")
    outcome = Connect("assistant", target_id)
    decision = Decision(outcome=outcome, route="assistant", ended_reason=None, trace=())
    expected_warnings: list[str] = []
    expected = twiml.response(
        twiml.connect_stream(
            runtime_url, stream_parameters(outcome, number, ctx), expected_warnings
        )
    )
    for _ in range(2):
        rendered = TwilioProvider().render(decision, make_call(), number, ctx)
        assert rendered.body == expected
        assert list(rendered.warnings) == expected_warnings


def test_each_number_and_target_has_its_own_document() -> None:
    """The document kept for one route is never another's."""
    number, other = make_number(), make_number(id="pn-2")
    for target_id, n in (("asst-1", number), ("asst-2", number), ("asst-1", other)):
        decision = Decision(Connect("assistant", target_id), "assistant", None, ())
        root = parse_twiml(TwilioProvider().render(decision, make_call(), n, CTX).body)
        params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
        assert params == {
            "callId": CALL_SID,
            "target": "assistant",
            "targetId": target_id,
            "phoneNumberId": n.id,
        }
