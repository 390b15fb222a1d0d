"""Router's `call.ringing` extensions (SPEC §12) through `decide`: exact caller lists,
attestation, weekly schedules (their edges, midnight, DST, excepted dates) and `reject`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from router.models.common import Server
from router.models.phone_numbers import AnyPhoneNumber
from router.models.ringing import Attestation
from router.pipeline import decision as d
from router.pipeline.decide import AssistantRequestResult, decide
from router.pipeline.decision import Connect, Decision, Reject, Say
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import WebhookRequest
from router.providers.twilio import TwilioProvider

from .helpers import CALLER, make_call, make_number

APOLOGY = "Sorry."
NEW_YORK = "America/New_York"
CLOSED = "We are closed."


async def never_asked(
    server: Server, number: AnyPhoneNumber, call: InboundCall
) -> AssistantRequestResult:
    raise AssertionError("a ringing hook decision sends no assistant-request")


def at(moment: str) -> float:
    """Epoch seconds of an ISO 8601 time with its offset."""
    return datetime.fromisoformat(moment).timestamp()


def schedule(
    *windows: tuple[list[str], str, str],
    match: str = "outside",
    zone: str = NEW_YORK,
    except_dates: list[str] | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": "schedule",
        "timeZone": zone,
        "weekly": [{"days": days, "from": start, "to": end} for days, start, end in windows],
        "match": match,
    }
    if except_dates is not None:
        found["exceptDates"] = except_dates
    return found


def callers(*numbers: str) -> dict[str, Any]:
    return {"type": "oneOf", "key": "number", "oneOf": list(numbers)}


def levels(*values: str) -> dict[str, Any]:
    return {"type": "oneOf", "key": "attestation", "oneOf": list(values)}


def hook(*filters: dict[str, Any], do: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "on": "call.ringing",
        "filters": list(filters),
        "do": [do or {"type": "say", "exact": CLOSED}],
    }


def reads(level: Attestation) -> Any:
    """An attestation reader that reports `level`, as a provider's parse would."""
    return lambda _params: level


async def decided(
    *hooks: dict[str, Any], when: str = "2026-06-03T12:00:00-04:00", **call: Any
) -> Decision:
    """The decision for a call at `when` to a number with these hooks, else assistant a1."""
    number = make_number(hooks=list(hooks), assistantId="a1")
    decision = await decide(
        number,
        make_call(wall_time=at(when), **call),
        org_server=None,
        assistant_request=never_asked,
        apology=APOLOGY,
    )
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
    return decision


async def fires(filter_: dict[str, Any], when: str, **call: Any) -> bool:
    """Whether a hook with this one filter fires for a call at `when`."""
    decision = await decided(hook(filter_), when=when, **call)
    return decision.outcome == Say(CLOSED)


async def schedule_state(filter_: dict[str, Any], when: str) -> str:
    """The schedule's state at `when` as the trace shows it (`open`, `closed`, `excepted`)."""
    decision = await decided(hook(filter_), when=when)
    step = decision.trace[0]
    assert step.startswith("hooks.ringing:filter[0.0]:schedule:"), step
    return step.split(":")[3].split("@")[0]


# --- exact callers ------------------------------------------------------------------------


async def test_a_listed_caller_matches_and_the_trace_names_the_filter() -> None:
    """`oneOf` on `number` compares the caller in E.164; the trace shows the filter."""
    decision = await decided(hook(callers("+14155550999", CALLER)))
    assert decision.outcome == Say(CLOSED)
    assert list(decision.trace) == [
        "hooks.ringing:filter[0.0]:oneOf:number:matched",
        "hooks.ringing:matched[0]",
        "say",
    ]


async def test_an_unlisted_caller_does_not_match() -> None:
    """Another caller, even one sharing a prefix, is not on the list."""
    decision = await decided(hook(callers("+1415555012")))
    assert decision.outcome == Connect("assistant", "a1")
    assert list(decision.trace) == [
        "hooks.ringing:filter[0.0]:oneOf:number:unmatched",
        "hooks.ringing:unmatched[0]",
        "assistantId",
    ]


async def test_a_caller_sent_without_its_plus_is_compared_in_e164() -> None:
    """A provider's digits-only caller (Vonage's form) is the same E.164 number."""
    assert await fires(callers(CALLER), "2026-06-03T12:00:00Z", from_number=CALLER[1:])


@pytest.mark.parametrize("withheld", ["anonymous", "", "restricted", "+"])
async def test_a_withheld_caller_matches_no_caller_list(withheld: str) -> None:
    """A withheld caller matches none of the numbers."""
    assert not await fires(callers(CALLER), "2026-06-03T12:00:00Z", from_number=withheld)


# --- attestation --------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["A", "B", "C", "failed", "none"])
async def test_the_attestation_filter_matches_the_listed_levels(level: Attestation) -> None:
    """Each level matches a list naming it and no list without it; the trace shows it."""
    others = [v for v in ("A", "B", "C", "failed", "none") if v != level]
    decision = await decided(hook(levels(level)), attestation_reader=reads(level))
    assert decision.outcome == Say(CLOSED)
    assert decision.trace[0] == f"hooks.ringing:filter[0.0]:oneOf:attestation={level}:matched"
    decision = await decided(hook(levels(*others)), attestation_reader=reads(level))
    assert decision.outcome == Connect("assistant", "a1")
    assert decision.trace[0] == f"hooks.ringing:filter[0.0]:oneOf:attestation={level}:unmatched"


async def test_a_call_whose_provider_reports_no_attestation_is_none() -> None:
    """No reader (Vonage, a simulated call) is `none`: screened by a list naming `none`."""
    assert await fires(levels("none"), "2026-06-03T12:00:00Z")
    assert not await fires(levels("A", "B"), "2026-06-03T12:00:00Z")


@pytest.mark.parametrize(
    "verstat", ["TN-Validation-Passed-Z", "Passed", "TN-Validation-Passed-A-Diverted", "  "]
)
async def test_an_unknown_attestation_in_a_webhook_is_none(verstat: str) -> None:
    """A `StirVerstat` router does not know, parsed from a Twilio webhook, is decided as
    `none`: a hook screening `none` catches it, one listing the levels does not."""
    body = urlencode(
        {"CallSid": "CA1", "From": CALLER, "To": "+14155550100", "StirVerstat": verstat}
    )
    req = WebhookRequest.create(
        method="POST",
        url="https://router.example.com/twilio/voice",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body.encode(),
        received_at=0.0,
        wall_time=at("2026-06-03T12:00:00Z"),
    )
    call = TwilioProvider().parse(req)
    number = make_number(hooks=[hook(levels("none"))], assistantId="a1")
    decision = await decide(
        number, call, org_server=None, assistant_request=never_asked, apology=APOLOGY
    )
    assert decision.trace[0] == "hooks.ringing:filter[0.0]:oneOf:attestation=none:matched"


# --- schedules ----------------------------------------------------------------------------

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-06-03T08:59:59-04:00", "closed"),  # a Wednesday, the second before it opens
        ("2026-06-03T09:00:00-04:00", "open"),  # `from` is inclusive
        ("2026-06-03T16:59:59-04:00", "open"),
        ("2026-06-03T17:00:00-04:00", "closed"),  # `to` is exclusive
        ("2026-06-06T12:00:00-04:00", "closed"),  # Saturday
        ("2026-06-03T13:00:00Z", "open"),  # 09:00 in New York: the zone's clock decides
        ("2026-06-03T12:59:00Z", "closed"),
    ],
)
async def test_a_window_opens_on_its_first_minute_and_closes_on_its_last(
    when: str, state: str
) -> None:
    """09:00 to 17:00 is open from 09:00:00 to 16:59:59, local time."""
    assert await schedule_state(schedule((WEEKDAYS, "09:00", "17:00")), when) == state


async def test_match_outside_fires_when_closed_and_inside_when_open() -> None:
    """`match` says which side of the schedule the hook fires on."""
    open_at, closed_at = "2026-06-03T10:00:00-04:00", "2026-06-03T18:00:00-04:00"
    outside = schedule((WEEKDAYS, "09:00", "17:00"), match="outside")
    inside = schedule((WEEKDAYS, "09:00", "17:00"), match="inside")
    assert (await fires(outside, closed_at), await fires(outside, open_at)) == (True, False)
    assert (await fires(inside, open_at), await fires(inside, closed_at)) == (True, False)


async def test_the_trace_shows_the_state_and_the_local_time_read() -> None:
    """The schedule's step names its state and the local time, offset included."""
    decision = await decided(
        hook(schedule((WEEKDAYS, "09:00", "17:00"))), when="2026-06-03T22:30:00Z"
    )
    assert list(decision.trace) == [
        "hooks.ringing:filter[0.0]:schedule:closed@2026-06-03T18:30-04:00:matched",
        "hooks.ringing:matched[0]",
        "say",
    ]


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-06-05T23:59:59-04:00", "open"),  # Friday's last second
        ("2026-06-06T00:00:00-04:00", "closed"),  # Saturday is not listed
        ("2026-06-04T00:00:00-04:00", "closed"),  # Wednesday's window ends at midnight
        ("2026-06-04T18:00:00-04:00", "open"),
    ],
)
async def test_a_window_may_end_at_24_00(when: str, state: str) -> None:
    """`to: 24:00` runs to the end of the day."""
    assert await schedule_state(schedule((WEEKDAYS, "18:00", "24:00")), when) == state


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-06-05T21:59:59-04:00", "closed"),  # Friday before it opens
        ("2026-06-05T22:00:00-04:00", "open"),
        ("2026-06-06T03:00:00-04:00", "open"),  # Saturday morning: Friday's window
        ("2026-06-06T05:59:59-04:00", "open"),
        ("2026-06-06T06:00:00-04:00", "closed"),
        ("2026-06-06T22:00:00-04:00", "closed"),  # Saturday's evening: not listed
        ("2026-06-05T03:00:00-04:00", "closed"),  # Friday morning: Thursday is not listed
    ],
)
async def test_a_window_across_midnight_belongs_to_the_day_it_starts_on(
    when: str, state: str
) -> None:
    """`from` after `to`: Friday 22:00 to Saturday 06:00."""
    assert await schedule_state(schedule((["fri"], "22:00", "06:00")), when) == state


@pytest.mark.parametrize(
    ("when", "state"),
    [
        # 2026-03-08, New York: 01:59:59 EST, then the clock jumps to 03:00 EDT.
        ("2026-03-08T06:59:59Z", "closed"),  # 01:59:59: before the 02:30 window
        ("2026-03-08T07:00:00Z", "open"),  # 03:00: a window opening in the gap opens now
        ("2026-03-08T07:59:59Z", "open"),  # 03:59:59
        ("2026-03-08T08:00:00Z", "closed"),  # 04:00 EDT
    ],
)
async def test_spring_forward_opens_a_window_that_starts_in_the_skipped_hour(
    when: str, state: str
) -> None:
    """02:30 to 04:00, on the day 02:00 to 02:59 does not exist, opens at 03:00."""
    assert await schedule_state(schedule((["sun"], "02:30", "04:00")), when) == state


async def test_spring_forward_skips_a_window_inside_the_skipped_hour() -> None:
    """02:00 to 02:45 never happens on that day; the same window opens on other Sundays."""
    window = schedule((["sun"], "02:00", "02:45"))
    for when in ("2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"):
        assert await schedule_state(window, when) == "closed", when
    assert await schedule_state(window, "2026-03-15T02:10:00-04:00") == "open"


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-03-08T12:59:59Z", "closed"),  # 08:59:59 EDT
        ("2026-03-08T13:00:00Z", "open"),  # 09:00 EDT: business hours follow the clock
        ("2026-11-01T13:59:59Z", "closed"),  # 08:59:59 EST
        ("2026-11-01T14:00:00Z", "open"),  # 09:00 EST
    ],
)
async def test_business_hours_follow_the_local_clock_across_dst(when: str, state: str) -> None:
    """On the days the clock changes, 09:00 is 09:00 on the local clock."""
    assert await schedule_state(schedule((["sun"], "09:00", "17:00")), when) == state


@pytest.mark.parametrize(
    ("when", "state"),
    [
        # 2026-11-01, New York: 01:59:59 EDT, then the clock goes back to 01:00 EST.
        ("2026-11-01T05:29:59Z", "open"),  # 01:29:59 EDT, Saturday's window
        ("2026-11-01T05:30:00Z", "closed"),  # 01:30 EDT: it closes
        ("2026-11-01T06:10:00Z", "closed"),  # 01:10 EST: it does not open again
        ("2026-11-01T06:59:59Z", "closed"),  # 01:59:59 EST
    ],
)
async def test_fall_back_does_not_reopen_a_window_that_closed_in_the_repeated_hour(
    when: str, state: str
) -> None:
    """Saturday 18:00 to 01:30 closes at the first 01:30 and stays closed."""
    assert await schedule_state(schedule((["sat"], "18:00", "01:30")), when) == state


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-11-01T05:14:59Z", "closed"),  # 01:14:59 EDT
        ("2026-11-01T05:15:00Z", "open"),  # 01:15 EDT
        ("2026-11-01T06:05:00Z", "open"),  # 01:05 EST: still open, not closed again
        ("2026-11-01T07:59:59Z", "open"),  # 02:59:59 EST
        ("2026-11-01T08:00:00Z", "closed"),  # 03:00 EST
    ],
)
async def test_fall_back_keeps_a_window_open_through_the_repeated_hour(
    when: str, state: str
) -> None:
    """01:15 to 03:00 opens at the first 01:15 and stays open until 03:00 on the new clock."""
    assert await schedule_state(schedule((["sun"], "01:15", "03:00")), when) == state


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-12-24T12:00:00-05:00", "open"),  # Thursday: a normal day
        ("2026-12-25T00:00:00-05:00", "excepted"),  # the excepted Friday, from midnight
        ("2026-12-25T12:00:00-05:00", "excepted"),
        ("2026-12-25T23:59:59-05:00", "excepted"),
        ("2026-12-26T03:00:00-05:00", "closed"),  # the 25th's night window did not open
        ("2026-12-28T12:00:00-05:00", "open"),  # Monday
        ("2026-12-25T04:59:59Z", "open"),  # 23:59:59 on the 24th in New York
        ("2026-12-25T05:00:00Z", "excepted"),  # the 25th begins in the schedule's zone
    ],
)
async def test_an_excepted_date_is_closed_all_day_in_the_schedules_zone(
    when: str, state: str
) -> None:
    """2026-12-25 is closed from 00:00 to 24:00 New York time, whatever the windows say."""
    window = schedule(
        (WEEKDAYS, "00:00", "24:00"), (["fri"], "22:00", "06:00"), except_dates=["2026-12-25"]
    )
    assert await schedule_state(window, when) == state


async def test_an_excepted_date_cuts_the_night_window_of_the_day_before() -> None:
    """Thursday 22:00 to 06:00 stops at midnight when Friday is excepted."""
    window = schedule((["thu"], "22:00", "06:00"), except_dates=["2026-12-25"])
    assert await schedule_state(window, "2026-12-24T23:59:59-05:00") == "open"
    assert await schedule_state(window, "2026-12-25T00:00:00-05:00") == "excepted"
    assert await schedule_state(window, "2026-12-18T01:00:00-05:00") == "open"  # other weeks


async def test_an_excepted_date_matches_outside() -> None:
    """Closed all day is `outside`: a `match: outside` hook fires on a holiday."""
    holiday = schedule((WEEKDAYS, "09:00", "17:00"), except_dates=["2026-12-25"])
    assert await fires(holiday, "2026-12-25T10:00:00-05:00")
    assert not await fires(holiday, "2026-12-24T10:00:00-05:00")


async def test_the_same_instant_is_read_in_each_schedules_own_zone() -> None:
    """At 15:00 UTC it is 11:00 in New York (open) and 00:00 in Tokyo (closed)."""
    when = "2026-06-03T15:00:00Z"
    assert await schedule_state(schedule((WEEKDAYS, "09:00", "17:00")), when) == "open"
    tokyo = schedule((WEEKDAYS, "09:00", "17:00"), zone="Asia/Tokyo")
    assert await schedule_state(tokyo, when) == "closed"


# --- several filters, and the reject action --------------------------------------------


async def test_every_filter_must_match_and_the_trace_stops_at_the_first_that_does_not() -> None:
    """A hook with a router filter traces each filter it evaluates, `startsWith` included."""
    filters = (
        {"type": "startsWith", "key": "number", "startsWith": ["1415"]},
        levels("C", "failed", "none"),
        callers("+19995550000"),
        schedule((WEEKDAYS, "09:00", "17:00")),
    )
    decision = await decided(hook(*filters), attestation_reader=reads("C"))
    assert list(decision.trace) == [
        "hooks.ringing:filter[0.0]:startsWith:matched",
        "hooks.ringing:filter[0.1]:oneOf:attestation=C:matched",
        "hooks.ringing:filter[0.2]:oneOf:number:unmatched",
        "hooks.ringing:unmatched[0]",
        "assistantId",
    ]


async def test_a_hook_of_startswith_filters_alone_traces_as_before() -> None:
    """Vapi's own filters add no trace steps (and no work)."""
    prefix = {"type": "startsWith", "key": "number", "startsWith": ["1415"]}
    decision = await decided(hook(prefix))
    assert list(decision.trace) == ["hooks.ringing:matched[0]", "say"]


async def test_a_reject_hook_rejects_with_its_own_ended_reason() -> None:
    """`{"type": "reject"}`: not answered, route `hook`, `call.ringing.hook-executed-reject`;
    the decision round-trips through its stored form."""
    spam = hook(levels("failed", "C"), do={"type": "reject"})
    decision = await decided(spam, attestation_reader=reads("failed"))
    assert decision.outcome == Reject()
    assert (decision.route, decision.ended_reason) == ("hook", d.RINGING_REJECT)
    assert list(decision.trace) == [
        "hooks.ringing:filter[0.0]:oneOf:attestation=failed:matched",
        "hooks.ringing:matched[0]",
        "reject",
    ]
    stored = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert (stored.outcome, stored.ended_reason) == (Reject(), d.RINGING_REJECT)
    assert decision.target is None


async def test_a_reject_hook_without_filters_rejects_every_caller_before_the_target() -> None:
    """A reject hook comes before the number's own target, like every ringing hook."""
    decision = await decided({"on": "call.ringing", "do": [{"type": "reject"}]})
    assert decision.outcome == Reject()
    assert list(decision.trace) == ["hooks.ringing:matched[0]", "reject"]
