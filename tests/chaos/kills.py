"""kill -9 a replica under load and bring it back on its port: the shared step of the replica scenarios."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from pathlib import Path

from tests.chaos import recovery
from tests.support.processes import ServerProcess, until
from tests.support.replicas import Load, port_of, serves_our_client, start_replica

PROGRESS = 40
"""Acknowledged writes to see before the kill and again after it: the kill lands mid-load, and the load
goes on without the replica before it comes back."""


async def kill_and_restart_mid_load(
    replicas: list[ServerProcess], outcome: Load, workdir: Path, store: str, name: str = "profile"
) -> float:
    """kill -9 replicas[0] once the client uses it and PROGRESS writes went through, restart it on its
    port once PROGRESS more did; the seconds from its restart (SERVING) to the client's first call to it."""
    victim = replicas[0]
    await until(functools.partial(serves_our_client, victim), within=20, what="the victim's use")
    await until(lambda: len(outcome.acknowledged) >= PROGRESS, within=20, what="writes before the kill")
    victim.send(signal.SIGKILL)
    await asyncio.to_thread(victim.wait)
    after_kill = len(outcome.acknowledged) + PROGRESS
    await until(lambda: len(outcome.acknowledged) >= after_kill, within=20, what="writes after the kill")
    replicas[0] = await asyncio.to_thread(start_replica, workdir, store, "--port", port_of(victim), name=name)
    return await recovery.seconds_until(
        functools.partial(serves_our_client, replicas[0]),
        since=time.monotonic(),
        within=30,
        what="the restarted replica back in the client's rotation",
    )
