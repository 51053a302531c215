"""RC, reconciliation of issue 17: `microstate reconcile`'s engine over a SQLite demo monolith and the
profile slice's SQLite store holding the same users, with 100 divergences injected in the store.

RC: the divergences found, as a share of those injected (issue 17: 100% of 100 among 1,000,000 keys; a quick
    run takes 100,000); and the run's time (digests of every range, key-by-key comparison of the differing
    ranges, the repairs) vs reading both sides in the same pages: the legacy adapter's scan (its rows made
    messages, as any reader of it gets them) and the store's raw `list` pages (not decoded), the floor of
    any reconciliation that reads the rows.
"""

from __future__ import annotations

import time

from bench.report import Row, at_least
from bench.stack import Settings
from microstate.client.extraction import demo
from microstate.client.extraction.sql import SqlAdapter
from microstate.server.profile.extraction import BINDING
from microstate.server.reconcile import Reconciler, StoreSide
from microstate.server.store import open_store
from tests.support.reconcile_data import bulk_load, inject, sample

DIVERGENCES = 100
RANGE = 1000


async def reconcile(settings: Settings) -> list[Row]:
    count = 100_000 if settings.rounds < 5 else 1_000_000
    workdir = settings.workdir / "reconcile"
    workdir.mkdir(exist_ok=True)
    legacy_url, store_url = await bulk_load(workdir, count)
    codec = demo.UsersCodec()
    legacy = SqlAdapter.from_url(legacy_url, codec, demo.TABLE)
    await legacy.ensure_outbox()
    store = await open_store(store_url, "profile")
    try:
        microstate = StoreSide(store, BINDING)
        injected = await inject(microstate, sample(DIVERGENCES, count, seed=17), legacy)
        started = time.perf_counter()
        async for _ in legacy.scan(batch_size=RANGE):
            pass
        after: str | None = None
        while True:  # the store's raw pages: no decoding
            page = await store.list(after=after, limit=RANGE)
            if (after := page.next_after) is None:
                break
        bare = time.perf_counter() - started
        report = await Reconciler("profile", legacy, microstate, codec, range_size=RANGE).run("dual_write")
    finally:
        await legacy.close()
        await store.close()
    found = {d.key for d in report.divergences} & injected.keys()
    share = 100 * len(found) / len(injected)
    rows = [
        Row(
            "RC",
            f"reconcile {count:,} keys, {DIVERGENCES} divergences injected in the store: found",
            share,
            None,
            "%",
            target=at_least(100, on="value", text="100%"),
            note=f"{report.repaired} repaired; {report.differing_ranges} of {report.ranges} ranges differed,"
            f" {report.keys_compared:,} keys compared one by one",
        ),
        Row(
            "RC",
            f"reconcile {count:,} keys (digests, differing ranges, repairs) vs reading both sides' pages"
            " (adapter scan, raw store.list)",
            report.seconds,
            bare,
            "s",
            ratio=report.seconds / bare,
            note=f"{count / report.seconds:,.0f} keys/s per side",
        ),
    ]
    return rows
