"""`microstate migrate NAME --to N`: open the microstate's records store as `serve` does and move its records
to schema version N online (kit/migrate.py), or, with --dry-run, count what is stored at each version.
`--partitions P` instead changes the partition count of a microstate on a Redis Cluster (repartitioning.py),
the same way: online, in batches, resumable."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from microstate.server.config import ConfigError, ServerConfig
from microstate.server.kit.migrate import MigrationConflict, Progress, migrate, survey
from microstate.server.kit.migrations import read_state
from microstate.server.registry import Microstate
from microstate.server.repartitioning import repartition
from microstate.server.serve import redacted, store_urls
from microstate.server.store import Store, StoreError, open_store
from microstate.server.store.redis_cluster import MAX_PARTITIONS, RedisClusterStore
from microstate.server.store.redis_cluster_repartition import layouts

REPORT_EVERY = 0.5
"""Seconds between two progress lines (the last one is always printed)."""


@dataclass(frozen=True)
class Options:
    to: int | None
    dry_run: bool
    batch: int
    pause: float
    settle: float
    partitions: int | None = None


async def run(
    microstate: Microstate, config: ServerConfig, options: Options, out: TextIO = sys.stdout
) -> int:
    """0 when the records are at the version (or the dry run told what it would do), 1 when the store
    failed or another run is under way; ConfigError for what the command line got wrong."""
    if (options.to is None) == (options.partitions is None):
        raise ConfigError("give either --to N (a schema version) or --partitions P (a partition count)")
    if options.to is not None:
        schema = microstate.schema
        if schema is None:
            raise ConfigError(f"{microstate.name} declares no schema versions: it has nothing to migrate")
        try:
            schema.check(options.to)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    elif not 1 <= (options.partitions or 0) <= MAX_PARTITIONS:
        raise ConfigError(f"--partitions must be from 1 to {MAX_PARTITIONS}")
    if options.batch < 1 or options.pause < 0 or options.settle < 0:
        raise ConfigError("--batch must be at least 1, --pause and --settle at least 0")
    url = store_urls(microstate, config)[microstate.stores[0].name]
    config.data_dir.mkdir(parents=True, exist_ok=True)  # where the embedded default lives
    try:
        store = await open_store(url, microstate.name)
    except ValueError as exc:
        raise ConfigError(f"--store: {exc}") from None
    name = microstate.name
    try:
        print(f"{name}: store {redacted(url)}", file=out, flush=True)
        if options.to is not None:
            if options.dry_run:
                await _survey(store, name, options.to, out)
            else:
                await _migrate(store, microstate, options.to, options, out)
        elif not isinstance(store, RedisClusterStore):
            raise ConfigError("--partitions: only a Redis Cluster store (redis+cluster://) has partitions")
        else:
            await _repartition(store, name, options, options.partitions or 0, out)
    except (StoreError, MigrationConflict) as exc:
        print(f"microstate migrate: {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await store.close()
    return 0


async def _repartition(
    store: RedisClusterStore, name: str, options: Options, partitions: int, out: TextIO
) -> None:
    seen = await layouts(store)
    moving = "" if seen.next is None else f", moving to {seen.next.partitions}"
    print(f"{name}: {seen.current.partitions} partitions{moving}", file=out, flush=True)
    if options.dry_run:
        print(f"{name}: --partitions {partitions}: dry run, nothing changed", file=out, flush=True)
        return
    report = _reporter(name, "moved", out)
    try:
        await repartition(
            store, partitions, batch=options.batch, pause=options.pause, settle=options.settle, report=report
        )
    except ValueError as exc:  # a settle too short, another count under way, suffixes that do not fit
        raise ConfigError(f"--partitions: {exc}") from None
    print(f"{name}: {partitions} partitions", file=out, flush=True)


def _reporter(name: str, verb: str, out: TextIO) -> Callable[[Progress], None]:
    """A progress printer: a line every REPORT_EVERY seconds, and the last one."""
    last = time.monotonic()

    def report(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if progress.state.running and now - last < REPORT_EVERY:
            return
        last = now
        done = progress.state
        where = "done" if not done.running else ("checking pass" if done.sweep else "first pass")
        print(
            f"{name}: {where}: {done.converted} {verb}, {progress.examined} examined by this run",
            file=out,
            flush=True,
        )

    return report


async def _survey(store: Store, name: str, target: int, out: TextIO) -> None:
    state, _ = await read_state(store)
    versions = await survey(store)
    counts = ", ".join(f"{count} at version {version}" for version, count in sorted(versions.items()))
    running = f" (a run from version {state.source} is under way)" if state.running else ""
    print(f"{name}: write version {state.version}{running}; records: {counts or 'none'}", file=out)
    pending = sum(count for version, count in versions.items() if version != target)
    print(f"{name}: --to {target} would convert {pending} records (dry run: nothing changed)", file=out)


async def _migrate(store: Store, microstate: Microstate, target: int, options: Options, out: TextIO) -> None:
    assert microstate.schema is not None
    name = microstate.name
    state, _ = await read_state(store)
    if state.running and state.version == target:
        where = "the start" if state.after is None else f"key {state.after!r}"
        sweep = ", checking pass" if state.sweep else ""
        print(f"{name}: resuming the run to version {target} after {where}{sweep}", file=out, flush=True)
    else:
        print(
            f"{name}: version {state.version} -> {target}; waiting {options.settle:g}s for servers to"
            " write the new version",
            file=out,
            flush=True,
        )
    report = _reporter(name, "converted", out)
    await migrate(
        store,
        microstate.schema,
        target,
        batch=options.batch,
        pause=options.pause,
        settle=options.settle,
        report=report,
    )
    print(f"{name}: every record is at version {target}", file=out, flush=True)
