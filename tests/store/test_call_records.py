"""Call records on both backends: exact storage, and calls scoped to their number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from router.pipeline.call_records import (
    CallOwnedElsewhere,
    CallRecord,
    CallRecords,
    ExpiringTable,
    MemoryCallRecords,
    RedisCallRecords,
    StatusUpdate,
)
from router.store.redis_store import RedisStore


@pytest.fixture(params=["memory", "redis"])
async def records(request: pytest.FixtureRequest) -> AsyncIterator[CallRecords]:
    if request.param == "memory":
        yield MemoryCallRecords(ttl_seconds=60)
        return
    store = RedisStore(request.getfixturevalue("redis_url"), 0, 0)
    await store.start()
    try:
        yield RedisCallRecords(store.client, ttl_seconds=60)
    finally:
        await store.close()


def record(
    number_id: str, decision: dict[str, object] | None = None, org_id: str = "org-a"
) -> CallRecord:
    return CallRecord(
        call_id="CA1",
        provider="twilio",
        org_id=org_id,
        phone_number_id=number_id,
        router_call_id="r1",
        from_number="+15550001111",
        to="+14155550100",
        decision=decision,
    )


async def test_a_transient_config_is_stored_exactly(records: CallRecords) -> None:
    """Integers beyond 64 bits and empty lists in a server's assistant survive as written."""
    config = {"assistant": {"n": 123456789012345678901234567890, "tools": [], "x": 0.1}}
    await records.put(record("n1", {"outcome": {"kind": "connect", "config": config}}))
    got = await records.get("org-a", "CA1")
    assert got is not None and got.decision is not None
    assert got.decision["outcome"]["config"] == config


async def test_a_status_event_from_another_number_of_the_org_is_ignored(
    records: CallRecords,
) -> None:
    """Within an org, a call id alone never lets one number's webhook touch another's call."""
    update = StatusUpdate("ringing", final=False, sequence=None, duration_seconds=None)
    await records.update_status(record("n1"), update)
    final = StatusUpdate("completed", final=True, sequence=None, duration_seconds=42)
    with pytest.raises(CallOwnedElsewhere):
        await records.update_status(record("n2"), final)
    got = await records.get("org-a", "CA1")
    assert got is not None
    assert (got.phone_number_id, got.status, got.final) == ("n1", "ringing", False)


async def test_another_org_naming_the_same_call_id_never_meets_its_record(
    records: CallRecords,
) -> None:
    """Org B's signed status event for its own number, naming org A's CallSid, neither
    changes A's record nor reads it; A's later events still apply."""
    decision: dict[str, object] = {"outcome": {"kind": "connect"}}
    await records.put(record("n1", decision))
    ringing = StatusUpdate("ringing", final=False, sequence=None, duration_seconds=None)
    completed = StatusUpdate("completed", final=True, sequence=None, duration_seconds=9)
    theirs, _ = await records.update_status(record("m1", org_id="org-b"), completed)
    assert (theirs.org_id, theirs.decision, theirs.from_number) == ("org-b", None, "+15550001111")
    ours = await records.get("org-a", "CA1")
    assert ours is not None and (ours.status, ours.final) == ("ringing", False)
    assert ours.decision == decision
    updated, changed = await records.update_status(record("n1"), ringing)
    assert changed and updated.phone_number_id == "n1"
    final, _ = await records.update_status(record("n1"), completed)
    assert (final.status, final.final, final.decision) == ("completed", True, decision)
    assert await records.get("org-c", "CA1") is None


async def test_a_lock_is_released_only_by_its_holder(records: CallRecords) -> None:
    """Another worker's release cannot free a lock this worker holds."""
    assert await records.claim("org-a", "CA9", ttl_ms=5_000)
    if isinstance(records, RedisCallRecords):
        other = RedisCallRecords(records._client, ttl_seconds=60)  # another worker's token
        await other.release("org-a", "CA9")
        assert not await other.claim("org-a", "CA9", ttl_ms=5_000)
    await records.release("org-a", "CA9")
    assert await records.claim("org-a", "CA9", ttl_ms=5_000)


async def test_a_lock_held_by_one_org_never_holds_up_another(records: CallRecords) -> None:
    """The decision lock is the org's: another org naming the same call id decides at once."""
    assert await records.claim("org-b", "CA9", ttl_ms=5_000)
    assert await records.claim("org-a", "CA9", ttl_ms=5_000)
    assert not await records.claim("org-b", "CA9", ttl_ms=5_000)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl_and_reads_never_see_them() -> None:
    clock = FakeClock()
    table: ExpiringTable[str, str] = ExpiringTable(ttl=10, max_entries=100, clock=clock)
    table.put("a", "1")
    clock.now += 5
    table.put("b", "2")
    table.put("a", "1b")  # rewritten while live: keeps its first expiry
    clock.now += 5  # a's expiry: gone for reads at once, before any write removes it
    assert table.get("a") is None
    assert table.get("b") == "2"
    table.put("c", "3")
    assert len(table) == 2  # a removed by the write
    clock.now += 5
    assert table.get("b") is None and table.get("c") == "3"


def test_a_write_removes_a_bounded_number_of_expired_entries() -> None:
    """After an idle spell, expired entries go a few at a time with later writes."""
    clock = FakeClock()
    table: ExpiringTable[str, int] = ExpiringTable(ttl=1, max_entries=10_000, clock=clock)
    for i in range(1000):
        table.put(f"k{i}", i)
    clock.now += 2
    table.put("new", 0)
    assert len(table) == 1001 - ExpiringTable.EXPIRED_PER_WRITE
    for i in range(1000 // ExpiringTable.EXPIRED_PER_WRITE + 1):
        table.put(f"more{i}", i)
    assert all(table.get(f"k{i}") is None for i in range(1000))
    assert len(table) == 1 + 1000 // ExpiringTable.EXPIRED_PER_WRITE + 1


def test_the_table_keeps_at_most_max_entries_dropping_the_oldest() -> None:
    table: ExpiringTable[str, int] = ExpiringTable(ttl=3600, max_entries=3)
    for i in range(5):
        table.put(f"k{i}", i)
    assert len(table) == 3
    assert [table.get(f"k{i}") for i in range(5)] == [None, None, 2, 3, 4]


def test_a_popped_entry_written_again_lives_its_new_ttl() -> None:
    clock = FakeClock()
    table: ExpiringTable[str, bool] = ExpiringTable(ttl=10, max_entries=100, clock=clock)
    table.put("lock", True, ttl=1)
    table.pop("lock")
    clock.now += 0.5
    table.put("lock", True, ttl=1)
    clock.now += 0.6  # past the first expiry, inside the second
    table.put("other", True)
    assert table.get("lock") is True


async def test_memory_records_are_bounded() -> None:
    records = MemoryCallRecords(ttl_seconds=60, max_records=2)
    for i in range(3):
        await records.put(replace(record("n1"), call_id=f"CA{i}"))
    assert await records.get("org-a", "CA0") is None
    assert await records.get("org-a", "CA1") is not None
    assert await records.get("org-a", "CA2") is not None
