"""Concurrency caps (SPEC §12): how many calls a number, and all the numbers of an org,
take at once, counted across every worker.

A call takes a slot when router connects or transfers it, and gives it back on the
provider's final status event. A slot also expires on its own after
`admission_slot_seconds` (4 h by default, Twilio's longest call unless configured
otherwise), so a final status that never comes never leaks it. A provider retry of the
same call id finds its slot already taken: no second one. With Redis, each capped number
and each capped org is a sorted set of call ids scored by when their slot expires, and
one script (on Redis's clock) drops expired slots, checks both caps and takes both slots
at once: one round trip per admitted call, none for a number and org without caps.
The embedded store (one process) keeps the same sets in memory.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from router.models.phone_numbers import AnyPhoneNumber
from router.pipeline.decision import AT_CAPACITY, AssistantRequestFacts, Decision, Say, Transfer
from router.store.interface import StoreUnavailable
from router.store.redis_connect import REDIS_FAILURES, RedisClient
from router.store.redis_keys import (
    SLOTS_ADMIT_SCRIPT,
    SLOTS_RELEASE_SCRIPT,
    number_slots,
    org_slots,
)

Verdict = Literal["admitted", "number-full", "org-full"]

_VERDICTS: Final[tuple[Verdict, ...]] = ("admitted", "number-full", "org-full")


@dataclass(frozen=True, slots=True)
class Slots:
    """An admission's outcome and the slots in use after it (0 where there is no cap)."""

    verdict: Verdict
    number_in_use: int
    org_in_use: int


class Admission(abc.ABC):
    def __init__(self, slot_seconds: float) -> None:
        self.slot_seconds = slot_seconds

    @abc.abstractmethod
    async def admit(
        self,
        org_id: str,
        number_id: str,
        call_id: str,
        *,
        number_cap: int | None,
        org_cap: int | None,
    ) -> Slots:
        """Take the call's slots unless a cap is reached; raises StoreUnavailable."""

    @abc.abstractmethod
    async def release(self, org_id: str, number_id: str, call_id: str) -> tuple[int, int]:
        """Give the call's slots back; the slots still in use (number, org)."""


class RedisAdmission(Admission):
    """Slots shared by every worker."""

    def __init__(self, client: RedisClient, slot_seconds: float) -> None:
        super().__init__(slot_seconds)
        self._admit = client.register_script(SLOTS_ADMIT_SCRIPT)
        self._release = client.register_script(SLOTS_RELEASE_SCRIPT)

    async def admit(
        self,
        org_id: str,
        number_id: str,
        call_id: str,
        *,
        number_cap: int | None,
        org_cap: int | None,
    ) -> Slots:
        keys = [number_slots(org_id, number_id), org_slots(org_id)]
        args: list[str | int] = [call_id, number_cap or 0, org_cap or 0, int(self.slot_seconds)]
        try:
            verdict, in_number, in_org = await self._admit(keys=keys, args=args)
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        return Slots(_VERDICTS[int(verdict)], int(in_number), int(in_org))

    async def release(self, org_id: str, number_id: str, call_id: str) -> tuple[int, int]:
        keys = [number_slots(org_id, number_id), org_slots(org_id)]
        try:
            in_number, in_org = await self._release(keys=keys, args=[call_id])
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        return int(in_number), int(in_org)


class MemoryAdmission(Admission):
    """One process (the embedded store): the same slots, in memory."""

    def __init__(self, slot_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(slot_seconds)
        self._clock = clock
        # Set key -> call id -> expiry, in expiry order: every slot lasts `slot_seconds`
        # and a call admitted again moves to the end, so the expired are at the front and
        # dropping them costs what has expired, not what is held.
        self._slots: dict[str, OrderedDict[str, float]] = {}

    def _held(self, key: str, now: float) -> OrderedDict[str, float]:
        slots = self._slots.setdefault(key, OrderedDict())
        while slots:
            call_id, expiry = next(iter(slots.items()))
            if expiry > now:
                break
            del slots[call_id]
        return slots

    async def admit(
        self,
        org_id: str,
        number_id: str,
        call_id: str,
        *,
        number_cap: int | None,
        org_cap: int | None,
    ) -> Slots:
        now = self._clock()
        sets = [
            (self._held(key, now), cap)
            for key, cap in (
                (number_slots(org_id, number_id), number_cap),
                (org_slots(org_id), org_cap),
            )
            if cap
        ]
        if not any(call_id in slots for slots, _ in sets):
            for index, (slots, cap) in enumerate(sets):
                if cap is not None and len(slots) >= cap:
                    return self._counts(org_id, number_id, number_cap, org_cap, index)
        for slots, _ in sets:
            slots[call_id] = now + self.slot_seconds
            slots.move_to_end(call_id)
        return self._counts(org_id, number_id, number_cap, org_cap, None)

    def _counts(
        self,
        org_id: str,
        number_id: str,
        number_cap: int | None,
        org_cap: int | None,
        full: int | None,
    ) -> Slots:
        in_number = len(self._slots.get(number_slots(org_id, number_id), ())) if number_cap else 0
        in_org = len(self._slots.get(org_slots(org_id), ())) if org_cap else 0
        if full is None:
            return Slots("admitted", in_number, in_org)
        # `full` indexes the capped sets in order: the number's first when it has a cap.
        verdict: Verdict = "number-full" if full == 0 and number_cap else "org-full"
        return Slots(verdict, in_number, in_org)

    async def release(self, org_id: str, number_id: str, call_id: str) -> tuple[int, int]:
        counts = []
        for key in (number_slots(org_id, number_id), org_slots(org_id)):
            slots = self._slots.get(key)
            if slots is not None:
                slots.pop(call_id, None)
            counts.append(len(slots or ()))
        return counts[0], counts[1]


def overflow_decision(
    number: AnyPhoneNumber,
    verdict: Verdict,
    apology: str,
    *,
    facts: AssistantRequestFacts | None = None,
) -> Decision:
    """Where a call goes when a cap turned it away: the number's `overflowDestination`,
    else the apology; route `overflow`, ended reason `max-concurrent-calls-reached`.
    `facts`: the assistant-request the decision took, still reported."""
    trace = [f"admission:{verdict}"]
    if number.overflow_destination is not None:
        trace.append("overflowDestination")
        outcome: Transfer | Say = Transfer.to(number.overflow_destination)
    else:
        trace.append("apology")
        outcome = Say(apology)
    return Decision(outcome, "overflow", AT_CAPACITY, tuple(trace), assistant_request=facts)
