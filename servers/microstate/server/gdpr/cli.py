"""`microstate gdpr export|erase SUBJECT`: the coordinator's command line.

Exit status: 0 done; 1 a microstate failed (the request stays open: run the same command again to resume
it); 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import cast

from microstate.server import probe, registry
from microstate.server.audit import AuditKeys, open_audited
from microstate.server.audit.serving import checkpoint_file
from microstate.server.config import ConfigError
from microstate.server.gdpr.bundle import write_bundle
from microstate.server.gdpr.coordinator import Coordinator, Failed, LedgerAudit, Target
from microstate.server.store.base import Store

NAMESPACE = "gdpr"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gdpr = commands.add_parser(
        "gdpr",
        help="export or erase one data subject's data across every microstate",
        description="Exit status: 0 done, 1 a microstate failed (run it again to resume), 2 usage error.",
    )
    gdpr.add_argument("action", choices=("export", "erase"))
    gdpr.add_argument("subject", help="the subject's id (a user id)")
    gdpr.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="where a microstate listens (repeatable; default: every one on 127.0.0.1 at its own port)",
    )
    gdpr.add_argument(
        "--state",
        metavar="URL",
        help="store URL of the coordinator's request records (default: sqlite under --data-dir)",
    )
    gdpr.add_argument("--data-dir", type=Path, default=Path(".microstate"), metavar="DIR")
    gdpr.add_argument(
        "--audit-dir",
        type=Path,
        metavar="DIR",
        help="audit keys and the checkpoint file of the coordinator's ledger (default: DATA_DIR/audit,"
        " as `microstate serve` and `up`)",
    )
    gdpr.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="where an export's bundle goes"
    )
    probe.add_credential_arguments(gdpr, "gdpr.export / gdpr.erase", "servers")


def _targets(args: argparse.Namespace) -> list[Target]:
    given: dict[str, str] = {}
    for entry in args.target:
        name, sep, address = entry.partition("=")
        if not sep or not address:
            raise ConfigError(f"--target {entry!r} is not NAME=HOST:PORT")
        given[name] = address
    unknown = set(given) - set(registry.names())
    if unknown:
        known = ", ".join(registry.names())
        raise ConfigError(f"--target: no microstate {', '.join(sorted(unknown))} (known: {known})")
    token = probe.bearer_token(args)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    tls = probe.ProbeTls(ca=args.tls_ca) if args.tls_ca else None
    names = list(given) if given else registry.names()
    return [
        Target(
            name,
            probe.open_channel(given.get(name, f"127.0.0.1:{registry.get(name).default_port}"), tls),
            metadata,
        )
        for name in registry.names()  # registry order, whatever order they were given in
        if name in names
    ]


async def _run(args: argparse.Namespace) -> int:
    targets = _targets(args)
    if args.state:
        url = args.state
    else:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(args.data_dir / 'gdpr.db').resolve()}"
    # Start, each result and completion are audited in the coordinator's own ledger (namespace "gdpr"),
    # with the servers' keys when it shares their data dir, so its subject references match theirs.
    audit_dir = args.audit_dir or args.data_dir / "audit"
    keys = await asyncio.to_thread(AuditKeys.load, audit_dir)
    checkpoints = checkpoint_file(audit_dir, NAMESPACE)
    store, sealer = await open_audited(url, NAMESPACE, keys, checkpoint_file=checkpoints)
    try:
        # An AuditedStore is a Store to its callers; only its put/delete make their audit payload themselves.
        coordinator = Coordinator(cast(Store, store), targets, LedgerAudit())
        if args.action == "erase":
            record = await coordinator.erase(args.subject)
            print(json.dumps(record, indent=2, sort_keys=True))
        else:
            record, lines = await coordinator.export(args.subject)
            print(write_bundle(args.out, record, lines))
    except Failed as failed:
        print(f"microstate gdpr {args.action}: {failed}; run it again to resume", file=sys.stderr)
        return 1
    finally:
        try:
            await sealer.seal_all()
        finally:
            await sealer.close()
            await store.close()
        for target in targets:
            await target.channel.close()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
