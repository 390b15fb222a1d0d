"""TwiML escaping: markup, quotes and what XML 1.0 cannot carry, at any length."""

from __future__ import annotations

from router.providers import twiml


def test_attribute_escaping_covers_markup_quotes_and_whitespace_at_any_length() -> None:
    unsafe = 'a&b<c>"d\te\nf\rg\x00h'
    expected = "a&amp;b&lt;c&gt;&quot;d&#9;e&#10;f&#13;gh"
    assert twiml.xml_attr(unsafe) == expected
    assert twiml.xml_attr(unsafe * 100) == expected * 100


def test_text_escaping_leaves_quotes_and_drops_forbidden_characters() -> None:
    assert twiml.xml_text('say "<hi>" & bye\x00') == 'say "&lt;hi&gt;" &amp; bye'
    assert twiml.xml_text("plain") == "plain"


def test_clean_drops_what_xml_cannot_carry_at_any_length() -> None:
    assert twiml.xml_clean("ok\x01\ufffe!") == "ok!"
    assert twiml.xml_clean("x\x0b" * 300) == "x" * 300
