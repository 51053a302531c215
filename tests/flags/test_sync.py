"""SyncFlags on every backend: snapshot, deltas, heartbeats, resume with only the delta, fresh snapshots
for revisions the server cannot continue from, and no change lost or doubled under concurrent writes."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from microstate.flags.v1 import flags_pb2 as f
from microstate.flags.v1 import flags_pb2_grpc
from microstate.server.store import Store
from tests.conformance.conftest import Backend, StoreFactory

from .builders import COLORS, cond, string_flag
from .conftest import Serve
from .replica import Replica, follow_until

Stub = flags_pb2_grpc.FlagServiceStub
DEADLINE = 60


def flag(key: str, description: str = "") -> f.Flag:
    made = string_flag(
        key, COLORS, "red", [f.Rule(conditions=[cond("plan", f.OPERATOR_EQUALS, "pro")], variant="blue")]
    )
    made.description = description
    return made


async def stored_flags(stub: Stub) -> dict[str, f.Flag]:
    flags, token = {}, ""
    while True:
        page = await stub.ListFlags(f.ListFlagsRequest(page_size=1000, page_token=token))
        flags.update({flag.key: flag for flag in page.flags})
        token = page.next_page_token
        if not token:
            return flags


async def test_snapshot_deltas_and_heartbeats(stub: Stub) -> None:
    for i in range(3):
        await stub.CreateFlag(f.CreateFlagRequest(flag=flag(f"f{i}")))
    replica = Replica()
    stream = stub.SyncFlags(f.SyncFlagsRequest(), timeout=DEADLINE)
    await follow_until(stream, replica, lambda: replica.snapshots == 1)
    assert sorted(replica.flags) == ["f0", "f1", "f2"]
    assert replica.revision == max(flag.revision for flag in replica.flags.values())

    updated = await stub.UpdateFlag(
        f.UpdateFlagRequest(flag=f.Flag(key="f1", description="x"), update_mask={"paths": ["description"]})
    )
    await follow_until(stream, replica, lambda: replica.revision == updated.flag.revision)
    assert replica.flags["f1"] == updated.flag
    deleted = await stub.DeleteFlag(f.DeleteFlagRequest(key="f0"))
    await follow_until(stream, replica, lambda: replica.revision == deleted.revision)
    assert sorted(replica.flags) == ["f1", "f2"]
    await follow_until(stream, replica, lambda: replica.heartbeats >= 2)
    stream.cancel()


async def test_resume_sends_only_the_delta(store: Store, serve: Serve) -> None:
    """A replica that reconnects, to a server started since, with the revision it holds gets the changes
    it missed as deltas (read from the store's change log), not another snapshot."""
    async with serve(store) as stub:
        for i in range(50):
            await stub.CreateFlag(f.CreateFlagRequest(flag=flag(f"f{i:02}", "x" * 500)))
        first = Replica()
        stream = stub.SyncFlags(f.SyncFlagsRequest(), timeout=DEADLINE)
        await follow_until(stream, first, lambda: first.snapshots == 1)
        stream.cancel()
    async with serve(store) as stub:  # a new server: its rule set knows nothing of the first stream
        changed = await stub.UpdateFlag(
            f.UpdateFlagRequest(
                flag=f.Flag(key="f07", description="new"), update_mask={"paths": ["description"]}
            )
        )
        deleted = await stub.DeleteFlag(f.DeleteFlagRequest(key="f08"))

        resumed = Replica()
        resumed.flags, resumed.revision = dict(first.flags), first.revision
        stream = stub.SyncFlags(f.SyncFlagsRequest(since_revision=first.revision), timeout=DEADLINE)
        await follow_until(stream, resumed, lambda: resumed.revision == deleted.revision)
        stream.cancel()
        assert (resumed.snapshots, resumed.deltas) == (0, 2)
        assert resumed.flags["f07"] == changed.flag and "f08" not in resumed.flags
        assert resumed.flags == await stored_flags(stub)
        assert resumed.bytes * 20 < first.bytes, (resumed.bytes, first.bytes)


@pytest.mark.parametrize("since", [2**62, -1])  # ahead of every backend's revisions (a cluster's are ~1.8e18)
async def test_revisions_it_cannot_continue_from(stub: Stub, since: int) -> None:
    await stub.CreateFlag(f.CreateFlagRequest(flag=flag("a")))
    replica = Replica()
    stream = stub.SyncFlags(f.SyncFlagsRequest(since_revision=since), timeout=DEADLINE)
    if since < 0:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await follow_until(stream, replica, lambda: False)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    await follow_until(stream, replica, lambda: replica.snapshots == 1)  # ahead of the server: a snapshot
    stream.cancel()
    assert list(replica.flags) == ["a"]


async def test_trimmed_revision_gets_a_snapshot(store_factory: StoreFactory, serve: Serve) -> None:
    store = await store_factory(retention=5)
    async with serve(store) as stub:
        await stub.CreateFlag(f.CreateFlagRequest(flag=flag("a")))
        old = (await stub.GetFlag(f.GetFlagRequest(key="a"))).revision
        for i in range(300):
            await stub.UpdateFlag(
                f.UpdateFlagRequest(
                    flag=f.Flag(key="a", description=str(i)), update_mask={"paths": ["description"]}
                )
            )
        replica = Replica()
        stream = stub.SyncFlags(f.SyncFlagsRequest(since_revision=old), timeout=DEADLINE)
        await follow_until(stream, replica, lambda: replica.snapshots == 1)
        stream.cancel()
        assert replica.flags["a"].description == "299"


async def test_no_change_lost_or_doubled_under_concurrent_writes(
    store: Store, serve: Serve, backend: Backend
) -> None:
    """Writers keep writing while streams start, and while a second server bootstraps its rule set from the
    store: every replica ends equal to the store, each delta above the revision before it."""
    if backend.name == "redis-cluster":
        # Each write waits until its server's rule set has seen it, one watch poll (50 ms) on the cluster:
        # too few writes land while the second server bootstraps for the premise (deltas after its snapshot).
        pytest.skip("the premise needs writes faster than the cluster store's watch poll")
    keys = [f"k{i}" for i in range(20)]
    async with serve(store) as stub:
        for key in keys:
            await stub.CreateFlag(f.CreateFlagRequest(flag=flag(key)))
        stop = asyncio.Event()

        async def writer(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                key = rng.choice(keys)
                try:
                    if rng.random() < 0.2:
                        await stub.DeleteFlag(f.DeleteFlagRequest(key=key))
                    elif rng.random() < 0.5:
                        await stub.CreateFlag(f.CreateFlagRequest(flag=flag(key, str(rng.random()))))
                    else:
                        await stub.UpdateFlag(
                            f.UpdateFlagRequest(
                                flag=f.Flag(key=key, description=str(rng.random())),
                                update_mask={"paths": ["description"]},
                            )
                        )
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS)

        async def replica_of(target: Stub) -> tuple[Replica, grpc.aio.UnaryStreamCall]:
            replica = Replica()
            stream = target.SyncFlags(f.SyncFlagsRequest(), timeout=DEADLINE)
            await follow_until(stream, replica, lambda: replica.snapshots == 1)
            return replica, stream

        writers = [asyncio.ensure_future(writer(seed)) for seed in range(3)]
        try:
            followers = []
            for _ in range(3):
                followers.append(await replica_of(stub))
            async with serve(store) as second:  # a rule set bootstrapping while the writers write
                followers.append(await replica_of(second))
                stop.set()
                await asyncio.gather(*writers)
                head = await stub.EvaluateAll(f.EvaluateAllRequest())
                truth = await stored_flags(stub)
                for replica, stream in followers:
                    await follow_until(stream, replica, lambda r=replica: r.revision >= head.revision)  # type: ignore[misc]
                    stream.cancel()
                    assert replica.flags == truth
                assert replica.deltas > 0
        finally:
            stop.set()
            await asyncio.gather(*writers, return_exceptions=True)
