"""Call records: what was decided for a provider call id, and how the call ended.

A record is written when a decision took an assistant-request (its answer may not be
asked for twice) or carries a transient assistant/squad/workflow for the runtime;
static decisions are recomputed identically from the cached number, with no I/O.
Records are keyed by the provider's call id and expire after `call_record_ttl_seconds`.

With Redis, records and decision locks are shared by every worker; the embedded store
keeps them in process (a single worker by design). In Redis a call's decision and its
status are two keys, merged on read, so either may arrive first and status updates never
re-encode the decision.
"""

from __future__ import annotations

import abc
import json
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Generic, TypeVar

from router.store import redis_keys as keys
from router.store.interface import StoreUnavailable
from router.store.redis_connect import REDIS_FAILURES, RedisClient


@dataclass(slots=True)
class CallRecord:
    """One call: its decision (wire form of `Decision`) and its latest status."""

    call_id: str
    provider: str
    org_id: str
    phone_number_id: str | None
    router_call_id: str
    from_number: str
    to: str | None
    decision: dict[str, Any] | None
    status: str = "ringing"
    final: bool = False
    status_sequence: int = -1
    duration_seconds: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def to_wire(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "provider": self.provider,
            "orgId": self.org_id,
            "phoneNumberId": self.phone_number_id,
            "routerCallId": self.router_call_id,
            "from": self.from_number,
            "to": self.to,
            "decision": self.decision,
            "status": self.status,
            "final": self.final,
            "statusSequence": self.status_sequence,
            "durationSeconds": self.duration_seconds,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CallRecord:
        return cls(
            call_id=data["callId"],
            provider=data["provider"],
            org_id=data["orgId"],
            phone_number_id=data.get("phoneNumberId"),
            router_call_id=data.get("routerCallId", data["callId"]),
            from_number=data.get("from", ""),
            to=data.get("to"),
            decision=data.get("decision"),
            status=data.get("status", "ringing"),
            final=bool(data.get("final", False)),
            status_sequence=int(data.get("statusSequence", -1)),
            duration_seconds=data.get("durationSeconds"),
            created_at=float(data.get("createdAt", time.time())),
            updated_at=float(data.get("updatedAt", time.time())),
        )


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    status: str
    final: bool
    sequence: int | None
    duration_seconds: int | None


class CallOwnedElsewhere(Exception):
    """A status event names a call id whose record belongs to another number: ignored.

    Every org signs its own webhooks, so a call id alone must not let one org touch
    another org's call."""


class CallRecords(abc.ABC):
    """Where call records and decision locks live."""

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds

    @abc.abstractmethod
    async def get(self, org_id: str, call_id: str) -> CallRecord | None:
        """The org's record of this provider call id; another org's is never seen."""

    @abc.abstractmethod
    async def put(self, record: CallRecord) -> None:
        """Write the decided record: the first decision wins; a status that arrived before
        it is kept."""

    @abc.abstractmethod
    async def claim(self, org_id: str, call_id: str, ttl_ms: int) -> bool:
        """Take the right to decide this call; False when another worker holds it."""

    @abc.abstractmethod
    async def release(self, org_id: str, call_id: str) -> None: ...

    @abc.abstractmethod
    async def update_status(
        self, base: CallRecord, update: StatusUpdate
    ) -> tuple[CallRecord, bool]:
        """Apply a status event; (record, whether the status changed). Creates from `base`."""

    @abc.abstractmethod
    async def note_runtime(self, org_id: str, call_id: str, note: str) -> bool:
        """Note what a runtime did with this call (`<runtime>:started`, `<runtime>:failed`):
        True the first time, False when it was noted already (a repeated callback)."""

    @abc.abstractmethod
    async def runtime_notes(self, org_id: str, call_id: str) -> frozenset[str]:
        """Every note of this call (none once its records expired)."""


def with_status(decided: CallRecord, status: CallRecord) -> CallRecord:
    """`decided` with the status fields of `status`, the record status callbacks keep."""
    decided.status, decided.final = status.status, status.final
    decided.status_sequence = status.status_sequence
    decided.duration_seconds = status.duration_seconds
    decided.updated_at = max(decided.updated_at, status.updated_at)
    return decided


def apply_status(record: CallRecord, update: StatusUpdate) -> bool:
    """The in-process twin of `keys.STATUS_SCRIPT`: final statuses stick, older events lose."""
    changed = False
    sequence = -1 if update.sequence is None else update.sequence
    if not record.final and (sequence < 0 or sequence >= record.status_sequence):
        changed = record.status != update.status
        record.status, record.final = update.status, update.final
        if update.sequence is not None:
            record.status_sequence = update.sequence
    if update.duration_seconds is not None:
        record.duration_seconds = update.duration_seconds
    record.updated_at = time.time()
    return changed


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringTable(Generic[K, V]):
    """A dict whose entries expire `ttl` seconds after they were first written, with at
    most `max_entries` of them (the oldest make room).

    Entries written with the table's TTL expire in the order they were written: a queue
    of (expiry, key) beside the dict finds the expired ones from its front. Each write
    removes what has expired since the last, a bounded number at a time, so a write costs
    the same with a million entries as with one; reads never return an expired entry,
    whether or not it was removed yet. An entry given a shorter TTL of its own (a lock) is
    removed once those written before it are.
    """

    # Entries a write removes at most: a write after a long idle spell stays quick, and
    # the rest go with the next writes (reads ignore them meanwhile).
    EXPIRED_PER_WRITE: Final = 64

    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: dict[K, tuple[float, V]] = {}
        self._order: deque[tuple[float, K]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        return None if item is None or item[0] <= self._clock() else item[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Write `value` under `key`, expiring `ttl` (default: the table's) from now. An
        entry that is still live keeps its expiry when it is written again."""
        now = self._clock()
        self._expire(now)
        item = self._items.get(key)
        if item is not None and item[0] > now:
            self._items[key] = (item[0], value)
            return
        expiry = now + (self.ttl if ttl is None else ttl)
        self._items[key] = (expiry, value)
        self._order.append((expiry, key))
        while len(self._items) > self.max_entries:
            self._drop_oldest()

    def pop(self, key: K) -> None:
        # Its queue entry stays until its turn comes; `_expire` then finds no match.
        self._items.pop(key, None)

    def _expire(self, now: float) -> None:
        order = self._order
        for _ in range(self.EXPIRED_PER_WRITE):
            if not order or order[0][0] > now:
                return
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        expiry, key = self._order.popleft()
        item = self._items.get(key)
        if item is not None and item[0] == expiry:  # not rewritten since
            del self._items[key]


class MemoryCallRecords(CallRecords):
    """In-process records for the embedded store: one worker, expiring entries. As in
    Redis, a call's decision and its status are kept apart, as JSON, and merged on read.

    Memory is bounded: at most `max_records` decisions and as many statuses are kept
    (the oldest go first when a day brings more calls than that). Kept as text, a
    million records are a million strings, which the garbage collector does not walk.
    """

    def __init__(self, ttl_seconds: int, max_records: int = 200_000) -> None:
        super().__init__(ttl_seconds)
        # Keyed by (org id, provider call id).
        self._decided: ExpiringTable[tuple[str, str], str] = ExpiringTable(ttl_seconds, max_records)
        self._statuses: ExpiringTable[tuple[str, str], str] = ExpiringTable(
            ttl_seconds, max_records
        )
        self._locks: ExpiringTable[tuple[str, str], bool] = ExpiringTable(ttl_seconds, max_records)
        self._notes: ExpiringTable[tuple[str, str], frozenset[str]] = ExpiringTable(
            ttl_seconds, max_records
        )

    async def get(self, org_id: str, call_id: str) -> CallRecord | None:
        key = (org_id, call_id)
        return _merged(self._statuses.get(key), self._decided.get(key))

    async def put(self, record: CallRecord) -> None:
        key = (record.org_id, record.call_id)
        if self._decided.get(key) is None:
            self._decided.put(key, _dumps(record.to_wire()))

    async def claim(self, org_id: str, call_id: str, ttl_ms: int) -> bool:
        if self._locks.get((org_id, call_id)):
            return False
        self._locks.put((org_id, call_id), True, ttl=ttl_ms / 1000)
        return True

    async def release(self, org_id: str, call_id: str) -> None:
        self._locks.pop((org_id, call_id))

    async def update_status(
        self, base: CallRecord, update: StatusUpdate
    ) -> tuple[CallRecord, bool]:
        key = (base.org_id, base.call_id)
        kept = self._statuses.get(key)
        status = replace(base) if kept is None else CallRecord.from_wire(json.loads(kept))
        if status.phone_number_id != base.phone_number_id:
            raise CallOwnedElsewhere(base.call_id)
        # The first status event of a call is news even when it is the initial `ringing`.
        changed = apply_status(status, update) or kept is None
        text = _dumps(status.to_wire())
        self._statuses.put(key, text)
        record = _merged(text, self._decided.get(key))
        assert record is not None  # the status record was just written
        return record, changed

    async def note_runtime(self, org_id: str, call_id: str, note: str) -> bool:
        notes = self._notes.get((org_id, call_id)) or frozenset()
        if note in notes:
            return False
        self._notes.put((org_id, call_id), notes | {note})
        return True

    async def runtime_notes(self, org_id: str, call_id: str) -> frozenset[str]:
        return self._notes.get((org_id, call_id)) or frozenset()


class RedisCallRecords(CallRecords):
    """Records and locks in Redis, shared by every worker."""

    def __init__(self, client: RedisClient, ttl_seconds: int) -> None:
        super().__init__(ttl_seconds)
        self._client = client
        self._status_script = client.register_script(keys.STATUS_SCRIPT)
        self._release_script = client.register_script(keys.RELEASE_SCRIPT)
        self._token = f"{time.time_ns()}-{id(self)}"

    async def get(self, org_id: str, call_id: str) -> CallRecord | None:
        try:
            status, decided = await self._client.mget(
                keys.call_record(org_id, call_id), keys.call_decision(org_id, call_id)
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        return _merged(status, decided)

    async def put(self, record: CallRecord) -> None:
        try:
            await self._client.set(
                keys.call_decision(record.org_id, record.call_id),
                _dumps(record.to_wire()),
                ex=self.ttl_seconds,
                nx=True,
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None

    async def claim(self, org_id: str, call_id: str, ttl_ms: int) -> bool:
        try:
            taken = await self._client.set(
                keys.call_lock(org_id, call_id),
                self._token,
                px=ttl_ms + keys.CALL_LOCK_EXTRA_MS,
                nx=True,
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        return bool(taken)

    async def release(self, org_id: str, call_id: str) -> None:
        try:
            # Only our own lock: one that expired and was taken by another worker stays.
            await self._release_script(keys=[keys.call_lock(org_id, call_id)], args=[self._token])
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None

    async def update_status(
        self, base: CallRecord, update: StatusUpdate
    ) -> tuple[CallRecord, bool]:
        event = {
            "status": update.status,
            "final": update.final,
            "sequence": update.sequence,
            "durationSeconds": update.duration_seconds,
            "updatedAt": time.time(),
        }
        try:
            changed, status, decided = await self._status_script(
                keys=[
                    keys.call_record(base.org_id, base.call_id),
                    keys.call_decision(base.org_id, base.call_id),
                ],
                args=[_dumps(event), _dumps(base.to_wire()), self.ttl_seconds],
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        if changed == -1:
            raise CallOwnedElsewhere(base.call_id)
        record = _merged(status, decided)
        assert record is not None  # the script always returns the status record
        return record, bool(changed)

    async def note_runtime(self, org_id: str, call_id: str, note: str) -> bool:
        key = keys.call_runtimes(org_id, call_id)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.sadd(key, note)
                pipe.expire(key, self.ttl_seconds)
                added, _ = await pipe.execute()
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        return bool(added)

    async def runtime_notes(self, org_id: str, call_id: str) -> frozenset[str]:
        try:
            members = await self._client.smembers(keys.call_runtimes(org_id, call_id))
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from None
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def _dumps(value: dict[str, Any]) -> str:
    # The stdlib, not orjson: a customer's transient assistant may hold integers beyond
    # 64 bits, which must be stored exactly, not refused.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _merged(status: str | bytes | None, decided: str | bytes | None) -> CallRecord | None:
    """The call's record: the decided one (exactly as written) with the latest status."""
    if decided is None:
        return None if status is None else CallRecord.from_wire(json.loads(status))
    record = CallRecord.from_wire(json.loads(decided))
    if status is None:
        return record
    return with_status(record, CallRecord.from_wire(json.loads(status)))
