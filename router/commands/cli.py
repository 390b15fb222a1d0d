"""The `router` command: `serve`, `simulate`, `check-config`, `numbers export|import`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from router import __version__
from router.models.ringing import ATTESTATIONS
from router.ops.limits import raise_open_files_limit
from router.settings import Settings, load_settings
from router.store.interface import StoreUnavailable

DEFAULT_HOST = "0.0.0.0"  # noqa: S104  # a worker behind a load balancer listens on all interfaces
DEFAULT_PORT = 8080
DEFAULT_URL = "http://127.0.0.1:8080"


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    from router.commands.serve import serve_one, serve_workers
    from router.ops.logs import configure_logging

    settings = _settings(args)
    settings.runtimes()  # a runtimes file that cannot be used stops here, with its message
    raise_open_files_limit()  # before any worker starts: they inherit it
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        print("router: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers > 1 and not settings.redis_url:
        print(
            "router: --workers > 1 needs ROUTER_REDIS_URL: the embedded store belongs to one "
            "process (workers share numbers, call records and invalidations through Redis)",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if workers == 1:
        serve_one(settings, args.host, args.port)
    else:
        serve_workers(settings, args.host, args.port, workers)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    orgs = settings.all_orgs()
    runtimes = settings.runtimes()
    print(f"store: {'redis' if settings.redis_url else f'embedded ({settings.data_dir})'}")
    print(f"orgs: {', '.join(o.id for o in orgs) or 'none (the API will refuse every request)'}")
    print(f"public url: {settings.public_url or 'the URL each request arrived on'}")
    print(f"runtime url: {settings.runtime_url}")
    print(f"secrets at rest: {'encrypted' if settings.secret_key else 'not encrypted'}")
    print(f"runtimes file: {settings.runtimes_file or 'none (every call to the runtime url)'}")
    for line in runtimes.describe():
        print(f"  {line}")
    return 0


def _moment(value: str) -> datetime:
    """`--at`: an ISO 8601 time that says its offset (a time without one names no instant)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-12-24T18:30:00-05:00 or ...Z)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no offset: add Z or one like -05:00 (a local time names no instant)"
        )
    return moment


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from router.commands.simulate import Request, SimulateError, simulate
    from router.ops.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    try:
        response = json.loads(args.response) if args.response is not None else None
    except ValueError as exc:
        print(f"router: --response is not JSON: {exc}", file=sys.stderr)
        return 2
    request = Request(
        at=args.at,
        attestation=args.attestation,
        caller=args.caller,
        to=args.to,
        sip_uri=args.sip_uri,
        provider=args.provider,
        number_file=args.number_file,
        response=response,
        offline=args.offline,
        render=args.render,
        account=args.account,
    )
    try:
        result = asyncio.run(simulate(settings, request))
    except SimulateError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _api_key(args: argparse.Namespace) -> str | None:
    key: str | None = args.api_key or os.environ.get("ROUTER_API_KEY") or None
    if key is None:
        print("router: no API key: pass --api-key or set ROUTER_API_KEY", file=sys.stderr)
    return key


def cmd_numbers_export(args: argparse.Namespace) -> int:
    import asyncio

    import aiohttp

    from router.commands.numbers_io import ApiFailure, Format, render_export, run_export

    api_key = _api_key(args)
    if api_key is None:
        return 2
    fmt: Format = args.format or (
        "json" if args.output and args.output.suffix == ".json" else "yaml"
    )
    try:
        export = asyncio.run(run_export(args.url, api_key))
    except (ApiFailure, aiohttp.ClientError, TimeoutError) as exc:
        print(f"router: {args.url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    text = render_export(export, fmt)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    where = f" to {args.output}" if args.output else ""
    print(f"exported {len(export.numbers)} numbers{where}", file=sys.stderr)
    if export.variables:
        print(
            "secrets are not exported; import reads them from: " + ", ".join(export.variables),
            file=sys.stderr,
        )
    if export.skipped:
        print(
            f"skipped {len(export.skipped)} byo numbers without a number (no lookup key): "
            + ", ".join(export.skipped),
            file=sys.stderr,
        )
    return 0


def cmd_numbers_import(args: argparse.Namespace) -> int:
    import asyncio

    import aiohttp

    from router.commands.numbers_io import ApiFailure, TransferError, load_document, run_import

    try:
        items = load_document(args.file.read_text(), str(args.file))
        api_key = _api_key(args)
        if api_key is None:
            return 2
        return asyncio.run(
            run_import(
                args.url,
                api_key,
                items,
                os.environ,
                dry_run=args.dry_run,
                out=sys.stdout,
                err=sys.stderr,
            )
        )
    except TransferError as exc:
        print(f"router: {args.file}: nothing was written:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return exc.code
    except (ApiFailure, aiohttp.ClientError, TimeoutError) as exc:
        print(f"router: {args.url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1


NUMBERS_HELP = """\
Numbers are matched by lookup key (provider+number, SIP URI, byo credentialId+number),
never by id. Import makes each number of the file what the file says: created if absent,
PATCHed with the changed fields if different (fields the file no longer has are cleared),
left alone if equal; numbers the file does not name are never touched. Secrets are not
exported (the API masks them): the file holds ${VARIABLE} placeholders that import reads
from the environment; a secret that is left out or unset keeps its stored value.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="router",
        description="Inbound call routing worker for voice AI. Settings come from ROUTER_* "
        "environment variables and optionally a YAML file (--config).",
    )
    parser.add_argument("--version", action="version", version=f"router {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, default=None, help="YAML settings file")
        return sub

    serve = add("serve", "run the worker (HTTP API and provider webhooks)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"interface (default {DEFAULT_HOST})")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port (default ROUTER_WORKERS or 1; >1 needs Redis)",
    )
    serve.set_defaults(func=cmd_serve)

    sim = add("simulate", "decide a call for a number and a caller, print the decision and trace")
    sim.add_argument("--from", dest="caller", default="+15555550123", help="the caller's number")
    target = sim.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="the called number (E.164), looked up in the store")
    target.add_argument("--sip-uri", help="the called SIP URI (vapi numbers)")
    target.add_argument(
        "--number-file", type=Path, help="a number as JSON (the API's create shape)"
    )
    sim.add_argument(
        "--provider",
        default="twilio",
        choices=["twilio", "telnyx", "vonage", "plivo"],
        help="with --to",
    )
    sim.add_argument(
        "--account",
        help="with --to: the number's account, a Twilio AccountSid or a Vonage credential's "
        "apiKey (needed when several accounts hold it)",
    )
    sim.add_argument("--response", help="the server's assistant-request answer (JSON), not sent")
    sim.add_argument("--offline", action="store_true", help="treat the server as unreachable")
    sim.add_argument("--render", metavar="PROVIDER", help="also render the answer, e.g. twilio")
    sim.add_argument(
        "--at",
        type=_moment,
        metavar="TIME",
        help="when the call rings, ISO 8601 with an offset or Z, e.g. 2026-12-24T18:30:00-05:00 "
        "(default: now); ringing hooks' schedules read it",
    )
    sim.add_argument(
        "--attestation",
        default="none",
        choices=list(ATTESTATIONS),
        help="the STIR/SHAKEN level the provider reports for the call (default: none)",
    )
    sim.set_defaults(func=cmd_simulate)

    check = add("check-config", "validate the settings and print what the worker would use")
    check.set_defaults(func=cmd_check_config)

    numbers = commands.add_parser(
        "numbers",
        help="export or import phone numbers through a running router's API",
        description=NUMBERS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = numbers.add_subparsers(dest="action", metavar="ACTION", required=True)

    def remote(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name,
            help=help_text,
            description=f"{help_text}\n\n{NUMBERS_HELP}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--url", default=DEFAULT_URL, help=f"the router (default {DEFAULT_URL})")
        sub.add_argument("--api-key", help="bearer key (default ROUTER_API_KEY)")
        return sub

    export = remote("export", "write every number of the org as YAML or JSON")
    export.add_argument(
        "--format", choices=["yaml", "json"], help="default yaml (json for an --output *.json)"
    )
    export.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    export.set_defaults(func=cmd_numbers_export)

    load = remote("import", "create or update numbers from a YAML or JSON file")
    load.add_argument("file", type=Path, help='a list of numbers, or {"numbers": [...]}')
    load.add_argument(
        "--dry-run", action="store_true", help="print what would change; change nothing"
    )
    load.set_defaults(func=cmd_numbers_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        print(f"router: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        # e.g. Redis unreachable after the bounded start-up retries: say so, no traceback.
        print(f"router: cannot start: {exc.detail}", file=sys.stderr)
        return 1
