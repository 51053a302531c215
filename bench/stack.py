"""What the figures share: run settings, the sample data, and the full stack (Redis + profile server)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench import services
from bench.env import Cores
from microstate.client.errors import AlreadyExists
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.processes import ServerProcess

HOT_KEY = "hot"
BATCH = 100
"""Ids per BatchGetProfiles call (P2)."""


@dataclass(frozen=True)
class Settings:
    """How one run measures (`make` gives the full and the --quick settings)."""

    cores: Cores
    workdir: Path
    """Scratch space for servers and stores (a temporary directory)."""
    results: Path
    """Where result files go (raw profiles)."""
    rounds: int
    """Interleaved baseline/subject rounds per figure."""
    window: float
    """Seconds of one closed-loop throughput window."""
    samples: int
    """Sequential calls per latency round."""
    concurrency: int = 16
    """Calls in flight for single-key throughput (P1, P6): the same for the subject and its baseline."""
    batch_concurrency: int = 4
    """Calls in flight for P2."""
    latency_budget: float = 0.05
    """The SDK latency budget of the fallback figures (P4), in seconds."""
    p5_large_mib: int = 256
    """The large blob of P5's peak-RSS figure (issue 13 asks for 1 GiB: --p5-large-mib 1024)."""

    @classmethod
    def make(
        cls, cores: Cores, workdir: Path, results: Path, *, quick: bool, p5_large_mib: int | None = None
    ) -> Settings:
        if quick:
            settings = cls(cores, workdir, results, rounds=2, window=1.0, samples=200, p5_large_mib=64)
        else:
            settings = cls(cores, workdir, results, rounds=5, window=2.0, samples=500)
        return settings if p5_large_mib is None else dataclasses.replace(settings, p5_large_mib=p5_large_mib)


def sample_profile(user_id: str) -> Profile:
    """A typical profile: a name, a locale, four attributes and a 64-float embedding (~380 bytes)."""
    return Profile(
        user_id=user_id,
        display_name="Ada Lovelace",
        locale="en-GB",
        attributes={"tier": "gold", "region": "eu-west", "team": "ml", "plan": "pro"},
        embedding=[i / 64 for i in range(64)],
    )


def batch_ids() -> list[str]:
    return [f"user-{i:03d}" for i in range(BATCH)]


async def seed(client: ProfileClient) -> None:
    """The hot key and the batch ids, created through the SDK (idempotent across runs on one store)."""
    for user_id in [HOT_KEY, *batch_ids()]:
        with contextlib.suppress(AlreadyExists):
            await client.create(sample_profile(user_id))


@contextlib.asynccontextmanager
async def full_stack(settings: Settings, name: str) -> AsyncIterator[tuple[str, ServerProcess]]:
    """A private redis-server and one profile server on it, both on the server cores, seeded."""
    with (
        services.redis(settings.cores.server) as url,
        services.profile_server(url, settings.workdir / name, settings.cores.server) as server,
    ):
        async with ProfileClient(server.target) as client:
            await seed(client)
        yield url, server
