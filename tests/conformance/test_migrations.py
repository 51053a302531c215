"""Declared store migrations (kit/migrations.py, kit/migrate.py) on every backend: the profile slice's real
migration up and down byte for byte, a migration under concurrent writers with nothing lost, and a killed
`microstate migrate` process that resumes."""

from __future__ import annotations

import array
import asyncio
import io
import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from microstate.server import migrating, registry
from microstate.server.config import load
from microstate.server.kit.idempotency import AppliedRequest
from microstate.server.kit.migrate import MigrationConflict, migrate, survey
from microstate.server.kit.migrations import (
    SCHEMA_KEY,
    Migration,
    Schema,
    VersionedStore,
    read_state,
)
from microstate.server.profile.migrations import SCHEMA as PROFILE_SCHEMA
from microstate.server.profile.model import Consent, ProfileData
from microstate.server.store import PreconditionFailed, Store, open_store
from tests.conformance.conftest import Backend, StoreFactory
from tests.support.migrations import migrate_under_writes
from tests.support.processes import launch, until

SETTLE = 0.2
"""Seconds the runs here give servers to learn a new write version: theirs refresh every REFRESH."""
REFRESH = 0.02


def profiles(count: int) -> list[ProfileData]:
    """Profiles covering what the migration touches: each known written_by, an unknown one, none; maps of
    several keys (their order is what could break byte identity), embeddings, consents, applied requests."""
    writers = ["microstate.profile.v1", "microstate.profile.v2", "some.legacy.writer", ""]
    return [
        ProfileData(
            user_id=f"u{i:04}",
            display_name=f"User {i}",
            locale="it-IT",
            attributes={f"k{j}": str(i * j) for j in range(i % 5)},
            embedding=array.array("f", [i / 3, -1.5, 2.25]),
            create_time_ns=1_700_000_000_000_000_000 + i,
            update_time_ns=1_700_000_000_000_000_000 + 2 * i,
            written_by=writers[i % len(writers)],
            consents=(Consent("ads", i % 2 == 0, 1_000 + i),),
            applied_requests=(AppliedRequest(f"req-{i}", b"digest%d" % i, 5_000_000 + i),)
            if i % 3 == 0
            else (),
        )
        for i in range(count)
    ]


async def stored(store: Store) -> dict[str, tuple[bytes, float | None]]:
    """Every record as stored (value and expiry), the schema state left out."""
    found: dict[str, tuple[bytes, float | None]] = {}
    after = None
    while True:
        page = await store.list("", after=after, limit=500)
        found.update((r.key, (r.value, r.expires_at)) for r in page.records if r.key != SCHEMA_KEY)
        if page.next_after is None:
            return found
        after = page.next_after


async def test_profile_migration_up_then_down_is_byte_identical(store: Store) -> None:
    served = VersionedStore(store, PROFILE_SCHEMA, refresh=REFRESH)
    written = profiles(24)
    for index, profile in enumerate(written):  # as a server writes them before anyone migrates: version 1
        await served.put(profile.user_id, profile.to_bytes(), ttl=3600 if index % 4 == 0 else None)
    before = await stored(store)
    assert await survey(store) == Counter({1: 24})

    up = await migrate(store, PROFILE_SCHEMA, 2, batch=7, settle=SETTLE)
    assert up.state.version == 2 and not up.state.running and up.state.converted == 24
    at_two = await stored(store)
    assert await survey(store) == Counter({2: 24})
    for key, (value, _) in before.items():
        if ProfileData.from_bytes(value).written_by.startswith("microstate.profile."):
            assert len(at_two[key][0]) < len(value) - 15  # the name became a code (stamp included)
        assert at_two[key][1] == pytest.approx(before[key][1], abs=1.0)  # the TTL kept
    assert [ProfileData.from_bytes((await served.get(p.user_id)).value) for p in written] == written

    down = await migrate(store, PROFILE_SCHEMA, 1, batch=7, settle=SETTLE)
    assert (
        down.state.version == 1 and down.state.converted == 24
    )  # the 10 without a code: only the stamp goes
    after = await stored(store)
    assert {key: value for key, (value, _) in after.items()} == {
        key: value for key, (value, _) in before.items()
    }


def test_profile_steps_are_inverse_byte_for_byte() -> None:
    migration = PROFILE_SCHEMA.migrations[0]
    for profile in profiles(12):
        at_head = profile.to_bytes()  # what the code writes: version 2
        at_one = migration.down(at_head)
        assert migration.up(at_one) == at_head
        assert migration.down(migration.up(at_one)) == at_one
        assert ProfileData.from_bytes(at_one) == ProfileData.from_bytes(at_head) == profile


COUNTERS = Schema(
    (
        Migration(
            2,
            "a counter as JSON instead of n=<count>",
            up=lambda payload: json.dumps({"n": int(payload.removeprefix(b"n="))}).encode(),
            down=lambda payload: b"n=%d" % json.loads(payload)["n"],
        ),
    )
)
"""A test schema whose values are counters: a lost update shows as a count below the acknowledged ones."""


async def increment(store: VersionedStore, key: str) -> None:
    """One read-modify-write of a counter, retried on a lost compare-and-set until it is acknowledged."""
    while True:
        record = await store.get(key)
        assert record is not None
        count = json.loads(record.value)["n"]
        try:
            await store.put(key, json.dumps({"n": count + 1}).encode(), if_match=record.revision)
            return
        except PreconditionFailed:
            continue


async def test_migration_under_concurrent_writes_loses_no_update(
    store: Store, store_factory: StoreFactory
) -> None:
    keys = [f"c{i:03}" for i in range(16)]
    for key in keys:
        await store.put(key, b"n=0")
    # Two "servers", each with its own connection and its own view of the write version.
    servers = [VersionedStore(await store_factory(), COUNTERS, refresh=REFRESH) for _ in range(2)]

    async def write(writer: int, key: str) -> None:
        await increment(servers[writer % 2], key)

    acknowledged = await migrate_under_writes(
        store, COUNTERS, (2, 1, 2), keys, write, writers=4, batch=4, settle=SETTLE
    )
    reader = servers[0]
    counts = {key: json.loads((await reader.get(key)).value)["n"] for key in keys}
    assert counts == {key: acknowledged[key] for key in keys}
    assert acknowledged.total() > 3 * len(keys)


async def test_a_run_that_loses_the_state_to_another_stops(store: Store, store_factory: StoreFactory) -> None:
    """A run cannot tell a live run from a dead one, so a new run takes the state over (how a run killed on
    the way up is rolled back); the live one finds its state moved and stops instead of fighting."""
    for index in range(20):
        await store.put(f"k{index:02}", b"n=1")
    first = asyncio.create_task(migrate(store, COUNTERS, 2, batch=1, settle=SETTLE))
    await until(lambda: stored_state_running(store), within=10, what="the first run to start")
    second = await store_factory()
    await migrate(second, COUNTERS, 1, batch=1, settle=0)
    with pytest.raises(MigrationConflict):
        await first
    assert (await survey(store))[1] >= 19  # the batch it had under way, at most, is left behind
    await migrate(second, COUNTERS, 1, settle=0)
    assert await survey(store) == Counter({1: 20})


async def stored_state_running(store: Store) -> bool:
    state, _ = await read_state(store)
    return state.running


# --- a real `microstate migrate` process, killed half-way ---------------------------------------------


def own_url(backend: Backend) -> str:
    """A URL on `backend` whose "profile" namespace belongs to this test alone (the command always migrates
    the namespace named after the microstate)."""
    parts = urlsplit(backend.url)
    if backend.name == "redis":
        url = urlunsplit(parts._replace(path="/13"))
        redis.Redis.from_url(url).flushdb()  # db 13 is this test's
        return url
    if backend.name.startswith("mongo"):
        return urlunsplit(parts._replace(path=f"/migrate{uuid.uuid4().hex[:12]}"))
    return backend.url


COUNT = 60


async def test_a_killed_migrate_command_resumes(backend: Backend, tmp_path: Path) -> None:
    url = own_url(backend)
    store = await open_store(url, "profile")
    try:
        served = VersionedStore(store, PROFILE_SCHEMA, refresh=REFRESH)
        written = profiles(COUNT)
        for profile in written:
            await served.put(profile.user_id, profile.to_bytes())
        before = await stored(store)
        command = ["migrate", "profile", "--store", url, "--batch", "5", "--pause", "0.05", "--settle", "0"]
        killed = launch([*command, "--to", "2"], tmp_path)
        try:

            async def halfway() -> bool:
                state, _ = await read_state(store)
                return state.running and state.converted >= 15

            await until(halfway, within=60, what=f"the run to convert 15 records\n{killed.describe()}")
            killed.send(signal.SIGKILL)
            assert killed.wait() == -signal.SIGKILL
        finally:
            killed.stop()
        stopped, _ = await read_state(store)
        assert stopped.running and stopped.after is not None and stopped.converted < COUNT - 15
        assert 0 < (await survey(store))[1] < COUNT  # some converted, some not: servers read both meanwhile
        assert [ProfileData.from_bytes((await served.get(p.user_id)).value) for p in written] == written

        resumed = launch([*command, "--to", "2", "--pause", "0"], tmp_path)
        assert resumed.wait(timeout=60) == 0, resumed.describe()
        assert f"resuming the run to version 2 after key {stopped.after!r}" in resumed.output()
        assert await survey(store) == Counter({2: COUNT})

        # The command's other paths, in this process: a dry run changes nothing, and down restores every byte.
        profile_state = registry.get("profile")
        config = load({"store": url, "data_dir": tmp_path})
        out = io.StringIO()
        dry = migrating.Options(1, dry_run=True, batch=5, pause=0, settle=0)
        assert await migrating.run(profile_state, config, dry, out) == 0
        assert f"would convert {COUNT} records" in out.getvalue() and await survey(store) == Counter(
            {2: COUNT}
        )
        down = migrating.Options(1, dry_run=False, batch=5, pause=0, settle=0)
        assert await migrating.run(profile_state, config, down, out) == 0
        assert await stored(store) == before
    finally:
        await store.close()


def test_reads_of_older_records_skip_steps_the_code_does_not_need() -> None:
    """profile's step is additive: its code reads a version-1 payload as it is, so reading one converts
    nothing (a read before the migration costs what it did), and what it reads is what `up` would give."""
    for profile in profiles(8):
        at_one = PROFILE_SCHEMA.from_head(profile.to_bytes(), 1)
        assert PROFILE_SCHEMA.to_head(at_one) is at_one  # not even copied
        assert ProfileData.from_bytes(PROFILE_SCHEMA.to_head(at_one)) == profile
    assert COUNTERS.to_head(b"n=4") == b'{"n": 4}'  # a step without reads_older runs
