"""The sync twin: same methods, same fallback and errors, over a blocking channel.

The servers run on the test's event loop, so every blocking call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from microstate.client import SnapshotOptions, Source
from microstate.client.errors import Aborted, NoSnapshotError, NotFound, Unavailable
from microstate.client.profile.v1 import Profile, SyncProfileClient
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import ScriptedProfiles


async def test_sync_round_trip_and_fallback(real_server: RestartableServer, tmp_path: Path) -> None:
    options = fast_options(real_server.target, snapshot=SnapshotOptions(path=str(tmp_path / "sync.snap")))
    client = SyncProfileClient(options=options)

    def live_calls() -> list[str]:
        created = client.create(Profile(user_id="s1", display_name="S"))
        client.create(Profile(user_id="s2"))
        read = client.get("s1")
        assert read.source is Source.LIVE and read.value == created
        with pytest.raises(Aborted):
            client.update(Profile(user_id="s1", etag="stale"), ["display_name"])
        updated = client.update(Profile(user_id="s1", display_name="T"), ["display_name"])
        assert updated.display_name == "T"
        batch = client.batch_get(["s1", "s2", "nobody"])
        assert list(batch.found) == ["s1", "s2"] and batch.missing == ["nobody"]
        client.delete("s2")
        with pytest.raises(NotFound):
            client.get("s2")
        return [p.user_id for p in client.list_all(page_size=1)]

    assert await asyncio.to_thread(live_calls) == ["s1"]
    await real_server.stop()

    def fallback_calls() -> None:
        read = client.get("s1")
        assert read.stale and read.value.display_name == "T" and isinstance(read.fallback_reason, Unavailable)
        with pytest.raises(NoSnapshotError):
            client.get("s2")  # deleted: its snapshot went with it
        with pytest.raises(Unavailable):
            client.create(Profile(user_id="s3"))
        client.close()
        client.close()  # idempotent

    await asyncio.to_thread(fallback_calls)

    def warm_start() -> Profile:
        with SyncProfileClient(options=options) as restarted:
            return restarted.get("s1").value

    assert (await asyncio.to_thread(warm_start)).display_name == "T"


async def test_sync_watch_resumes_after_broken_streams(
    scripted: tuple[ScriptedProfiles, RestartableServer],
) -> None:
    servicer, server = scripted
    for user_id in ("a", "b", "c"):
        await servicer.append_event(user_id)
    servicer.break_watch_after.extend([1, 1])

    def watch() -> list[str]:
        with SyncProfileClient(options=fast_options(server.target)) as client:
            events = client.watch(resume_token="0", timeout=5)  # on failure: an error, not a hung thread
            seen = [event.user_id for event in itertools.islice(events, 3)]
            events.close()
            return seen

    assert await asyncio.wait_for(asyncio.to_thread(watch), 6) == ["a", "b", "c"]
    assert servicer.watch_tokens == ["0", "1", "2"]
