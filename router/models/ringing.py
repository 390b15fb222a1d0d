"""Router's extensions to `call.ringing` hooks (SPEC §12): filters beyond Vapi's
`startsWith`, and the `reject` action. A Vapi client that never sends them is unaffected.

- `{"type": "oneOf", "key": "number", "oneOf": ["+14155550100"]}`: exact callers, E.164.
- `{"type": "oneOf", "key": "attestation", "oneOf": ["A", "B"]}`: the STIR/SHAKEN level
  the provider reports for the call (`Attestation`).
- `{"type": "schedule", ...}`: weekly windows of local time in an IANA zone, with dates
  closed all day; `match` says whether the hook fires inside or outside them.
- `{"type": "reject"}`: do not answer the call.

Each model keeps the wire values exactly as sent (responses return them as is) and keeps,
from its first call on, what calls are matched against (`cached_property`: a plain
attribute read after that, where pydantic's private attributes cost a microsecond each),
so matching costs a set lookup or a few integer comparisons. The rules of time (what a
window covers across midnight, on an excepted date, when the clock changes) are
`ScheduleHookFilter.state_at`'s.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from functools import cached_property
from typing import Annotated, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from router.models.wire import E164, WireModel

# The STIR/SHAKEN level of a call: A, B or C as verified, `failed` when verification
# failed, `none` when the provider reports nothing (or something router does not know).
Attestation = Literal["A", "B", "C", "failed", "none"]
ATTESTATIONS: Final[tuple[str, ...]] = get_args(Attestation)

# In `datetime.weekday()` order: Monday is 0.
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: Final[tuple[str, ...]] = get_args(Day)
MINUTES_PER_DAY: Final = 24 * 60
# For the served OpenAPI document; the validators below are what decides.
_START_PATTERN: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_END_PATTERN: Final = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
_DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_E164_PATTERN: Final = r"^\+[1-9][0-9]{1,14}$"
MAX_CALLERS: Final = 1000
MAX_WINDOWS: Final = 50
MAX_EXCEPT_DATES: Final = 500
MAX_ZONE_CHARS: Final = 64
ScheduleState = Literal["open", "closed", "excepted"]


def _repeated(values: list[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def _once_each(values: list[str], field: str = "") -> list[str]:
    """`values`, or a ValueError naming the first that comes twice."""
    twice = _repeated(values)
    if twice is not None:
        raise ValueError(f"{field + ' ' if field else ''}lists {twice} twice")
    return values


def _caller(value: str) -> str:
    if not (value.isascii() and E164.fullmatch(value)):
        raise ValueError("must be a phone number in E.164 format, with its + (e.g. +14155551234)")
    return value


def _date(value: str) -> str:
    try:
        if len(value) != 10:
            raise ValueError(value)
        date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD (e.g. 2026-12-25)") from None
    return value


def _minutes(value: str, *, end: bool) -> int:
    """`HH:MM` as minutes after midnight; `24:00` only as the end of a window."""
    hours, sep, minutes = value.partition(":")
    valid = (
        sep == ":"
        and len(hours) == 2
        and len(minutes) == 2
        and (hours + minutes).isascii()
        and (hours + minutes).isdigit()
    )
    total = int(hours) * 60 + int(minutes) if valid else -1
    if not valid or int(minutes) > 59 or not 0 <= total <= MINUTES_PER_DAY - (0 if end else 1):
        raise ValueError(
            "must be a local time HH:MM from 00:00 to 24:00"
            if end
            else "must be a local time HH:MM from 00:00 to 23:59"
        )
    return total


class CallerNumberHookFilter(WireModel):
    """Router extension: matches when the caller's number is one of `oneOf` (E.164, exact).
    A withheld caller matches none."""

    type: Literal["oneOf"]
    key: Literal["number"]
    one_of: list[
        Annotated[str, AfterValidator(_caller), Field(json_schema_extra={"pattern": _E164_PATTERN})]
    ] = Field(min_length=1, max_length=MAX_CALLERS)

    @model_validator(mode="after")
    def _numbers_once_each(self) -> CallerNumberHookFilter:
        _once_each(self.one_of, "oneOf")
        return self

    @cached_property
    def _numbers(self) -> frozenset[str]:
        return frozenset(self.one_of)

    def matches(self, caller: str) -> bool:
        """Whether `caller` is listed; a caller sent without its `+` (digits only) too."""
        if caller in self._numbers:
            return True
        return caller.isascii() and caller.isdigit() and f"+{caller}" in self._numbers


class AttestationHookFilter(WireModel):
    """Router extension: matches when the call's STIR/SHAKEN level is one of `oneOf`."""

    type: Literal["oneOf"]
    key: Literal["attestation"]
    one_of: list[Attestation] = Field(min_length=1, max_length=len(ATTESTATIONS))

    @field_validator("one_of")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return _once_each(value)


class WeeklyWindow(WireModel):
    """Open from `from` (inclusive) to `to` (exclusive), local time, on each of `days`.
    `from` after `to` is a window across midnight, belonging to the day it starts on."""

    days: list[Day] = Field(min_length=1, max_length=len(DAYS))
    from_: str = Field(alias="from", json_schema_extra={"pattern": _START_PATTERN})
    to: str = Field(json_schema_extra={"pattern": _END_PATTERN})

    @field_validator("days")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return _once_each(value)

    @field_validator("from_")
    @classmethod
    def _start_time(cls, value: str) -> str:
        _minutes(value, end=False)
        return value

    @field_validator("to")
    @classmethod
    def _end_time(cls, value: str) -> str:
        _minutes(value, end=True)
        return value

    @model_validator(mode="after")
    def _has_a_length(self) -> WeeklyWindow:
        if self.from_ == self.to:
            raise ValueError(
                f"from and to are both {self.from_}: a window must have a length "
                "(00:00 to 24:00 is the whole day)"
            )
        return self

    @cached_property
    def _span(self) -> tuple[frozenset[int], int, int]:
        """The window's weekdays (Monday 0), and its `from` and `to` in minutes."""
        weekdays = frozenset(DAYS.index(day) for day in self.days)
        return weekdays, _minutes(self.from_, end=False), _minutes(self.to, end=True)

    def covers(self, weekday: int, minute: int, yesterday_counts: bool) -> bool:
        """Whether the window is open at `minute` of a day that is `weekday`; the part of
        yesterday's window after midnight counts only when `yesterday_counts`."""
        weekdays, start, end = self._span
        if start < end:
            return weekday in weekdays and start <= minute < end
        # Across midnight: from `start` on its own day, until `end` on the next.
        if minute >= start:
            return weekday in weekdays
        return minute < end and yesterday_counts and (weekday - 1) % 7 in weekdays


class ScheduleHookFilter(WireModel):
    """Router extension: matches when the call comes `inside` or `outside` the weekly
    windows, in the local time of `timeZone` (an IANA name). An excepted date is closed
    all day, in that zone."""

    type: Literal["schedule"]
    time_zone: str = Field(min_length=1, max_length=MAX_ZONE_CHARS)
    weekly: list[WeeklyWindow] = Field(min_length=1, max_length=MAX_WINDOWS)
    except_dates: (
        list[
            Annotated[
                str, AfterValidator(_date), Field(json_schema_extra={"pattern": _DATE_PATTERN})
            ]
        ]
        | None
    ) = Field(default=None, max_length=MAX_EXCEPT_DATES)
    match: Literal["inside", "outside"]

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _dates_once_each(self) -> ScheduleHookFilter:
        _once_each(self.except_dates or [], "exceptDates")
        return self

    @cached_property
    def _zone(self) -> tzinfo:
        return _zone(self.time_zone)

    @cached_property
    def _closed(self) -> frozenset[date]:
        return frozenset(date.fromisoformat(d) for d in self.except_dates or ())

    def local_time(self, epoch_seconds: float) -> datetime:
        """The moment on the schedule's clock."""
        return datetime.fromtimestamp(epoch_seconds, self._zone)

    def state_at(self, local: datetime) -> ScheduleState:
        """`open` inside a window, `excepted` on an excepted date, else `closed`.

        The clock's changes: a wall time the clock skips (spring forward) never happens,
        so a window opening in the skipped hour opens when the clock lands after it. When
        the clock goes back, the repeated times keep the state of the last minute before
        the change: no window opens or closes a second time in the repeated hour.
        """
        day = local.date()
        closed = self._closed
        if day in closed:
            return "excepted"
        minute = local.hour * 60 + local.minute
        if local.fold:
            minute = _last_minute_before_fall_back(local, minute)
        weekday = local.weekday()
        yesterday_counts = not closed or day - timedelta(days=1) not in closed
        for window in self.weekly:
            if window.covers(weekday, minute, yesterday_counts):
                return "open"
        return "closed"


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a known IANA time zone (e.g. America/New_York, Europe/Paris, UTC)"
        ) from None


def _last_minute_before_fall_back(local: datetime, minute: int) -> int:
    """For a wall time the clock shows a second time (`fold` 1), the last minute of the
    repeated stretch: the minute just before the clock went back."""
    zone = local.tzinfo
    last = minute
    while last + 1 < MINUTES_PER_DAY:
        naive = local.replace(hour=(last + 1) // 60, minute=(last + 1) % 60, tzinfo=None)
        first = naive.replace(tzinfo=zone, fold=0).utcoffset()
        if first == naive.replace(tzinfo=zone, fold=1).utcoffset():
            break  # no longer a repeated time
        last += 1
    return last


class RejectPhoneNumberHookAction(WireModel):
    """Router extension: do not answer the call where the provider allows it (TwiML
    `<Reject/>`, the SIP edge's reject; Vonage ends it with the empty NCCO)."""

    type: Literal["reject"]
