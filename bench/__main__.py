"""`python -m bench [--quick] [--only P1,P3,...] [--json PATH]`: run benchmarks, print a table, write JSON.

Sections: P1 P2 P3 P4 P5 P6 (the figures of issue 5), S1 S2 S3 (the session figures of issue 11), NC (the
profile near-cache of issue 12), FL (the flags SDK of issue 12), EX (extraction
from a monolith, issue 17), T1-T4 (telemetry, issue 14: one scenario),
A1 (what a bearer-token check costs GetProfile), AU (what the audit ledger costs an Update; verifying
1,000,000 entries offline), M1 (what --metrics-port costs GetProfile), RC (reconcile, issue 17), SC (the
Redis Cluster store against a single Redis, issue 18), LAT (Get/Update latency per backend) and PROF
(py-spy profiles of the hot paths). P3 and P4 come from one scenario, and S1-S3 from another, so asking
for one of them runs its whole scenario. The JSON goes to bench/results/latest.json unless --json says
otherwise, with a markdown twin beside it (.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import REPO, env, use_source

if TYPE_CHECKING:  # imported for real only after pinning (see _run)
    from bench.profiling import Profile
    from bench.report import Row
    from bench.stack import Settings

SECTIONS = (
    "P1",
    "P2",
    "P3",
    "P4",
    "P5",
    "P6",
    "S1",
    "S2",
    "S3",
    "NC",
    "FL",
    "EX",
    "T1",
    "T2",
    "T3",
    "T4",
    "T5",
    "A1",
    "AU",
    "M1",
    "RC",
    "SC",
    "LAT",
    "PROF",
)
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"
BACKENDS = ("sqlite", "redis", "mongo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run: fewer, shorter rounds")
    parser.add_argument(
        "--only", metavar="LIST", help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help="results file")
    parser.add_argument(
        "--p5-large-mib",
        type=int,
        metavar="N",
        help="the large blob of P5's peak-RSS figure in MiB (default 256, 64 with --quick; the issue's 1024)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        metavar="DIR",
        help="run the SDK and the servers from another checkout, e.g. a git worktree with a proposed "
        "optimisation applied, to compare with a run of this one (default: this checkout)",
    )
    return parser


def _sections(only: str | None) -> list[str]:
    if not only:
        return list(SECTIONS)
    chosen = [name.strip().upper() for name in only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return [name for name in SECTIONS if name in chosen]


async def _run(sections: list[str], settings: Settings) -> tuple[list[Row], list[Profile]]:
    # Imported here, after this process was pinned: grpc's threads inherit the affinity of their creator.
    from bench import (
        audit,
        auth,
        backends,
        cluster,
        extraction,
        fallback,
        flags,
        models,
        near_cache,
        profiling,
        reconcile,
        sessions,
        telemetry,
        throughput,
    )
    from bench.report import skipped
    from bench.services import Missing

    jobs: list[tuple[str, str, Callable[[], Awaitable[list[Row]]]]] = []
    if "P1" in sections:
        jobs.append(("P1", "full stack vs echo", lambda: throughput.p1(settings)))
    if "P2" in sections:
        jobs.append(("P2", "BatchGet vs Redis", lambda: throughput.p2(settings)))
    if "P3" in sections or "P4" in sections:
        jobs.append(("P3", "snapshot fallback", lambda: fallback.fallback(settings)))
    if "P5" in sections:
        jobs.append(("P5", "model blobs: flat memory, throughput, hashing", lambda: models.models(settings)))
    if "P6" in sections:
        jobs.append(("P6", "two servers vs one", lambda: throughput.p6(settings)))
    if {"S1", "S2", "S3"} & set(sections):
        jobs.append(("S1", "sessions", lambda: sessions.sessions(settings)))
    if "NC" in sections:
        jobs.append(("NC", "profile near-cache", lambda: near_cache.near_cache(settings)))
    if "M1" in sections:
        jobs.append(("M1", "metrics overhead", lambda: throughput.m1(settings)))
    if "FL" in sections:
        jobs.append(("FL", "flags SDK", lambda: flags.flags(settings)))
    if "EX" in sections:
        jobs.append(("EX", "extraction: shadow, rollback", lambda: extraction.extraction(settings)))
    if "A1" in sections:
        jobs.append(("A1", "authentication", lambda: auth.auth(settings)))
    if "AU" in sections:
        jobs.append(("AU", "audit ledger", lambda: audit.audit(settings)))
    if {"T1", "T2", "T3", "T4", "T5"} & set(sections):
        jobs.append(("T1", "telemetry", lambda: telemetry.telemetry(settings)))
    if "RC" in sections:
        jobs.append(("RC", "reconciliation", lambda: reconcile.reconcile(settings)))
    if "SC" in sections:
        jobs.append(("SC", "Redis Cluster store vs single Redis", lambda: cluster.cluster(settings)))
    if "LAT" in sections:
        for backend in BACKENDS:
            jobs.append(("LAT", f"{backend} latency", functools.partial(backends.latency, settings, backend)))

    rows: list[Row] = []
    for figure, title, job in jobs:
        started = time.monotonic()
        print(f"[bench] {figure} {title} ...", file=sys.stderr, flush=True)
        try:
            rows += await job()
        except Missing as exc:
            rows.append(skipped(figure, title, f"skipped: {exc}"))
        except Exception as exc:
            traceback.print_exc()
            rows.append(skipped(figure, title, f"failed: {type(exc).__name__}: {exc}"))
        print(f"[bench] {figure} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    profiles: list[Profile] = []
    if "PROF" in sections:
        print("[bench] PROF py-spy profiles ...", file=sys.stderr, flush=True)
        try:
            profiles = await profiling.profiles(settings)
        except Exception as exc:
            if not isinstance(exc, Missing):
                traceback.print_exc()
            rows.append(skipped("PROF", "py-spy profiles of the hot paths", f"skipped: {exc}"))
    order = {name: index for index, name in enumerate(SECTIONS)}

    def section(figure: str) -> int:  # P4 comes with P3; AU1, AU2 with AU
        figure = figure if figure != "P4" else "P3"
        return order.get(figure, order.get(figure.rstrip("0123456789"), 99))

    rows.sort(key=lambda row: section(row.figure))
    return rows, profiles


def main() -> None:
    args = _parser().parse_args()
    sections = _sections(args.only)
    if args.source is not None:
        use_source(args.source.resolve())
    cores = env.choose_cores()
    env.pin_self(cores)

    from bench import report
    from bench.stack import Settings

    started, clock = datetime.datetime.now(datetime.UTC), time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="microstate-bench-") as workdir:
        settings = Settings.make(
            cores, Path(workdir), args.json.parent, quick=args.quick, p5_large_mib=args.p5_large_mib
        )
        rows, profiles = asyncio.run(_run(sections, settings))
    meta: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock),
        "host": platform.node(),
        "source": str(args.source.resolve() if args.source else REPO),
        "pinning": cores.describe(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "settings": {
            key: getattr(settings, key)
            for key in (
                "rounds",
                "window",
                "samples",
                "concurrency",
                "batch_concurrency",
                "latency_budget",
                "p5_large_mib",
            )
        },
        "versions": env.versions(),
    }
    table = report.text_table(rows)
    print("\n" + table)
    for profile in profiles:
        print("\n" + profile.table())
    print(f"\n{meta['pinning']}; {meta['seconds']} s; load average {meta['load_average_before_after']}")
    print("versions: " + ", ".join(f"{name} {value}" for name, value in meta["versions"].items()))
    extra = {"profiles": {profile.name: profile.to_json() for profile in profiles}}
    report.write_json(args.json, meta, rows, extra)
    report.write_markdown(args.json.with_suffix(".md"), meta, rows, profiles)
    print(f"results: {args.json} (and {args.json.with_suffix('.md').name})")


if __name__ == "__main__":
    main()
