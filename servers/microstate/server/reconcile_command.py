"""`microstate reconcile SLICE`: open the slice's store and its legacy side, reconcile once or on a schedule.

Exit status: 0 the sides agree at the end of the run (nothing differed, or every divergence was repaired or
had settled), 1 divergences remain (a dry run, a conflict with a live write, a failed repair) or a side could
not be read, 2 bad usage (a slice that declares no legacy side among them). With `--every` it runs until
SIGTERM or SIGINT and then exits 0.

What reconciling a slice takes, the slice declares (`Microstate.reconcile`, kit/extraction.py); the command
finds it through the registry and knows no slice by name.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any, cast

from microstate.client.errors import MicrostateError
from microstate.server import registry
from microstate.server.audit import AuditKeys, audit_call, open_audited
from microstate.server.audit.keys import CHAIN_KEYS
from microstate.server.audit.ledger import Sealer
from microstate.server.audit.serving import checkpoint_file
from microstate.server.config import ConfigError
from microstate.server.kit.extraction import Reconcilable
from microstate.server.kit.migrations import versioned
from microstate.server.reconcile import (
    TRUTH,
    ReconcileError,
    Reconciler,
    ReconcileReport,
    StoreSide,
    run_every,
)
from microstate.server.registry import Microstate
from microstate.server.store import Store, StoreError, open_store


def reconcilable() -> list[str]:
    """The registered slices that declare what reconciling them takes (`Microstate.reconcile`)."""
    return [name for name in registry.names() if registry.get(name).reconcile is not None]


def declared(name: str) -> tuple[Microstate, Reconcilable]:
    """The slice `name` and its declaration; ConfigError naming the slices that can be reconciled."""
    try:
        microstate = registry.get(name)
    except KeyError:
        microstate = None
    if microstate is None or microstate.reconcile is None:
        what = "is not a known microstate" if microstate is None else "declares no legacy side to reconcile"
        raise ConfigError(f"{name!r} {what}; the slices that can be reconciled: {', '.join(reconcilable())}")
    return microstate, microstate.reconcile


def load_codec(reference: str) -> Any:
    """The class or function `module:attribute` names (a legacy RowCodec); ConfigError if there is none."""
    module, _, attribute = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {reference!r}: {exc}") from None


def add_parser(commands: Any) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="compare a slice's microstate with its legacy side and repair from the source of truth",
        description=__doc__.split("\n\n")[1],
    )
    reconcile.add_argument(
        "slice", help="the slice being extracted: one that declares its legacy side (profile, flags, ...)"
    )
    reconcile.add_argument("--store", required=True, metavar="URL", help="the microstate's records store")
    add_legacy_arguments(
        reconcile,
        "the monolith: sqlite:///path or another SQLAlchemy URL (a table), or redis://... (hashes)",
        required=True,
    )
    phase = reconcile.add_mutually_exclusive_group(required=True)
    phase.add_argument(
        "--phase",
        choices=list(TRUTH),
        help="the slice's phase: legacy is the source of truth before primary, the microstate from then on",
    )
    phase.add_argument(
        "--flags-target",
        metavar="HOST:PORT",
        help="read the phase from the route flag in this flags microstate before each run",
    )
    reconcile.add_argument(
        "--route", metavar="NAME", help="the route flag is route.NAME (default: the slice's name)"
    )
    reconcile.add_argument(
        "--range-size", type=int, default=1000, metavar="N", help="keys per compared range (default 1000)"
    )
    reconcile.add_argument("--dry-run", action="store_true", help="report what differs, repair nothing")
    reconcile.add_argument(
        "--every",
        "--interval",
        dest="interval",
        type=float,
        metavar="S",
        help="run again every S seconds until SIGTERM/SIGINT",
    )
    reconcile.add_argument("--json", action="store_true", help="print each report as one JSON line")
    reconcile.add_argument(
        "--audit",
        choices=("auto", "on", "off"),
        default="auto",
        help="journal each repair of the microstate in the slice's audit ledger with its servers' keys (on: "
        "refuse to run without them; auto, the default: only where they are, with a warning otherwise)",
    )
    reconcile.add_argument("--data-dir", type=Path, default=Path(".microstate"), metavar="DIR")
    reconcile.add_argument(
        "--audit-dir",
        type=Path,
        metavar="DIR",
        help="the audit keys and checkpoint files the slice's servers use (default: DATA_DIR/audit)",
    )


def add_legacy_arguments(parser: argparse.ArgumentParser, legacy_help: str, *, required: bool) -> None:
    """--legacy URL and how to read it (--legacy-table, --legacy-prefix, --codec) for `legacy_adapter`."""
    parser.add_argument("--legacy", required=required, metavar="URL", help=legacy_help)
    parser.add_argument(
        "--legacy-table", metavar="NAME", help="SQL table (default: the one the slice declares)"
    )
    parser.add_argument(
        "--legacy-prefix", metavar="PREFIX", help="Redis key prefix (default: the one the slice declares)"
    )
    parser.add_argument(
        "--codec", metavar="MODULE:CLASS", help="the legacy RowCodec (default: the one the slice declares)"
    )


def legacy_adapter(args: argparse.Namespace, known: Reconcilable, codec: Any) -> Any:
    """The monolith's adapter for --legacy (and --legacy-table / --legacy-prefix, else the slice's own)."""
    url: str = args.legacy
    if url.startswith(("redis://", "rediss://", "unix://")):
        from microstate.client.extraction.redis_hash import RedisHashAdapter

        return RedisHashAdapter.from_url(url, codec, prefix=args.legacy_prefix or known.prefix)
    from microstate.client.extraction.sql import SqlAdapter

    return SqlAdapter.from_url(url, codec, args.legacy_table or known.table)


FAILURES = (ReconcileError, StoreError, MicrostateError, OSError)
"""What ends a run (not the command, on a schedule): the sides or the flags microstate cannot be read."""


def _failed(exc: BaseException) -> None:
    print(f"microstate reconcile: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def _print(report: ReconcileReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
        return
    print(report.summary())
    for divergence in report.divergences:
        paths = f" [{', '.join(divergence.paths)}]" if divergence.paths else ""
        print(f"  {divergence.kind:8} {divergence.key}{paths}: {divergence.outcome}")
    print(end="", flush=True)


async def current_phase(flags_target: str, route: str) -> str:
    """The phase the route flag `route.<route>` is in now (legacy when there is no such flag yet)."""
    from microstate.client.errors import NotFound
    from microstate.client.extraction.phases import Phase, flag_key, phase_of
    from microstate.client.flags import FlagsClient

    async with FlagsClient(flags_target) as flags:
        try:
            return phase_of((await flags.get(flag_key(route))).value).value
        except NotFound:
            return Phase.LEGACY.value


async def reconcile(args: argparse.Namespace) -> int:
    if args.range_size < 1:
        raise ConfigError("--range-size must be at least 1")
    if args.interval is not None and not args.interval > 0:
        raise ConfigError("--every must be a positive number of seconds")
    microstate, known = declared(args.slice)
    codec = load_codec(args.codec or known.codec)()
    try:  # as `serve` opens it: every schema version read as the slice's code reads it, its state key hidden
        opened, sealer = await _open_store(args, microstate)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    store = versioned(opened, microstate.schema)
    legacy = legacy_adapter(args, known, codec)
    try:
        await legacy.ensure_outbox()  # the adapter's request-id table, which its writes need

        side = StoreSide(store, known.binding, owns=known.owns)
        reconciler = Reconciler(args.slice, legacy, side, codec, range_size=args.range_size)
        last: list[ReconcileReport] = []

        async def once() -> None:
            phase = args.phase or await current_phase(args.flags_target, args.route or args.slice)
            with audit_call(REPAIR, CONTRACT, request_id=str(uuid.uuid4()), actor=ACTOR):
                report = await reconciler.run(phase, repair=not args.dry_run)
            if sealer is not None:
                await sealer.seal_all()
            _print(report, args.json)
            last[:] = [report]

        async def scheduled() -> None:  # a failed run is reported; the next one comes all the same
            try:
                await once()
            except FAILURES as exc:
                _failed(exc)

        if args.interval is None:
            await once()
            return 0 if last[0].unresolved == 0 else 1
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await run_every(args.interval, scheduled, stopping)
        return 0
    except FAILURES as exc:
        _failed(exc)
        return 1
    finally:
        await legacy.close()
        await store.close()
        if sealer is not None:
            await sealer.close()


REPAIR, CONTRACT, ACTOR = "reconcile/repair", "microstate.reconcile", "microstate-reconcile"
"""A repair of the microstate in the audit ledger: its method, contract and actor (the entry's principal)."""


async def _open_store(args: argparse.Namespace, microstate: Microstate) -> tuple[Store, Sealer | None]:
    """The slice's records store, audited as `serve` audits it (the servers' keys, checkpoint file and subject
    references): a repair writes the microstate outside any call, so it journals its own entry. Keys are
    never made here: a ledger sealed with keys its servers do not have would not verify against theirs."""
    directory = args.audit_dir or args.data_dir / "audit"
    if args.audit == "off" or not (directory / CHAIN_KEYS).exists():
        if args.audit == "on":
            raise ConfigError(f"no audit keys in {directory}: give the servers' --audit-dir, or --audit off")
        if args.audit == "auto":
            print(
                f"microstate reconcile: no audit keys in {directory}: repairs are not journaled",
                file=sys.stderr,
            )
        return await open_store(args.store, microstate.name), None
    keys = await asyncio.to_thread(AuditKeys.load, directory)
    audited, sealer = await open_audited(
        args.store,
        microstate.name,
        keys,
        subject_of=microstate.audit_subject,
        checkpoint_file=checkpoint_file(directory, microstate.name),
    )
    return cast(Store, audited), sealer  # an AuditedStore is a Store to its callers
