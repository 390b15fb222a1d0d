"""Form bodies and Twilio's signed fields: the C versions in `router._speedups` give exactly
what the Python definitions in `router.providers.forms` give, and those give what the
standard library and twilio-python give."""

from __future__ import annotations

import hmac
import shutil
import sysconfig
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.providers import forms
from router.providers.twilio import _hmac_sha1

try:
    from router import _speedups
except ImportError:  # the tests that need it say so below
    _speedups = None  # type: ignore[assignment]

needs_speedups = pytest.mark.skipif(_speedups is None, reason="router._speedups is not built")

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
    "x=é&y=%C3%A9".encode(),  # not ASCII: the Python path
    b"x=\xff",  # not UTF-8 either
    b"a;b=c",  # `;` is no separator
]


def stdlib(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


@pytest.mark.parametrize("body", FIXED_BODIES)
def test_form_fields_are_what_parse_qsl_gives(body: bytes) -> None:
    """Blank values kept, `+` a space, `%XX` decoded as UTF-8 with errors replaced, a stray
    `%` kept, only `&` separating, only the first `=` splitting a field."""
    assert forms.python_form_pairs(body) == stdlib(body)
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
    assert forms.form_pairs(body) == forms.python_form_pairs(body) == stdlib(body)


@needs_speedups
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=60))
def test_the_c_parser_matches_on_any_bytes_or_leaves_them_to_python(body: bytes) -> None:
    """ASCII bodies are parsed in C, exactly as in Python; any other body is left to Python."""
    pairs = _speedups.form_pairs(body)
    if body.isascii():
        assert pairs == forms.python_form_pairs(body)
    else:
        assert pairs is None


@needs_speedups
def test_the_c_parser_gives_a_short_token_met_before_as_the_same_string() -> None:
    """Names and short values repeat on every webhook: the same objects again (their hash
    known), equal to what a fresh parse gives; long ones (call ids, tokens) are new."""
    long_value = "x" * 25
    first = _speedups.form_pairs(f"To=%2B14155550100&Sid={long_value}".encode())
    again = _speedups.form_pairs(f"To=%2B14155550100&Sid={long_value}".encode())
    assert first == again == [("To", "+14155550100"), ("Sid", long_value)]
    assert again[0][0] is first[0][0] and again[0][1] is first[0][1]
    assert again[1][1] is not first[1][1]


@needs_speedups
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("ab%+2F", min_size=1, max_size=6), min_size=300, max_size=600))
def test_tokens_that_share_a_slot_never_stand_for_each_other(tokens: list[str]) -> None:
    """Hundreds of distinct short tokens (far more than the cache's slots) parsed twice:
    every field reads as Python's parser reads it, whatever the cache held."""
    body = "&".join(f"{t}={t[::-1]}" for t in tokens).encode()
    for _ in range(2):
        assert _speedups.form_pairs(body) == forms.python_form_pairs(body)


@needs_speedups
def test_the_c_parser_takes_only_bytes() -> None:
    with pytest.raises(TypeError, match="takes bytes"):
        _speedups.form_pairs("a=b")  # type: ignore[arg-type]


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
    assert forms.python_signing_fields(pairs) == expected
    assert forms.signing_fields(list(pairs)) == expected


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
    assert forms.signing_fields(pairs) == forms.python_signing_fields(pairs) == expected


@needs_speedups
def test_signing_fields_leave_the_callers_list_as_it_was() -> None:
    pairs = [("b", "2"), ("a", "1"), ("b", "1"), ("a", "1")]
    assert _speedups.signing_fields(pairs) == b"a1b1b2"
    assert pairs == [("b", "2"), ("a", "1"), ("b", "1"), ("a", "1")]


class _Shifty(str):
    """A str whose equality answers differently each time it is asked."""

    asked = 0

    def __eq__(self, other: object) -> bool:
        _Shifty.asked += 1
        return _Shifty.asked % 2 == 0

    __hash__ = str.__hash__


@needs_speedups
@pytest.mark.parametrize(
    "bad",
    [
        ("a", "b"),
        [("a",)],
        [("a", 1)],
        [["a", "b"]],
        [("a", "\udcff")],
        [(_Shifty("b"), "x" * 4000)] * 50 + [("a", "1")],  # no Python code runs in between
        [("a", _Shifty("1"))],
    ],
    ids=repr,
)
def test_signing_fields_refuse_what_is_no_list_of_string_pairs(bad: object) -> None:
    """Wrong shapes are a TypeError, a string UTF-8 cannot encode the same UnicodeEncodeError
    `str.encode` raises: never a crash."""
    with pytest.raises((TypeError, UnicodeEncodeError)):
        _speedups.signing_fields(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128])
@pytest.mark.parametrize("char", ["k", "é", "€"])
def test_hmac_sha1_keys_about_one_block_long(size: int, char: str) -> None:
    """Keys just under, at and over SHA-1's 64-byte block (hashed first when over), in
    characters of one, two and three UTF-8 bytes."""
    key = char * size
    assert _hmac_sha1(key, b"message") == hmac.digest(key.encode(), b"message", "sha1")


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=100), message=st.binary(max_size=300))
def test_hmac_sha1_from_started_pads_is_the_standard_hmac(key: str, message: bytes) -> None:
    """Tokens of any length (past SHA-1's 64-byte block too), any message."""
    assert _hmac_sha1(key, message) == hmac.digest(key.encode(), message, "sha1")


def _can_build_extensions() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "").split()
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return bool(compiler) and shutil.which(compiler[0]) is not None and headers.exists()


@pytest.mark.skipif(not _can_build_extensions(), reason="no C compiler or Python headers here")
def test_the_speedups_are_built_where_they_can_be() -> None:
    """Where a compiler and Python's headers are present the install builds the C module:
    a silent fallback would leave every webhook on the slower path."""
    assert forms.SPEEDUPS
    assert forms.signing_fields is _speedups.signing_fields
