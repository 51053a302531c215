"""The SDK's LocalRuleSet fed SyncFlags messages directly: chunked snapshots apply whole at `last`, a stream
that ends mid-snapshot drops its chunks, old deltas change nothing, heartbeats set the staleness limit, a
heartbeat at another revision forces a fresh snapshot, and listeners hear READY, CHANGED and STALE."""

from __future__ import annotations

import pytest

from microstate.client.flags import EventKind, Reason, RuleSetEvent, RuleSetState
from microstate.client.flags._local import LocalRuleSet, ResyncNeeded
from microstate.flags.v1 import flags_pb2 as f
from tests.client.flags_harness import bool_flag


def chunk(revision: int, *keys: str, last: bool) -> f.SyncFlagsResponse:
    flags = [bool_flag(key) for key in keys]
    for flag in flags:
        flag.revision = revision
    return f.SyncFlagsResponse(snapshot=f.SnapshotChunk(revision=revision, flags=flags, last=last))


def delta(revision: int, upserts: tuple[str, ...] = (), deletes: tuple[str, ...] = ()) -> f.SyncFlagsResponse:
    flags = [bool_flag(key, False) for key in upserts]
    for flag in flags:
        flag.revision = revision
    return f.SyncFlagsResponse(delta=f.Delta(revision=revision, upserts=flags, deletes=deletes))


def heartbeat(revision: int, interval: float = 5.0) -> f.SyncFlagsResponse:
    beat = f.Heartbeat(revision=revision)
    beat.heartbeat_interval.FromNanoseconds(int(interval * 1e9))
    return f.SyncFlagsResponse(heartbeat=beat)


def test_a_chunked_snapshot_applies_whole_at_its_last_chunk() -> None:
    rules = LocalRuleSet(None)
    events: list[RuleSetEvent] = []
    rules.add_listener(events.append)
    assert rules.on_message(chunk(5, "a", "b", last=False)).resume_token == ""
    assert rules.status().state is RuleSetState.NOT_READY and rules.status().revision is None
    assert rules.details("a", False, None, None, f.VARIANT_TYPE_BOOL).error_code.name == "PROVIDER_NOT_READY"
    assert rules.on_message(chunk(5, "c", last=True)).resume_token == "5"
    assert rules.status().flags == 3 and rules.status().state is RuleSetState.READY
    assert events == [RuleSetEvent(EventKind.READY, 5), RuleSetEvent(EventKind.CHANGED, 5, ("a", "b", "c"))]
    assert rules.since_revision() == 5


def test_a_stream_that_ends_mid_snapshot_drops_its_chunks() -> None:
    rules = LocalRuleSet(None)
    rules.on_message(chunk(5, "a", last=True))
    rules.on_message(chunk(9, "x", last=False))
    rules.on_connection(False, "5")
    assert rules.status().state is RuleSetState.STALE
    assert rules.details("a", False, None, None, f.VARIANT_TYPE_BOOL).reason is Reason.STALE
    rules.on_connection(True, "5")
    rules.on_message(chunk(9, "y", last=True))
    assert rules.flag("x") is None and rules.flag("a") is None  # the dropped chunk, the old snapshot
    assert rules.flag("y") is not None and rules.status().revision == 9


def test_deltas_apply_in_order_and_old_ones_change_nothing() -> None:
    rules = LocalRuleSet(None)
    rules.on_message(chunk(5, "a", "b", last=True))
    rules.on_message(delta(6, upserts=("a",), deletes=("b",)))
    assert rules.flag("b") is None and rules.value("a", True, None, None, f.VARIANT_TYPE_BOOL) is False
    rules.on_message(delta(6, deletes=("a",)))  # at the held revision: resent after a resume
    rules.on_message(delta(4, deletes=("a",)))
    assert rules.flag("a") is not None and rules.status().revision == 6
    assert rules.status().sync.deltas == 3 and rules.status().sync.snapshots == 1


def test_heartbeats_set_the_staleness_limit() -> None:
    rules = LocalRuleSet(None)
    rules.on_message(chunk(5, "a", last=True))
    rules.on_message(heartbeat(5, interval=0.001))
    assert rules.status().heartbeat_interval == pytest.approx(0.001)
    details = rules.details("a", False, None, None, f.VARIANT_TYPE_BOOL)
    while details.reason is not Reason.STALE:
        details = rules.details("a", False, None, None, f.VARIANT_TYPE_BOOL)
    assert details.stale_age is not None and details.stale_age > 0.002
    rules.check()
    assert rules.status().state is RuleSetState.STALE
    rules.on_message(heartbeat(5, interval=60))
    assert rules.status().state is RuleSetState.READY
    assert rules.details("a", False, None, None, f.VARIANT_TYPE_BOOL).reason is Reason.STATIC


def test_a_heartbeat_at_another_revision_forces_a_fresh_snapshot() -> None:
    rules = LocalRuleSet(None)
    rules.on_message(chunk(5, "a", last=True))
    with pytest.raises(ResyncNeeded):
        rules.on_message(heartbeat(7))
    assert rules.since_revision() == 0  # the next stream asks for a snapshot
    rules.feed_failed()
    assert rules.status().state is RuleSetState.ERROR
    assert rules.value("a", False, None, None, f.VARIANT_TYPE_BOOL) is True  # still served
    rules.on_message(chunk(8, "a", last=True))
    assert rules.since_revision() == 8 and rules.status().state is RuleSetState.READY


def test_a_failing_listener_does_not_stop_the_feed() -> None:
    rules = LocalRuleSet(None)

    def broken(event: RuleSetEvent) -> None:
        raise RuntimeError("handler bug")

    heard: list[RuleSetEvent] = []
    rules.add_listener(broken)
    remove = rules.add_listener(heard.append)
    rules.on_message(chunk(5, "a", last=True))
    assert len(heard) == 2
    remove()
    rules.on_message(delta(6, upserts=("a",)))
    assert len(heard) == 2 and rules.status().revision == 6
