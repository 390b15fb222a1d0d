"""Form bodies: their fields, and the part of them a Twilio signature covers.

Both run on every form webhook, so each has a C version in `router._speedups` (built
when the package is installed, if a C compiler is there). The functions here named
`python_*` are the definitions: the C versions must give exactly what they give, and
are used only when they were built (`SPEEDUPS` says whether they were). The tests run
both on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final
from urllib.parse import unquote

Pair = tuple[str, str]


def python_form_pairs(body: bytes) -> list[Pair]:
    """The fields of a form body, blank values kept (providers sign them too).

    Exactly `parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)`: the
    same split and the same unquoting, with short escaped tokens (numbers, cities)
    unquoted once per process.
    """
    text = body.decode("utf-8", errors="replace")
    fields: list[Pair] = []
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            # Most tokens have nothing to decode: they are kept without a call.
            if "%" in name or "+" in name:
                name = _form_token(name)
            if "%" in value or "+" in value:
                value = _form_token(value)
            fields.append((name, value))
    return fields


# Longer tokens are unquoted every time: the cache holds at most this many short strings.
_CACHED_TOKEN_CHARS: Final = 128


def _form_token(raw: str) -> str:
    """`unquote(raw.replace("+", " "), "utf-8", "replace")`, as parse_qsl decodes a token."""
    if "%" not in raw:
        return raw.replace("+", " ") if "+" in raw else raw
    if len(raw) <= _CACHED_TOKEN_CHARS:
        return _unquote_cached(raw)
    return unquote(raw.replace("+", " "), encoding="utf-8", errors="replace")


@lru_cache(maxsize=4096)
def _unquote_cached(raw: str) -> str:
    return unquote(raw.replace("+", " "), encoding="utf-8", errors="replace")


def python_signing_fields(pairs: Sequence[Pair]) -> bytes:
    """What follows the URL in the string a Twilio signature covers, in UTF-8: the
    fields sorted by name and then value, a pair sent twice taken once, each written as
    name + value (twilio-python's rule: a name's values sorted and de-duplicated)."""
    ordered = sorted(pairs)
    if len(set(ordered)) != len(ordered):
        ordered = sorted(set(ordered))
    return "".join(name + value for name, value in ordered).encode()


def _python_form_pairs_or_none(body: bytes) -> list[Pair] | None:
    return python_form_pairs(body)


_form_pairs: Callable[[bytes], list[Pair] | None]
signing_fields: Callable[[list[Pair]], bytes]
try:
    from router import _speedups
except ImportError:  # not built (no C compiler where the package was installed)
    SPEEDUPS = False
    _form_pairs, signing_fields = _python_form_pairs_or_none, python_signing_fields
else:
    SPEEDUPS = True
    _form_pairs, signing_fields = _speedups.form_pairs, _speedups.signing_fields


def form_pairs(body: bytes) -> list[Pair]:
    """`python_form_pairs(body)`, from C when it is built and the body is ASCII."""
    pairs = _form_pairs(body)
    return python_form_pairs(body) if pairs is None else pairs
