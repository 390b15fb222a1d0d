"""The `router` command: `serve`, `check-config`."""

from __future__ import annotations

import argparse
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
    from aiohttp import web

    from router.app import create_app
    from router.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level)
    web.run_app(
        create_app(settings),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.twilio_budget_seconds + 2,
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    orgs = settings.all_orgs()
    print(f"store: {'redis' if settings.redis_url else f'embedded ({settings.data_dir})'}")
    print(f"orgs: {', '.join(o.id for o in orgs) or 'none (the API will refuse every request)'}")
    print(f"public url: {settings.public_url or 'the URL each request arrived on'}")
    print(f"runtime url: {settings.runtime_url}")
    print(f"secrets at rest: {'encrypted' if settings.secret_key else 'not encrypted'}")
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
    serve.set_defaults(func=cmd_serve)

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
