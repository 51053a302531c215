"""`microstate migrate NAME --to N`: open the microstate's records store as `serve` does and move its records
to schema version N online (kit/migrate.py), or, with --dry-run, count what is stored at each version."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from microstate.server.config import ConfigError, ServerConfig
from microstate.server.kit.migrate import MigrationConflict, Progress, migrate, survey
from microstate.server.kit.migrations import read_state
from microstate.server.registry import Microstate
from microstate.server.serve import redacted, store_urls
from microstate.server.store import Store, StoreError, open_store

REPORT_EVERY = 0.5
"""Seconds between two progress lines (the last one is always printed)."""


@dataclass(frozen=True)
class Options:
    to: int
    dry_run: bool
    batch: int
    pause: float
    settle: float


async def run(
    microstate: Microstate, config: ServerConfig, options: Options, out: TextIO = sys.stdout
) -> int:
    """0 when the records are at the version (or the dry run told what it would do), 1 when the store
    failed or another run is under way; ConfigError for what the command line got wrong."""
    schema = microstate.schema
    if schema is None:
        raise ConfigError(f"{microstate.name} declares no schema versions: it has nothing to migrate")
    try:
        schema.check(options.to)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
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
        if options.dry_run:
            await _survey(store, name, options.to, out)
        else:
            await _migrate(store, microstate, options, out)
    except (StoreError, MigrationConflict) as exc:
        print(f"microstate migrate: {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await store.close()
    return 0


async def _survey(store: Store, name: str, target: int, out: TextIO) -> None:
    state, _ = await read_state(store)
    versions = await survey(store)
    counts = ", ".join(f"{count} at version {version}" for version, count in sorted(versions.items()))
    running = f" (a run from version {state.source} is under way)" if state.running else ""
    print(f"{name}: write version {state.version}{running}; records: {counts or 'none'}", file=out)
    pending = sum(count for version, count in versions.items() if version != target)
    print(f"{name}: --to {target} would convert {pending} records (dry run: nothing changed)", file=out)


async def _migrate(store: Store, microstate: Microstate, options: Options, out: TextIO) -> None:
    assert microstate.schema is not None
    name = microstate.name
    state, _ = await read_state(store)
    if state.running and state.version == options.to:
        where = "the start" if state.after is None else f"key {state.after!r}"
        sweep = ", checking pass" if state.sweep else ""
        print(f"{name}: resuming the run to version {options.to} after {where}{sweep}", file=out, flush=True)
    else:
        print(
            f"{name}: version {state.version} -> {options.to}; waiting {options.settle:g}s for servers to"
            " write the new version",
            file=out,
            flush=True,
        )
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
            f"{name}: {where}: {done.converted} converted, {progress.examined} examined by this run",
            file=out,
            flush=True,
        )

    await migrate(
        store,
        microstate.schema,
        options.to,
        batch=options.batch,
        pause=options.pause,
        settle=options.settle,
        report=report,
    )
    print(f"{name}: every record is at version {options.to}", file=out, flush=True)
