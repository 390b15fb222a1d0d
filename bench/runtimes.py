"""What does choosing a runtime cost on the static route?

Three servers, each one process on core 0 with Redis, the same wrk load from core 1, in
alternating rounds: the bare app (the baseline, as in `webhooks.py`); router with no
runtimes file (every call to `ROUTER_RUNTIME_URL`, which still gets its failover
callbacks); and router with a runtimes file whose route matches the static assistant and
splits its calls 50/50 between two stream runtimes, a SIP runtime as a standby, callers
sticky (a route matched, a weighted rendezvous choice, the callbacks' query, per call).
Each router answers the same pre-signed Twilio webhooks with unique CallSids. The figures
are req/s and CPU per request against the bare app's, and the difference between the two
routers: the cost of runtime selection.

Run: `python bench/runtimes.py` (about 1 minute) or `--quick`.
"""

from __future__ import annotations

from typing import Any

import yaml
from common import (
    ASSISTANT_ID,
    Variant,
    compare_variants,
    missing_tools,
    parse_variant_arguments,
    run_bench,
    show_variants,
    variant_arguments,
)

RUNTIMES = {
    "runtimes": [
        {"name": "blue", "kind": "stream", "url": "wss://blue.example.com/stream"},
        {"name": "green", "kind": "stream", "url": "wss://green.example.com/stream"},
        {"name": "agent", "kind": "sip", "uri": "sip:agent@sip.example.com"},
    ],
    "routes": [
        {"match": {"orgId": "acme", "provider": "twilio"}, "runtimes": [{"name": "agent"}]},
        {
            "match": {"assistantId": ASSISTANT_ID, "provider": "twilio"},
            "runtimes": [
                {"name": "blue", "weight": 50},
                {"name": "green", "weight": 50},
                {"name": "agent", "weight": 0},
            ],
            "sticky": "caller",
        },
    ],
}


def show(report: dict[str, Any]) -> None:
    show_variants(report)
    us = report["server_us_per_request"]
    print(
        f"runtime selection: {us['router-runtimes'] - us['router']:+.1f} us/req "
        "(router with the runtimes file minus router without)"
    )


def main() -> int:
    parser = variant_arguments(__doc__.split("\n\n")[0] if __doc__ else None)
    args = parse_variant_arguments(parser)
    variants = [
        Variant("router"),
        Variant(
            "router-runtimes",
            {"ROUTER_RUNTIMES_FILE": "{log_dir}/runtimes.yaml"},
            files={"runtimes.yaml": yaml.safe_dump(RUNTIMES)},
        ),
    ]

    def measure() -> dict[str, Any]:
        return compare_variants("runtimes", variants, args)

    return run_bench("runtimes.py", missing_tools(), measure, show, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
