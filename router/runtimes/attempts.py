"""One runtime's attempt at a call, as the query string of the callbacks router puts on
the provider's document (`<Connect action>`, `<Stream statusCallback>`, `<Dial action>`).

The provider requests those URLs as router wrote them and signs them like every webhook
(Twilio signs the whole URL, query included), so what the query says cannot be changed
by anyone without the number's key: the attempt carries its own state, and any worker
can take the callback without a shared record of the plan.

    runtime=a&next=b,c&to=%2B14155550100

`runtime`: the runtime this attempt went to (`kind`: its kind, unless a stream);
`next`: the ones to try after it, in order; `to`: the called number (stream status
callbacks do not name it, and the number is found, and the callback verified, by it);
`call`: the provider's id of the caller's call, where callbacks come from another leg
(Vonage's connect events name the leg it dialled).
Twilio signs the whole URL; Telnyx and Vonage sign the body only, so there the query is
router's word alone: it can only name runtimes of the configuration, a number whose key
must still verify the signed body, and a call of that number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, get_args
from urllib.parse import urlencode

from multidict import MultiMapping

from router.runtimes.config import RuntimeKind, Runtimes

MAX_NEXT: Final = 20
_KINDS: Final = frozenset(get_args(RuntimeKind))


class BadAttempt(ValueError):
    """A callback whose query is not an attempt router wrote."""


@dataclass(frozen=True, slots=True)
class Attempt:
    runtime: str
    next: tuple[str, ...] = ()
    to: str | None = None
    call: str | None = None
    # The runtime's kind when the callback's URL was written: the callback is read the
    # same even if the runtime left the configuration meanwhile (a restart mid-call).
    kind: str | None = None

    def query(self) -> str:
        return _query(self.runtime, self.next, self.to, self.call, self.kind)

    def following(
        self, runtimes: Runtimes, available: Mapping[str, bool] | None = None
    ) -> Attempt | None:
        """The attempt after this one: the next runtime still configured (one that is up
        before one that is down), or None when none is left."""
        left = [name for name in self.next if name in runtimes.by_name]
        if not left:
            return None
        if available is not None:
            up = [name for name in left if available.get(name, True)]
            left = up + [name for name in left if name not in up]
        kind = runtimes.by_name[left[0]].kind
        return Attempt(left[0], tuple(left[1:]), self.to, self.call, kind)

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> Attempt:
        runtime = query.get("runtime", "")
        if not runtime:
            raise BadAttempt("missing-runtime")
        raw_next = query.get("next", "")
        following = tuple(name for name in raw_next.split(",") if name) if raw_next else ()
        if len(following) > MAX_NEXT:
            raise BadAttempt("too-many-runtimes")
        kind = query.get("kind") or None
        if kind is not None and kind not in _KINDS:
            raise BadAttempt("bad-kind")
        to, call = query.get("to") or None, query.get("call") or None
        return cls(runtime, following, to, call, kind)


# A few per route and number (made once, not on every call), unless the query names the
# call; then one per call, and the oldest go.
@lru_cache(maxsize=4096)
def _query(
    runtime: str,
    following: tuple[str, ...],
    to: str | None,
    call: str | None,
    kind: str | None,
) -> str:
    fields = {"runtime": runtime}
    if kind and kind != "stream":
        fields["kind"] = kind
    if following:
        fields["next"] = ",".join(following)
    if to:
        fields["to"] = to
    if call:
        fields["call"] = call
    return urlencode(fields)


def planned(
    runtimes: Runtimes, plan: Sequence[str], to: str | None, call: str | None = None
) -> Attempt:
    """The first attempt of a plan (`router.runtimes.choice.plan`)."""
    return Attempt(plan[0], tuple(plan[1:]), to, call, runtimes.by_name[plan[0]].kind)


@lru_cache(maxsize=4096)  # per called number: the static route's attempt is made once
def only(runtime: str, to: str | None) -> Attempt:
    """The attempt of a call whose one runtime is the stream `runtime` (no route matched)."""
    return Attempt(runtime, (), to, None, "stream")
