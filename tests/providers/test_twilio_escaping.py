"""User-supplied strings cannot change a TwiML document's structure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.pipeline.decision import Connect, Decision, Outcome, Say, Transfer, parse_destination
from router.providers import twiml
from router.providers.plugin import RenderContext, Rendered
from router.providers.twilio import TwilioProvider

from .conftest import CALL_SID, RUNTIME_URL, make_call, make_number, parse_twiml

INJECTION = "</Say><Dial>+19005551234</Dial><Say>"
CTX = RenderContext(runtime_url=RUNTIME_URL, call_id=CALL_SID, public_base="")


def render(outcome: Outcome, **call: Any) -> Rendered:
    decision = Decision(outcome=outcome, route="say", ended_reason=None, trace=())
    return TwilioProvider().render(decision, make_call(**call), make_number(), CTX)


def parse(rendered: Rendered) -> ET.Element:
    return parse_twiml(rendered.body)


def test_markup_in_a_spoken_message_is_spoken_not_run() -> None:
    """A message holding `</Say><Dial>…` stays one <Say> whose text is exactly that message."""
    root = parse(render(Say(INJECTION)))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == INJECTION
    assert root.find(".//Dial") is None


def test_markup_in_a_transfer_message_does_not_add_a_dial() -> None:
    outcome = Transfer.to(
        parse_destination({"type": "number", "number": "+14155559999", "message": INJECTION})
    )
    root = parse(render(outcome))
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root[0].text == INJECTION
    assert [n.text for n in root.iter("Number")] == ["+14155559999"]


def test_quotes_in_an_attribute_cannot_add_parameters() -> None:
    """A target id built to close the attribute stays one Parameter value."""
    target_id = '"/><Parameter name="admin" value="1'
    root = parse(render(Connect("assistant", target_id)))
    params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert list(params) == ["callId", "target", "targetId", "phoneNumberId"]
    assert params["targetId"] == target_id


def test_ampersands_and_angle_brackets_round_trip() -> None:
    text = 'Tom & Jerry\'s <b>"café"</b> ]]> &amp;'
    root = parse(render(Say(text)))
    assert root[0].text == text


def test_control_characters_are_dropped_tabs_and_newlines_kept() -> None:
    """XML 1.0 cannot carry C0 controls (save tab, LF, CR), lone surrogates or U+FFFE/FFFF."""
    root = parse(render(Say("\x00He\x07llo\x1b\tthere\nfriend\ud800\ufffe\uffff")))
    assert root[0].text == "Hello\tthere\nfriend"


def test_only_control_characters_is_a_silent_say() -> None:
    root = parse(render(Say("\x00\x01\x02")))
    assert [child.tag for child in root] == ["Hangup"]


def test_line_breaks_in_attributes_survive_as_character_references() -> None:
    value = "line1\nline2\r\tend"
    root = parse(render(Connect("assistant", value)))
    params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert params["targetId"] == value


def test_caller_id_literal_is_escaped() -> None:
    destination = {
        "type": "number",
        "number": "+14155559999",
        "callerId": '"><Hangup/>',
        "message": "",
    }
    root = parse(render(Transfer.to(parse_destination(destination))))
    dial = root.find("Dial")
    assert dial is not None
    assert dial.get("callerId") == '"><Hangup/>'
    assert [child.tag for child in root] == ["Dial"]


def test_sip_header_values_cannot_break_out_of_the_uri() -> None:
    """Header values are URL-encoded into the URI, then the URI is XML-escaped."""
    destination = {
        "type": "sip",
        "sipUri": "sip:a@b.example",
        "sipHeaders": {"x-note": "</Sip><Number>+19005551234</Number>&x-admin=1"},
        "message": "",
    }
    root = parse(render(Transfer.to(parse_destination(destination))))
    sips = list(root.iter("Sip"))
    assert len(sips) == 1
    assert root.find(".//Number") is None
    assert sips[0].text == (
        "sip:a@b.example?x-note=%3C%2FSip%3E%3CNumber%3E%2B19005551234%3C%2FNumber%3E%26x-admin%3D1"
    )


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_renders_as_one_say_or_none(text: str) -> None:
    """Whatever the text, the document parses and speaks exactly its XML-safe characters."""
    root = parse(render(Say(text)))
    clean = twiml.xml_clean(text)
    if clean.strip():
        assert [child.tag for child in root] == ["Say", "Hangup"]
        assert root[0].text == clean.replace("\r\n", "\n").replace("\r", "\n")
    else:
        assert [child.tag for child in root] == ["Hangup"]


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=200))
def test_any_attribute_value_round_trips(value: str) -> None:
    root = parse(render(Connect("assistant", value)))
    params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert params["targetId"] == twiml.xml_clean(value)
