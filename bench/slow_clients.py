"""Slow clients and descriptor exhaustion: how long does `router serve` keep them?

Two phases, each against its own `python -m router serve` (one process, embedded store,
default settings) on a free loopback port:

- trickle: a body sent one byte every 5 s to a webhook and to the API, and headers sent
  one byte every 5 s; prints when each got an answer and when the connection closed.
- flood: router started under RLIMIT_NOFILE soft = hard = `--nofile` (1024, the common
  default), `--sockets` idle connections opened and held for `--hold` seconds, on uvloop
  and on asyncio's own loop; prints the log lines and bytes about failed accepts, whether
  `/healthz` answered meanwhile, and how long it took to answer once the sockets closed.

    python bench/slow_clients.py [--phase trickle|flood|both] [--repo PATH]

`--repo` runs another checkout's router (e.g. the one before a change) with the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from common import API_KEY, REPO, free_port, router_env

from router.ops.limits import raise_open_files_limit

TRICKLE_EVERY_SECONDS = 5.0
# Run as the router process: both open-files limits lowered (router raises its soft limit
# only as far as the hard one), uvloop hidden for the asyncio run.
UNDER_LIMIT = """
import resource, runpy, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
if sys.argv[1] == "asyncio":
    sys.modules["uvloop"] = None
sys.argv = ["router", "serve", "--host", "127.0.0.1", "--port", sys.argv[3]]
runpy.run_module("router", run_name="__main__")
"""
ACCEPT_FAILURES = ("out of system resource", "Too many open files", "server.out_of_descriptors")


def healthy(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def router(repo: Path, port: int, log: Path, prefix: list[str]) -> Iterator[None]:
    """`router serve` on `port`, run by `prefix` (the interpreter and its arguments)."""
    url = f"http://127.0.0.1:{port}"
    env = router_env(None, url, log.parent / f"data-{port}") | {"PYTHONPATH": str(repo)}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            prefix, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=log.parent
        )
    try:
        deadline = time.monotonic() + 20
        while not healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"router did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        process.kill()
        process.wait()


async def trickle(port: int, what: str, path: str, headers: dict[str, str], cap: float) -> str:
    """One slow client; what happened to it, in words."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if what == "body":
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n{head}\r\n".encode()
        )
    else:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())

    async def feed() -> None:
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(TRICKLE_EVERY_SECONDS)

    feeding = asyncio.create_task(feed())
    status, answered = b"", None
    try:
        async with asyncio.timeout(cap):
            status = (await reader.readline()).strip()
            answered = time.monotonic() - started
            await reader.read()
        closed = f"closed after {time.monotonic() - started:.1f} s"
    except TimeoutError:
        closed = f"still open after {cap:.0f} s"
    except ConnectionError:
        closed = f"reset after {time.monotonic() - started:.1f} s"
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await feeding
        writer.close()
    answer = f"{status.decode()} after {answered:.1f} s, " if answered and status else ""
    return f"{what:7} {path:14} {answer}{closed}"


def phase_trickle(repo: Path, workdir: Path, cap: float) -> None:
    port = free_port()
    command = [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with router(repo, port, workdir / "trickle.log", command):

        async def all_three() -> list[str]:
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            api = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
            return await asyncio.gather(
                trickle(port, "body", "/twilio/voice", form, cap),
                trickle(port, "body", "/phone-number", api, cap),
                trickle(port, "headers", "/twilio/voice", {}, cap),
            )

        print(f"trickle (one byte every {TRICKLE_EVERY_SECONDS:g} s, default settings):")
        for line in asyncio.run(all_three()):
            print("  " + line)


def phase_flood(
    repo: Path, workdir: Path, loop: str, nofile: int, sockets: int, hold: float
) -> None:
    port = free_port()
    log = workdir / f"flood-{loop}.log"
    command = [sys.executable, "-c", UNDER_LIMIT, loop, str(nofile), str(port)]
    with router(repo, port, log, command):
        held: list[socket.socket] = []
        started = time.monotonic()
        try:
            for _ in range(sockets):
                held.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(hold / 2)
            during = healthy(port)
            time.sleep(hold / 2)
        finally:
            for sock in held:
                sock.close()
        held_for = time.monotonic() - started
        closed = time.monotonic()
        while not healthy(port, timeout=0.5):
            time.sleep(0.05)
        recovered = time.monotonic() - closed
        time.sleep(0.5)
        lines = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if any(word in line for word in ACCEPT_FAILURES)
        ]
        size = sum(len(line) + 1 for line in lines)
        print(
            f"flood on {loop} ({sockets} idle connections, RLIMIT_NOFILE {nofile}, held "
            f"{held_for:.0f} s): {len(lines)} log lines about failed accepts ({size:,} bytes), "
            f"/healthz meanwhile {'answered' if during else 'did not answer'}, "
            f"answered {recovered:.2f} s after the sockets closed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["trickle", "flood", "both"], default="both")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to run")
    parser.add_argument("--cap", type=float, default=130, help="seconds a slow client waits")
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--sockets", type=int, default=1100)
    parser.add_argument("--hold", type=float, default=20)
    args = parser.parse_args()
    raise_open_files_limit()  # this process holds `--sockets` connections itself
    with tempfile.TemporaryDirectory(prefix="router-slow-") as tmp:
        workdir = Path(tmp)
        if args.phase in ("trickle", "both"):
            phase_trickle(args.repo.resolve(), workdir, args.cap)
        if args.phase in ("flood", "both"):
            for loop in ("uvloop", "asyncio"):
                phase_flood(
                    args.repo.resolve(), workdir, loop, args.nofile, args.sockets, args.hold
                )


if __name__ == "__main__":
    main()
