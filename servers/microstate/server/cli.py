"""The `microstate` command (also `python -m microstate.server`): serve, up, health, list.

Exit codes: 0 success, 1 a server or check failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import sys
from collections.abc import Callable, Sequence

from microstate.server import logs, probe, registry
from microstate.server.config import ConfigError, ServerConfig, add_arguments, load
from microstate.server.store.base import StoreError
from microstate.server.table import format_table

log = logging.getLogger("microstate.server.cli")

USAGE_ERROR = 2
DISTRIBUTION = "microstate-server"
DEFAULT_TARGET = "127.0.0.1:50051"
"""Where `microstate health` looks without --target: the profile microstate's default port on loopback."""
UP_SETTINGS = ("data_dir", "host", "drain_seconds", "grace_seconds", "log_format", "log_level")
UP_DEFAULTS = {"drain_seconds": 0.0}
"""`up` runs on a laptop, with no load balancer to drain from: unless asked, children stop at once."""


def event_loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for the `event_loop` setting (default: MICROSTATE_EVENT_LOOP); None: asyncio's.

    auto: uvloop's event loop when it is installed (`pip install 'microstate-server[fast]'`), else asyncio's.
    grpc.aio runs on any asyncio loop; uvloop cut the server's CPU per GetProfile by ~15% in bench/ab.py.
    """
    if choice is None:
        choice = load({}).event_loop
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            hint = "pip install 'microstate-server[fast]'"
            raise ConfigError(f"event loop uvloop asked for, but uvloop is not installed ({hint})") from None
        return None
    return uvloop.new_event_loop


def version() -> str:
    """The installed microstate-server's version (what a bug report should quote)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microstate", description="Run and inspect Microstate servers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run one microstate in this process until SIGTERM/SIGINT")
    serve.add_argument("name", help="the microstate to run (see `microstate list`)")
    add_arguments(serve)

    up = commands.add_parser("up", help="run every microstate, each in its own process, on embedded SQLite")
    add_arguments(up, only=UP_SETTINGS, defaults=UP_DEFAULTS)
    up.add_argument(
        "--base-port",
        type=int,
        metavar="N",
        help="ports N, N+1, ... in `list` order; 0: each picks a free port (default: each microstate's own)",
    )
    up.add_argument(
        "--start-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds for every microstate to report SERVING (default 30)",
    )

    health = commands.add_parser("health", help="print the gRPC health of a running server")
    health.add_argument(
        "--target",
        default=os.environ.get("MICROSTATE_TARGET", DEFAULT_TARGET),
        metavar="HOST:PORT",
        help=f"server to ask (default {DEFAULT_TARGET}) [env MICROSTATE_TARGET]",
    )
    health.add_argument(
        "--service",
        action="append",
        metavar="NAME",
        help="service to check (repeatable; default: every service the server lists over reflection)",
    )
    health.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="deadline per check (default 2)"
    )

    commands.add_parser("list", help="print the known microstates")
    commands.add_parser(
        "models",
        help="push, pull, list and alias model versions (the models client; `microstate models -h`)",
        add_help=False,
    )
    return parser


def _configure_logs(config: ServerConfig, microstate: str | None) -> None:
    logs.configure(level=config.level, fmt=config.log_format, microstate=microstate)


def _serve(args: argparse.Namespace) -> int:
    from microstate.server.serve import serve  # the store backends load only for commands that need them

    name = args.name
    settings = {key: value for key, value in vars(args).items() if key not in ("command", "name")}
    config = load(settings)
    try:
        microstate = registry.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    _configure_logs(config, name)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(config.event_loop)) as runner:
            return runner.run(serve(microstate, config))
    except (OSError, StoreError) as exc:
        log.error("cannot serve", extra={"phase": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1


def _up(args: argparse.Namespace) -> int:
    from microstate.server.up import up

    settings = {key: value for key, value in vars(args).items() if key in UP_SETTINGS}
    config = load(settings, defaults=UP_DEFAULTS)
    _configure_logs(config, "up")
    names = registry.names()
    return asyncio.run(up(config, names=names, base_port=args.base_port, start_timeout=args.start_timeout))


def _health(args: argparse.Namespace) -> int:
    statuses = asyncio.run(probe.check_all(args.target, args.service, rpc_timeout=args.timeout))
    rows = [("SERVICE", "STATUS"), *((name or "(server)", status) for name, status in statuses.items())]
    print(format_table(rows))
    return 0 if all(status == "SERVING" for status in statuses.values()) else 1


def _list(args: argparse.Namespace) -> int:
    rows = [("NAME", "DEFAULT PORT", "SERVICES")]
    for name in registry.names():
        microstate = registry.get(name)
        rows.append((name, str(microstate.default_port), ", ".join(microstate.service_names)))
    print(format_table(rows))
    return 0


COMMANDS = {"serve": _serve, "up": _up, "health": _health, "list": _list}


def _models(argv: Sequence[str]) -> int:
    """`microstate models ...`: the models client's command line, when the client package is installed."""
    try:
        from microstate.client.models import cli
    except ImportError:
        hint = "pip install 'microstate-client[cli]'"
        print(f"microstate models: error: needs the models client ({hint})", file=sys.stderr)
        return USAGE_ERROR
    return cli.main(argv, prog="microstate models")


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["models"]:  # a client command: its own parser takes the rest
        return _models(given[1:])
    args = _parser().parse_args(given)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"microstate {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
