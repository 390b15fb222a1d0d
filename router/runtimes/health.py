"""Runtime health: whether new calls go to a runtime (SPEC §11, docs/runtimes.md).

Passive: every call a runtime takes (a stream started, a SIP leg answered) is a success,
every call it does not take is a failure. `FAILURES_TO_MARK_DOWN` failures in a row mark
it down for `DOWN_SECONDS`; after that one trial call per worker may go there, and its
outcome marks it up again or down for another period. Active probes (`healthUrl`) report
the same way. With Redis, the counts live in one hash that every worker reads (a snapshot
refreshed each second, and after each report), so a runtime one worker saw fail is
skipped by all; the embedded store keeps them in process.

The hot path only reads the local snapshot: choosing a runtime makes no Redis call.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import structlog

from router.store.redis_connect import REDIS_FAILURES, RedisClient
from router.store.redis_keys import HEALTH_KEY, HEALTH_REPORT_SCRIPT

log = structlog.get_logger("router.runtimes")

FAILURES_TO_MARK_DOWN: Final = 3
DOWN_SECONDS: Final = 30.0
# A trial call that never reports (the provider's callback lost) frees the trial after this.
TRIAL_SECONDS: Final = 60.0
REFRESH_SECONDS: Final = 1.0
PROBE_INTERVAL_SECONDS: Final = 10.0
PROBE_TIMEOUT_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class RuntimeState:
    failures: int = 0
    down_until: float = 0.0  # epoch seconds; 0: up

    def down(self, now: float) -> bool:
        return self.down_until > now

    @property
    def marked_down(self) -> bool:
        return self.down_until > 0


Changed = Callable[[str, bool, RuntimeState], None]


class RuntimeHealth(abc.ABC):
    """Reads (local, no I/O) and reports (shared) runtime health."""

    def __init__(
        self, on_change: Changed | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._states: dict[str, RuntimeState] = {}
        self._trials: dict[str, float] = {}  # runtime -> when this worker sent its trial
        self._on_change = on_change
        self._clock = clock  # epoch seconds, as the down-until times

    def usable(self, name: str) -> bool:
        """Whether a new call may go to `name`: up, or down but due a trial call (one per
        worker at a time: `claim` takes it)."""
        state = self._states.get(name)
        if state is None or not state.marked_down:
            return True
        now = self._clock()
        if state.down(now):
            return False
        trial = self._trials.get(name)
        return trial is None or now - trial >= TRIAL_SECONDS

    def claim(self, name: str) -> None:
        """A call goes to `name`: if it is down, that call is its trial."""
        state = self._states.get(name)
        if state is not None and state.marked_down:
            self._trials[name] = self._clock()

    def healthy(self, name: str) -> bool:
        """Up (never failed enough, or recovered): what the gauge shows."""
        state = self._states.get(name)
        return state is None or not state.marked_down

    def states(self) -> Mapping[str, RuntimeState]:
        return dict(self._states)

    async def report(self, name: str, taken: bool) -> None:
        """A call `name` took (`taken`) or did not; raises StoreUnavailable-free: a health
        report that cannot be shared is logged and kept locally."""
        if taken:
            self._trials.pop(name, None)
        state = await self._record(name, taken)
        self._set(name, state)

    def _set(self, name: str, state: RuntimeState) -> None:
        before = self._states.get(name)
        self._states[name] = state
        was_up = before is None or not before.marked_down
        if was_up != (not state.marked_down) and self._on_change is not None:
            self._on_change(name, not state.marked_down, state)

    def _apply(self, states: Mapping[str, RuntimeState]) -> None:
        for name, state in states.items():
            self._set(name, state)

    def _local(self, name: str, taken: bool) -> RuntimeState:
        state = self._states.get(name, RuntimeState())
        if taken:
            return RuntimeState()
        failures = state.failures + 1
        now = self._clock()
        down_until = state.down_until
        if failures >= FAILURES_TO_MARK_DOWN and down_until <= now:
            down_until = now + DOWN_SECONDS
        return RuntimeState(failures, down_until)

    @abc.abstractmethod
    async def _record(self, name: str, taken: bool) -> RuntimeState: ...

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Read the shared states."""

    async def run(self) -> None:
        """Keep the snapshot fresh until cancelled."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()


class MemoryRuntimeHealth(RuntimeHealth):
    """One process (the embedded store): the counts live here."""

    async def _record(self, name: str, taken: bool) -> RuntimeState:
        return self._local(name, taken)

    async def refresh(self) -> None:
        """Nothing to read: the counts are this process's own."""


class RedisRuntimeHealth(RuntimeHealth):
    """Shared by every worker through one Redis hash."""

    def __init__(self, client: RedisClient, on_change: Changed | None = None) -> None:
        super().__init__(on_change)  # Redis's clock marks down; this worker's reads
        self._client = client
        self._script = client.register_script(HEALTH_REPORT_SCRIPT)

    async def _record(self, name: str, taken: bool) -> RuntimeState:
        args = [name, "1" if taken else "0", FAILURES_TO_MARK_DOWN, DOWN_SECONDS]
        try:
            raw = await self._script(keys=[HEALTH_KEY], args=args)
        except REDIS_FAILURES as exc:
            log.warning("runtime.health_unshared", runtime=name, error=str(exc))
            return self._local(name, taken)
        return _state(raw)

    async def refresh(self) -> None:
        try:
            raw = await self._client.hgetall(HEALTH_KEY)
        except REDIS_FAILURES:
            return  # kept as last read; the store's own events say Redis is gone
        self._apply({_text(k): _state(v) for k, v in raw.items()})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _state(raw: Any) -> RuntimeState:
    try:
        data = json.loads(raw)
        return RuntimeState(int(data.get("failures", 0)), float(data.get("downUntil", 0)))
    except (ValueError, TypeError, AttributeError):
        return RuntimeState()


async def probe_forever(
    health: RuntimeHealth,
    targets: Mapping[str, str],
    *,
    interval: float = PROBE_INTERVAL_SECONDS,
    probe_timeout: float = PROBE_TIMEOUT_SECONDS,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """GET each runtime's `healthUrl` every `interval`: anything but a 2xx within
    `probe_timeout` is a failure. A 2xx changes nothing: a runtime whose health URL
    answers while it refuses calls must not be marked up every few seconds; the trial
    call after its down period marks it up."""
    if not targets:
        return
    client_timeout = aiohttp.ClientTimeout(total=probe_timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while True:
            for name, url in targets.items():
                ok = False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with session.get(url, allow_redirects=False) as response:
                        ok = 200 <= response.status < 300
                if not ok:
                    await health.report(name, False)
            await sleep(interval)
