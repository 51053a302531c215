"""The legacy adapters against real stores: a SQLite file (through sqlite3 and through a SQLAlchemy URL) and a
real redis-server. Every adapter must behave alike: the same cases run on each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microstate.client.extraction import demo
from microstate.client.extraction.legacy import Direction, LegacyAdapter, OutboxStore, Outcome
from microstate.client.extraction.redis_hash import RedisHashAdapter
from microstate.client.extraction.sql import SqlAdapter
from microstate.profile.v1.profile_pb2 import Profile
from tests.support.redis_server import RedisServer


def profile(user_id: str, name: str, *, theme: str | None = None, marketing: str | None = None) -> Profile:
    made = Profile(user_id=user_id, display_name=name, locale="en-GB")
    if theme is not None:
        made.attributes["pref.theme"] = theme
    if marketing is not None:
        made.attributes["pref.marketing_emails"] = marketing
    return made


def rid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(params=["sqlite", "sqlalchemy", "redis"])
async def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlAdapter[Profile]]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        made: object = RedisHashAdapter.from_url(
            server.url, demo.UsersCodec(), prefix=f"{demo.REDIS_PREFIX}{uuid.uuid4().hex[:8]}:"
        )
    else:
        path = tmp_path / "monolith.db"
        demo.create_sqlite(str(path))
        url = f"sqlite:///{path}" if request.param == "sqlite" else f"sqlite+pysqlite:///{path}"
        made = SqlAdapter.from_url(url, demo.UsersCodec(), demo.TABLE)
    assert isinstance(made, LegacyAdapter) and isinstance(made, OutboxStore)
    await made.ensure_outbox()  # type: ignore[attr-defined]
    yield made  # type: ignore[misc]
    await made.close()


async def test_put_get_delete_round_trip_the_monolith_fields(adapter: SqlAdapter[Profile]) -> None:
    written = profile("u-1", "Ada", theme="dark", marketing="false")
    stored = await adapter.put("u-1", written, request_id=rid())
    assert stored == written
    assert await adapter.get("u-1") == written
    assert await adapter.get("u-2") is None
    assert await adapter.delete("u-1", request_id=rid()) is True
    assert await adapter.get("u-1") is None
    assert await adapter.delete("u-1", request_id=rid()) is False


async def test_a_repeated_request_id_changes_nothing(adapter: SqlAdapter[Profile]) -> None:
    request_id = rid()
    await adapter.put("u-1", profile("u-1", "first"), request_id=request_id)
    await adapter.put("u-1", profile("u-1", "second"), request_id=rid())
    again = await adapter.put("u-1", profile("u-1", "first"), request_id=request_id)
    assert again.display_name == "second"  # the retry of the first write did not undo the second
    deleting = rid()
    assert await adapter.delete("u-1", request_id=deleting) is True
    await adapter.put("u-1", profile("u-1", "third"), request_id=rid())
    await adapter.delete("u-1", request_id=deleting)
    assert (await adapter.get("u-1")) == profile("u-1", "third")


async def test_scan_is_ordered_bounded_and_paged(adapter: SqlAdapter[Profile]) -> None:
    keys = [f"k{number:03d}" for number in range(0, 50)]
    for key in reversed(keys):
        await adapter.put(key, profile(key, key.upper()), request_id=rid())
    everything = [key async for key, _ in adapter.scan(batch_size=7)]
    assert everything == keys
    window = [(key, value.display_name) async for key, value in adapter.scan("k010", "k020", batch_size=3)]
    assert window == [(key, key.upper()) for key in keys[10:20]]
    assert [key async for key, _ in adapter.scan("k049x")] == []


async def test_outbox_entries_commit_with_the_write_and_settle_once(adapter: SqlAdapter[Profile]) -> None:
    first = profile("u-1", "one")
    await adapter.put("u-1", first, request_id="r1", outbox=Direction.FORWARD)
    await adapter.put("u-1", profile("u-1", "dup"), request_id="r1", outbox=Direction.FORWARD)  # a retry
    await adapter.delete("u-2", request_id="r2", outbox=Direction.FORWARD)
    await adapter.put("u-3", profile("u-3", "no outbox"), request_id="r3")
    pending = await adapter.pending(Direction.FORWARD)
    assert [(entry.key, entry.request_id) for entry in pending] == [("u-1", "r1"), ("u-2", "r2")]
    assert Profile.FromString(pending[0].value or b"") == first and pending[1].value is None
    await adapter.retry_later(pending[0], "unavailable")
    await adapter.settle(pending[0], Outcome.APPLIED)
    await adapter.settle(pending[0], Outcome.DEAD_LETTERED, "late")  # already settled: no effect
    await adapter.settle(pending[1], Outcome.DEAD_LETTERED, "invalid")
    counts = await adapter.counts(Direction.FORWARD)
    assert (counts.appended, counts.pending, counts.applied, counts.dead_lettered) == (2, 0, 1, 1)
    [dead] = await adapter.dead_letters(Direction.FORWARD)
    assert (dead.key, dead.last_error) == ("u-2", "invalid")


async def test_a_write_supersedes_the_other_directions_pending_entries(adapter: SqlAdapter[Profile]) -> None:
    await adapter.append(
        Direction.REVERSE, "u-1", "r-rev", profile("u-1", "from microstate").SerializeToString()
    )
    await adapter.append(Direction.REVERSE, "u-2", "r-other", None)
    await adapter.put("u-1", profile("u-1", "newer legacy"), request_id="r-fwd", outbox=Direction.FORWARD)
    reverse = await adapter.counts(Direction.REVERSE)
    assert (reverse.appended, reverse.pending, reverse.superseded) == (2, 1, 1)
    assert [entry.key for entry in await adapter.pending(Direction.REVERSE)] == ["u-2"]


async def test_a_reverse_entry_applies_only_while_pending(adapter: SqlAdapter[Profile]) -> None:
    from_microstate = profile("u-1", "from microstate")
    await adapter.append(Direction.REVERSE, "u-1", "r-old", from_microstate.SerializeToString())
    [stale] = await adapter.pending(Direction.REVERSE)
    await adapter.put("u-1", profile("u-1", "newer legacy"), request_id="r-new", outbox=Direction.FORWARD)
    assert await adapter.apply_reverse(stale, from_microstate) is False  # superseded: legacy keeps the newer
    assert (await adapter.get("u-1")) == profile("u-1", "newer legacy")
    await adapter.append(Direction.REVERSE, "u-2", "r-2", from_microstate.SerializeToString())
    [current] = await adapter.pending(Direction.REVERSE)
    assert await adapter.apply_reverse(current, profile("u-2", "applied")) is True
    assert await adapter.apply_reverse(current, profile("u-2", "again")) is False
    assert (await adapter.get("u-2")) == profile("u-2", "applied")
    counts = await adapter.counts(Direction.REVERSE)
    assert (counts.appended, counts.pending, counts.applied, counts.superseded) == (2, 0, 1, 1)


async def test_pending_for_lists_one_keys_entries_in_order(adapter: SqlAdapter[Profile]) -> None:
    await adapter.put("u-1", profile("u-1", "a"), request_id="r1", outbox=Direction.FORWARD)
    await adapter.put("u-2", profile("u-2", "b"), request_id="r2", outbox=Direction.FORWARD)
    await adapter.delete("u-1", request_id="r3", outbox=Direction.FORWARD)
    assert [entry.request_id for entry in await adapter.pending_for(Direction.FORWARD, "u-1")] == ["r1", "r3"]
    assert await adapter.pending_for(Direction.REVERSE, "u-1") == []


@pytest.mark.parametrize("layout", ["sqlite", "redis"])
async def test_the_demo_toggles_round_trip_as_boolean_flags(
    layout: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    codec = demo.TogglesCodec()
    if layout == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"{demo.TOGGLES_REDIS_PREFIX}{uuid.uuid4().hex[:8]}:"
        toggles: object = RedisHashAdapter.from_url(server.url, codec, prefix=prefix)
    else:
        demo.create_sqlite(str(tmp_path / "monolith.db"))
        toggles = SqlAdapter.from_url(f"sqlite:///{tmp_path / 'monolith.db'}", codec, demo.TOGGLES_TABLE)
    assert isinstance(toggles, LegacyAdapter)
    try:
        await toggles.ensure_outbox()  # type: ignore[attr-defined]
        on, off = demo.toggle("checkout.v2", True, "the new checkout"), demo.toggle("dark-mode", False)
        for flag in (on, off):
            assert await toggles.put(flag.key, flag, request_id=rid()) == flag
        assert [key async for key, _ in toggles.scan()] == ["checkout.v2", "dark-mode"]
        assert await toggles.get("dark-mode") == off and off.default_variant == demo.OFF
        assert codec.to_row(on) == {"enabled": 1, "description": "the new checkout"}
    finally:
        await toggles.close()
