"""`microstate route`: a slice's phase shown and moved by one guarded flag write, against a real flags server
(and, for the outbox guard, the demo monolith in SQLite)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from microstate.client.errors import NotFound
from microstate.client.extraction import demo
from microstate.client.extraction.legacy import Direction, Outcome
from microstate.client.extraction.sql import SqlAdapter
from microstate.client.flags import FlagsClient
from microstate.profile.v1.profile_pb2 import Profile
from microstate.server import cli
from tests.support.processes import ServerProcess


class Route:
    """`microstate route profile --route NAME --flags-target ...`, run in this process."""

    def __init__(self, flags_target: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.name = f"cli-{uuid.uuid4().hex[:8]}"
        self.base = ["route", "profile", "--route", self.name, "--flags-target", flags_target]
        self.capsys = capsys
        self.flags_target = flags_target

    async def __call__(self, *args: str) -> tuple[int, dict[str, Any], str]:
        """Exit status, the printed JSON (empty when none) and what went to stderr. The command runs its own
        event loop, so it runs on a thread of its own, as beside the test's."""
        status = await asyncio.to_thread(cli.main, [*self.base, *args, "--json"])
        out, err = self.capsys.readouterr()
        return status, json.loads(out) if out.strip() else {}, err

    async def stored(self) -> dict[str, str]:
        async with FlagsClient(self.flags_target) as flags:
            flag = (await flags.get(f"route.{self.name}")).value
        return {"default_variant": flag.default_variant, "etag": flag.etag, **flag.metadata}


@pytest.fixture
def route(flags_server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> Route:
    return Route(flags_server.target, capsys)


async def test_shows_a_route_not_yet_made_at_legacy_and_creates_nothing(route: Route) -> None:
    status, shown, _ = await route()
    assert status == 0
    assert shown["flag"] == f"route.{route.name}"
    assert (shown["phase"], shown["revision"]) == ("legacy", 0)
    assert shown["shadow_sample"] == 0.01 and shown["budget_ms"] == 100.0
    async with FlagsClient(route.flags_target) as flags:
        with pytest.raises(NotFound):
            await flags.get(f"route.{route.name}")


async def test_moves_one_phase_with_its_settings_and_shows_it(route: Route) -> None:
    status, moved, _ = await route("--to", "shadow", "--shadow-sample", "0.05", "--reason", "first look")
    assert status == 0
    assert (moved["previous_phase"], moved["phase"], moved["reassigned_fraction"]) == (
        "legacy",
        "shadow",
        1.0,
    )
    assert moved["shadow_sample"] == 0.05
    stored = await route.stored()
    assert stored["default_variant"] == "shadow" and stored["shadow_sample"] == "0.05"

    status, shown, _ = await route()
    assert (status, shown["phase"], shown["shadow_sample"]) == (0, "shadow", 0.05)
    status, moved, _ = await route("--to", "dual_write")  # settings not given are kept
    assert (status, moved["phase"], moved["shadow_sample"]) == (0, "dual_write", 0.05)


async def test_a_skipped_phase_is_refused_and_validate_only_writes_nothing(route: Route) -> None:
    assert (await route("--to", "legacy"))[0] == 0  # made, at legacy
    before = await route.stored()

    status, _, err = await route("--to", "canary", "--canary-percent", "10")
    assert status == 1 and "legacy -> canary skips a phase" in err

    status, would, _ = await route("--to", "canary", "--canary-percent", "10", "--validate-only")
    assert status == 1 and would["validate_only"] and would["problems"] == ["legacy -> canary skips a phase"]
    assert await route.stored() == before

    status, forced, _ = await route("--to", "canary", "--canary-percent", "10", "--force")
    assert (status, forced["phase"], forced["canary_percent"]) == (0, "canary", 10.0)
    status, resized, _ = await route("--to", "canary", "--canary-percent", "25", "--validate-only")
    assert status == 0 and resized["reassigned_fraction"] == pytest.approx(0.15)
    assert (await route.stored())["canary_percent"] == "10.0"


async def test_a_stale_etag_loses_to_the_move_made_meanwhile(route: Route) -> None:
    _, made, _ = await route("--to", "legacy")
    assert (await route("--to", "shadow"))[0] == 0
    status, _, err = await route("--to", "shadow", "--shadow-sample", "1", "--etag", made["etag"])
    assert status == 1 and "Aborted" in err
    assert (await route.stored())["shadow_sample"] == "0.01"


async def test_primary_waits_for_the_forward_outbox_to_drain(route: Route, tmp_path: Path) -> None:
    database = tmp_path / "monolith.db"
    demo.create_sqlite(str(database))
    legacy = SqlAdapter.from_url(f"sqlite:///{database}", demo.UsersCodec(), demo.TABLE)
    await legacy.ensure_outbox()
    await legacy.put(
        "u1", Profile(user_id="u1", display_name="One"), request_id="r1", outbox=Direction.FORWARD
    )
    guarded = ("--legacy", f"sqlite:///{database}")
    await route("--to", "dual_write", "--force")

    status, _, err = await route("--to", "primary", *guarded)
    assert status == 1 and "1 forward outbox entries are not yet applied" in err
    status, _, err = await route("--to", "primary", "--wait", "0.2", *guarded)
    assert status == 1 and "not yet applied to the microstate (waited 0.2 s)" in err
    assert (await route.stored())["default_variant"] == "dual_write"

    [entry] = await legacy.pending_for(Direction.FORWARD, "u1")
    await legacy.settle(entry, Outcome.APPLIED)
    await legacy.close()
    status, moved, _ = await route("--to", "primary", *guarded)
    assert (status, moved["phase"]) == (0, "primary")


async def test_bad_usage_is_refused_before_anything_is_written(route: Route) -> None:
    status, _, err = await route("--to", "shadow", "--shadow-sample", "1.5")
    assert status == 2 and "--shadow-sample 1.5 is out of range" in err
    await route("--to", "dual_write", "--force")
    status, _, err = await route("--to", "canary")
    assert status == 2 and "--to canary needs --canary-percent" in err
    assert (await route.stored())["default_variant"] == "dual_write"
