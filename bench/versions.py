"""Which of two (or more) versions of router answers the static Twilio route faster?

Each version is a git revision of this repository (exported with `git archive` into the
run's directory) or a directory holding a `router` package. The bare app and one router
per version, each one process on core 0 with Redis, get the same wrk load from core 1
(pre-signed Twilio webhooks with unique CallSids), in rounds whose order alternates, so
that a slow minute of a shared machine falls on every side. Reported: req/s and CPU per
request against the bare app's, each round's router ÷ bare ratio (range and median), and
each version's CPU per request against the first's: what a change cost or saved.

Run: `python bench/versions.py HEAD~1 HEAD` (about a minute; `--rounds`, `--seconds`,
`--quick` as the other scripts). Only `router/` comes from each version: the bench, the
installed libraries and the settings are this checkout's.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from common import (
    REPO,
    Variant,
    compare_variants,
    missing_tools,
    parse_variant_arguments,
    run_bench,
    show_variants,
    variant_arguments,
)


def exported(version: str, into: Path) -> Path:
    """A directory holding `version`'s `router` package: `version` itself when it is one,
    else the git revision of that name exported into `into`."""
    given = Path(version)
    if (given / "router" / "__init__.py").is_file():
        return given.resolve()
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", version, "router"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def show(report: dict[str, Any]) -> None:
    show_variants(report)
    us = report["server_us_per_request"]
    names = [name for name in us if name != "bare"]
    first = names[0]
    for name in names[1:]:
        change = us[name] - us[first]
        print(f"{name} against {first}: {change:+.1f} us/req ({change / us[first]:+.1%} CPU)")


def main() -> int:
    parser = variant_arguments(__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("versions", nargs="+", help="git revisions, or directories with router/")
    args = parse_variant_arguments(parser)
    if len(args.versions) < 2:
        parser.error("give at least two versions")
    with tempfile.TemporaryDirectory(prefix="router-bench-versions-") as tmp:
        variants = []
        for index, version in enumerate(args.versions, start=1):
            label = re.sub(r"[^A-Za-z0-9._-]+", "-", version).strip("-")[-24:]
            where = exported(version, Path(tmp) / f"v{index}")
            variants.append(Variant(f"v{index}-{label}", {"PYTHONPATH": str(where)}))

        def measure() -> dict[str, Any]:
            report = compare_variants("versions", variants, args)
            report["versions"] = args.versions
            return report

        return run_bench("versions.py", missing_tools(), measure, show, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
