"""The `microstate` command (also `python -m microstate.server`): serve, up, health, migrate, list, reconcile,
route, audit, gdpr.

Exit codes: 0 success, 1 a server or check failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from microstate.server import logs, probe, reconcile_command, registry, route_command
from microstate.server.audit import cli as audit_cli
from microstate.server.config import ConfigError, ServerConfig, add_arguments, load
from microstate.server.gdpr import cli as gdpr_cli
from microstate.server.kit.migrate import DEFAULT_BATCH, DEFAULT_SETTLE
from microstate.server.store.base import StoreError
from microstate.server.table import format_table

log = logging.getLogger("microstate.server.cli")

USAGE_ERROR = 2
DISTRIBUTION = "microstate-server"
DEFAULT_TARGET = "127.0.0.1:50051"
"""Where `microstate health` looks without --target: the profile microstate's default port on loopback."""
UP_SETTINGS = ("data_dir", "host", "drain_seconds", "grace_seconds", "log_format", "log_level")
UP_DEFAULTS = {"drain_seconds": 0.0}
MIGRATE_SETTINGS = ("store", "role_stores", "data_dir", "log_format", "log_level")
"""What `migrate` takes of serve's settings: where the records are, and how to log."""
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

    health = commands.add_parser(
        "health",
        help="print the gRPC health of a running server",
        description="Exit status: 0 every service SERVING, 2 server unreachable (or a usage error),"
        " 3 the health call failed or a service is unknown, 4 a service is not SERVING.",
    )
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
    for flag, what in (
        ("--tls-ca", "PEM roots that vouch for the server: speak TLS (default: plaintext)"),
        ("--tls-cert", "PEM client certificate, for a server that requires one (mutual TLS)"),
        ("--tls-key", "PEM private key of --tls-cert"),
    ):
        health.add_argument(flag, type=Path, metavar="PEM", help=what)
    health.add_argument(
        "--tls-server-name", metavar="NAME", help="the name to expect in the server's certificate"
    )

    gdpr_cli.add_parser(commands)
    migrate = commands.add_parser(
        "migrate",
        help="move a microstate's stored records to another schema version (or partition count), online",
        description="Exit status: 0 done (or nothing to do), 1 the store failed or another run is under way,"
        " 2 a usage error (a version the microstate does not declare, --partitions on a store without them).",
    )
    migrate.add_argument("name", help="the microstate whose records to migrate (see `microstate list`)")
    target = migrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=int, metavar="N", help="the schema version to move to")
    target.add_argument(
        "--partitions",
        type=int,
        metavar="P",
        help="the partition count to move to (a microstate on a Redis Cluster; docs/scaling.md)",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="count the records at each version and change nothing"
    )
    migrate.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"records per batch (default {DEFAULT_BATCH})",
    )
    migrate.add_argument(
        "--pause", type=float, default=0.0, metavar="S", help="seconds to rest between batches (default 0)"
    )
    migrate.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE,
        metavar="S",
        help="seconds for running servers to learn the new write version before converting"
        f" (default {DEFAULT_SETTLE:g})",
    )
    add_arguments(migrate, only=MIGRATE_SETTINGS)

    commands.add_parser("list", help="print the known microstates")
    reconcile_command.add_parser(commands)
    route_command.add_parser(commands)
    audit_cli.add_parser(commands)
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


def _migrate(args: argparse.Namespace) -> int:
    from microstate.server import migrating  # the store backends load only for commands that need them

    settings = {key: value for key, value in vars(args).items() if key in MIGRATE_SETTINGS}
    config = load(settings)
    try:
        microstate = registry.get(args.name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    _configure_logs(config, args.name)
    options = migrating.Options(args.to, args.dry_run, args.batch, args.pause, args.settle, args.partitions)
    return asyncio.run(migrating.run(microstate, config, options))


HEALTH_EXIT_CODES = {probe.UNREACHABLE: 2, probe.RPC_FAILED: 3, probe.UNKNOWN_SERVICE: 3}
"""grpc_health_probe's codes: 2 the server cannot be reached, 3 the health call failed, 4 a service is not
SERVING. (Its 1, bad flags, is 2 here as for every command; a flag error also prints usage.)"""
NOT_SERVING_EXIT_CODE = 4


def health_exit_code(statuses: Collection[str]) -> int:
    """0 when every status is SERVING; else the code of the worst failure (unreachable, then RPC failure)."""
    codes = [
        HEALTH_EXIT_CODES.get(status, NOT_SERVING_EXIT_CODE) for status in statuses if status != "SERVING"
    ]
    return min(codes, default=0)


def _probe_tls(args: argparse.Namespace) -> probe.ProbeTls | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key: give both, or neither")
    if args.tls_ca is None and args.tls_cert is None:
        return None
    return probe.ProbeTls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)


def _health(args: argparse.Namespace) -> int:
    tls = _probe_tls(args)
    try:
        statuses = asyncio.run(probe.check_all(args.target, args.service, rpc_timeout=args.timeout, tls=tls))
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    rows = [("SERVICE", "STATUS"), *((name or "(server)", status) for name, status in statuses.items())]
    print(format_table(rows))
    return health_exit_code(statuses.values())


def _list(args: argparse.Namespace) -> int:
    rows = [("NAME", "DEFAULT PORT", "SERVICES")]
    for name in registry.names():
        microstate = registry.get(name)
        rows.append((name, str(microstate.default_port), ", ".join(microstate.service_names)))
    print(format_table(rows))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    return asyncio.run(reconcile_command.reconcile(args))


def _route(args: argparse.Namespace) -> int:
    return asyncio.run(route_command.route(args))


def _audit(args: argparse.Namespace) -> int:
    return audit_cli.run(args)


COMMANDS = {
    "serve": _serve,
    "up": _up,
    "health": _health,
    "migrate": _migrate,
    "list": _list,
    "reconcile": _reconcile,
    "route": _route,
    "audit": _audit,
    "gdpr": gdpr_cli.run,
}


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
