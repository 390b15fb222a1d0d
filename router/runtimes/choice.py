"""Which runtime takes a call, and where it goes next if that one does not.

A route's runtimes share its calls by weight. With `sticky: caller`, the same caller's
calls go to the same runtime while that runtime is healthy: weighted rendezvous hashing
of the caller's number over the healthy runtimes, so a runtime that goes down moves only
its own callers, and they come back when it recovers. A runtime of weight 0 takes no new
calls but is a failover target (a standby). The failover order is the route's other
runtimes, healthy first, heavier first, then in the file's order; when no runtime of
the route is healthy the call still goes to one of them, never refused for it.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from typing import Protocol

from router.runtimes.config import DEFAULT_RUNTIME, Choices, Runtimes


class Health(Protocol):
    """What choosing reads of runtime health (router/runtimes/health.py)."""

    def usable(self, name: str) -> bool:
        """Up, or down but due a trial call: may take a new call."""

    def claim(self, name: str) -> None:
        """The call chosen for `name` is its trial, if it was down."""

    def healthy(self, name: str) -> bool:
        """Up: not marked down."""


def plan(
    runtimes: Runtimes,
    facts: Mapping[str, str | None],
    caller: str | None,
    health: Health,
    *,
    rng: random.Random | None = None,
) -> tuple[str, ...]:
    """The runtimes to try for a call, in order: the chosen one first. `facts` are the
    call's match fields (assistantId, squadId, workflowId, orgId, provider)."""
    route = runtimes.route_for(facts)
    if route is None:
        return (DEFAULT_RUNTIME,)
    return order(route.choices, caller, health, rng=rng)


def order(
    choices: Choices, caller: str | None, health: Health, *, rng: random.Random | None = None
) -> tuple[str, ...]:
    names, weights = choices.names, choices.weights
    pool = [i for i in choices.weighted if health.usable(names[i])] or list(choices.weighted)
    if choices.sticky and caller:
        first = max(pool, key=lambda i: _rendezvous_score(caller, names[i], weights[i]))
    else:
        first = (rng or random).choices(pool, weights=[weights[i] for i in pool])[0]
    health.claim(names[first])
    rest = [i for i in range(len(names)) if i != first]
    rest.sort(key=lambda i: (not health.healthy(names[i]), -weights[i], i))
    return (names[first], *(names[i] for i in rest))


def _rendezvous_score(caller: str, name: str, weight: int) -> float:
    """Weighted rendezvous (highest random weight) score of a caller for a runtime."""
    digest = hashlib.blake2b(f"{caller}\x00{name}".encode(), digest_size=8).digest()
    # A uniform number in (0, 1): never 0, whose logarithm would be -inf.
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)
    return -weight / math.log(unit)
