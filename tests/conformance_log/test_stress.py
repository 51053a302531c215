"""Conformance, long: racing producers that resend every batch, and a follower, agree on one log."""

from __future__ import annotations

import asyncio
import random
from contextlib import aclosing

import pytest

from microstate.server.store.log import Appended
from tests.conformance.waiting import DEADLINE, take
from tests.conformance_log.conftest import LogFactory
from tests.conformance_log.support import read_all

pytestmark = pytest.mark.slow

PRODUCERS = 8
BATCHES = 30


async def test_producers_resending_every_batch_count_each_once_and_a_follower_sees_the_same_log(
    log_factory: LogFactory,
) -> None:
    logs = [await log_factory() for _ in range(4)]
    follower = await log_factory()
    rng = random.Random(11)
    sizes = {(p, b): rng.randint(1, 20) for p in range(PRODUCERS) for b in range(BATCHES)}
    total = sum(sizes.values())

    async def producer(p: int) -> list[tuple[list[bytes], Appended, Appended]]:
        sent = []
        for b in range(BATCHES):
            batch = [f"{p}/{b}/{i}".encode() for i in range(sizes[p, b])]
            # The batch and its retry race on two connections, as when a reply was lost.
            first, retry = await asyncio.gather(
                *(logs[(p + n) % len(logs)].append(batch, dedupe_key=f"producer-{p}:{b}") for n in (0, 1))
            )
            sent.append((batch, first, retry))
        return sent

    async with aclosing(follower.follow("0")) as entries:
        results = [s for sent in await asyncio.gather(*(producer(p) for p in range(PRODUCERS))) for s in sent]
        followed = await take(entries, total, within=DEADLINE * 6)

    stored = await read_all(follower)
    assert followed == stored
    assert [e.position for e in stored] == list(range(1, total + 1))
    by_position = {e.position: e.data for e in stored}
    for batch, first, retry in results:
        assert first.positions == retry.positions and first.commit_time == retry.commit_time
        assert [first.duplicate, retry.duplicate].count(False) == 1, "a batch counted twice, or not at all"
        assert [by_position[p] for p in first.positions] == batch
