"""The `router` command: `serve`, `check-config`."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from router import __version__
from router.settings import Settings, load_settings

DEFAULT_HOST = "0.0.0.0"  # noqa: S104  # a worker behind a load balancer listens on all interfaces
DEFAULT_PORT = 8080


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        print("router: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers == 1:
        _serve_one(settings, host=args.host, port=args.port)
        return 0
    if not settings.redis_url:
        print(
            "router: --workers > 1 needs ROUTER_REDIS_URL: the embedded store belongs to one "
            "process (workers share numbers, call records and invalidations through Redis)",
            file=sys.stderr,
        )
        return 2
    from router.workers import Supervisor, bind, prepare_metrics_dir

    prepare_metrics_dir()  # before prometheus-client is imported anywhere
    sock = bind(args.host, args.port)
    return Supervisor(workers, sock, lambda s: _serve_one(settings, sock=s)).run()


def _serve_one(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    sock: socket.socket | None = None,
) -> None:
    from aiohttp import web

    from router.app import create_app
    from router.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    # In-flight webhooks get their whole budget to finish after SIGTERM (graceful shutdown).
    grace = max(
        settings.twilio_budget_seconds,
        settings.telnyx_budget_seconds,
        settings.vonage_budget_seconds,
        settings.sip_budget_seconds,
    )
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        sock=sock,
        access_log=None,
        print=None,
        shutdown_timeout=grace + 2,
        handle_signals=True,
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    orgs = settings.all_orgs()
    print(f"store: {'redis' if settings.redis_url else f'embedded ({settings.data_dir})'}")
    print(f"orgs: {', '.join(o.id for o in orgs) or 'none (the API will refuse every request)'}")
    print(f"public url: {settings.public_url or 'the URL each request arrived on'}")
    print(f"runtime url: {settings.runtime_url}")
    print(f"secrets at rest: {'encrypted' if settings.secret_key else 'not encrypted'}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from router.logs import configure_logging
    from router.simulate import Request, SimulateError, simulate

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    try:
        response = json.loads(args.response) if args.response is not None else None
    except ValueError as exc:
        print(f"router: --response is not JSON: {exc}", file=sys.stderr)
        return 2
    request = Request(
        caller=args.caller,
        to=args.to,
        sip_uri=args.sip_uri,
        provider=args.provider,
        number_file=args.number_file,
        response=response,
        offline=args.offline,
        render=args.render,
    )
    try:
        result = asyncio.run(simulate(settings, request))
    except SimulateError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


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
        "--provider", default="twilio", choices=["twilio", "telnyx", "vonage"], help="with --to"
    )
    sim.add_argument("--response", help="the server's assistant-request answer (JSON), not sent")
    sim.add_argument("--offline", action="store_true", help="treat the server as unreachable")
    sim.add_argument("--render", metavar="PROVIDER", help="also render the answer, e.g. twilio")
    sim.set_defaults(func=cmd_simulate)

    check = add("check-config", "validate the settings and print what the worker would use")
    check.set_defaults(func=cmd_check_config)
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
