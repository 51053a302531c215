"""microstate.audit.v1.AuditService: a server's ledgers read over gRPC — the newest checkpoint, a stream of
checkpoints as they are signed (what a SIEM follows to keep signed heads outside the store), and RFC 6962
inclusion and consistency proofs. Served by the runtime next to the slice's services when it keeps a ledger;
every method needs the scope "audit.read"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from microstate.audit.v1 import audit_pb2 as pb
from microstate.server.audit import merkle
from microstate.server.audit.checkpoints import Checkpoint
from microstate.server.audit.ledger import CHECKPOINTS, ENTRIES, Sealer, decode_batch, newest_checkpoint
from microstate.server.errors import InvalidArgument, NotFound, stream_errors, unary_errors
from microstate.server.kit.resources import changes
from microstate.server.store.base import Store
from microstate.server.streams import until_stopping

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["AuditService"]
SCOPES = dict.fromkeys((method.name for method in SERVICE.methods), "audit.read")


def to_message(checkpoint: Checkpoint) -> pb.Checkpoint:
    return pb.Checkpoint(
        log_id=checkpoint.log_id,
        size=checkpoint.size,
        root=checkpoint.root,
        head=checkpoint.head,
        time_ns=checkpoint.time_ns,
        signature=checkpoint.signature,
        json=checkpoint.to_json(),
    )


async def leaf_hashes(ledger: Store, log_id: str, count: int) -> list[bytes]:
    """The leaf hashes of the ledger's first `count` entries (fewer if it has fewer)."""
    hashes: list[bytes] = []
    after: str | None = None
    while len(hashes) < count:
        page = await ledger.list(ENTRIES, after=after, limit=100)
        for record in page.records:
            hashes.extend(merkle.leaf_hash(sealed.leaf(log_id)) for sealed in decode_batch(record.value))
        if page.next_after is None:
            break
        after = page.next_after
    return hashes[:count]


class AuditServicer:
    def __init__(self, sealers: Sequence[Sealer], stopping: asyncio.Event | None = None) -> None:
        self._sealers = {sealer.log_id: sealer for sealer in sealers}
        self._default = sealers[0].log_id
        self._stopping = stopping

    def _ledger(self, log_id: str) -> tuple[str, Store]:
        log_id = log_id or self._default
        sealer = self._sealers.get(log_id)
        if sealer is None:
            raise InvalidArgument(
                "log_id", f"no ledger {log_id!r} here; this server keeps {sorted(self._sealers)}"
            )
        return log_id, sealer.ledger

    async def _sized(self, log_id: str, size: int, field: str) -> tuple[list[bytes], bytes]:
        """The leaf hashes of a tree of `size` entries of the ledger, and its root; `size` is `field`."""
        log_id, ledger = self._ledger(log_id)
        hashes = await leaf_hashes(ledger, log_id, size)
        if size <= 0 or len(hashes) < size:
            raise InvalidArgument(field, f"{size} is not a tree size of this ledger (1 to {len(hashes)})")
        return hashes, merkle.root(hashes)

    @unary_errors
    async def GetCheckpoint(self, request: pb.GetCheckpointRequest, context: Context) -> pb.Checkpoint:
        log_id, ledger = self._ledger(request.log_id)
        checkpoint = await newest_checkpoint(ledger)
        if checkpoint is None:
            raise NotFound(f"ledger {log_id!r} has no checkpoint yet", reason="CHECKPOINT_NOT_FOUND")
        return to_message(checkpoint)

    @stream_errors
    async def WatchCheckpoints(
        self, request: pb.WatchCheckpointsRequest, context: Context
    ) -> AsyncIterator[pb.WatchCheckpointsResponse]:
        _, ledger = self._ledger(request.log_id)
        start = await ledger.head_cursor()
        newest = await newest_checkpoint(ledger)
        await context.send_initial_metadata(())
        if newest is not None:
            yield pb.WatchCheckpointsResponse(checkpoint=to_message(newest))
        async for change in until_stopping(changes(ledger, CHECKPOINTS, start), self._stopping):
            if change.record is not None:
                checkpoint = Checkpoint.from_json(change.record.value)
                yield pb.WatchCheckpointsResponse(checkpoint=to_message(checkpoint))

    @unary_errors
    async def ProveInclusion(
        self, request: pb.ProveInclusionRequest, context: Context
    ) -> pb.ProveInclusionResponse:
        hashes, _ = await self._sized(request.log_id, request.tree_size, "tree_size")
        if not 0 <= request.index < request.tree_size:
            raise InvalidArgument("index", f"must be in [0, tree_size={request.tree_size})")
        proof = merkle.inclusion_proof(request.index, hashes)
        return pb.ProveInclusionResponse(leaf_hash=hashes[request.index], hashes=proof)

    @unary_errors
    async def ProveConsistency(
        self, request: pb.ProveConsistencyRequest, context: Context
    ) -> pb.ProveConsistencyResponse:
        hashes, _ = await self._sized(request.log_id, request.new_size, "new_size")
        if not 0 < request.old_size <= request.new_size:
            raise InvalidArgument("old_size", f"must be in [1, new_size={request.new_size}]")
        return pb.ProveConsistencyResponse(hashes=merkle.consistency_proof(request.old_size, hashes))
