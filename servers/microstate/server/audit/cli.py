"""`microstate audit …`: export a ledger from its store, verify it offline, follow its checkpoints, rotate
the chain key.

- `export NAME --store URL [--out FILE]`: the sealed ledger of microstate NAME as JSON Lines.
- `verify LEDGER --checkpoints FILE --public-key PEM [--chain-keys FILE] [--workers N]`: check an export
  against the newest checkpoint in FILE (kept outside the store), in N processes; prints integrity and
  completeness separately; exit 0 when both hold, 1 when either fails.
- `follow NAME --store URL`: print each checkpoint as a JSON line as it is signed (for a SIEM).
- `rotate --audit-dir DIR`: add a new current HMAC chain key (servers take it up at their next start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from microstate.server.audit.checkpoints import Checkpoint, newest_in_file
from microstate.server.audit.keys import AuditKeys, load_public_key, read_chain_keys
from microstate.server.audit.ledger import CHECKPOINTS, export_lines, ledger_namespace, newest_checkpoint
from microstate.server.audit.verify import verify_file
from microstate.server.config import ConfigError
from microstate.server.store.base import Store


def add_parser(commands: Any) -> None:
    audit = commands.add_parser("audit", help="export, verify and follow the audit ledger (SECURITY.md)")
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write a microstate's sealed ledger as JSON Lines")
    export.add_argument("name", help="the microstate (its store namespace)")
    export.add_argument("--store", required=True, metavar="URL", help="its records store URL")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    export.add_argument("--readable", action="store_true", help="add each entry's fields, decoded")
    check = actions.add_parser("verify", help="check an exported ledger offline against a checkpoint")
    check.add_argument("ledger", type=Path, help="the export (JSON Lines)")
    check.add_argument(
        "--checkpoints", type=Path, required=True, metavar="FILE", help="checkpoint file; its newest is used"
    )
    check.add_argument("--public-key", type=Path, required=True, metavar="PEM", help="checkpoint.pub")
    check.add_argument("--chain-keys", type=Path, metavar="FILE", help="chain-keys, to check the HMAC chain")
    check.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes checking entries in parallel (default: the CPUs this process may use)",
    )
    follow = actions.add_parser("follow", help="print checkpoints as JSON Lines as they are signed")
    follow.add_argument("name")
    follow.add_argument("--store", required=True, metavar="URL")
    rotate = actions.add_parser("rotate", help="add a new current HMAC chain key")
    rotate.add_argument("--audit-dir", type=Path, required=True, metavar="DIR")


def run(args: argparse.Namespace) -> int:
    if args.action == "verify":
        return _verify(args)
    if args.action == "rotate":
        print(AuditKeys.rotate(args.audit_dir))
        return 0
    if args.action == "follow":
        return asyncio.run(_follow(args))
    if args.out is None:
        return asyncio.run(_export(args, sys.stdout))
    with open(args.out, "w") as out:
        return asyncio.run(_export(args, out))


def _verify(args: argparse.Namespace) -> int:
    try:
        public_key = load_public_key(args.public_key.read_bytes())
        chain_keys = None if args.chain_keys is None else read_chain_keys(args.chain_keys)
        checkpoint = newest_in_file(args.checkpoints)
        if checkpoint is None:
            raise ConfigError(f"{args.checkpoints} holds no checkpoint")
        workers = args.workers or len(os.sched_getaffinity(0))  # asked only when verifying
        report = verify_file(args.ledger, checkpoint, public_key, chain_keys, workers=workers)
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


@contextlib.asynccontextmanager
async def _ledger(name: str, url: str) -> AsyncIterator[Store]:
    from microstate.server.store import open_store

    try:
        store = await open_store(url, ledger_namespace(name))
    except ValueError as exc:
        raise ConfigError(f"--store: {exc}") from None
    try:
        yield store
    finally:
        await store.close()


async def _export(args: argparse.Namespace, out: TextIO) -> int:
    async with _ledger(args.name, args.store) as ledger:
        async for line in export_lines(ledger, readable=args.readable):
            out.write(line + "\n")
    return 0


async def _follow(args: argparse.Namespace) -> int:
    async with _ledger(args.name, args.store) as ledger:
        start = await ledger.head_cursor()
        newest = await newest_checkpoint(ledger)
        if newest is not None:
            print(newest.to_json(), flush=True)
        async for change in ledger.watch(CHECKPOINTS, after=start):
            if change.record is not None:
                print(Checkpoint.from_json(change.record.value).to_json(), flush=True)
    return 0
