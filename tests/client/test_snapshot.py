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
