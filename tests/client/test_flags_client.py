"""FlagsClient against a real flags server (in this process, SQLite): admin calls, local evaluation with no
call per evaluation, propagation to every subscribed client, STALE when the stream dies, resume with
deltas only, and the saved rule set (started from while the server is down; a bad file ignored)."""

# ruff: noqa: F811 - `flags_server` is the fixture imported from the harness

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microstate.client.errors import AlreadyExists, InvalidArgument, NotFound
from microstate.client.flags import (
    ErrorCode,
    EventKind,
    FlagsClient,
    Reason,
    RuleSetEvent,
    RuleSetState,
    _rule_set_file,
)
from microstate.flags.v1 import flags_pb2 as f
from tests.client.flags_harness import (
    HEARTBEAT,
    WITHIN,
    FlagsServer,
    bool_flag,
    flags_server,  # noqa: F401 (the fixture)
    model_flag,
    once_up,
    options,
)
from tests.support.processes import until

ENTERPRISE = {"targetingKey": "user-1", "plan": "enterprise", "seats": 80}


@contextlib.asynccontextmanager
async def started(server: FlagsServer, path: Path | None = None) -> AsyncIterator[FlagsClient]:
    async with FlagsClient(
        options=options(server.target), rule_set_path=str(path) if path else None
    ) as client:
        status = await client.start(wait=WITHIN)
        assert status.state is RuleSetState.READY, status
        yield client


async def test_admin_calls_and_remote_evaluation(flags_server: FlagsServer) -> None:
    async with FlagsClient(options=options(flags_server.target)) as admin:
        created = await admin.create(model_flag())
        assert created.etag and created.revision > 0
        with pytest.raises(AlreadyExists):
            await admin.create(model_flag())
        assert (await admin.get("model")).value == created
        with pytest.raises(NotFound):
            await admin.get("nope")
        bad = model_flag("bad")
        bad.default_variant = "missing"
        with pytest.raises(InvalidArgument):
            await admin.create(bad)

        edited = model_flag()
        del edited.rules[3].split.weights[2]  # small 50 / medium 30: "large" users move
        preview = await admin.update(edited, ["rules"], validate_only=True)
        assert 0 < preview.impact.max_reassigned_fraction < 1
        assert (await admin.get("model")).value.etag == created.etag  # a dry run writes nothing

        remote = await admin.evaluate_remote("model", ENTERPRISE, expected_type=f.VARIANT_TYPE_STRING)
        assert (remote.value, remote.variant, remote.reason) == ("large", "large", Reason.TARGETING_MATCH)
        assert [flag.key async for flag in admin.list_all()] == ["model"]
        revision = await admin.delete("model")
        assert revision > created.revision


async def test_local_evaluation_makes_no_call(flags_server: FlagsServer) -> None:
    async with FlagsClient(options=options(flags_server.target)) as admin:
        await admin.create(model_flag())
        await admin.create(bool_flag("kill-switch", False))
    async with started(flags_server) as client:
        calls_before = dict(flags_server.calls)
        for n in range(2_000):
            context = {"targetingKey": f"user-{n}", "region": "eu-west"}
            assert client.evaluate_string("model", "x", context) in {"small", "medium", "large"}
        assert client.evaluate_string("model", "x", ENTERPRISE) == "large"
        assert client.evaluate_bool("kill-switch", True) is False
        details = client.evaluate_string_details("model", "x", ENTERPRISE)
        assert (details.variant, details.reason, details.error_code) == (
            "large",
            Reason.TARGETING_MATCH,
            ErrorCode.UNSPECIFIED,
        )
        assert details.revision == client.rule_set_status().revision and details.stale_age is None
        split = client.evaluate_string_details("model", "x", {"targetingKey": "user-7"})
        remote = await client.evaluate_remote("model", {"targetingKey": "user-7"})
        assert (split.value, split.reason) == (remote.value, Reason.SPLIT)
        assert dict(flags_server.calls) == {
            **calls_before,
            "EvaluateFlag": calls_before.get("EvaluateFlag", 0) + 1,
        }


async def test_evaluation_never_raises(flags_server: FlagsServer) -> None:
    async with FlagsClient(options=options(flags_server.target)) as client:
        not_ready = client.evaluate_bool_details("kill-switch", True)  # before start: no rule set
        assert (not_ready.value, not_ready.reason, not_ready.error_code) == (
            True,
            Reason.ERROR,
            ErrorCode.PROVIDER_NOT_READY,
        )
        await client.create(bool_flag("kill-switch", False))
        await client.create(bool_flag("dark", True, enabled=False))
        await client.start(wait=WITHIN)
        missing = client.evaluate_string_details("nope", "fallback")
        assert (missing.value, missing.reason, missing.error_code) == (
            "fallback",
            Reason.ERROR,
            ErrorCode.FLAG_NOT_FOUND,
        )
        mismatch = client.evaluate_string_details("kill-switch", "fallback")
        assert (mismatch.value, mismatch.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)
        assert client.evaluate_number("kill-switch", 4.5) == 4.5
        disabled = client.evaluate_bool_details("dark", False)
        assert (disabled.value, disabled.reason) == (True, Reason.DISABLED)
        weird = client.evaluate_bool_details("kill-switch", True, {"targetingKey": 12, "x": object()})  # type: ignore[dict-item]
        assert weird.reason is Reason.STATIC and weird.value is False


async def test_updates_reach_every_subscribed_client(flags_server: FlagsServer) -> None:
    async with FlagsClient(options=options(flags_server.target)) as admin:
        await admin.create(bool_flag("launch", False))
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(started(flags_server)) for _ in range(4)]
            events: list[RuleSetEvent] = []
            clients[0].add_listener(events.append)
            assert not any(client.evaluate_bool("launch", True) for client in clients)

            updated = await admin.update(bool_flag("launch", True), ["default_variant"])
            await until(
                lambda: all(client.evaluate_bool("launch", False) for client in clients),
                within=WITHIN,
                what="every client to see the update",
            )
            assert all(client.rule_set_status().revision == updated.flag.revision for client in clients)
            assert RuleSetEvent(EventKind.CHANGED, updated.flag.revision, ("launch",)) in events

            deleted = await admin.delete("launch")
            await until(
                lambda: all(client.rule_set_status().revision == deleted for client in clients),
                within=WITHIN,
                what="every client to apply the delete",
            )
            gone = clients[1].evaluate_bool_details("launch", True)
            assert (gone.value, gone.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)


async def test_stale_when_the_server_stops_then_resumes_with_deltas_only(flags_server: FlagsServer) -> None:
    async with FlagsClient(options=options(flags_server.target)) as admin:
        for n in range(50):
            await admin.create(bool_flag(f"flag-{n}", False))
        async with started(flags_server) as client:
            events: list[RuleSetEvent] = []
            client.add_listener(events.append)
            before = client.rule_set_status()
            assert before.sync.snapshots == 1 and before.flags == 50

            await flags_server.stop()
            stopped = time.monotonic()
            await until(
                lambda: client.evaluate_bool_details("flag-1", True).reason is Reason.STALE,
                within=WITHIN,
                what="evaluations to turn STALE",
            )
            assert time.monotonic() - stopped < 2 * HEARTBEAT + 1.0  # within two heartbeats, plus slack
            stale = client.evaluate_bool_details("flag-1", True)
            assert stale.value is False and stale.stale_age is not None and stale.stale_age >= 0
            assert client.rule_set_status().state is RuleSetState.STALE
            assert any(event.kind is EventKind.STALE for event in events)

            await flags_server.start()
            await once_up(lambda: admin.update(bool_flag("flag-1", True), ["default_variant"]))
            await until(
                lambda: (
                    client.evaluate_bool_details("flag-1", False).reason is Reason.STATIC
                    and client.evaluate_bool("flag-1", False)
                ),
                within=WITHIN,
                what="the client to resume and apply the change",
            )
            after = client.rule_set_status()
            assert after.state is RuleSetState.READY and after.sync.snapshots == 1  # no second snapshot
            assert after.sync.deltas >= 1
            shipped = after.sync.bytes - before.sync.bytes
            assert shipped < before.sync.bytes / 10, (shipped, before.sync.bytes)  # the delta, not 50 flags
            assert events[-1].kind in (EventKind.READY, EventKind.CHANGED)


async def test_a_new_client_starts_from_the_saved_rule_set_while_the_server_is_down(
    flags_server: FlagsServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.rules"
    async with FlagsClient(options=options(flags_server.target)) as admin:
        await admin.create(model_flag())
    async with started(flags_server, path) as client:
        revision = client.rule_set_status().revision
        await until(path.exists, within=WITHIN, what="the rule set to be saved")
    await flags_server.stop()

    async with FlagsClient(options=options(flags_server.target), rule_set_path=str(path)) as cold:
        began = time.monotonic()
        status = await cold.start(wait=WITHIN)
        assert time.monotonic() - began < WITHIN / 2  # the first failed connection ends the wait
        assert status.state is RuleSetState.STALE and status.revision == revision and status.flags == 1
        details = cold.evaluate_string_details("model", "x", ENTERPRISE)
        assert (details.value, details.reason, details.revision) == ("large", Reason.STALE, revision)
        assert details.stale_age is not None and 0 <= details.stale_age < 60

        await flags_server.start()
        await until(
            lambda: cold.rule_set_status().state is RuleSetState.READY,
            within=WITHIN,
            what="the cold client to connect",
        )
        assert cold.rule_set_status().sync.snapshots == 0  # resumed from the saved revision
        assert cold.evaluate_string_details("model", "x", ENTERPRISE).reason is Reason.TARGETING_MATCH


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped", "empty", "foreign"])
async def test_a_damaged_rule_set_file_is_ignored(
    flags_server: FlagsServer, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "flags.rules"
    whole = _rule_set_file.encode(7, time.time(), [model_flag()])
    damaged = {
        "garbage": b"not a rule set at all",
        "truncated": whole[: len(whole) // 2],
        "flipped": whole[:40] + bytes([whole[40] ^ 0xFF]) + whole[41:],
        "empty": b"",
        "foreign": whole.replace(b"rule-set", b"rule-sex"),
    }[damage]
    path.write_bytes(damaged)
    await flags_server.stop()
    async with FlagsClient(options=options(flags_server.target), rule_set_path=str(path)) as client:
        status = await client.start(wait=0.5)
        assert status.state is RuleSetState.NOT_READY and status.revision is None
        assert client.evaluate_string_details("model", "x").error_code is ErrorCode.PROVIDER_NOT_READY
        await flags_server.start()
        await client.start(wait=WITHIN)
        assert client.rule_set_status().state is RuleSetState.READY
    assert _rule_set_file.load(str(path)) is not None  # replaced by a whole one on close


def test_the_rule_set_file_round_trips(tmp_path: Path) -> None:
    path = str(tmp_path / "rules")
    flags = [model_flag(), bool_flag("b")]
    _rule_set_file.save(path, 42, 1234.5, flags)
    saved = _rule_set_file.load(path)
    assert saved is not None and (saved.revision, saved.as_of, saved.flags) == (42, 1234.5, flags)
    assert _rule_set_file.load(str(tmp_path / "absent")) is None
