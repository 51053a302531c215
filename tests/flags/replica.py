"""A test replica of a SyncFlags stream: applies snapshots and deltas as the contract says, checking the
order rules as it goes, and counts the bytes it received."""

from __future__ import annotations

from collections.abc import AsyncIterator

from microstate.flags.v1 import flags_pb2 as f


class Replica:
    def __init__(self) -> None:
        self.flags: dict[str, f.Flag] = {}
        self.revision = 0
        self.snapshots = 0
        self.deltas = 0
        self.heartbeats = 0
        self.bytes = 0
        self.largest = 0
        self._pending: list[f.Flag] = []
        self._pending_revision: int | None = None

    def apply(self, message: f.SyncFlagsResponse) -> None:
        size = message.ByteSize()
        self.bytes += size
        self.largest = max(self.largest, size)
        kind = message.WhichOneof("event")
        if kind == "snapshot":
            chunk = message.snapshot
            assert self._pending_revision in (None, chunk.revision), "chunks of one snapshot share a revision"
            self._pending_revision = chunk.revision
            self._pending.extend(chunk.flags)
            if chunk.last:
                keys = [flag.key for flag in self._pending]
                assert keys == sorted(keys) and len(set(keys)) == len(keys)
                self.flags = {flag.key: flag for flag in self._pending}
                self.revision = chunk.revision
                self.snapshots += 1
                self._pending, self._pending_revision = [], None
        elif kind == "delta":
            assert self._pending_revision is None, "a delta inside a snapshot"
            delta = message.delta
            assert delta.revision > self.revision, (delta.revision, self.revision)
            for flag in delta.upserts:
                self.flags[flag.key] = flag
            for key in delta.deletes:
                self.flags.pop(key, None)
            self.revision = delta.revision
            self.deltas += 1
        else:
            assert kind == "heartbeat"
            assert message.heartbeat.revision == self.revision
            self.heartbeats += 1


async def follow_until(stream: AsyncIterator[f.SyncFlagsResponse], replica: Replica, done: object) -> None:
    """Apply messages until `done()` holds after one (a callable of no arguments)."""
    assert callable(done)
    async for message in stream:
        replica.apply(message)
        if done():
            return
    raise AssertionError("the stream ended")
