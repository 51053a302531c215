"""Extraction tests run on real parts: a flags server and a profile server in their own processes (the
profile server behind a TCP proxy, so a test can slow it, cut it off, or kill and start it again on the same
data and address), the demo monolith in a SQLite file, and the Router on the real SDKs.

Servers start once for the package; each test routes its own slice (`route.<slice>`) and its own user ids.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from microstate.client import ClientOptions
from microstate.client.extraction import demo
from microstate.client.extraction.candidates import ProfileCandidate
from microstate.client.extraction.legacy import Direction
from microstate.client.extraction.phases import PhaseControl
from microstate.client.extraction.relay import RelayOptions
from microstate.client.extraction.router import Router
from microstate.client.extraction.sql import SqlAdapter
from microstate.client.flags import FlagsClient
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.processes import ServerProcess, running_server, start_server
from tests.support.tcp_proxy import TcpProxy

_slices = itertools.count()


@dataclass
class ProfileBehindProxy:
    """A profile server over SQLite, reached through `proxy`; `kill` then `start` replace it by another on
    the same store, and point the proxy at it (clients keep their target). Call `start` from the test's
    own thread: a server started from a worker thread is stopped when that thread ends (it supervises it)."""

    workdir: Path
    proxy: TcpProxy
    server: ServerProcess

    @property
    def target(self) -> str:
        return self.proxy.address

    def kill(self) -> None:
        self.server.stop()

    def start(self) -> None:
        store = f"sqlite:///{self.workdir / 'profile.db'}"
        self.server = start_server("profile", self.workdir, "--store", store, "--drain-seconds", "0")
        self.proxy.upstream_port = int(self.server.ready["port"])


@pytest.fixture(scope="package")
def flags_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("flags")
    store = f"sqlite:///{workdir / 'flags.db'}"
    with running_server("flags", workdir, "--store", store, "--drain-seconds", "0") as server:
        yield server


@pytest.fixture(scope="package")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProfileBehindProxy]:
    workdir = tmp_path_factory.mktemp("profile")
    store = f"sqlite:///{workdir / 'profile.db'}"
    server = start_server("profile", workdir, "--store", store, "--drain-seconds", "0")
    with TcpProxy(int(server.ready["port"])) as proxy:
        behind = ProfileBehindProxy(workdir, proxy, server)
        try:
            yield behind
        finally:
            behind.kill()


CANDIDATE_OPTIONS = ClientOptions(timeout=2.0)
"""The microstate side's SDK: a 2 s deadline per call (the Router's budgets are shorter still)."""


@dataclass
class Extraction:
    """One slice being extracted: its route, legacy store, microstate client and Router."""

    slice_name: str
    flags_target: str
    flags: FlagsClient
    control: PhaseControl
    legacy: SqlAdapter[Profile]
    profiles: ProfileClient
    router: Router[Profile]
    users: str
    """A prefix for this test's user ids (the profile server is shared by the module)."""
    extra: list[FlagsClient] = field(default_factory=list)

    def user(self, number: int) -> str:
        return f"{self.users}{number:05d}"

    async def sdk(self) -> Router[Profile]:
        """Another SDK (its own flags client, no relay) on the same slice, as another process would be."""
        flags = FlagsClient(self.flags_target)
        await flags.start()
        self.extra.append(flags)
        return Router(
            self.slice_name,
            flags=flags,
            legacy=self.legacy,
            outbox=self.legacy,
            candidate=ProfileCandidate(self.profiles),
            parse=Profile.FromString,
            relay=False,
        )

    async def drained(self) -> bool:
        forward = await self.legacy.counts(Direction.FORWARD)
        reverse = await self.legacy.counts(Direction.REVERSE)
        return forward.pending == 0 and reverse.pending == 0


async def open_extraction(
    tmp_path: Path,
    flags_target: str,
    profile_target: str,
    *,
    observer: object = None,
    relay: RelayOptions | None = None,
    shadow_candidate: Any = None,
    shadow_worker: Any = None,
) -> Extraction:
    slice_name = f"profile-{next(_slices)}-{uuid.uuid4().hex[:6]}"
    database = tmp_path / "monolith.db"
    demo.create_sqlite(str(database))
    legacy = SqlAdapter.from_url(f"sqlite:///{database}", demo.UsersCodec(), demo.TABLE)
    await legacy.ensure_outbox()
    flags = FlagsClient(flags_target)
    await flags.start()
    control = PhaseControl(flags, slice_name, outbox=legacy)
    await control.current()  # creates the route at legacy
    profiles = ProfileClient(profile_target, options=CANDIDATE_OPTIONS)
    router = Router(
        slice_name,
        flags=flags,
        legacy=legacy,
        outbox=legacy,
        candidate=ProfileCandidate(profiles),
        parse=Profile.FromString,
        observer=observer,  # type: ignore[arg-type]
        relay=relay or RelayOptions(first_backoff=0.02, max_backoff=0.2, poll_interval=0.1),
        shadow_candidate=shadow_candidate,
        shadow_worker=shadow_worker,
    )
    await router.start()
    return Extraction(slice_name, flags_target, flags, control, legacy, profiles, router, f"{slice_name}.u")


@pytest.fixture
async def extraction(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> AsyncIterator[Extraction]:
    made = await open_extraction(tmp_path, flags_server.target, profile.target)
    yield made
    await close_extraction(made)


async def close_extraction(made: Extraction) -> None:
    await made.router.close()
    for flags in made.extra:
        await flags.close()
    await made.flags.close()
    await made.profiles.close()
    await made.legacy.close()
