"""A generic HTTP load generator that runs in its own process (optionally pinned to a core).

`run_load(factory, ...)` drives requests built by `factory(i)` either closed-loop (at most
`concurrency` in flight, each worker sends its next request when the last one answered) or
open-loop (`rate` requests per second on a fixed schedule, latency counted from the scheduled
start so a slow server is not hidden by the generator waiting for it). It returns the count,
duration, requests per second and p50/p90/p99/max latency of the measured requests.

The load runs in a separate process so the generator's CPU is not the caller's (and can be
pinned away from the server under test). `factory` is pickled to that process: pass a
module-level function, a `functools.partial` of one, or an instance of a module-level class.

Two clients send the requests: `engine="aiohttp"` (the default, a real HTTP client) and
`engine="raw"`, a minimal HTTP/1.1 keep-alive client on asyncio protocols for plain `http://`
URLs. The raw one costs the generator about a third of aiohttp's CPU per request, so a fast
server is measured rather than the generator; it reads `Content-Length` and chunked answers.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from multiprocessing.connection import Connection
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

# Time for the child process to start (spawn imports aiohttp afresh) before its load begins.
_STARTUP_ALLOWANCE_SECONDS = 30.0
_JOIN_SECONDS = 5.0

Engine = Literal["aiohttp", "raw"]


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
    # Open loop only: how late the generator itself started requests after their scheduled
    # time (p99 and max). Well under the latencies, the generator kept its schedule.
    send_lag_p99_ms: float = 0.0
    send_lag_max_ms: float = 0.0

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
        send_lag_p99_ms=max(r.send_lag_p99_ms for r in results),
        send_lag_max_ms=max(r.send_lag_max_ms for r in results),
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
    engine: Engine = "aiohttp"


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
    engine: Engine = "aiohttp",
) -> LoadResult:
    """Drive `factory`'s requests from a separate process; stop at `count` or `duration_s`.

    Closed loop at `concurrency` when `rate` is None, else open loop at `rate` req/s with at
    most `concurrency` in flight. `warmup` requests go first, at the same concurrency, and
    are not measured. `cpu` pins the load process to that core. `timeout_s` bounds each
    request; a request that fails or answers a status outside `expect` counts as an error.
    `engine` picks the client: `aiohttp`, or `raw` (plain `http://` only, see the module).
    """
    if count is None and duration_s is None:
        raise ValueError("give count, duration_s or both: the load must be bounded")
    if concurrency < 1 or (rate is not None and rate <= 0):
        raise ValueError("concurrency must be at least 1 and rate positive")
    if engine not in ("aiohttp", "raw"):
        raise ValueError(f"unknown engine {engine!r}")
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
        engine=engine,
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
        self.send_lags: list[float] = []

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
            send_lag_p99_ms=_percentile_ms(sorted(self.send_lags), 99),
            send_lag_max_ms=_percentile_ms(sorted(self.send_lags), 100),
        )


def _percentile_ms(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1] * 1000, 3)


Send = Callable[[Request], Awaitable[tuple[int, str | None]]]


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
    if spec.engine == "raw":
        pool = _RawPool(spec.timeout_s)
        try:
            return await _measure(spec, pool.send)
        finally:
            pool.close()
    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(request: Request) -> tuple[int, str | None]:
            return await _send(session, request)

        return await _measure(spec, send)


async def _measure(spec: _Spec, send: Send) -> LoadResult:
    index = 0

    def next_index() -> int:
        nonlocal index
        index += 1
        return index - 1

    if spec.warmup:
        warm = _Recorder(spec.expect)
        await _closed_loop(send, spec, warm, next_index, spec.warmup, None)
    recorder = _Recorder(spec.expect)
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = None if spec.duration_s is None else started + spec.duration_s
    if spec.rate is None:
        await _closed_loop(send, spec, recorder, next_index, spec.count, deadline)
    else:
        await _open_loop(send, spec, recorder, next_index, spec.rate, deadline)
    duration = time.perf_counter() - started
    return recorder.result(duration, time.process_time() - cpu_started)


async def _closed_loop(
    send: Send,
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
            status, error = await send(request)
            recorder.add(status, time.perf_counter() - sent, error)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _open_loop(
    send: Send,
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
            status, error = await send(request)
        # From the scheduled start: waiting for a free slot is the server being slow.
        recorder.add(status, time.perf_counter() - scheduled, error)

    n = 0
    while spec.count is None or n < spec.count:
        scheduled = start + n / rate
        if deadline is not None and scheduled >= deadline:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            # The selector sleeps in whole milliseconds, rounded up: a request may start up
            # to ~1 ms after its slot, and that time counts in its latency (pessimistic).
            await asyncio.sleep(delay)
        request = spec.factory(next_index())
        # The generator's own lateness (a busy load core), apart from the server's.
        recorder.send_lags.append(max(time.perf_counter() - scheduled, 0.0))
        tasks.append(loop.create_task(one(request, scheduled)))
        n += 1
    if tasks:
        await asyncio.gather(*tasks)


# --- the raw client ---------------------------------------------------------------------


class _ResponseError(Exception):
    """The server's answer could not be read as HTTP/1.1."""


@lru_cache(maxsize=64)
def _target(url: str) -> tuple[str, int, str, str]:
    """host, port, `Host` header and request target of a plain `http://` URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the raw engine sends plain http:// only, not {url!r}")
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, parts.netloc, path


def _encode(request: Request) -> tuple[tuple[str, int], bytes]:
    host, port, netloc, path = _target(request.url)
    body = request.body or b""
    lines = [f"{request.method} {path} HTTP/1.1", f"Host: {netloc}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    if body or request.method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    return (host, port), ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _RawProtocol(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed from the buffer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._parse()
        except (_ResponseError, ValueError) as exc:
            self.closed = True
            waiter.set_exception(_ResponseError(f"unreadable answer: {exc}"))
            return
        if answer is not None:
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection"))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> tuple[int, bytes] | None:
        """(status, body) once the whole answer is in the buffer (and consume it)."""
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection" and value.strip().lower() == "close":
                self.closed = True
        start = end + 4
        if not chunked:
            if len(buf) < start + length:
                return None
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            return status, body
        chunks: list[bytes] = []
        at = start
        while True:
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buf[at:line_end]).split(b";", 1)[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                return None
            if size == 0:
                # No trailers are expected from the servers measured here.
                del buf[: line_end + 4]
                return status, b"".join(chunks)
            chunks.append(bytes(buf[line_end + 2 : line_end + 2 + size]))
            at = line_end + 2 + size + 2


class _RawPool:
    """Idle keep-alive connections per address; a new one when none is idle. The loops
    above bound how many are in flight, so the pool needs no limit of its own."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._idle: dict[tuple[str, int], list[_RawProtocol]] = {}
        self._all: list[_RawProtocol] = []

    async def send(self, request: Request) -> tuple[int, str | None]:
        try:
            address, data = _encode(request)
        except ValueError as exc:
            return 0, f"ValueError: {exc}"
        idle = self._idle.setdefault(address, [])
        connection: _RawProtocol | None = None
        try:
            async with asyncio.timeout(self._timeout):
                while idle and connection is None:
                    candidate = idle.pop()
                    connection = None if candidate.closed else candidate
                if connection is None:
                    loop = asyncio.get_running_loop()
                    _, connection = await loop.create_connection(_RawProtocol, *address)
                    self._all.append(connection)
                status, body = await connection.request(data)
        except (OSError, TimeoutError, _ResponseError) as exc:
            if connection is not None:
                connection.close()
            return 0, f"{type(exc).__name__}: {exc}"
        if connection.closed:
            connection.close()
        else:
            idle.append(connection)
        if status >= 400:
            return status, f"{status}: {body[:300]!r}"
        return status, None

    def close(self) -> None:
        for connection in self._all:
            connection.close()
        self._all.clear()
        self._idle.clear()
