"""The ledger on a redis+cluster:// store: the partitions' journals are sealed in revision order, an entry
committed later with a lower revision than one already visible is held back rather than skipped, and a
`microstate serve --store redis+cluster://...` (auditing on by default) keeps a ledger that `microstate
audit export` and `verify` accept, holding every journaled write."""

from __future__ import annotations

import asyncio
import json
import signal
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.server.audit import audit_call
from microstate.server.audit.keys import CHAIN_KEYS, PUBLIC_KEY
from microstate.server.audit.serving import checkpoint_file
from microstate.server.cli import main
from microstate.server.store import open_store
from microstate.server.store.base import ABSENT
from microstate.server.store.redis import MICROS
from microstate.server.store.redis_cluster import SUFFIX, RedisClusterStore, partition_of
from tests.audit.conftest import Ledger
from tests.audit.test_sealer import verified_ok
from tests.conformance.conftest import Backend
from tests.support.processes import start_server, until
from tests.support.redis_cluster import RedisCluster, running_redis_cluster

AHEAD = 3 * MICROS
"""How far ahead of the masters' clocks the planted entry's revision is (µs): a master's clock runs fast."""


async def plant_ahead(store: RedisClusterStore, key: str) -> int:
    """An entry in the journal of `key`'s partition as a master whose clock runs AHEAD would commit it."""
    partitions = await store._ready()
    number = partition_of(key, len(partitions))
    revision = (await store._primaries_time() // SUFFIX + AHEAD) * SUFFIX + number
    await store._client.xadd(partitions[number].audit, {"a": b"from the future"}, id=f"{revision}-0")
    return revision


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis-cluster"], indirect=True)
async def test_an_entry_ahead_of_the_watermark_is_held_back_not_sealed_past_a_later_lower_one(
    backend: Backend, ledger: Ledger
) -> None:
    inner = ledger.store.inner
    assert isinstance(inner, RedisClusterStore)
    partitions = len(await inner._ready())
    keys = [f"k{i}" for i in range(50)]
    early = keys[0]
    late = next(key for key in keys if partition_of(key, partitions) != partition_of(early, partitions))

    def call() -> AbstractContextManager[object]:
        return audit_call("/microstate.profile.v2.ProfileService/CreateProfile", "microstate.profile.v2")

    with call():
        await ledger.store.put(early, b"1", if_match=ABSENT)
    planted = await plant_ahead(inner, early)
    assert await ledger.sealer.seal() == 1  # the write before it only: the planted one is not final yet
    with call():
        committed_later = await ledger.store.put(late, b"2", if_match=ABSENT)
    assert committed_later.revision < planted  # committed after it was visible, with a lower revision

    async def all_sealed() -> bool:
        await ledger.sealer.seal()
        return (await ledger.sealer.state()).size == 3

    await until(all_sealed, within=AHEAD / MICROS + 20, what="the planted entry to become final and sealed")
    revisions = [revision for revision, _ in await inner.audit_journal(0, 10)]
    assert revisions[1:] == [committed_later.revision, planted]
    await ledger.sealer.seal_all()
    await verified_ok(ledger, 3)


async def write_profiles(target: str, users: int) -> None:
    async with ProfileClient(target) as profiles:
        created = await asyncio.gather(
            *(profiles.create(Profile(user_id=f"user{i}", display_name=f"User {i}")) for i in range(users))
        )
        for profile in created[::2]:
            await profiles.update(Profile(user_id=profile.user_id, display_name="renamed", etag=profile.etag))
        await profiles.delete(created[1].user_id)


async def journaled_revisions(url: str) -> list[int]:
    store = await open_store(url, "profile")
    try:
        return [revision for revision, _ in await store.audit_journal(0, 10_000)]
    finally:
        await store.close()


@pytest.mark.process
@pytest.mark.redis
def test_a_server_on_a_cluster_keeps_a_ledger_that_exports_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_redis_cluster(masters=3) as cluster:  # its own cluster: the namespace is the name, "profile"
        check_server_ledger(cluster, tmp_path, capsys)


def check_server_ledger(cluster: RedisCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = start_server("profile", tmp_path, "--store", cluster.url)
    try:
        asyncio.run(write_profiles(server.target, 12))
        server.send(signal.SIGTERM)  # a clean stop seals and checkpoints what is left
        assert server.wait() == 0, server.describe()
    finally:
        server.stop()
    audit_dir, export = tmp_path / "audit", tmp_path / "ledger.jsonl"
    assert main(["audit", "export", "profile", "--store", cluster.url, "--out", str(export)]) == 0
    keys = ["--public-key", str(audit_dir / PUBLIC_KEY), "--chain-keys", str(audit_dir / CHAIN_KEYS)]
    checkpoints = ["--checkpoints", str(checkpoint_file(audit_dir, "profile"))]
    assert main(["audit", "verify", str(export), *checkpoints, *keys]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "integrity: OK" in out and "completeness: OK" in out
    sealed = [json.loads(line) for line in export.read_text().splitlines() if '"index"' in line]
    journaled = asyncio.run(journaled_revisions(cluster.url))
    assert [entry["revision"] for entry in sealed] == journaled  # every write sealed once, in order
    assert len(sealed) >= 12 + 6 + 1  # at least one entry per create, update and delete
