"""Router's `call.ringing` extensions on the wire (SPEC §12): accepted on create and PATCH,
returned exactly as sent, and refused with a 400 naming the field when invalid."""

from __future__ import annotations

import copy
import itertools
from datetime import date, timedelta
from typing import Any

import pytest

from .conftest import ROUTER_RINGING_HOOK, Api, expect, rejected, twilio_body

_numbers = itertools.count(2000)
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def fresh_number() -> str:
    return f"+1415555{next(_numbers):04d}"


def with_filter(ringing_filter: dict[str, Any], **hook: Any) -> dict[str, Any]:
    """A number body's `hooks`: one ringing hook with this filter."""
    found = {"on": "call.ringing", "filters": [ringing_filter], "do": [{"type": "reject"}]}
    return {"hooks": [found | hook]}


def callers(numbers: Any) -> dict[str, Any]:
    return with_filter({"type": "oneOf", "key": "number", "oneOf": numbers})


def levels(values: Any) -> dict[str, Any]:
    return with_filter({"type": "oneOf", "key": "attestation", "oneOf": values})


def schedule(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "schedule",
        "timeZone": "America/New_York",
        "weekly": [{"days": ["mon"], "from": "09:00", "to": "17:00"}],
        "match": "inside",
    }
    body.update(fields)
    return with_filter({k: v for k, v in body.items() if v is not None})


def window(**fields: Any) -> dict[str, Any]:
    return schedule(weekly=[{"days": ["mon"], "from": "09:00", "to": "17:00", **fields}])


def days(count: int) -> list[str]:
    """`count` consecutive dates from 2026-01-01."""
    return [str(date(2026, 1, 1) + timedelta(days=n)) for n in range(count)]


F = "hooks[0].filters[0]"
PREFIX = {"type": "startsWith", "key": "number", "startsWith": ["1"]}

# (case, fields added to a valid twilio body, fragment of the 400's message)
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # the filter's own kind
    ("unknown type", with_filter({"type": "regex"}), f"{F}.type must be one of"),
    (
        "unknown oneOf key",
        with_filter({"type": "oneOf", "key": "country", "oneOf": ["US"]}),
        f"{F}.key must be one of the following values: 'number', 'attestation'",
    ),
    (
        "ending reasons on a ringing hook",
        with_filter({"type": "oneOf", "key": "call.endedReason", "oneOf": ["x"]}),
        f"{F}.key must be one of",
    ),
    ("no key", with_filter({"type": "oneOf", "oneOf": ["A"]}), f"{F}.key is required"),
    # exact callers
    ("caller without +", callers(["14155550100"]), f"{F}.oneOf[0]: must be a phone number"),
    ("caller with spaces", callers(["+1 415 555 0100"]), f"{F}.oneOf[0]: must be a phone"),
    ("caller too long", callers(["+1234567890123456"]), f"{F}.oneOf[0]: must be a phone"),
    ("caller not ASCII", callers(["+١٤١٥٥٥٥٠١٠٠"]), f"{F}.oneOf[0]: must be a phone"),
    ("caller not a string", callers([14155550100]), f"{F}.oneOf[0] must be a string"),
    ("callers empty", callers([]), f"{F}.oneOf must contain at least 1 elements"),
    (
        "1001 callers",
        callers([f"+1415{n:07d}" for n in range(1001)]),
        f"{F}.oneOf must contain no more than 1000 elements",
    ),
    ("caller twice", callers(["+14155550100"] * 2), "oneOf lists +14155550100 twice"),
    ("callers missing", with_filter({"type": "oneOf", "key": "number"}), f"{F}.oneOf is required"),
    # attestation
    ("level D", levels(["D"]), f"{F}.oneOf[0] must be one of the following values: 'A'"),
    ("level lower case", levels(["a"]), f"{F}.oneOf[0] must be one of"),
    ("verstat as a level", levels(["TN-Validation-Passed-A"]), f"{F}.oneOf[0] must be one of"),
    ("levels empty", levels([]), f"{F}.oneOf must contain at least 1 elements"),
    ("level twice", levels(["A", "A"]), f"{F}.oneOf: lists A twice"),
    ("levels not a list", levels("A"), f"{F}.oneOf must be an array"),
    # schedule
    ("unknown zone", schedule(timeZone="Mars/Olympus"), f"{F}.timeZone: 'Mars/Olympus' is not"),
    ("zone as a path", schedule(timeZone="/etc/localtime"), f"{F}.timeZone: '/etc/localtime'"),
    ("zone as an offset", schedule(timeZone="+05:00"), f"{F}.timeZone: '+05:00' is not"),
    ("empty zone", schedule(timeZone=""), f"{F}.timeZone must be longer than or equal to 1"),
    ("zone 65", schedule(timeZone="A" * 65), f"{F}.timeZone must be shorter than or equal to 64"),
    ("no zone", schedule(timeZone=None), f"{F}.timeZone is required"),
    ("no match", schedule(match=None), f"{F}.match is required"),
    ("match", schedule(match="during"), f"{F}.match must be one of the following values"),
    ("no weekly", schedule(weekly=None), f"{F}.weekly is required"),
    ("weekly empty", schedule(weekly=[]), f"{F}.weekly must contain at least 1 elements"),
    (
        "51 windows",
        schedule(weekly=[{"days": ["mon"], "from": "09:00", "to": "10:00"}] * 51),
        f"{F}.weekly must contain no more than 50 elements",
    ),
    ("day name", window(days=["monday"]), f"{F}.weekly[0].days[0] must be one of"),
    ("day capitalised", window(days=["Mon"]), f"{F}.weekly[0].days[0] must be one of"),
    ("day twice", window(days=["mon", "tue", "mon"]), f"{F}.weekly[0].days: lists mon twice"),
    ("days empty", window(days=[]), f"{F}.weekly[0].days must contain at least 1 elements"),
    ("from H:MM", window(**{"from": "9:00"}), f"{F}.weekly[0].from: must be a local time HH:MM"),
    (
        "from 24:00",
        window(**{"from": "24:00"}),
        "from: must be a local time HH:MM from 00:00 to 23",
    ),
    ("from 12:60", window(**{"from": "12:60"}), f"{F}.weekly[0].from: must be a local time"),
    ("from 09:00:00", window(**{"from": "09:00:00"}), f"{F}.weekly[0].from: must be a local"),
    ("from a number", window(**{"from": 900}), f"{F}.weekly[0].from must be a string"),
    ("to 24:01", window(to="24:01"), f"{F}.weekly[0].to: must be a local time HH:MM from 00:00"),
    ("to 25:00", window(to="25:00"), f"{F}.weekly[0].to: must be a local time"),
    ("to 5pm", window(to="5pm"), f"{F}.weekly[0].to: must be a local time"),
    ("from == to", window(to="09:00"), f"{F}.weekly[0]: from and to are both 09:00"),
    ("no from", schedule(weekly=[{"days": ["mon"], "to": "17:00"}]), "weekly[0].from is required"),
    ("window key", window(open=True), f"property {F}.weekly[0].open should not exist"),
    ("date format", schedule(exceptDates=["25/12/2026"]), f"{F}.exceptDates[0]: must be a date"),
    ("no such date", schedule(exceptDates=["2026-02-30"]), f"{F}.exceptDates[0]: must be a date"),
    ("date and time", schedule(exceptDates=["2026-12-25T00:00"]), "exceptDates[0]: must be a"),
    ("date twice", schedule(exceptDates=["2026-12-25"] * 2), "exceptDates lists 2026-12-25 twice"),
    (
        "501 dates",
        schedule(exceptDates=days(501)),
        f"{F}.exceptDates must contain no more than 500 elements",
    ),
    ("filter key", schedule(holidays=[]), f"property {F}.holidays should not exist"),
    # the reject action
    (
        "reject with a field",
        with_filter(PREFIX, do=[{"type": "reject", "status": 486}]),
        "property hooks[0].do[0].status should not exist",
    ),
    (
        "action type",
        with_filter(PREFIX, do=[{"type": "hangup"}]),
        "hooks[0].do[0].type must be one of the following values: 'transfer', 'say', 'reject'",
    ),
    (
        "reject on call.ending",
        {"hooks": [{"on": "call.ending", "do": {"type": "reject"}}]},
        "hooks[0].do.type must be one of the following values: 'transfer', 'say'",
    ),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("1000 callers", callers([f"+1415{n:07d}" for n in range(1000)])),
    ("shortest and longest E.164", callers(["+123", "+123456789012345"])),
    ("every level", levels(["A", "B", "C", "failed", "none"])),
    ("the whole day", window(**{"from": "00:00", "to": "24:00"})),
    ("across midnight", window(**{"from": "23:59", "to": "00:00"})),
    ("every day", window(days=EVERY_DAY)),
    ("50 windows", schedule(weekly=[{"days": ["mon"], "from": "09:00", "to": "10:00"}] * 50)),
    ("500 dates", schedule(exceptDates=days(500))),
    ("no dates", schedule(exceptDates=[])),
    ("UTC", schedule(timeZone="UTC")),
    ("zone 64", schedule(timeZone="America/Argentina/ComodRivadavia")),
    ("leap day", schedule(exceptDates=["2028-02-29"])),
    ("reject without filters", {"hooks": [{"on": "call.ringing", "do": [{"type": "reject"}]}]}),
]


async def test_invalid_extension_fields_are_refused_naming_them(api: Api) -> None:
    """Each out-of-bounds or ill-formed extension field is a 400 saying what is wrong; on
    create and on PATCH, which leaves the number as it was."""
    created = await api.create_number(twilio_body(fresh_number()))
    path = f"/phone-number/{created['id']}"
    for case, fields, fragment in REFUSED:
        reply = await api.post("/phone-number", twilio_body(fresh_number(), **fields))
        assert fragment in rejected(reply), f"{case}: {reply.text}"
        reply = await api.patch(path, fields)
        assert fragment in rejected(reply), f"PATCH {case}: {reply.text}"
    assert expect(await api.get(path), 200) == created
    assert len(await api.list_numbers()) == 1


async def test_the_bounds_themselves_are_accepted(api: Api) -> None:
    """1000 callers, 50 windows, 500 dates, `24:00`, every level... are a 201 and a 200."""
    created = await api.create_number(twilio_body(fresh_number()))
    for case, fields in ACCEPTED:
        reply = await api.post("/phone-number", twilio_body(fresh_number(), **fields))
        assert reply.status == 201, f"{case}: {reply.text}"
        assert reply.body["hooks"] == fields["hooks"], case
        reply = await api.patch(f"/phone-number/{created['id']}", fields)
        assert reply.status == 200, f"PATCH {case}: {reply.text}"


async def test_extensions_are_returned_exactly_as_sent(api: Api) -> None:
    """Create, GET, list and PATCH return the filters and the action in camelCase, exactly
    as sent (the same order, `from`/`to` and dates as written, no defaults added)."""
    hooks = [copy.deepcopy(ROUTER_RINGING_HOOK)]
    created = await api.create_number(twilio_body(fresh_number(), hooks=hooks))
    assert created["hooks"] == hooks
    path = f"/phone-number/{created['id']}"
    assert expect(await api.get(path), 200)["hooks"] == hooks
    assert (await api.list_numbers())[0]["hooks"] == hooks

    changed = copy.deepcopy(hooks)
    changed[0]["filters"][3]["match"] = "inside"
    changed[0]["filters"][3].pop("exceptDates")
    changed[0]["do"] = [{"type": "say", "exact": "Open now."}]
    patched = expect(await api.patch(path, {"hooks": changed}), 200)
    assert patched["hooks"] == changed
    assert expect(await api.get(path), 200)["hooks"] == changed


@pytest.mark.parametrize("backend", ["embedded"])
async def test_extensions_survive_a_restart(api: Api, start_api: Any) -> None:
    """The stored number reads back with its extensions (validated again when loaded)."""
    hooks = [copy.deepcopy(ROUTER_RINGING_HOOK)]
    created = await api.create_number(twilio_body(fresh_number(), hooks=hooks))
    await api.client.close()
    again = await start_api()
    assert expect(await again.get(f"/phone-number/{created['id']}"), 200)["hooks"] == hooks
