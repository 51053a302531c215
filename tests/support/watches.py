"""Watches of a real profile server that provably see every write made after they start."""

from __future__ import annotations

import asyncio

from microstate.client.profile.v1 import Profile, ProfileClient


async def first_token(client: ProfileClient, writer: ProfileClient, prefix: str = "boot-") -> str:
    """A resume token at the current end of the server's change log, from `client`'s watch of `prefix`.
    An empty token starts "from now", but when "now" is set is not observable, so `writer` creates
    profiles under `prefix` until the watch sees one."""
    events = client.watch(prefix=prefix)
    first = asyncio.ensure_future(anext(events))
    try:
        for attempt in range(100):
            await writer.create(Profile(user_id=f"{prefix}{attempt}"))
            done, _ = await asyncio.wait({first}, timeout=0.1)
            if done:
                return first.result().resume_token
        raise AssertionError("the watch never saw a write")
    finally:
        first.cancel()
        await events.aclose()
