"""Form bodies: their fields, and the part of them a Twilio signature covers."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from itertools import chain

from yarl import query_to_pairs

Pair = tuple[str, str]


def form_pairs(body: bytes) -> list[Pair]:
    """The fields of a form body, in order, blank values kept (providers sign them too).

    Exactly `parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)`, taken
    from yarl (aiohttp's URL library), which unquotes in compiled code: parse_qsl took
    three times as long on every form webhook. Bytes that are not UTF-8, in the body or
    in its `%XX` escapes, become U+FFFD: such a field then fails the signature like any
    altered one, never the request's parsing.
    """
    return query_to_pairs(body.decode("utf-8", errors="replace"))


def signing_fields(pairs: Iterable[Pair]) -> bytes:
    """What follows the URL in the string a Twilio signature covers, in UTF-8: the
    fields sorted by name and then value, a pair sent twice taken once, each written as
    name + value (twilio-python's rule: a name's values sorted and de-duplicated)."""
    ordered = sorted(pairs)  # providers send forms sorted, or nearly: a cheap sort
    if any(map(operator.eq, ordered, ordered[1:])):  # sorted, a repeated pair is adjacent
        ordered = sorted(set(ordered))
    return "".join(chain.from_iterable(ordered)).encode()
