"""`microstate route SLICE`: show a slice's route phase, or move it with one guarded flag write.

Without --to it prints the route flag's phase and settings. With --to it moves the route (PhaseControl.move):
one UpdateFlag guarded by the etag it read (or --etag), so a concurrent move fails instead of being
overwritten; --validate-only writes nothing and shows what would move. Forward moves go one phase at a time
(dual_write may go straight to primary), and with --legacy a move to primary or retired is refused while the
outbox that feeds the new source of truth holds entries (with --wait S: until the entries pending at the check
are applied, however many writes arrive meanwhile); --force skips both guards. Rolling back is always
allowed. Exit status: 0 shown or moved (or a clean validate-only), 1 a guard or the etag refused the move
(or validate-only found a guard that does not hold), or the flags microstate could not be reached; 2 bad
usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from microstate.client import ClientOptions, TlsOptions
from microstate.client.errors import MicrostateError, NotFound
from microstate.client.extraction.phases import (
    Move,
    Phase,
    PhaseControl,
    PhaseGuardError,
    RouteSettings,
    canary_percent_of,
    flag_key,
    phase_of,
    route_flag,
)
from microstate.client.flags import FlagsClient
from microstate.flags.v1 import flags_pb2 as pb
from microstate.server import probe, registry
from microstate.server.config import ConfigError
from microstate.server.reconcile_command import add_legacy_arguments, declared, legacy_adapter, load_codec

SETTINGS = {"shadow_sample": "--shadow-sample", "noise_sample": "--noise-sample", "budget_ms": "--budget-ms"}


def add_parser(commands: Any) -> None:
    route = commands.add_parser(
        "route",
        help="show a slice's route phase, or move it (shadow, dual_write, canary, ...) with one flag write",
        description=__doc__.split("\n\n")[1],
    )
    route.add_argument("slice", help="the slice being extracted (profile, flags, ...)")
    route.add_argument(
        "--route", metavar="NAME", help="the route flag is route.NAME (default: the slice's name)"
    )
    route.add_argument(
        "--flags-target",
        default=f"127.0.0.1:{registry.get('flags').default_port}",
        metavar="HOST:PORT",
        help="the flags microstate (default: %(default)s, where `microstate up` runs it)",
    )
    route.add_argument(
        "--operation", choices=("get", "put", "delete"), help="move only this operation's own route"
    )
    route.add_argument("--to", choices=[phase.value for phase in Phase], help="the phase to move to")
    route.add_argument(
        "--canary-percent",
        type=float,
        metavar="P",
        help="canary: P%% of subjects read the microstate (default: the canary's current share)",
    )
    route.add_argument("--shadow-sample", type=float, metavar="F", help="share of reads compared (0..1)")
    route.add_argument(
        "--noise-sample", type=float, metavar="F", help="share of reads read twice from legacy"
    )
    route.add_argument("--budget-ms", type=float, metavar="MS", help="a canary read's budget")
    route.add_argument(
        "--etag", help="move only if the flag still has this etag (default: the one just read)"
    )
    route.add_argument("--validate-only", action="store_true", help="show what would move; write nothing")
    route.add_argument("--force", action="store_true", help="skip the phase-order and outbox guards")
    route.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="outbox guard: wait up to S seconds for the entries pending now to be applied (writes go on)",
    )
    route.add_argument("--reason", default="", help="why (goes to the audit log with the move)")
    add_legacy_arguments(
        route,
        "the monolith whose outbox guards moves to primary and retired (as `microstate reconcile`)",
        required=False,
    )
    probe.add_credential_arguments(route, "flags.admin")
    route.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _options(args: argparse.Namespace) -> ClientOptions:
    tls = TlsOptions(root_certificates=args.tls_ca.read_bytes()) if args.tls_ca else None
    return ClientOptions(token=probe.bearer_token(args), tls=tls)


def _settings(args: argparse.Namespace, flag: pb.Flag) -> RouteSettings | None:
    """The flag's settings with those given on the command line replaced; None when none was given."""
    given = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    for name, value in given.items():
        if value < 0 or (name != "budget_ms" and value > 1):
            raise ConfigError(f"{SETTINGS[name]} {value:g} is out of range")
    return dataclasses.replace(RouteSettings.of(flag.metadata), **given) if given else None


def describe(flag: pb.Flag) -> dict[str, Any]:
    """What a route flag says: its phase, settings, canary share and where it stands."""
    return {
        "flag": flag.key,
        "phase": phase_of(flag).value,
        "previous_phase": flag.metadata.get("previous_phase", ""),
        **dataclasses.asdict(RouteSettings.of(flag.metadata)),
        "canary_percent": canary_percent_of(flag),
        "revision": flag.revision,
        "etag": flag.etag,
    }


async def _shown(flags: FlagsClient, key: str) -> pb.Flag:
    """The route flag, or the one a first move would start from (showing creates nothing)."""
    try:
        return (await flags.get(key)).value
    except NotFound:
        return route_flag(key, Phase.LEGACY, RouteSettings())


def _moved(move: Move) -> dict[str, Any]:
    return {
        **describe(move.flag),
        "previous_phase": move.previous.value,
        "reassigned_fraction": move.reassigned_fraction,
        "validate_only": move.validate_only,
        "problems": move.problems,
    }


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    if "reassigned_fraction" in result:
        verb = "would move" if result["validate_only"] else "moved"
        print(
            f"{result['flag']}: {verb} {result['previous_phase']} -> {result['phase']}, "
            f"{result['reassigned_fraction']:.2%} of subjects reassigned"
        )
        for problem in result["problems"]:
            print(f"  guard: {problem}")
    else:
        print(f"{result['flag']}: {result['phase']}")
    settings = ", ".join(f"{name} {result[name]:g}" for name in (*SETTINGS, "canary_percent"))
    print(f"  {settings}; revision {result['revision']}, etag {result['etag']}")


def _canary_percent(args: argparse.Namespace, flag: pb.Flag) -> float:
    """--canary-percent, else the share of a canary being resized; a move into canary must say its share."""
    if args.canary_percent is not None:
        if not 0 <= args.canary_percent <= 100:
            raise ConfigError(f"--canary-percent {args.canary_percent:g} is not within 0..100")
        return float(args.canary_percent)
    if args.to == Phase.CANARY and phase_of(flag) is not Phase.CANARY:
        raise ConfigError("--to canary needs --canary-percent")
    return canary_percent_of(flag)


async def route(args: argparse.Namespace) -> int:
    legacy = None
    if args.legacy:
        _, known = declared(args.slice)
        legacy = legacy_adapter(args, known, load_codec(args.codec or known.codec)())
    try:
        async with FlagsClient(args.flags_target, options=_options(args)) as flags:
            if legacy is not None:
                await legacy.ensure_outbox()
            name = args.route or args.slice
            if args.to is None:
                _print(describe(await _shown(flags, flag_key(name, args.operation))), args.json)
                return 0
            control = PhaseControl(flags, name, outbox=legacy, operation=args.operation)
            current = await control.current()
            move = await control.move(
                Phase(args.to),
                canary_percent=_canary_percent(args, current),
                settings=_settings(args, current),
                etag=args.etag or current.etag,
                validate_only=args.validate_only,
                force=args.force,
                reason=args.reason,
                wait=args.wait,
            )
    except PhaseGuardError as refused:
        print(f"microstate route: refused: {refused} (--force to override)", file=sys.stderr)
        return 1
    except (MicrostateError, OSError) as failed:
        print(f"microstate route: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1
    finally:
        if legacy is not None:
            await legacy.close()
    _print(_moved(move), args.json)
    return 1 if move.problems else 0
