"""Per-key locks serialise one key's holders, leave other keys free, and leave nothing behind."""

from __future__ import annotations

import asyncio

from microstate.server.kit.locks import KeyedLocks


async def test_one_key_queues_other_keys_pass_and_idle_keys_are_dropped() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def holder(key: str, name: str) -> None:
        async with locks.hold(key):
            order.append(name)
            if name == "a1":
                first_in.set()
                await release.wait()

    a1 = asyncio.create_task(holder("a", "a1"))
    await first_in.wait()
    a2 = asyncio.create_task(holder("a", "a2"))
    await holder("b", "b1")  # another key is not held up by "a"
    assert order == ["a1", "b1"] and len(locks) == 1
    release.set()
    await asyncio.gather(a1, a2)
    assert order == ["a1", "b1", "a2"]
    assert len(locks) == 0
