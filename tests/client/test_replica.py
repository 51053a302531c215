"""The generic Replica's rules, step by step: a full replica fed a snapshot, deltas and heartbeats (as a
sync stream feeds it), and a read-through one whose fills race a watch's events (the near-cache and the
session cache show these against real servers)."""

from __future__ import annotations

import math
import threading
import time

import pytest

from microstate.client._replica import TOUCH_LOG_SIZE, Liveness, Replica
from tests.support.processes import wait_for


def _values(replica: Replica[str, int]) -> dict[str, int]:
    return {key: entry.value for key, entry in replica.items()}


def test_a_full_replica_applies_a_snapshot_then_deltas_in_revision_order() -> None:
    replica: Replica[str, int] = Replica()
    assert replica.status().liveness is Liveness.STALE and replica.age() == math.inf
    replica.apply_snapshot(10, [("a", 1), ("b", 2)])
    assert _values(replica) == {"a": 1, "b": 2} and replica.revision == 10
    assert replica.apply_delta(11, upserts=[("c", 3)], deletes=["a"])
    assert not replica.apply_delta(11, upserts=[("a", 9)])  # resent after a resume: changes nothing
    assert not replica.apply_delta(5, deletes=["b"])
    assert _values(replica) == {"b": 2, "c": 3} and replica.revision == 11
    entry = replica.get("c")
    assert entry is not None and entry.revision == 11
    replica.apply_snapshot(20, [("z", 26)])  # a fresh snapshot replaces everything
    assert _values(replica) == {"z": 26} and replica.status().revision == 20
    assert replica.copy() == (20, [("z", 26)])


def test_a_silent_feed_goes_stale_within_its_heartbeat_timeout_and_back_on_a_heartbeat() -> None:
    replica: Replica[str, int] = Replica(heartbeat_timeout=0.05)
    replica.apply_snapshot(1, [("a", 1)])
    assert replica.status().liveness is Liveness.LIVE
    stale = wait_for(
        lambda: (status := replica.status()).liveness is Liveness.STALE and status, within=5, what="silence"
    )
    assert stale.age > 0.05 and replica.get("a") is not None  # entries stay, for whoever accepts STALE
    replica.heartbeat()
    assert replica.status().liveness is Liveness.LIVE and replica.status().age < 5


def test_a_broken_feed_is_stale_and_ages_from_the_break() -> None:
    replica: Replica[str, int] = Replica()
    replica.apply_snapshot(1, [("a", 1)])
    assert replica.status() == replica.status().__class__(Liveness.LIVE, 0.0, 1, 1)
    replica.mark_broken()
    status = replica.status()
    assert status.liveness is Liveness.STALE and 0 <= status.age < 5 and status.entries == 1
    assert replica.apply_delta(2, upserts=[("b", 2)])  # the resumed stream's first delta
    assert replica.status().liveness is Liveness.LIVE


def test_a_restored_copy_is_stale_with_its_own_age_until_the_feed_speaks() -> None:
    replica: Replica[str, int] = Replica()
    replica.restore(7, [("a", 1)], as_of=time.time() - 60)
    status = replica.status()
    assert status.liveness is Liveness.STALE and status.age >= 60 and status.revision == 7
    assert not replica.apply_delta(7) and replica.apply_delta(8, deletes=["a"])
    assert replica.status().liveness is Liveness.LIVE and len(replica) == 0


def test_fills_are_kept_only_under_a_cover() -> None:
    replica: Replica[str, int] = Replica(max_entries=10)
    assert replica.begin_fill() is None
    assert not replica.fill("a", replica.begin_fill(), 1)
    replica.feed_opened(resumed=False)
    assert replica.fill("a", replica.begin_fill(), 1) and _values(replica) == {"a": 1}
    ticket = replica.begin_fill()
    replica.feed_closed(resumed=False)  # the cover broke: nothing in flight or new is kept
    assert not replica.fill("b", ticket, 2) and replica.begin_fill() is None
    assert replica.get("a") is not None  # kept ones stay until a new cover
    replica.feed_opened(resumed=False)
    assert len(replica) == 0


def test_a_resumed_stream_keeps_the_cover_and_what_was_kept() -> None:
    replica: Replica[str, int] = Replica(max_entries=10)
    replica.watch_listener(True, "")
    replica.fill("a", replica.begin_fill(), 1)
    ticket = replica.begin_fill()
    replica.watch_listener(False, "token-1")
    replica.watch_listener(True, "token-1")
    assert replica.fill("b", ticket, 2) and _values(replica) == {"a": 1, "b": 2}


def test_a_fill_in_flight_across_a_change_of_its_key_is_not_kept() -> None:
    replica: Replica[str, int] = Replica(max_entries=10)
    replica.feed_opened(resumed=False)
    ticket = replica.begin_fill()
    replica.invalidate("a")  # the change's event came before the (older) answer
    replica.invalidate("other")
    assert not replica.fill("a", ticket, 1)
    assert replica.fill("b", ticket, 2)  # another key's answer is still good
    replica.drop_where(lambda key, value: False)  # a change that names no key: every fill in flight
    assert not replica.fill("c", ticket, 3)
    assert replica.fill("a", replica.begin_fill(), 1)


def test_a_fill_with_a_revision_never_replaces_a_newer_entry() -> None:
    replica: Replica[str, int] = Replica(max_entries=10)
    replica.feed_opened(resumed=False)
    assert replica.fill("a", replica.begin_fill(), 5, revision=5)
    assert not replica.fill("a", replica.begin_fill(), 4, revision=4)
    assert replica.fill("a", replica.begin_fill(), 6, revision=6) and _values(replica) == {"a": 6}


def test_a_fill_of_a_key_the_touch_log_forgot_is_not_kept() -> None:
    replica: Replica[str, int] = Replica(max_entries=10)
    replica.feed_opened(resumed=False)
    ticket = replica.begin_fill()
    replica.invalidate("a")
    for n in range(TOUCH_LOG_SIZE):
        replica.invalidate(f"k{n}")
    assert not replica.fill("a", ticket, 1) and not replica.fill("never-touched", ticket, 1)


def test_the_least_recently_used_entry_goes_when_full() -> None:
    replica: Replica[str, int] = Replica(max_entries=2)
    replica.feed_opened(resumed=False)
    for key in ("a", "b"):
        replica.fill(key, replica.begin_fill(), 0)
    replica.get("a")
    replica.fill("c", replica.begin_fill(), 0)
    assert sorted(_values(replica)) == ["a", "c"]


def test_readers_never_see_a_half_applied_snapshot() -> None:
    replica: Replica[int, int] = Replica()
    replica.apply_snapshot(0, ((key, 0) for key in range(1000)))
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(len({entry.revision for _, entry in replica.items()}))

    reader = threading.Thread(target=read)
    reader.start()
    for revision in range(1, 50):
        replica.apply_snapshot(revision, ((key, revision) for key in range(1000)))
    done.set()
    reader.join()
    assert seen == {1}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Replica(max_entries=0)
    with pytest.raises(ValueError):
        Replica(heartbeat_timeout=0)
