"""A rule set of 10,000 flags and 20 MB syncs in chunks of about 1 MiB with gRPC's default limits (4 MiB
received), a ListFlags over it stays within them, and an EvaluateAll that cannot is refused as too large."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf import struct_pb2

from microstate.flags.v1 import flags_pb2 as f
from microstate.server.flags.domain import CHUNK_BYTES
from microstate.server.flags.model import FLAG
from microstate.server.flags.rules import check_flag
from microstate.server.store import open_store

from .builders import COLORS, cond, split
from .conftest import serve_flags
from .replica import Replica, follow_until

pytestmark = pytest.mark.redis

FLAGS = 10_000


def big_flag(index: int) -> f.Flag:
    """About 2 KB: an object variant of about 1 KB, a 1 KiB description, three rules."""
    obj = struct_pb2.Struct()
    obj.update({"prompt": f"{index:06}" + "p" * 950, "temperature": 0.5})
    made = f.Flag(
        key=f"flag-{index:05}",
        type=f.VARIANT_TYPE_OBJECT,
        state=f.FLAG_STATE_ENABLED,
        variants=[f.Variant(name=n, value=f.VariantValue(object_value=obj)) for n in COLORS[:1]]
        + [f.Variant(name=n, value=f.VariantValue(object_value=struct_pb2.Struct())) for n in COLORS[1:]],
        default_variant="red",
        description="d" * 1000,
        rules=[
            f.Rule(conditions=[cond("plan", f.OPERATOR_IN, "pro", "team")], variant="blue"),
            f.Rule(conditions=[cond("v", f.OPERATOR_SEMVER_LESS_THAN, "2.0.0")], variant="green"),
            f.Rule(split=split(*[(n, 25) for n in COLORS])),
        ],
    )
    return made


async def test_ten_thousand_flags_sync_with_default_limits(redis_server: object) -> None:
    store = await open_store(redis_server.url, f"flags{uuid.uuid4().hex}")  # type: ignore[attr-defined]
    try:
        check_flag(big_flag(0))
        for start in range(0, FLAGS, 500):
            await asyncio.gather(
                *(
                    store.put(big_flag(i).key, FLAG.to_bytes(big_flag(i)))
                    for i in range(start, min(start + 500, FLAGS))
                )
            )
        async with serve_flags(store) as stub:  # the channel keeps gRPC's default limits
            replica = Replica()
            stream = stub.SyncFlags(f.SyncFlagsRequest(), timeout=120)
            await follow_until(stream, replica, lambda: replica.snapshots == 1)
            stream.cancel()
            assert len(replica.flags) == FLAGS
            assert replica.bytes > 20_000_000
            assert replica.largest <= CHUNK_BYTES + 4096
            assert replica.flags["flag-01234"] == await stub.GetFlag(f.GetFlagRequest(key="flag-01234"))
            page = await stub.ListFlags(f.ListFlagsRequest(page_size=1000))
            assert len(page.flags) == 1000 and page.next_page_token and page.ByteSize() < 4 * 1024 * 1024
            # With no targeting key every flag answers its default, a 1 KB object: 10 MB, more than any
            # response may hold. The server says so itself (not the client's receive limit).
            with pytest.raises(grpc.aio.AioRpcError) as too_large:
                await stub.EvaluateAll(f.EvaluateAllRequest(context=f.EvaluationContext()))
            assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "RESPONSE_TOO_LARGE" in str(too_large.value.trailing_metadata())
    finally:
        await store.close()
