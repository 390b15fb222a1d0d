"""Call records on both backends: exact storage, and calls scoped to their number."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.pipeline.call_records import (
    CallOwnedElsewhere,
    CallRecord,
    CallRecords,
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


def record(number_id: str, decision: dict[str, object] | None = None) -> CallRecord:
    return CallRecord(
        call_id="CA1",
        provider="twilio",
        org_id=f"org-{number_id}",
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
    got = await records.get("CA1")
    assert got is not None and got.decision is not None
    assert got.decision["outcome"]["config"] == config


async def test_a_status_event_from_another_number_is_ignored(records: CallRecords) -> None:
    """A call id alone never lets one number's (or org's) webhook touch another's call."""
    update = StatusUpdate("ringing", final=False, sequence=None, duration_seconds=None)
    await records.update_status(record("n1"), update)
    final = StatusUpdate("completed", final=True, sequence=None, duration_seconds=42)
    with pytest.raises(CallOwnedElsewhere):
        await records.update_status(record("n2"), final)
    got = await records.get("CA1")
    assert got is not None
    assert (got.phone_number_id, got.status, got.final) == ("n1", "ringing", False)


async def test_a_lock_is_released_only_by_its_holder(records: CallRecords) -> None:
    """Another worker's release cannot free a lock this worker holds."""
    assert await records.claim("CA9", ttl_ms=5_000)
    if isinstance(records, RedisCallRecords):
        other = RedisCallRecords(records._client, ttl_seconds=60)  # another worker's token
        await other.release("CA9")
        assert not await other.claim("CA9", ttl_ms=5_000)
    await records.release("CA9")
    assert await records.claim("CA9", ttl_ms=5_000)
