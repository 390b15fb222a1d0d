"""TeXML for every outcome, parsed back with ElementTree and asserted as a tree; the runtime
URL contract; escaping of everything user-supplied."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from router.providers import twiml
from router.providers.plugin import RenderContext, Rendered
from router.providers.telnyx import STREAM_URL_LIMIT, TelnyxProvider

from .telnyx_support import (
    CALL_SID,
    CALLER,
    NUMBER,
    RUNTIME_URL,
    make_call,
    make_number,
    parse_texml,
)

CTX = RenderContext(runtime_url=RUNTIME_URL, call_id=CALL_SID, public_base="https://r.example")
QUOTED_SID = "v3%3A9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"
STREAM_ATTRS = {"codec": "PCMU", "bidirectionalMode": "rtp", "bidirectionalCodec": "PCMU"}
INJECTION = "</Say><Dial>+19005551234</Dial><Say>"
Tree = tuple[str, dict[str, str], str | None, list[Any]]


def tree(element: ET.Element) -> Tree:
    """An element as (tag, attributes, text, children): easy to compare whole."""
    return (element.tag, dict(element.attrib), element.text, [tree(c) for c in element])


def render(outcome: Outcome, ctx: RenderContext = CTX, **call: Any) -> Rendered:
    decision = Decision(outcome=outcome, route="assistant", ended_reason=None, trace=())
    return TelnyxProvider().render(decision, make_call(**call), make_number(), ctx)


def texml(outcome: Outcome, **call: Any) -> Tree:
    """The rendered document's tree, after checking it is well-formed TeXML."""
    rendered = render(outcome, **call)
    assert rendered.status == 200
    assert rendered.content_type == "text/xml; charset=utf-8"
    assert rendered.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Response>')
    root = parse_texml(rendered.body)
    assert root.tag == "Response"
    return tree(root)


def stream(url: str, *params: tuple[str, str]) -> Tree:
    children: list[Any] = [("Parameter", {"name": n, "value": v}, None, []) for n, v in params]
    attrs = {"url": url, **STREAM_ATTRS}
    return ("Response", {}, None, [("Connect", {}, None, [("Stream", attrs, None, children)])])


def stream_url(rendered: Rendered) -> str:
    streams = list(parse_texml(rendered.body).iter("Stream"))
    assert len(streams) == 1
    return str(streams[0].get("url"))


def path_segments(url: str) -> list[str]:
    """The percent-decoded path segments after the runtime URL's own path."""
    assert url.startswith(RUNTIME_URL + "/")
    assert urlsplit(url).query == "" and urlsplit(url).fragment == ""
    return [unquote(s) for s in url.removeprefix(RUNTIME_URL + "/").split("/")]


def transfer(**destination: Any) -> Transfer:
    return Transfer.to(parse_destination(destination))


def dial(noun: Tree, say: str | None = "Transferring the call now", **attrs: str) -> Tree:
    verbs: list[Any] = [] if say is None else [("Say", {}, say, [])]
    return ("Response", {}, None, [*verbs, ("Dial", attrs, None, [noun])])


# --- connect: the runtime URL contract ---------------------------------------------------------


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_connect_puts_call_id_target_and_target_id_in_the_stream_path(target: Any) -> None:
    """`{runtime}/{callId}/{target}/{targetId}`, the v3 call id percent-encoded, plus the
    same values as Parameters and an rtp/PCMU bidirectional stream."""
    assert texml(Connect(target, f"{target}-1")) == stream(
        f"{RUNTIME_URL}/{QUOTED_SID}/{target}/{target}-1",
        ("callId", CALL_SID),
        ("target", target),
        ("targetId", f"{target}-1"),
        ("phoneNumberId", "pn-1"),
    )


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_a_transient_target_has_no_id_segment_and_no_config_in_the_document(
    target: Any,
) -> None:
    """`{runtime}/{callId}/{target}`: the runtime reads the config with GET /call/{callId}."""
    config = {target: {"firstMessage": "secret-plan-7f3a", "model": {"provider": "openai"}}}
    rendered = render(Connect(target, None, config))
    assert b"secret-plan-7f3a" not in rendered.body
    assert b"openai" not in rendered.body
    assert tree(parse_texml(rendered.body)) == stream(
        f"{RUNTIME_URL}/{QUOTED_SID}/{target}",
        ("callId", CALL_SID),
        ("target", target),
        ("phoneNumberId", "pn-1"),
    )


@pytest.mark.parametrize(
    "target_id",
    [
        "a/b/c",
        "id?x=1#frag",
        "50% off & more",
        "spaces and\ttabs",
        "ünïcödé-日本",
        "..",
        '"/><Parameter name="admin" value="1',
    ],
)
def test_any_target_id_is_one_percent_encoded_path_segment(target_id: str) -> None:
    """Slashes, `?`, `#`, `%` and markup cannot add segments, a query or elements."""
    url = stream_url(render(Connect("assistant", target_id)))
    assert path_segments(url) == [CALL_SID, "assistant", target_id]
    assert url.split("/")[-1] == quote(target_id, safe="")


def test_a_trailing_slash_on_the_runtime_url_is_not_doubled() -> None:
    ctx = RenderContext(runtime_url=RUNTIME_URL + "/", call_id=CALL_SID, public_base="")
    assert stream_url(render(Connect("assistant", "a1"), ctx)) == (
        f"{RUNTIME_URL}/{QUOTED_SID}/assistant/a1"
    )


def test_a_target_id_past_the_url_limit_is_dropped_whole_and_reported() -> None:
    """The URL stays within 2048 characters: the id segment goes (never cut), and so does the
    Parameter (over 500); both are named in `warnings` for the log."""
    base = len(f"{RUNTIME_URL}/{QUOTED_SID}/assistant/")
    fits = "a" * (STREAM_URL_LIMIT - base)
    kept = render(Connect("assistant", fits))
    assert len(stream_url(kept)) == STREAM_URL_LIMIT
    assert path_segments(stream_url(kept))[-1] == fits
    dropped = render(Connect("assistant", fits + "a"))
    assert path_segments(stream_url(dropped)) == [CALL_SID, "assistant"]
    params = [p.get("name") for p in parse_texml(dropped.body).iter("Parameter")]
    assert params == ["callId", "target", "phoneNumberId"]
    assert dropped.warnings == (
        "stream URL targetId dropped: over the 2048-character limit",
        "stream parameter targetId dropped: over the 500-character limit",
    )


def test_connect_refuses_a_runtime_url_that_is_not_wss() -> None:
    ctx = RenderContext(runtime_url="https://runtime.example.com", call_id=CALL_SID, public_base="")
    with pytest.raises(ValueError, match="wss://"):
        render(Connect("assistant", "a1"), ctx)


# --- transfer to a number --------------------------------------------------------------------


def test_transfer_to_a_number_speaks_the_default_message_then_dials() -> None:
    assert texml(transfer(type="number", number="+14155559999")) == dial(
        ("Number", {}, "+14155559999", [])
    )


@pytest.mark.parametrize(
    ("message", "spoken"),
    [
        ("Please hold", "Please hold"),
        ("", None),
        (CustomMessage(type="custom-message", content="Un momento").wire(), "Un momento"),
    ],
    ids=["custom", "silent", "custom-message"],
)
def test_the_transfer_message_is_spoken_or_left_out(message: Any, spoken: str | None) -> None:
    outcome = transfer(type="number", number="+14155559999", message=message)
    assert texml(outcome) == dial(("Number", {}, "+14155559999", []), say=spoken)


@pytest.mark.parametrize(
    ("extension", "digits"), [("123", "ww123"), ("4#", "ww4#"), ("w5", "w5"), ("W*9", "W*9")]
)
def test_an_extension_is_sent_as_digits_after_answer(extension: str, digits: str) -> None:
    outcome = transfer(type="number", number="+14155559999", extension=extension)
    assert texml(outcome) == dial(("Number", {"sendDigits": digits}, "+14155559999", []))


@pytest.mark.parametrize(
    ("caller_id", "expected"),
    [
        ("{{customer.number}}", CALLER),
        ("{{ customer.number }}", CALLER),
        ("{{phoneNumber.number}}", NUMBER),
        ("+442071838750", "+442071838750"),
        ("442071838750", "+442071838750"),
    ],
)
def test_caller_id_templates_and_e164_literals(caller_id: str, expected: str) -> None:
    outcome = transfer(type="number", number="+14155559999", callerId=caller_id)
    rendered = render(outcome)
    assert parse_texml(rendered.body).find("Dial").get("callerId") == expected  # type: ignore[union-attr]
    assert rendered.warnings == ()


def test_a_caller_id_that_is_not_e164_is_left_out_and_reported() -> None:
    """TeXML's callerId must be E.164; an alphanumeric one would fail the Dial."""
    outcome = transfer(type="number", number="+14155559999", callerId="ACME Support")
    rendered = render(outcome)
    assert "callerId" not in parse_texml(rendered.body).find("Dial").attrib  # type: ignore[union-attr]
    assert rendered.warnings == ("callerId dropped: TeXML takes only an E.164 number",)


def test_a_withheld_caller_leaves_the_caller_id_template_out_silently() -> None:
    outcome = transfer(type="number", number="+14155559999", callerId="{{customer.number}}")
    rendered = render(outcome, from_number="anonymous")
    assert "callerId" not in parse_texml(rendered.body).find("Dial").attrib  # type: ignore[union-attr]
    assert rendered.warnings == ()


@pytest.mark.parametrize(
    ("plan", "timeout"),
    [
        ({"mode": "blind-transfer", "dialTimeout": 20}, "20"),
        ({"mode": "blind-transfer", "timeout": 45}, "45"),
        ({"mode": "blind-transfer", "dialTimeout": 600}, "120"),
        ({"mode": "blind-transfer", "dialTimeout": 1}, "5"),
        ({"mode": "blind-transfer"}, "60"),
    ],
)
def test_the_dial_timeout_is_held_within_texml_bounds(plan: Any, timeout: str) -> None:
    """TeXML takes 5-120 seconds (Twilio 5-600)."""
    outcome = transfer(type="number", number="+14155559999", transferPlan=plan)
    assert texml(outcome) == dial(("Number", {}, "+14155559999", []), timeout=timeout)


# --- transfer to a SIP URI -------------------------------------------------------------------


def test_transfer_to_sip_leaves_out_the_headers_texml_does_not_document() -> None:
    """Telnyx documents no SIP headers on a TeXML `<Sip>`: the call is transferred to the
    bare URI (its own URI parameters kept), the headers left out and reported."""
    outcome = transfer(
        type="sip",
        sipUri="sip:desk@pbx.example.com;transport=tls",
        sipHeaders={"tenant": "acme", "X-Ticket": "T-1", "User-to-User": "abc", "vip": True},
        callerId="{{phoneNumber.number}}",
    )
    rendered = render(outcome)
    assert tree(parse_texml(rendered.body)) == dial(
        ("Sip", {}, "sip:desk@pbx.example.com;transport=tls", []), callerId=NUMBER
    )
    assert any("sipHeaders dropped" in w for w in rendered.warnings)


def test_transfer_to_sip_without_headers_reports_nothing() -> None:
    rendered = render(transfer(type="sip", sipUri="sip:desk@pbx.example.com"))
    sip = parse_texml(rendered.body).find("Dial/Sip")
    assert sip is not None and sip.text == "sip:desk@pbx.example.com"
    assert not any("sipHeaders" in w for w in rendered.warnings)


# --- say, reject -----------------------------------------------------------------------------


def test_say_speaks_then_hangs_up() -> None:
    assert texml(Say("We are closed.")) == (
        "Response",
        {},
        None,
        [("Say", {}, "We are closed.", []), ("Hangup", {}, None, [])],
    )


def test_an_empty_say_only_hangs_up() -> None:
    assert texml(Say("")) == ("Response", {}, None, [("Hangup", {}, None, [])])


def test_reject_is_a_lone_reject_verb() -> None:
    """As the first verb, Telnyx does not answer the call (and does not charge)."""
    rendered = render(Reject())
    assert rendered == TelnyxProvider().reject()
    assert tree(parse_texml(rendered.body)) == ("Response", {}, None, [("Reject", {}, None, [])])


# --- escaping --------------------------------------------------------------------------------


def test_markup_in_a_spoken_message_is_spoken_not_run() -> None:
    root = parse_texml(render(Say(INJECTION)).body)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == INJECTION
    assert root.find(".//Dial") is None


def test_markup_in_a_transfer_message_does_not_add_a_dial() -> None:
    outcome = transfer(type="number", number="+14155559999", message=INJECTION)
    root = parse_texml(render(outcome).body)
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root[0].text == INJECTION
    assert [n.text for n in root.iter("Number")] == ["+14155559999"]


def test_quotes_in_a_target_id_cannot_add_attributes_or_parameters() -> None:
    target_id = '" bidirectionalMode="mp3"/><Parameter name="admin" value="1'
    root = parse_texml(render(Connect("assistant", target_id)).body)
    stream_element = root.find("Connect/Stream")
    assert stream_element is not None
    assert set(stream_element.attrib) == {"url", *STREAM_ATTRS}
    assert stream_element.get("bidirectionalMode") == "rtp"
    params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert list(params) == ["callId", "target", "targetId", "phoneNumberId"]
    assert params["targetId"] == target_id


def test_control_characters_are_dropped_from_speech_and_paths() -> None:
    root = parse_texml(render(Say("\x00He\x07llo\ud800\ufffe")).body)
    assert root[0].text == "Hello"
    url = stream_url(render(Connect("assistant", "a\x00b\ud800c")))
    assert path_segments(url)[-1] == "abc"


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_any_spoken_text_stays_one_say(text: str) -> None:
    """Whatever the text, the document is Say (if anything is left to say) then Hangup, and
    the Say holds the text minus what XML cannot carry."""
    root = parse_texml(render(Say(text)).body)
    clean = twiml.xml_clean(text)
    expected = ["Say", "Hangup"] if clean.strip() else ["Hangup"]
    assert [child.tag for child in root] == expected
    if clean.strip():
        assert len(root[0]) == 0
        # XML parsers normalise CR and CRLF line ends to LF in element content.
        assert root[0].text == clean.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=200, deadline=None)
@given(target_id=st.text(min_size=1, max_size=200))
def test_any_target_id_round_trips_through_the_path(target_id: str) -> None:
    url = stream_url(render(Connect("workflow", target_id)))
    assert path_segments(url) == [CALL_SID, "workflow", twiml.xml_clean(target_id)]
