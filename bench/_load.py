"""A generic HTTP load generator that runs in its own process (optionally pinned to a core).

`run_load(factory, ...)` drives requests built by `factory(i)` either closed-loop (at most
`concurrency` in flight, each worker sends its next request when the last one answered) or
open-loop (`rate` requests per second on a fixed schedule, latency counted from the scheduled
start so a slow server is not hidden by the generator waiting for it). It returns the count,
duration, requests per second and p50/p90/p99/max latency of the measured requests.

The load runs in a separate process so the generator's CPU is not the caller's (and can be
pinned away from the server under test). `factory` is pickled to that process: pass a
module-level function, a `functools.partial` of one, or an instance of a module-level class.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

# Time for the child process to start (spawn imports aiohttp afresh) before its load begins.
_STARTUP_ALLOWANCE_SECONDS = 30.0
_JOIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Request:
    """One request to send."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


RequestFactory = Callable[[int], Request]
"""Builds request number `i`: 0-based, counting warm-up requests, so bodies stay distinct."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What the measured requests (warm-up excluded) did."""

    count: int  # completed, whatever their status
    errors: int  # an unexpected status or a transport error
    duration_s: float  # first measured send to last measured answer
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]  # status -> count; 0 is a transport error
    first_error: str | None
    # Share of one core the generator itself used while measuring: near 1.0, the generator
    # (not the server) may be what limits req/s.
    client_cpu: float
    # Every measured latency in milliseconds, in completion order (for `merge`).
    samples_ms: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The figures, without the samples."""
        figures = asdict(self)
        del figures["samples_ms"]
        return figures


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """One result of several loads run one after another (say, interleaved with others)."""
    if not results:
        raise ValueError("nothing to merge")
    samples = tuple(ms for result in results for ms in result.samples_ms)
    ordered = sorted(ms / 1000 for ms in samples)
    count = sum(r.count for r in results)
    duration = sum(r.duration_s for r in results)
    statuses: Counter[int] = Counter()
    for result in results:
        statuses.update(result.statuses)
    return LoadResult(
        count=count,
        errors=sum(r.errors for r in results),
        duration_s=round(duration, 4),
        rps=round(count / duration, 1) if duration > 0 else 0.0,
        p50_ms=_percentile_ms(ordered, 50),
        p90_ms=_percentile_ms(ordered, 90),
        p99_ms=_percentile_ms(ordered, 99),
        max_ms=_percentile_ms(ordered, 100),
        statuses=dict(sorted(statuses.items())),
        first_error=next((r.first_error for r in results if r.first_error), None),
        client_cpu=round(sum(r.client_cpu * r.duration_s for r in results) / duration, 3)
        if duration > 0
        else 0.0,
        samples_ms=samples,
    )


@dataclass(frozen=True, slots=True)
class _Spec:
    factory: RequestFactory
    count: int | None
    duration_s: float | None
    concurrency: int
    rate: float | None
    warmup: int
    cpu: int | None
    expect: frozenset[int]
    timeout_s: float


class LoadError(RuntimeError):
    """The load process failed or did not answer in time."""


def run_load(
    factory: RequestFactory,
    *,
    count: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 32,
    rate: float | None = None,
    warmup: int = 0,
    cpu: int | None = None,
    expect: Collection[int] = (200,),
    timeout_s: float = 10.0,
) -> LoadResult:
    """Drive `factory`'s requests from a separate process; stop at `count` or `duration_s`.

    Closed loop at `concurrency` when `rate` is None, else open loop at `rate` req/s with at
    most `concurrency` in flight. `warmup` requests go first, at the same concurrency, and
    are not measured. `cpu` pins the load process to that core. `timeout_s` bounds each
    request; a request that fails or answers a status outside `expect` counts as an error.
    """
    if count is None and duration_s is None:
        raise ValueError("give count, duration_s or both: the load must be bounded")
    if concurrency < 1 or (rate is not None and rate <= 0):
        raise ValueError("concurrency must be at least 1 and rate positive")
    spec = _Spec(
        factory=factory,
        count=count,
        duration_s=duration_s,
        concurrency=concurrency,
        rate=rate,
        warmup=warmup,
        cpu=cpu,
        expect=frozenset(expect),
        timeout_s=timeout_s,
    )
    budget = _STARTUP_ALLOWANCE_SECONDS + timeout_s * 2
    if duration_s is not None:
        budget += duration_s
    else:
        # A count without a duration: allow a slow server 2 ms per request on top.
        budget += (count or 0) * 0.002 + (count or 0) / (rate or math.inf)
    # spawn, not fork: the caller may hold an event loop, threads or sockets.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec, sender), name="load", daemon=True)
    process.start()
    sender.close()
    outcome: LoadResult | str | None = None
    try:
        if not receiver.poll(budget):
            raise LoadError(f"the load process did not answer within {budget:.0f} s")
        outcome = receiver.recv()
    except EOFError:
        pass  # it died before answering: reported below, once its exit code is known
    finally:
        receiver.close()
        _reap(process)
    if outcome is None:
        raise LoadError(f"the load process died (exit code {process.exitcode})")
    if isinstance(outcome, str):
        raise LoadError(f"the load process failed: {outcome}")
    return outcome


def _reap(process: multiprocessing.process.BaseProcess) -> None:
    process.join(_JOIN_SECONDS)
    if process.is_alive():
        process.terminate()
        process.join(_JOIN_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def _child(spec: _Spec, sender: Connection) -> None:
    outcome: LoadResult | str
    try:
        if spec.cpu is not None:
            os.sched_setaffinity(0, {spec.cpu})
        outcome = asyncio.run(_drive(spec))
    except BaseException as exc:  # reported to the parent, which raises it
        outcome = f"{type(exc).__name__}: {exc}"
    try:
        sender.send(outcome)
    except OSError:
        pass  # the parent is gone (interrupted); nobody is left to tell
    finally:
        sender.close()


class _Recorder:
    def __init__(self, expect: frozenset[int]) -> None:
        self.expect = expect
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.first_error: str | None = None

    def add(self, status: int, latency: float, error: str | None) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        if status not in self.expect:
            self.errors += 1
            if self.first_error is None:
                self.first_error = error or f"status {status}"

    def result(self, duration: float, cpu_seconds: float) -> LoadResult:
        ordered = sorted(self.latencies)
        count = len(ordered)
        return LoadResult(
            count=count,
            errors=self.errors,
            duration_s=round(duration, 4),
            rps=round(count / duration, 1) if duration > 0 else 0.0,
            p50_ms=_percentile_ms(ordered, 50),
            p90_ms=_percentile_ms(ordered, 90),
            p99_ms=_percentile_ms(ordered, 99),
            max_ms=_percentile_ms(ordered, 100),
            statuses=dict(sorted(self.statuses.items())),
            first_error=self.first_error,
            client_cpu=round(cpu_seconds / duration, 3) if duration > 0 else 0.0,
            samples_ms=tuple(round(s * 1000, 4) for s in self.latencies),
        )


def _percentile_ms(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1] * 1000, 3)


async def _send(session: aiohttp.ClientSession, request: Request) -> tuple[int, str | None]:
    try:
        async with session.request(
            request.method, request.url, data=request.body, headers=dict(request.headers)
        ) as response:
            body = await response.read()
            if response.status >= 400:
                return response.status, f"{response.status}: {body[:300]!r}"
            return response.status, None
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


async def _drive(spec: _Spec) -> LoadResult:
    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        index = 0

        def next_index() -> int:
            nonlocal index
            index += 1
            return index - 1

        if spec.warmup:
            warm = _Recorder(spec.expect)
            await _closed_loop(session, spec, warm, next_index, spec.warmup, None)
        recorder = _Recorder(spec.expect)
        cpu_started = time.process_time()
        started = time.perf_counter()
        deadline = None if spec.duration_s is None else started + spec.duration_s
        if spec.rate is None:
            await _closed_loop(session, spec, recorder, next_index, spec.count, deadline)
        else:
            await _open_loop(session, spec, recorder, next_index, spec.rate, deadline)
        duration = time.perf_counter() - started
        return recorder.result(duration, time.process_time() - cpu_started)


async def _closed_loop(
    session: aiohttp.ClientSession,
    spec: _Spec,
    recorder: _Recorder,
    next_index: Callable[[], int],
    count: int | None,
    deadline: float | None,
) -> None:
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while (count is None or issued < count) and (
            deadline is None or time.perf_counter() < deadline
        ):
            issued += 1
            request = spec.factory(next_index())
            sent = time.perf_counter()
            status, error = await _send(session, request)
            recorder.add(status, time.perf_counter() - sent, error)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _open_loop(
    session: aiohttp.ClientSession,
    spec: _Spec,
    recorder: _Recorder,
    next_index: Callable[[], int],
    rate: float,
    deadline: float | None,
) -> None:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(spec.concurrency)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()

    async def one(request: Request, scheduled: float) -> None:
        async with slots:
            status, error = await _send(session, request)
        # From the scheduled start: waiting for a free slot is the server being slow.
        recorder.add(status, time.perf_counter() - scheduled, error)

    n = 0
    while spec.count is None or n < spec.count:
        scheduled = start + n / rate
        if deadline is not None and scheduled >= deadline:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(spec.factory(next_index()), scheduled)))
        n += 1
    if tasks:
        await asyncio.gather(*tasks)
