"""The profile server keeps serving, every write kept, while its records migrate to schema version 2 and back
(profile/migrations.py); per-backend proofs of the mechanism are in tests/conformance/test_migrations.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
from google.protobuf import field_mask_pb2

from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.server.kit.migrate import survey
from microstate.server.kit.migrations import SCHEMA_KEY, SchemaState
from microstate.server.profile.migrations import SCHEMA
from microstate.server.store.base import Store
from tests.support.migrations import migrate_under_writes
from tests.support.processes import launch

SETTLE = 1.5
"""Longer than the server's refresh of the write version (1 s)."""
USERS = [f"user{i:02}" for i in range(12)]
MASK = field_mask_pb2.FieldMask(paths=["attributes.count"])


async def bump(stub: v1_grpc.ProfileServiceStub, user_id: str) -> None:
    """Increment a profile's "count" attribute under its etag; retried when another write got there first."""
    while True:
        current = await stub.GetProfile(v1.GetProfileRequest(user_id=user_id))
        count = int(current.attributes.get("count", "0"))
        profile = v1.Profile(user_id=user_id, attributes={"count": str(count + 1)}, etag=current.etag)
        try:
            await stub.UpdateProfile(v1.UpdateProfileRequest(profile=profile, update_mask=MASK))
            return
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
                raise


async def test_profiles_stay_served_and_no_write_is_lost_across_a_migration_and_back(
    channel: grpc.aio.Channel, store: Store
) -> None:
    stub = v1_grpc.ProfileServiceStub(channel)
    for user_id in USERS:
        await stub.CreateProfile(
            v1.CreateProfileRequest(profile=v1.Profile(user_id=user_id, display_name="x"))
        )
    assert await survey(store) == Counter({1: len(USERS)})

    async def write(_: int, user_id: str) -> None:
        await bump(stub, user_id)

    acknowledged = await migrate_under_writes(
        store, SCHEMA, (2, 1), USERS, write, writers=3, batch=3, settle=SETTLE
    )
    for user_id in USERS:
        profile = await stub.GetProfile(v1.GetProfileRequest(user_id=user_id))
        assert (profile.display_name, int(profile.attributes.get("count", "0"))) == (
            "x",
            acknowledged[user_id],
        )


async def test_a_server_refuses_records_migrated_past_its_code(store: Store, tmp_path: Path) -> None:
    """Records at a version the code does not declare would be misread: the server does not start on them."""
    await store.put(SCHEMA_KEY, SchemaState(version=SCHEMA.head + 1).encode())
    url = f"sqlite:///{tmp_path / 'profile.db'}"
    server = launch(
        ["serve", "profile", "--store", url, "--port", "0", "--data-dir", str(tmp_path)], tmp_path
    )
    try:
        assert server.wait(timeout=30) == 1, server.describe()
    finally:
        server.stop()
    assert f"the stored records are at schema version {SCHEMA.head + 1}" in server.errors()
