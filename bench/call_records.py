"""The embedded store's call records: does a write cost the same at 1M records as at 1k?

Fills `MemoryCallRecords` (the embedded store's records) with N calls, each a decision
and a final status, then times 20,000 more writes (a decision and a status each) while
the oldest records expire. Prints microseconds per call at each size, the ratio against
the smallest size, and the memory a call's records take (tracemalloc, in a separate fill).

    python bench/call_records.py [--sizes 1000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc

from router.pipeline.call_records import CallRecord, MemoryCallRecords, StatusUpdate

COMPLETED = StatusUpdate("completed", final=True, sequence=None, duration_seconds=42)
DECISION = {"route": "assistant-request", "outcome": {"kind": "connect", "target": {"x": "a"}}}


def call(i: int) -> CallRecord:
    return CallRecord(
        call_id=f"CA{i:032x}",
        provider="twilio",
        org_id="org-1",
        phone_number_id="3f1c2a8e-0000-4000-8000-000000000001",
        router_call_id="5e0c9c3a-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
        from_number="+14155550123",
        to="+14155550100",
        decision=DECISION,
    )


async def fill(records: MemoryCallRecords, start: int, count: int) -> None:
    for i in range(start, start + count):
        record = call(i)
        await records.put(record)
        await records.update_status(record, COMPLETED)


async def per_call_at(size: int, timed: int) -> float:
    """Microseconds per call (decision + status) with `size` records kept, all expiring."""
    # A TTL the fill outlives: every timed write also expires old records.
    records = MemoryCallRecords(ttl_seconds=60, max_records=size)
    await fill(records, 0, size)
    started = time.perf_counter()
    await fill(records, size, timed)
    return (time.perf_counter() - started) / timed * 1e6


async def bytes_per_call(count: int) -> float:
    records = MemoryCallRecords(ttl_seconds=86_400, max_records=count)
    tracemalloc.start()
    await fill(records, 0, count)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return used / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--timed", type=int, default=20_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline = None
    for size in sizes:
        micros = await per_call_at(size, args.timed)
        baseline = baseline or micros
        print(f"{size:>9} records: {micros:6.2f} us per call, {micros / baseline:.2f} x the first")
    print(f"memory: {await bytes_per_call(50_000):.0f} bytes per call (decision + status)")


if __name__ == "__main__":
    asyncio.run(main())
