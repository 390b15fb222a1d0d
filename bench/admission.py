"""What does a concurrency cap cost on the static route?

The bare app, router with an uncapped Twilio number, and router with the same number
capped (`maxConcurrentCalls`, high enough that every call is admitted: the cost of
counting, not of turning calls away), each one process on core 0 with Redis, the same
wrk load from core 1, in alternating rounds. Each router answers pre-signed Twilio
webhooks with unique CallSids (cycled: a CallSid seen again holds its slot already, as a
provider retry does). Reported: req/s and CPU per request against the bare app, Redis
commands per request (a capped call makes one round trip: one script), and the
difference between the two routers.

Run: `python bench/admission.py` (about 1 minute) or `--quick`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from common import (
    Variant,
    compare_variants,
    create_twilio_number,
    missing_tools,
    parse_variant_arguments,
    run_bench,
    show_variants,
    variant_arguments,
)

CAP = 100_000  # the most a number takes: far above the calls a run makes


def show(report: dict[str, Any]) -> None:
    show_variants(report)
    us = report["server_us_per_request"]
    print(f"a cap: {us['router-capped'] - us['router']:+.1f} us/req (capped minus uncapped)")


def main() -> int:
    parser = variant_arguments(__doc__.split("\n\n")[0] if __doc__ else None)
    args = parse_variant_arguments(parser)
    capped = partial(create_twilio_number, maxConcurrentCalls=CAP)
    variants = [Variant("router"), Variant("router-capped", setup=capped)]

    def measure() -> dict[str, Any]:
        return compare_variants("admission", variants, args)

    return run_bench("admission.py", missing_tools(), measure, show, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
