"""How fast is router's webhook hot path, next to a bare aiohttp app on the same core?

Measured in one run, with the same wrk load: router's `/twilio/voice` for a number with a
static `assistantId` (signature checked, unique CallSids, caches warm) against a bare aiohttp
app on uvloop that reads the form and answers constant TwiML, each one process pinned to
core 0 with Redis, wrk on core 1. Router should reach at least 0.45 of the bare app's req/s
(aim 0.55), answer with p99 under 10 ms at 1,000 req/s, and a warm static route should make
no Redis call. Then one line per provider (Twilio, Telnyx TeXML, Vonage NCCO, the SIP edge).

In the same rounds, a third server: the bare app that also checks the signature and logs a
`call.routed` line through router's structlog set-up, and does nothing else
(`essentials_app` in common.py). Its ratio to the bare app is the floor under router's on
the day's machine: how much of the gap is work every answer must do.

Run: `python bench/webhooks.py` (about 2 minutes) or `python bench/webhooks.py --quick`
(about 40 s). bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    ASSISTANT_ID,
    NOT_THE_HOT_PATH,
    SIP_URI,
    TELNYX_NUMBER,
    VONAGE_API_KEY,
    VONAGE_NUMBER,
    VONAGE_SIGNATURE_SECRET,
    Bench,
    CommandStats,
    Phase,
    Processes,
    Server,
    alternate,
    api,
    can_pin,
    check_answer,
    command_delta,
    create_twilio_number,
    hot_path_commands,
    missing_tools,
    processes,
    ratio,
    run_bench,
    sip_requests,
    start_bare,
    start_redis,
    start_router,
    telnyx_requests,
    twilio_requests,
    vonage_requests,
    write_requests,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TARGET_RPS_RATIO = 0.45
AIM_RPS_RATIO = 0.55
TARGET_P99_MS = 10.0
RATE_REACHED = 0.98  # share of --rate a paced run must achieve for its p99 to count
# Paced runs spread the rate over this many connections: enough that one slow answer does
# not hold the schedule back, few enough that each connection is reused often.
RATE_CONNECTIONS = 16


@dataclass(frozen=True)
class Plan:
    """How much to measure; `--quick` shrinks every bound."""

    rounds: int  # bare/router throughput rounds, alternating who goes first
    seconds: int  # per throughput or paced phase
    provider_seconds: int  # per provider phase
    warmup_seconds: int  # per side before the first round
    connections: int  # closed loop
    rate: float  # paced phases, requests per second
    variants: int  # signed requests per provider (distinct call ids), cycled
    pin: bool


def create_routes(router: Server) -> Ed25519PrivateKey:
    """A number per provider, each routed to the static assistant, through the REST API as
    an operator makes them. The Telnyx key that signs, whose public half router holds."""
    create_twilio_number(router.url)
    routing = {"assistantId": ASSISTANT_ID}
    telnyx_key = Ed25519PrivateKey.generate()
    public = telnyx_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    telnyx = api(
        router.url,
        "POST",
        "/credential",
        {
            "provider": "telnyx",
            "apiKey": "KEY-bench-telnyx-api-key",
            "publicKey": base64.b64encode(public).decode(),
        },
    )
    api(
        router.url,
        "POST",
        "/phone-number",
        {
            "provider": "telnyx",
            "number": TELNYX_NUMBER,
            "credentialId": telnyx["id"],
            **routing,
        },
    )
    vonage = api(
        router.url,
        "POST",
        "/credential",
        {
            "provider": "vonage",
            "apiKey": VONAGE_API_KEY,
            "apiSecret": "bench-vonage-api-secret",
            "signatureSecret": VONAGE_SIGNATURE_SECRET,
        },
    )
    api(
        router.url,
        "POST",
        "/phone-number",
        {"provider": "vonage", "number": VONAGE_NUMBER, "credentialId": vonage["id"], **routing},
    )
    api(
        router.url,
        "POST",
        "/phone-number",
        {"provider": "vapi", "sipUri": SIP_URI, **routing},
    )
    return telnyx_key


def run(plan: Plan) -> dict[str, Any]:
    """Start everything, measure, stop everything; the figures as a JSON-ready dict."""
    with processes("webhooks") as started:
        bench = Bench.pinned(plan.pin)
        bench.redis = start_redis(started, bench.server_cpus)
        bench.stats = CommandStats(bench.redis.url)
        try:
            return measure(plan, bench, started)
        finally:
            bench.stats.close()


def measure(plan: Plan, bench: Bench, started: Processes) -> dict[str, Any]:
    assert bench.redis is not None and bench.stats is not None
    bare = start_bare(started, cpus=bench.server_cpus)
    essentials = start_bare(started, cpus=bench.server_cpus, app="essentials")
    router = start_router(started, bench.redis.url, cpus=bench.server_cpus)
    telnyx_key = create_routes(router)

    built_at = time.perf_counter()
    signed = {
        "twilio": twilio_requests(router.url + "/twilio/voice", plan.variants),
        "telnyx": telnyx_requests(telnyx_key, plan.variants),
        "vonage": vonage_requests(plan.variants),
        "sip": sip_requests(plan.variants),
    }
    files = {
        provider: write_requests(started.log_dir / f"{provider}.requests", requests)
        for provider, requests in signed.items()
    }
    # Signed for the essentials app's own URL: it checks the signature too.
    essential_requests = twilio_requests(essentials.url + "/twilio/voice", plan.variants)
    essential_file = write_requests(started.log_dir / "essentials.requests", essential_requests)
    print(
        f"signed {plan.variants} requests per provider in {time.perf_counter() - built_at:.1f} s",
        flush=True,
    )
    # Each answer must be the static assistant's (the signature passed, the route is static).
    answer_bytes = {"bare": check_answer(bare, signed["twilio"][0], b"<Connect>")}
    check_answer(essentials, essential_requests[0], b"<Connect>")
    for provider, requests in signed.items():
        answer_bytes[provider] = check_answer(router, requests[0], ASSISTANT_ID.encode())
    # Warm both sides (caches, the interpreter's own) before anything is measured.
    twilio_files = {
        "bare": files["twilio"],
        "essentials": essential_file,
        "router": files["twilio"],
    }
    warm_ups = [(server, twilio_files[server.name]) for server in (bare, essentials)]
    for server, requests_file in [*warm_ups, *((router, f) for f in files.values())]:
        bench.run(
            "warm-up",
            server,
            requests_file,
            seconds=plan.warmup_seconds,
            connections=plan.connections,
            quiet=True,
        )
    routed_before = count_routed(started.log_path("router"))
    commands_before = bench.stats.snapshot()

    print(f"throughput: {plan.connections} connections, {plan.rounds} round(s)", flush=True)
    throughput: dict[str, list[Phase]] = {"bare": [], "essentials": [], "router": []}
    for r in range(plan.rounds):
        for server in alternate(r, [bare, essentials, router]):
            throughput[server.name].append(
                bench.run(
                    f"{server.name} /twilio/voice",
                    server,
                    twilio_files[server.name],
                    seconds=plan.seconds,
                    connections=plan.connections,
                )
            )

    print(f"latency: paced at {plan.rate:g} req/s over {RATE_CONNECTIONS} connections", flush=True)
    paced: dict[str, list[Phase]] = {"bare": [], "router": []}
    for r in range(plan.rounds):
        for server in alternate(r, [router, bare]):
            paced[server.name].append(
                bench.run(
                    f"{server.name} /twilio/voice @{plan.rate:g}/s",
                    server,
                    files["twilio"],
                    seconds=plan.seconds,
                    connections=RATE_CONNECTIONS,
                    rate=plan.rate,
                )
            )

    print("providers: static assistant, signed", flush=True)
    providers: dict[str, tuple[Phase, Phase]] = {}
    for provider, requests in signed.items():
        path = requests[0].target
        providers[provider] = (
            bench.run(
                f"{provider} {path}",
                router,
                files[provider],
                seconds=plan.provider_seconds,
                connections=plan.connections,
            ),
            bench.run(
                f"{provider} {path} @{plan.rate:g}/s",
                router,
                files[provider],
                seconds=plan.provider_seconds,
                connections=RATE_CONNECTIONS,
                rate=plan.rate,
            ),
        )
    commands = command_delta(commands_before, bench.stats.snapshot())
    routed = count_routed(started.log_path("router")) - routed_before
    router_answers = sum(
        p.load.requests for p in bench.phases if not p.name.startswith(("bare", "essentials"))
    )
    return report(
        plan=plan,
        throughput=throughput,
        paced=paced,
        providers=providers,
        commands=commands,
        routed=routed,
        router_answers=router_answers,
        answer_bytes=answer_bytes,
        phases=bench.phases,
    )


def count_routed(log: Path) -> int:
    """`call.routed` lines router wrote to its stdout so far."""
    with log.open("rb") as lines:
        return sum(1 for line in lines if b'"call.routed"' in line)


def report(
    *,
    plan: Plan,
    throughput: dict[str, list[Phase]],
    paced: dict[str, list[Phase]],
    providers: dict[str, tuple[Phase, Phase]],
    commands: dict[str, int],
    routed: int,
    router_answers: int,
    answer_bytes: dict[str, int],
    phases: Sequence[Phase],
) -> dict[str, Any]:
    """Best rounds, ratios and verdicts, and every phase."""

    def fastest(group: Sequence[Phase]) -> Phase:
        # Other work on the machine only ever slows a round down: the best is the cleanest.
        return max(group, key=lambda p: p.load.rps)

    def cheapest(group: Sequence[Phase]) -> Phase:
        return max(group, key=lambda p: p.capacity_rps)

    def calmest(group: Sequence[Phase]) -> Phase:
        return min(group, key=lambda p: p.load.p99_ms)

    bare_best, router_best = fastest(throughput["bare"]), fastest(throughput["router"])
    essentials_best = fastest(throughput["essentials"])
    rps_ratio = ratio(router_best.load.rps, bare_best.load.rps)
    per_round = [
        ratio(r.load.rps, b.load.rps)
        for r, b in zip(throughput["router"], throughput["bare"], strict=True)
    ]
    bare_capacity = cheapest(throughput["bare"]).capacity_rps
    at_rate = calmest(paced["router"])
    hot = hot_path_commands(commands)
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "pinned": plan.pin,
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
        "plan": asdict(plan),
        "verdicts": {
            "rps_router_over_bare": rps_ratio,
            "rps_router_over_bare_per_round": per_round,
            "rps_router_over_bare_median_round": round(statistics.median(per_round), 3),
            "capacity_router_over_bare": ratio(
                cheapest(throughput["router"]).capacity_rps, bare_capacity
            ),
            "rps_essentials_over_bare": ratio(essentials_best.load.rps, bare_best.load.rps),
            "rps_router_over_essentials": ratio(router_best.load.rps, essentials_best.load.rps),
            "rps_target": TARGET_RPS_RATIO,
            "rps_aim": AIM_RPS_RATIO,
            "rps_ratio_met": rps_ratio >= TARGET_RPS_RATIO,
            "rate": plan.rate,
            "achieved_rate": at_rate.load.rps,
            "p99_ms_at_rate": at_rate.load.p99_ms,
            "p99_ms_at_rate_per_round": [p.load.p99_ms for p in paced["router"]],
            "bare_p99_ms_at_rate": calmest(paced["bare"]).load.p99_ms,
            "p99_target_ms": TARGET_P99_MS,
            # The p99 counts only if the rate was reached: a slower run is an easier one.
            "rate_met": at_rate.load.rps >= RATE_REACHED * plan.rate,
            "p99_met": at_rate.load.p99_ms < TARGET_P99_MS
            and at_rate.load.rps >= RATE_REACHED * plan.rate
            and not at_rate.load.errors,
            "redis_commands": commands,
            "redis_hot_path_commands": hot,
            "no_redis_call": hot == 0,
        },
        "logging": {"call_routed_lines": routed, "router_answers_counted_by_wrk": router_answers},
        "summary": {
            "bare": bare_best.to_json(),
            "essentials": essentials_best.to_json(),
            "router": router_best.to_json(),
            "router_at_rate": at_rate.to_json(),
            "bare_at_rate": calmest(paced["bare"]).to_json(),
        },
        "providers": {
            name: {
                "rps": loaded.load.rps,
                "rps_over_bare": ratio(loaded.load.rps, bare_best.load.rps),
                "capacity_over_bare": ratio(loaded.capacity_rps, bare_capacity),
                "server_cpu_us_per_req": loaded.server_us_per_req,
                "p99_ms_at_rate": rated.load.p99_ms,
                "redis_hot_path_commands": hot_path_commands(loaded.redis_commands)
                + hot_path_commands(rated.redis_commands),
                "errors": loaded.load.error_count + rated.load.error_count,
                "answer_bytes": answer_bytes[name],
            }
            for name, (loaded, rated) in providers.items()
        },
        "answer_bytes_bare": answer_bytes["bare"],
        "phases": [p.to_json() for p in phases],
    }


def print_report(report: dict[str, Any]) -> None:
    verdicts = report["verdicts"]
    print()
    header = f"{'provider':<10}{'req/s':>8}{'÷ bare':>8}{'cpu ÷ bare':>11}{'srv us':>8}"
    header += f"{'p99@rate':>10}{'redis':>7}{'err':>5}"
    print(header)
    print("-" * len(header))
    for name, p in report["providers"].items():
        print(
            f"{name:<10}{p['rps']:>8.0f}{p['rps_over_bare']:>8.2f}"
            f"{p['capacity_over_bare']:>11.2f}{p['server_cpu_us_per_req']:>8.0f}"
            f"{p['p99_ms_at_rate']:>10.2f}{p['redis_hot_path_commands']:>7}{p['errors']:>5}"
        )
    print()

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    spread = verdicts["rps_router_over_bare_per_round"]
    rounds = (
        f" [rounds {min(spread):.2f}..{max(spread):.2f}, median "
        f"{verdicts['rps_router_over_bare_median_round']:.2f}]"
        if len(spread) > 1
        else ""
    )
    summary = report["summary"]
    print(
        f"router / bare req/s      {verdicts['rps_router_over_bare']:.3f}{rounds}  "
        f"({summary['router']['rps']:.0f} / {summary['bare']['rps']:.0f}; "
        f"target >= {TARGET_RPS_RATIO}, aim {AIM_RPS_RATIO})  {mark(verdicts['rps_ratio_met'])}"
    )
    print(
        f"essentials / bare req/s  {verdicts['rps_essentials_over_bare']:.3f}  "
        f"({summary['essentials']['rps']:.0f} / {summary['bare']['rps']:.0f}; the bare app with "
        "a signature check and a call.routed line only: the floor under router; router / "
        f"essentials {verdicts['rps_router_over_essentials']:.3f})"
    )
    print(
        f"router / bare capacity   {verdicts['capacity_router_over_bare']:.3f}  "
        "(from CPU per request: steady on a busy machine)"
    )
    print(
        f"p99 at {verdicts['rate']:g} req/s         {verdicts['p99_ms_at_rate']:.2f} ms  "
        f"(bare {verdicts['bare_p99_ms_at_rate']:.2f} ms; achieved "
        f"{verdicts['achieved_rate']:.0f} req/s; target < {TARGET_P99_MS:g} ms)  "
        f"{mark(verdicts['p99_met'])}"
    )
    residual = {k: v for k, v in verdicts["redis_commands"].items() if k in NOT_THE_HOT_PATH}
    print(
        f"redis commands, webhooks {verdicts['redis_hot_path_commands']}  "
        f"(not the webhooks': {residual or 'none'})  {mark(verdicts['no_redis_call'])}"
    )
    logging = report["logging"]
    print(
        f"call.routed lines logged {logging['call_routed_lines']} for "
        f"{logging['router_answers_counted_by_wrk']} answers wrk counted (logging on, info; "
        "requests in flight when wrk stops are logged but not counted)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Ratios are against a bare app measured in the same run; absolute numbers "
        "depend on the machine. Needs wrk, redis-server, taskset and uvloop.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~40 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--connections", type=int, default=32, help="closed loop (default 32)")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced req/s (1000)")
    parser.add_argument("--seconds", type=int, default=None, help="per phase (default 4)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 4, quick 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be between 1 and 256")
    if not 10 <= args.rate <= 20_000:
        parser.error("--rate must be between 10 and 20000")
    if args.seconds is not None and not 1 <= args.seconds <= 60:
        parser.error("--seconds must be between 1 and 60")
    if args.rounds is not None and not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    return Plan(
        rounds=args.rounds or (1 if quick else 4),
        seconds=args.seconds or (2 if quick else 4),
        provider_seconds=1 if quick else 3,
        warmup_seconds=1 if quick else 2,
        connections=args.connections,
        rate=args.rate,
        variants=1024 if quick else 8192,
        pin=not args.no_pin and can_pin(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(
        "webhooks.py", missing_tools(), lambda: run(plan_of(args)), print_report, args.json
    )


if __name__ == "__main__":
    raise SystemExit(main())
