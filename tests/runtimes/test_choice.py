"""Choosing a runtime: weights, standbys, sticky callers, unhealthy runtimes; and the
passive health counts."""

from __future__ import annotations

import collections
import random

from router.runtimes.choice import order
from router.runtimes.config import Choices, Route
from router.runtimes.health import (
    DOWN_SECONDS,
    FAILURES_TO_MARK_DOWN,
    TRIAL_SECONDS,
    MemoryRuntimeHealth,
)


def route(*weights: tuple[str, int], sticky: bool = False) -> Choices:
    return Route.model_validate(
        {
            "match": {"orgId": "o"},
            "runtimes": [{"name": n, "weight": w} for n, w in weights],
            "sticky": "caller" if sticky else None,
        }
    ).choices


class Down:
    """Health with `names` down and no trial due."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def usable(self, name: str) -> bool:
        return name not in self.names

    def claim(self, name: str) -> None:
        pass

    def healthy(self, name: str) -> bool:
        return name not in self.names


up = Down()


def test_weights_share_first_choices() -> None:
    rng = random.Random(7)
    r = route(("a", 3), ("b", 1))
    firsts = collections.Counter(order(r, None, up, rng=rng)[0] for _ in range(4000))
    assert 2850 <= firsts["a"] <= 3150


def test_the_rest_follow_healthy_first_then_heavier_then_in_order() -> None:
    r = route(("a", 1), ("b", 0), ("c", 5), ("d", 5))
    down = {"c"}
    plans = {order(r, None, Down(*down), rng=random.Random(s)) for s in range(50)}
    for plan in plans:
        assert set(plan) == {"a", "b", "c", "d"}
        assert plan[0] in {"a", "d"}  # weighted and up
        rest = list(plan[1:])
        assert rest[-1] == "c"  # down: last


def test_a_standby_never_comes_first_while_another_can() -> None:
    r = route(("a", 1), ("standby", 0))
    assert all(order(r, None, up, rng=random.Random(s))[0] == "a" for s in range(100))
    assert order(r, None, up) == ("a", "standby")


def test_when_every_runtime_is_down_they_are_still_tried() -> None:
    r = route(("a", 1), ("b", 1))
    plan = order(r, None, Down("a", "b"))
    assert sorted(plan) == ["a", "b"]


def test_a_sticky_caller_moves_only_when_its_runtime_is_down() -> None:
    r = route(("a", 1), ("b", 1), ("c", 1), sticky=True)
    callers = [f"+1415555{n:04d}" for n in range(300)]
    before = {caller: order(r, caller, up)[0] for caller in callers}
    assert set(before.values()) == {"a", "b", "c"}
    after = {caller: order(r, caller, Down("b"))[0] for caller in callers}
    for caller in callers:
        if before[caller] != "b":
            assert after[caller] == before[caller]  # only b's callers move
        else:
            assert after[caller] in {"a", "c"}


async def test_failures_in_a_row_mark_down_and_a_success_marks_up() -> None:
    changes: list[tuple[str, bool]] = []
    health = MemoryRuntimeHealth(on_change=lambda name, ok, _: changes.append((name, ok)))
    for _ in range(FAILURES_TO_MARK_DOWN - 1):
        await health.report("a", taken=False)
    assert health.usable("a")
    await health.report("a", taken=True)  # a success resets the count
    for _ in range(FAILURES_TO_MARK_DOWN):
        await health.report("a", taken=False)
    assert not health.healthy("a") and not health.usable("a")
    assert changes == [("a", False)]
    await health.report("a", taken=True)
    assert health.healthy("a") and changes == [("a", False), ("a", True)]


async def test_after_the_down_period_one_trial_call_goes_through() -> None:
    """Down: no calls. After the down period one call is the trial: choosing it claims
    it, and no other call goes there until it reports (or the trial's time runs out)."""
    now = 1000.0
    health = MemoryRuntimeHealth(clock=lambda: now)
    for _ in range(FAILURES_TO_MARK_DOWN):
        await health.report("a", taken=False)
    solo = route(("a", 1), ("b", 1))
    assert all(order(solo, None, health, rng=random.Random(s))[0] == "b" for s in range(20))
    now += DOWN_SECONDS + 1
    assert health.usable("a")
    firsts = [order(solo, None, health, rng=random.Random(s))[0] for s in range(40)]
    assert firsts.count("a") == 1  # the trial, then b again
    assert not health.usable("a")
    now += TRIAL_SECONDS + 1
    assert health.usable("a")  # a trial that never reported frees the next one
    await health.report("a", taken=False)  # the trial failed: down again
    assert not health.usable("a")


async def test_ordering_the_rest_claims_no_trial() -> None:
    """A down runtime due a trial that is not chosen first keeps its trial for later."""
    now = 1000.0
    health = MemoryRuntimeHealth(clock=lambda: now)
    for _ in range(FAILURES_TO_MARK_DOWN):
        await health.report("standby", taken=False)
    now += DOWN_SECONDS + 1
    assert order(route(("a", 1), ("standby", 0)), None, health) == ("a", "standby")
    assert health.usable("standby")
