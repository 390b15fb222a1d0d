"""Form bodies and Twilio's signed fields: what the standard library and twilio-python give."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from router.providers import forms
from router.providers.twilio import compute_signature

FIXED_BODIES = [
    b"",
    b"&",
    b"&&a=1&&",
    b"a",
    b"a=",
    b"=",
    b"=b",
    b"a=1&a=2&a=1",
    b"a=b=c",
    b"a+b=c+d",
    b"a%2Bb=c%2bd",
    b"%",
    b"%2",
    b"%%41",
    b"a=%zz%4",
    b"To=%2B14155550100&From=%2B14155550123",
    b"x=%C3%A9",  # an escaped UTF-8 character
    b"x=%C3",  # half of one: replaced
    b"x=%FF%FE",
    b"x=%00\x00",
    b"CallToken=%7B%22parentCallInfoToken%22%3A%22eyJ%22%7D",
    "x=é&y=%C3%A9".encode(),  # not ASCII
    b"x=\xff",  # not UTF-8 either
    b"a;b=c",  # `;` is no separator
]


def stdlib(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


@pytest.mark.parametrize("body", FIXED_BODIES)
def test_form_fields_are_what_parse_qsl_gives(body: bytes) -> None:
    """Blank values kept, `+` a space, `%XX` decoded as UTF-8 with errors replaced, a stray
    `%` kept, only `&` separating, only the first `=` splitting a field."""
    assert forms.form_pairs(body) == stdlib(body)


# Characters that exercise every branch: separators, escapes (good, bad, partial),
# plus signs, NUL, non-ASCII and characters that are not valid on their own.
_FORM_TEXT = st.text(
    st.sampled_from([*"ab=&%+2FfC3A9Zz;\x00 ", "é", "€", "\udcff", "😀"]), max_size=40
)


@settings(max_examples=2000, deadline=None)
@given(_FORM_TEXT)
def test_form_fields_match_parse_qsl_on_generated_bodies(text: str) -> None:
    body = text.encode("utf-8", errors="surrogateescape")
    assert forms.form_pairs(body) == stdlib(body)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_parse_as_parse_qsl_reads_them_without_raising(body: bytes) -> None:
    """Whatever a client sends is read, never refused by the parser: a 403 later, not a 500."""
    assert forms.form_pairs(body) == stdlib(body)


_PAIRS = st.lists(
    st.tuples(
        st.text(st.sampled_from([*"ABab1", "é"]), max_size=3),
        st.text(st.sampled_from([*"xy+ ", "€"]), max_size=3),
    ),
    max_size=10,
)


@settings(max_examples=2000, deadline=None)
@given(_PAIRS)
def test_signing_fields_sort_by_name_then_value_and_take_each_pair_once(
    pairs: list[tuple[str, str]],
) -> None:
    """twilio-python's rule: names sorted, a name's values sorted and de-duplicated."""
    by_name: dict[str, set[str]] = {}
    for name, value in pairs:
        by_name.setdefault(name, set()).add(value)
    expected = "".join(n + v for n in sorted(by_name) for v in sorted(by_name[n])).encode()
    assert forms.signing_fields(pairs) == expected


# Any text UTF-8 can encode (no lone surrogates).
_ENCODABLE = st.text(st.characters(exclude_categories=["Cs"]), max_size=4)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_ENCODABLE, _ENCODABLE, max_size=12))
def test_signing_fields_of_fields_sent_in_order_are_the_fields_in_order(
    fields: dict[str, str],
) -> None:
    """What providers send (names sorted, each once) is signed as sent."""
    pairs = sorted(fields.items())
    expected = "".join(name + value for name, value in pairs).encode()
    assert forms.signing_fields(pairs) == expected


def test_signing_fields_leave_the_callers_list_as_it_was() -> None:
    pairs = [("b", "2"), ("a", "1"), ("b", "1"), ("a", "1")]
    assert forms.signing_fields(pairs) == b"a1b1b2"
    assert pairs == [("b", "2"), ("a", "1"), ("b", "1"), ("a", "1")]


_URL = "https://router.example.com/twilio/voice"


@settings(max_examples=500, deadline=None)
@given(
    token=st.text(st.characters(exclude_categories=["Cs"]), max_size=100),
    pairs=st.lists(st.tuples(_ENCODABLE, _ENCODABLE), max_size=12),
)
def test_a_parsed_form_is_signed_as_twilio_python_signs_its_fields(
    token: str, pairs: list[tuple[str, str]]
) -> None:
    """A form body sent, parsed and signed gives twilio-python's signature over the fields
    it was made from, with tokens of any length (past SHA-1's 64-byte block too)."""
    parsed = MultiDict(forms.form_pairs(urlencode(pairs).encode()))
    expected = RequestValidator(token).compute_signature(_URL, MultiDict(pairs))
    assert compute_signature(token, _URL, parsed) == expected


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128])
@pytest.mark.parametrize("char", ["k", "é", "€"])
def test_tokens_about_one_sha1_block_long_sign_as_twilio_python(size: int, char: str) -> None:
    """Tokens just under, at and over SHA-1's 64-byte block (hashed first when over), in
    characters of one, two and three UTF-8 bytes."""
    token = char * size
    params = MultiDict([("To", "+14155550100"), ("CallSid", "CA1")])
    expected = RequestValidator(token).compute_signature(_URL, params)
    assert compute_signature(token, _URL, params) == expected
