"""Snapshots: the in-memory LRU, max_age, and the durable file that lets a restarted worker start warm."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from microstate.client import BreakerState, SnapshotOptions, Source
from microstate.client._snapshot import SnapshotStore
from microstate.client._snapshot_file import SnapshotEntry, SnapshotFileError, decode, encode
from microstate.client.errors import CircuitOpenError, NoSnapshotError, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.client.conftest import breaker_options, fast_options
from tests.client.harness import RestartableServer, eventually
from tests.client.scripted import ScriptedProfiles, unavailable

CONTRACT = "microstate.profile.v1"


async def test_a_new_client_with_the_same_file_serves_snapshots_with_the_server_down(
    real_server: RestartableServer, tmp_path: Path
) -> None:
    path = str(tmp_path / "snapshots" / "profile.snap")
    options = fast_options(real_server.target, snapshot=SnapshotOptions(path=path))
    async with ProfileClient(options=options) as writer:
        created = await writer.create(Profile(user_id="warm", display_name="W", embedding=[0.25] * 64))
        await writer.get("warm")
    await real_server.stop()

    async with ProfileClient(options=options) as restarted:
        read = await restarted.get("warm")
        assert read.source is Source.SNAPSHOT and read.value == created and read.etag == created.etag
        assert read.age > 0
        with pytest.raises(NoSnapshotError):
            await restarted.get("cold")
    assert [name for name in os.listdir(tmp_path / "snapshots")] == ["profile.snap"]  # no temp files left


async def test_the_file_is_written_in_the_background_before_close(
    scripted: tuple[ScriptedProfiles, RestartableServer], tmp_path: Path
) -> None:
    servicer, server = scripted
    servicer.put("bg", display_name="B")
    path = tmp_path / "bg.snap"
    options = fast_options(server.target, snapshot=SnapshotOptions(path=str(path), flush_interval=0.02))
    async with ProfileClient(options=options) as client:
        await client.get("bg")

        async def saved() -> list[tuple[str, SnapshotEntry]]:
            return decode(CONTRACT, path.read_bytes()) if path.exists() else []

        entries = await eventually(saved, lambda found: len(found) == 1)
    assert entries[0][0] == "bg" and Profile.FromString(entries[0][1].payload).display_name == "B"


async def test_snapshot_reads_share_one_decoded_message_until_a_refresh(
    scripted: tuple[ScriptedProfiles, RestartableServer], tmp_path: Path
) -> None:
    """A hit decodes nothing: reads served from one snapshot share its message (Read.value says to treat
    it as read-only), and while the breaker is open they share one Read. A live read's message stays its
    own, a refresh replaces what the snapshot shares, and a change to a shared message stays in memory."""
    servicer, server = scripted
    servicer.put("u1", display_name="One")
    path = tmp_path / "shared.snap"
    options = breaker_options(server.target, reset_timeout=60.0, snapshot=SnapshotOptions(path=str(path)))
    async with ProfileClient(options=options) as client:
        live = await client.get("u1")
        live.value.display_name = "changed by its caller"  # a live read's message is not the snapshot's
        servicer.always["GetProfile"] = unavailable()
        failed = [await client.get("u1") for _ in range(2)]
        assert client.breaker_state is BreakerState.OPEN
        opened = [await client.get("u1") for _ in range(2)]

        assert all(isinstance(read.fallback_reason, Unavailable) for read in failed)
        assert isinstance(opened[0].fallback_reason, CircuitOpenError) and opened[0] is opened[1]
        assert all(read.value is failed[0].value for read in failed + opened)
        assert failed[0].value.display_name == "One" and failed[0].etag == live.etag

        await client.update(Profile(user_id="u1", display_name="Two"))  # writes refresh the snapshot
        refreshed = await client.get("u1")
        assert refreshed.stale and refreshed.value.display_name == "Two"
        assert refreshed is not opened[0] and refreshed.value is not opened[0].value
        assert await client.get("u1") is refreshed
        refreshed.value.display_name = "changed by its caller"  # what Read.value warns against
    [(_, entry)] = decode(CONTRACT, path.read_bytes())
    assert Profile.FromString(entry.payload).display_name == "Two"  # the file keeps the bytes read live


async def test_a_batch_refreshes_every_snapshot_at_its_one_fetch_time(
    scripted: tuple[ScriptedProfiles, RestartableServer], tmp_path: Path
) -> None:
    """Each found profile refreshes its own snapshot (its bytes and etag) and every read and snapshot of
    the answer shares one fetch time; a missing id loses its snapshot. A page of a list refreshes too."""
    servicer, server = scripted
    for user_id in ("a", "b", "c", "gone"):
        servicer.put(user_id, display_name=user_id.upper())
    path = tmp_path / "batch.snap"
    options = fast_options(server.target, snapshot=SnapshotOptions(path=str(path)))
    async with ProfileClient(options=options) as client:
        await client.get("gone")
        del servicer.profiles["gone"]
        servicer.put("a", display_name="A2")  # a new etag
        live = await client.batch_get(["a", "b", "c", "gone"])
        assert list(live.found) == ["a", "b", "c"] and live.missing == ["gone"]
        (fetched_at,) = {read.fetched_at for read in live.found.values()}

        servicer.always["BatchGetProfiles"] = servicer.always["GetProfile"] = unavailable()
        served = await client.batch_get(["a", "b", "c", "gone"])
        assert list(served.found) == ["a", "b", "c"] and served.unavailable == ["gone"]
        for user_id, read in served.found.items():
            assert read.stale and read.value == live.found[user_id].value == servicer.profiles[user_id]
            assert read.etag == servicer.profiles[user_id].etag and read.fetched_at == fetched_at
        assert served.found["a"].value.display_name == "A2"

        page = await client.list("", page_size=2)  # ListProfiles still answers
        paged = [await client.get(profile.user_id) for profile in page.items]
        assert [read.value for read in paged] == list(page.items) and all(read.stale for read in paged)
        assert paged[0].fetched_at == paged[1].fetched_at > fetched_at
    saved = dict(decode(CONTRACT, path.read_bytes()))
    assert sorted(saved) == ["a", "b", "c"] and Profile.FromString(saved["c"].payload).display_name == "C"


async def test_max_age_stops_serving_old_snapshots(
    scripted: tuple[ScriptedProfiles, RestartableServer],
) -> None:
    servicer, server = scripted
    servicer.put("old")
    options = fast_options(server.target, snapshot=SnapshotOptions(max_age=0.05))
    async with ProfileClient(options=options) as client:
        await client.get("old")
        servicer.always["GetProfile"] = unavailable()
        await eventually(lambda: _no_snapshot(client, "old"), lambda refused: refused, within=2.0)


async def _no_snapshot(client: ProfileClient, user_id: str) -> bool:
    try:
        await client.get(user_id)
    except NoSnapshotError:
        return True
    return False


def _store(tmp_path: Path, **options: object) -> SnapshotStore:
    return SnapshotStore(CONTRACT, SnapshotOptions(path=str(tmp_path / "s.snap"), **options))  # type: ignore[arg-type]


def test_lru_evicts_the_least_recently_used(tmp_path: Path) -> None:
    store = _store(tmp_path, max_entries=2)
    store.put("a", b"A", "1")
    store.put("b", b"B", "1")
    assert store.get("a") is not None  # a is now the most recent
    store.put("c", b"C", "1")
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    store.close()

    reloaded = _store(tmp_path, max_entries=1)  # keeps the most recent of the file
    assert len(reloaded) == 1 and reloaded.get("c") is not None
    reloaded.close()


def test_put_many_is_puts_one_by_one_with_one_eviction(tmp_path: Path) -> None:
    now = time.time()
    batch = [("c", b"C", "2"), ("a", b"A2", "2"), ("d", b"D", "2")]
    one_by_one, at_once = _store(tmp_path / "1", max_entries=3), _store(tmp_path / "2", max_entries=3)
    for store in (one_by_one, at_once):
        store.put("a", b"A", "1", now)
        store.put("b", b"B", "1", now)
    for key, payload, etag in batch:
        one_by_one.put(key, payload, etag, now)
    at_once.put_many(batch, now)
    for store in (one_by_one, at_once):
        store.close()
    saved = decode(CONTRACT, (tmp_path / "2" / "s.snap").read_bytes())
    assert saved == decode(CONTRACT, (tmp_path / "1" / "s.snap").read_bytes())
    # b was the least recently used; a was refreshed, so it is now more recent than c.
    assert saved == [(key, SnapshotEntry(payload, etag, now)) for key, payload, etag in batch]

    bigger_than_the_bound = _store(tmp_path / "3", max_entries=2)
    bigger_than_the_bound.put_many(batch, now)
    assert [key for key in "cad" if bigger_than_the_bound.get(key)] == ["a", "d"]
    bigger_than_the_bound.close()


def test_get_many_is_get_of_each_key(tmp_path: Path) -> None:
    store = _store(tmp_path, max_entries=3, max_age=60.0)
    now = time.time()
    store.put("old", b"O", "1", now - 120)
    store.put_many([("a", b"A", "1"), ("b", b"B", "1")], now)
    found = store.get_many(["a", "old", "nope"])
    assert list(found) == ["a", "old", "nope"] and found["old"] is None and found["nope"] is None
    assert found["a"] is not None and found["a"].entry == SnapshotEntry(b"A", "1", now)
    store.put("c", b"C", "1", now)  # evicts old, the least recently used; a was moved after b
    store.close()
    assert [key for key, _ in decode(CONTRACT, (tmp_path / "s.snap").read_bytes())] == ["b", "a", "c"]


def test_zero_entries_turns_snapshots_off(tmp_path: Path) -> None:
    store = _store(tmp_path, max_entries=0)
    store.put("a", b"A", "1")
    assert store.get("a") is None
    store.close()
    assert not (tmp_path / "s.snap").exists()


def test_file_round_trip_keeps_order_and_fields() -> None:
    entries = [("k1", SnapshotEntry(b"\x00\x01", "e1", 1.5)), ("ключ", SnapshotEntry(b"", "", time.time()))]
    assert decode(CONTRACT, encode(CONTRACT, entries)) == entries


@pytest.mark.parametrize("damage", ["empty", "magic", "flip", "truncate", "contract"])
def test_damaged_or_foreign_files_are_refused(damage: str) -> None:
    data = encode(CONTRACT, [("k", SnapshotEntry(b"payload", "e", 1.0))])
    damaged = {
        "empty": b"",
        "magic": b"XXXXXXXX" + data[8:],
        "flip": data[:20] + bytes([data[20] ^ 0xFF]) + data[21:],
        "truncate": data[:-7],
        "contract": encode("microstate.flags.v1", []),
    }[damage]
    with pytest.raises(SnapshotFileError):
        decode(CONTRACT, damaged)


def test_a_damaged_file_means_a_cold_start_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "s.snap").write_bytes(b"garbage")
    store = _store(tmp_path)
    assert len(store) == 0 and "ignoring snapshot file" in caplog.text
    store.put("a", b"A", "1")
    store.close()
    assert decode(CONTRACT, (tmp_path / "s.snap").read_bytes())[0][0] == "a"  # and it is replaced
