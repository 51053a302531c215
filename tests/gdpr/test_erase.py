"""Export and erase of one subject across every microstate, in-process servers on SQLite files (and, once
each, all on a Redis Cluster and on a Mongo-wire server), the SDK following with snapshots on disk: after the
erase, no file holds the subject's data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from microstate.client import SnapshotOptions
from microstate.client.errors import Unauthenticated
from microstate.client.profile import v1
from microstate.client.session.v1 import SessionClient
from microstate.server.gdpr.bundle import verify_bundle, write_bundle
from microstate.server.gdpr.coordinator import Coordinator, Failed, Target
from microstate.server.store import open_store
from microstate.server.store.base import Store
from microstate.subjects.v1 import subjects_pb2 as pb
from microstate.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.client.conftest import fast_options
from tests.gdpr.harness import (
    MARKER,
    SUBJECT,
    WITHIN,
    documents_holding,
    keys_holding,
    occurrences,
    rewrite_aof,
    serve_all,
)
from tests.support.mongo_server import MongoServer, running_mongo_server
from tests.support.processes import until
from tests.support.redis_cluster import RedisCluster, running_redis_cluster
from tests.support.server_process import free_port

OPLOG = "local.oplog.rs"


@contextlib.asynccontextmanager
async def coordinator(data: Path, targets: dict[str, str]) -> AsyncIterator[Coordinator]:
    store: Store = await open_store(f"sqlite:///{data / 'gdpr.db'}", "gdpr")
    channels = {name: grpc.aio.insecure_channel(target) for name, target in targets.items()}
    try:
        yield Coordinator(store, [Target(name, channel) for name, channel in channels.items()])
    finally:
        await store.close()
        for channel in channels.values():
            await channel.close()


async def eventually_refused(client: SessionClient, token: str) -> None:
    async def refused() -> bool:
        try:
            await client.validate(token, accept_cached_for=30)
        except Unauthenticated:
            return True
        return False

    await until(refused, within=WITHIN, what="the erased session to be refused")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis-cluster", marks=pytest.mark.redis),
        pytest.param("mongo", marks=pytest.mark.mongo),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[RedisCluster | MongoServer | None]:
    """None: every microstate on its SQLite files; else a fresh 3-master cluster or Mongo-wire server they
    all run on (the microstates' own namespaces, so not the session's shared servers)."""
    if request.param == "sqlite":
        yield None
        return
    with running_redis_cluster() if request.param == "redis-cluster" else running_mongo_server() as fresh:
        yield fresh


async def test_erase_leaves_no_plaintext_in_stores_snapshots_or_sdk_caches(
    tmp_path: Path, backend: RedisCluster | MongoServer | None
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    async with serve_all(data, store=backend.url if backend else None) as targets:
        snapshots = SnapshotOptions(path=str(data / "sdk") + "/", flush_interval=0.05)
        profiles = v1.ProfileClient(options=fast_options(targets["profile"], snapshot=snapshots))
        sessions = SessionClient(options=fast_options(targets["session"]))
        async with profiles, sessions:
            await profiles.create(v1.Profile(user_id=SUBJECT, display_name=f"Ada {MARKER}"))
            await profiles.update(
                v1.Profile(user_id=SUBJECT, display_name=f"Ada L. {MARKER}"), ["display_name"]
            )
            await profiles.create(v1.Profile(user_id="bystander", display_name="Bob"))
            issued = [
                await sessions.create(SUBJECT, attributes={"device": f"phone {MARKER}"}) for _ in range(2)
            ]
            await sessions.revoke_user(SUBJECT, except_session_id=issued[1].session.session_id)
            other = await sessions.create("bystander", attributes={"device": "laptop"})
            await record_events(targets["telemetry"], [SUBJECT, SUBJECT, "bystander"])
            assert (await profiles.get(SUBJECT)).value.display_name.endswith(MARKER)  # into the snapshot
            await sessions.validate(issued[1].token, accept_cached_for=30)  # into the validation cache
            watch = profiles.watch()
            deleted = asyncio.ensure_future(_first_deletion(watch, SUBJECT))

            async with coordinator(data, targets) as coordinate:
                record, lines = await coordinate.export(SUBJECT)
                bundle = write_bundle(tmp_path / "bundles", record, lines)
                assert verify_bundle(bundle) == []
                assert "subject" not in record
                exported = {name: (bundle / f"{name}.jsonl").read_text() for name in targets}
                assert MARKER in exported["profile"] and len(lines["session"]) == 2
                assert all(json.loads(line)["data"] for line in lines["session"])
                assert not lines["models"] and not lines["flags"]
                assert [json.loads(line)["data"]["subject_id"] for line in lines["telemetry"]] == [
                    SUBJECT
                ] * 2

                erased = await coordinate.erase(SUBJECT)
                parts = erased["microstates"]
                assert parts["profile"]["erased"] == 1 and parts["session"]["erased"] == 2 + 2 + 1
                assert parts["telemetry"]["erased"] == 1  # the subject's key: its events are unlinkable
                assert all(part["state"] == "DONE" for part in parts.values()), parts
                _, after = await coordinate.export(SUBJECT)
                assert not any(after.values()), after

            await asyncio.wait_for(deleted, WITHIN)  # the watch told the SDK, which dropped its snapshot
            await eventually_refused(sessions, issued[1].token)  # the ERASED revocation emptied the cache
            assert (await profiles.get("bystander")).value.display_name == "Bob"
            assert (await sessions.validate(other.token)).value.user_id == "bystander"
        # Every store file, WAL, receipt, coordinator record and SDK snapshot file, once the clients closed.
        assert occurrences(data, MARKER) == {}
        # The subject's id is left only in profile's change log, as the key of the deletion every watcher
        # (and SDK cache) must hear of, until the log's retention trims it (SECURITY.md).
        if backend is None:
            assert set(occurrences(data, SUBJECT)) <= {"profile.db"}, occurrences(data, SUBJECT)
            return
    if isinstance(backend, MongoServer):
        # Every document of every collection but the oplog, which holds every write for its window, like
        # WiredTiger's free pages (the operator's: SECURITY.md).
        assert documents_holding(backend.url, MARKER).keys() <= {OPLOG}
        left = documents_holding(backend.url, SUBJECT).keys() - {OPLOG}
        assert left <= {"microstate.changes.profile"}, left  # the deletion announced to watchers
        return
    # On the cluster (records, receipts, telemetry's log): every key in memory (as an RDB would write it),
    # then every file once the AOFs are rewritten (what the operator does after erasures: SECURITY.md).
    assert keys_holding(backend, MARKER) == {}
    left = keys_holding(backend, SUBJECT)
    assert all(re.fullmatch(r"msc:\{profile:\d+:\d+\}:log", key) for key in left), left
    for node in backend.masters():
        await asyncio.to_thread(rewrite_aof, node)
    assert [occurrences(node.data_dir, MARKER) for node in backend.nodes] == [{}] * len(backend.nodes)


async def record_events(target: str, subjects: list[str]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        events = [
            telemetry_pb2.Event(name="page.view", subject_id=subject, value=1.0) for subject in subjects
        ]
        request = telemetry_pb2.RecordEventsRequest(producer_id="p1", batch_seq=1, events=events)
        answer = await telemetry_pb2_grpc.TelemetryServiceStub(channel).RecordEvents(request)
        assert answer.accepted == len(subjects)


async def _first_deletion(watch: AsyncIterator[v1.ProfileChange[v1.Profile]], user_id: str) -> None:
    async for change in watch:
        if change.change_type is v1.ChangeType.DELETED and change.user_id == user_id:
            return


async def test_a_repeated_erase_request_is_answered_from_its_receipt(tmp_path: Path) -> None:
    async with serve_all(tmp_path) as targets, grpc.aio.insecure_channel(targets["profile"]) as channel:
        profiles = v1.ProfileClient(options=fast_options(targets["profile"]))
        async with profiles:
            await profiles.create(v1.Profile(user_id=SUBJECT, display_name="Ada"))
            erase = channel.unary_unary(
                "/microstate.subjects.v1.SubjectService/EraseSubject",
                request_serializer=pb.EraseSubjectRequest.SerializeToString,
                response_deserializer=pb.EraseSubjectResponse.FromString,
            )
            request = pb.EraseSubjectRequest(subject_id=SUBJECT, request_id="r-1")
            first = await erase(request)
            await profiles.create(v1.Profile(user_id=SUBJECT, display_name="Ada, again"))  # signs up again
            again = await erase(request)
            assert (first.erased_count, first.replayed) == (1, False)
            assert (again.erased_count, again.replayed) == (1, True)
            assert (await profiles.get(SUBJECT)).value.display_name == "Ada, again"  # not erased twice
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await erase(pb.EraseSubjectRequest(subject_id="someone-else", request_id="r-1"))
            assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await erase(pb.EraseSubjectRequest(subject_id="", request_id="r-2"))
            assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_failed_microstate_leaves_the_request_open_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    async with serve_all(tmp_path) as targets:
        async with v1.ProfileClient(options=fast_options(targets["profile"])) as profiles:
            await profiles.create(v1.Profile(user_id=SUBJECT, display_name="Ada"))
        unreachable = {**targets, "session": f"127.0.0.1:{free_port()}"}
        async with coordinator(tmp_path, unreachable) as coordinate:
            with pytest.raises(Failed, match="session: UNAVAILABLE"):
                await coordinate.erase(SUBJECT)
        async with coordinator(tmp_path, targets) as coordinate:
            record = await coordinate.erase(SUBJECT)
        parts = record["microstates"]
        assert record["state"] == "DONE" and parts["session"] == {
            "state": "DONE",
            "erased": 0,
            "retained": [],
            "replayed": False,
        }
        assert parts["profile"]["erased"] == 1 and not parts["profile"]["replayed"]  # asked once
