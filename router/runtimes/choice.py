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
from collections.abc import Callable, Mapping, Sequence

from router.runtimes.config import DEFAULT_RUNTIME, Route, RouteRuntime, Runtimes

Available = Callable[[str], bool]


def plan(
    runtimes: Runtimes,
    facts: Mapping[str, str | None],
    caller: str | None,
    available: Available,
    *,
    rng: random.Random | None = None,
) -> tuple[str, ...]:
    """The runtimes to try for a call, in order: the chosen one first. `facts` are the
    call's match fields (assistantId, squadId, workflowId, orgId, provider)."""
    route = runtimes.route_for(facts)
    if route is None:
        return (DEFAULT_RUNTIME,)
    return order(route, caller, available, rng=rng)


def order(
    route: Route, caller: str | None, available: Available, *, rng: random.Random | None = None
) -> tuple[str, ...]:
    entries = route.runtimes
    weighted = [r for r in entries if r.weight > 0]
    healthy = [r for r in weighted if available(r.name)]
    pool = healthy or weighted
    if route.sticky == "caller" and caller:
        first = max(pool, key=lambda r: _rendezvous_score(caller, r))
    else:
        first = (rng or random).choices(pool, weights=[r.weight for r in pool])[0]
    rest = [r for r in entries if r is not first]
    rest.sort(key=lambda r: (not available(r.name), -r.weight, entries.index(r)))
    return (first.name, *(r.name for r in rest))


def _rendezvous_score(caller: str, entry: RouteRuntime) -> float:
    """Weighted rendezvous (highest random weight) score of a caller for a runtime."""
    digest = hashlib.blake2b(f"{caller}\x00{entry.name}".encode(), digest_size=8).digest()
    # A uniform number in (0, 1): never 0, whose logarithm would be -inf.
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)
    return -entry.weight / math.log(unit)


def next_runtime(tried: Sequence[str], planned: Sequence[str]) -> str | None:
    """The first planned runtime not tried yet; None once every one was."""
    done = set(tried)
    for name in planned:
        if name not in done:
            return name
    return None
