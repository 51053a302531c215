"""Conformance: appends are atomic and contiguous, in commit order, and a dedupe key appends once."""

from __future__ import annotations

import asyncio
import random

import pytest

from microstate.server.store.log import Appended, LogStore
from tests.conformance.waiting import wait_until
from tests.conformance_log.conftest import LogFactory
from tests.conformance_log.support import read_all


async def test_entries_get_consecutive_positions_from_one_and_a_commit_time(log: LogStore) -> None:
    assert await log.head() == "0"

    first = await log.append([b"a", b"b", b"c"])
    second = await log.append([b"d"])

    assert first.positions == range(1, 4)
    assert second.positions == range(4, 5)
    assert not first.duplicate and not second.duplicate
    assert 0 < first.commit_time <= second.commit_time
    assert await log.head() == second.cursor == "4"
    entries = await read_all(log)
    assert [(e.position, e.data) for e in entries] == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
    assert [e.commit_time for e in entries] == [first.commit_time] * 3 + [second.commit_time]


async def test_concurrent_appenders_on_several_connections_never_interleave(log_factory: LogFactory) -> None:
    logs = [await log_factory() for _ in range(3)]
    rng = random.Random(7)

    async def appender(writer: int) -> list[tuple[list[bytes], Appended]]:
        done = []
        for batch in range(4):
            entries = [f"{writer}/{batch}/{i}".encode() for i in range(rng.randint(1, 6))]
            done.append((entries, await logs[writer % len(logs)].append(entries)))
        return done

    results = [pair for done in await asyncio.gather(*(appender(w) for w in range(12))) for pair in done]

    log = await read_all(logs[0])
    by_position = {e.position: e.data for e in log}
    total = sum(len(entries) for entries, _ in results)
    assert [e.position for e in log] == list(range(1, total + 1)), "positions have holes or repeats"
    for entries, appended in results:
        assert len(appended.positions) == len(entries)
        assert [by_position[p] for p in appended.positions] == entries, "an append was split or reordered"
    times = [e.commit_time for e in log]
    assert times == sorted(times), "positions do not follow commit order"


async def test_a_repeated_dedupe_key_appends_nothing_and_returns_the_original(log: LogStore) -> None:
    original = await log.append([b"1", b"2"], dedupe_key="producer-a:7")

    again = await log.append([b"1", b"2"], dedupe_key="producer-a:7")
    other_key = await log.append([b"3"], dedupe_key="producer-a:8")
    no_key = await log.append([b"3"])

    assert not original.duplicate
    assert again == Appended(original.positions, original.commit_time, duplicate=True)
    assert other_key.positions == range(3, 4) and not other_key.duplicate
    assert no_key.positions == range(4, 5)
    assert [e.data for e in await read_all(log)] == [b"1", b"2", b"3", b"3"]


async def test_appenders_racing_with_one_dedupe_key_append_it_once(log_factory: LogFactory) -> None:
    logs = [await log_factory(), await log_factory()]
    before = await logs[0].append([b"before"])

    outcomes = await asyncio.gather(
        *(logs[i % 2].append([b"x", b"y"], dedupe_key="batch-1") for i in range(16))
    )

    assert sum(not o.duplicate for o in outcomes) == 1
    assert {o.positions for o in outcomes} == {range(2, 4)}
    assert len({o.commit_time for o in outcomes}) == 1
    assert [e.data for e in await read_all(logs[1], before.cursor)] == [b"x", b"y"]


async def test_a_dedupe_key_is_forgotten_after_the_window(log_factory: LogFactory) -> None:
    log = await log_factory(dedupe_window=0.3)
    original = await log.append([b"v"], dedupe_key="k")
    assert (await log.append([b"v"], dedupe_key="k")).duplicate

    appended_anew: list[Appended] = []

    async def the_key_expired() -> bool:
        # Every attempt before the window ends is a duplicate, which writes nothing: only the last one writes.
        appended = await log.append([b"w"], dedupe_key="k")
        if not appended.duplicate:
            appended_anew.append(appended)
        return not appended.duplicate

    await wait_until(the_key_expired, what="the dedupe key is forgotten")
    assert appended_anew[0].positions == range(original.positions[-1] + 1, original.positions[-1] + 2)
    assert [e.data for e in await read_all(log)] == [b"v", b"w"]


async def test_bad_appends_are_refused(log: LogStore) -> None:
    with pytest.raises(ValueError):
        await log.append([])
    with pytest.raises(TypeError):
        await log.append(b"one bytes object, not a sequence of entries")
    with pytest.raises(ValueError):
        await log.append([b"v"], dedupe_key="")
    with pytest.raises(ValueError):
        await log.append([b"v"], dedupe_key="k" * 257)
    assert await log.head() == "0"


async def test_entries_keep_any_bytes_and_sizes(log: LogStore) -> None:
    entries = [b"", b"\x00\xff" * 10, bytes(range(256)), b"x" * 200_000, "ünïcødé".encode()]

    await log.append(entries, dedupe_key="ünïcødé key with spaces: and {braces}")

    assert [e.data for e in await read_all(log)] == entries
