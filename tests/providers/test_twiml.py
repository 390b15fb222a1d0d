"""TwiML escaping: every value escaped the same whether its escaped form was kept or not."""

from __future__ import annotations

from router.providers import twiml


def test_attribute_escaping_is_the_same_for_short_kept_and_long_values() -> None:
    unsafe = 'a&b<c>"d\te\nf\rg\x00h'
    expected = "a&amp;b&lt;c&gt;&quot;d&#9;e&#10;f&#13;gh"
    assert twiml.xml_attr(unsafe) == expected
    assert twiml.xml_attr(unsafe) == expected  # the kept form
    long_value = unsafe * 100  # over the kept size: escaped every time, never kept
    before = twiml._attr_kept.cache_info().currsize
    assert twiml.xml_attr(long_value) == expected * 100
    assert twiml._attr_kept.cache_info().currsize == before


def test_clean_drops_what_xml_cannot_carry_at_any_length() -> None:
    assert twiml.xml_clean("ok\x01\ufffe!") == "ok!"
    assert twiml.xml_clean("x\x0b" * 300) == "x" * 300
