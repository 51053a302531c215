"""`microstate reconcile` as an operator runs it: its own process, real SQLite files, exit codes, a schedule;
and a repair as a running profile server and its SDK see it."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microstate.client.extraction import demo
from microstate.client.extraction.phases import Phase, PhaseControl
from microstate.client.extraction.sql import SqlAdapter
from microstate.client.flags import FlagsClient
from microstate.client.profile.v1 import ProfileClient
from microstate.profile.v1.profile_pb2 import Profile
from microstate.server.audit import AuditKeys
from microstate.server.audit.serving import checkpoint_file
from microstate.server.profile import MICROSTATE
from microstate.server.profile.extraction import BINDING
from microstate.server.reconcile import Reconciler, StoreSide
from microstate.server.store import open_store
from tests.client.conftest import fast_options
from tests.extraction.support import same_records
from tests.support.inproc import serve_in_process
from tests.support.processes import MicrostateProcess, ServerProcess, json_lines, launch, wait_for


def profile(n: int, name: str = "") -> Profile:
    made = Profile(user_id=f"u{n:04d}", display_name=name or f"User {n}", locale="en-GB")
    made.attributes["pref.theme"] = "dark"
    return made


async def monolith_and_store(tmp_path: Path, count: int) -> tuple[str, str]:
    """A demo monolith and a profile store holding the same `count` users; their URLs."""
    users = {f"u{n:04d}": profile(n) for n in range(count)}
    return await same_records(tmp_path, "profile", demo.UsersCodec(), demo.TABLE, BINDING, users)


async def diverge(store_url: str, n: int) -> None:
    store = await open_store(store_url, "profile")
    await store.put(
        f"u{n:04d}", BINDING.to_bytes(f"u{n:04d}", profile(n, "Drifted"), await store.get(f"u{n:04d}"))
    )
    await store.close()


def reported(process: MicrostateProcess, what: str, matches: Callable[[dict[str, Any]], object]) -> None:
    """Wait until one of the JSON reports `process` printed matches."""
    wait_for(lambda: any(matches(report) for report in json_lines(process.output())), within=30, what=what)


def stopped(process: MicrostateProcess) -> None:
    """SIGTERM ends a scheduled reconcile, with status 0."""
    process.send(signal.SIGTERM)
    assert process.wait() == 0, process.describe()


async def test_the_command_reports_repairs_and_runs_on_a_schedule(tmp_path: Path) -> None:
    legacy_url, store_url = await monolith_and_store(tmp_path, 200)
    await diverge(store_url, 7)
    await diverge(store_url, 150)
    base = [
        "reconcile",
        "profile",
        "--store",
        store_url,
        "--legacy",
        legacy_url,
        "--phase",
        "dual_write",
        "--json",
    ]

    dry = launch([*base, "--dry-run", "--range-size", "50"], tmp_path)
    assert dry.wait() == 1, dry.describe()
    [report] = json_lines(dry.output())
    assert [(d["key"], d["paths"], d["outcome"]) for d in report["divergences"]] == [
        ("u0007", ["display_name"], "found"),
        ("u0150", ["display_name"], "found"),
    ]
    assert report["differing_ranges"] == 2 and report["ranges"] == 4 and "Drifted" not in dry.output()

    fixed = launch(base, tmp_path)
    assert fixed.wait() == 0, fixed.describe()
    assert json_lines(fixed.output())[0]["repaired"] == 2

    scheduled = launch([*base, "--every", "0.2"], tmp_path)
    try:
        reported(scheduled, "the first scheduled report", lambda report: True)
        await diverge(store_url, 42)
        reported(scheduled, "a later run repairing the new divergence", lambda report: report["repaired"])
        stopped(scheduled)
    finally:
        scheduled.stop()
    repairs = [d["key"] for r in json_lines(scheduled.output()) for d in r["divergences"]]
    assert repairs == ["u0042"]

    for wrong in ("--range-size", "--every"):
        bad = launch([*base, wrong, "0"], tmp_path)
        assert bad.wait() == 2 and wrong in bad.errors(), bad.describe()


async def test_a_repair_is_an_entry_of_the_slices_audit_ledger_that_verifies(tmp_path: Path) -> None:
    """With the servers' audit keys, each repair journals its entry in the same write and is sealed into
    the slice's ledger, which exports and verifies; without keys `--audit on` refuses to run."""
    legacy_url, store_url = await monolith_and_store(tmp_path, 30)
    await diverge(store_url, 7)
    keys = tmp_path / "audit"
    AuditKeys.load(keys)  # as the slice's servers made them
    base = ["reconcile", "profile", "--store", store_url, "--legacy", legacy_url, "--phase", "dual_write"]

    refused = launch([*base, "--audit", "on", "--audit-dir", str(tmp_path / "none")], tmp_path)
    assert refused.wait() == 2 and "no audit keys" in refused.errors(), refused.describe()

    fixed = launch([*base, "--audit", "on", "--audit-dir", str(keys), "--json"], tmp_path)
    assert fixed.wait() == 0, fixed.describe()
    assert json_lines(fixed.output())[0]["repaired"] == 1

    export = tmp_path / "ledger.jsonl"
    exported = launch(
        ["audit", "export", "profile", "--store", store_url, "--readable", "--out", str(export)], tmp_path
    )
    assert exported.wait() == 0, exported.describe()
    entries = [line["entry"] for line in json_lines(export.read_text()) if "entry" in line]
    assert [(e["method"], e["resource"], e["operation"]) for e in entries] == [
        ("reconcile/repair", "u0007", "put")
    ]
    assert entries[0]["principal"] == "microstate-reconcile" and "Drifted" not in export.read_text()
    checks = [
        "--checkpoints",
        str(checkpoint_file(keys, "profile")),
        "--public-key",
        str(keys / "checkpoint.pub"),
    ]
    verified = launch(
        ["audit", "verify", str(export), *checks, "--chain-keys", str(keys / "chain-keys")], tmp_path
    )
    assert verified.wait() == 0, verified.describe()


async def test_a_running_server_serves_the_repaired_profile(tmp_path: Path) -> None:
    legacy_url, store_url = await monolith_and_store(tmp_path, 20)
    store = await open_store(store_url, "profile")
    legacy = SqlAdapter.from_url(legacy_url, demo.UsersCodec(), demo.TABLE)
    codec = demo.UsersCodec()
    try:
        async with (
            serve_in_process(MICROSTATE, store) as target,
            ProfileClient(options=fast_options(target)) as client,
        ):
            before = await client.get("u0003")
            await diverge(store_url, 3)
            assert (await client.get("u0003")).value.display_name == "Drifted"
            reconciler = Reconciler("profile", legacy, StoreSide(store, BINDING), codec)
            report = await reconciler.run("dual_write")
            assert [d.key for d in report.divergences] == ["u0003"]
            after = (await client.get("u0003")).value
            assert after.display_name == before.value.display_name and after.etag != before.value.etag
            assert json.dumps(report.to_json()).count("u0003") == 1
    finally:
        await legacy.close()
        await store.close()


async def test_the_phase_comes_from_the_route_flag_before_each_run(
    tmp_path: Path, flags_server: ServerProcess
) -> None:
    """Before primary legacy repairs the microstate; once the flag says primary, the microstate repairs
    legacy: a scheduled reconcile follows a phase move without a restart."""
    legacy_url, store_url = await monolith_and_store(tmp_path, 30)
    route = f"profile-reconcile-{uuid.uuid4().hex[:6]}"
    async with FlagsClient(flags_server.target) as flags:
        control = PhaseControl(flags, route)
        await control.move(Phase.SHADOW)
        await control.move(Phase.DUAL_WRITE)
        await diverge(store_url, 4)
        base = ["reconcile", "profile", "--store", store_url, "--legacy", legacy_url, "--json"]
        base += ["--flags-target", flags_server.target, "--route", route]
        scheduled = launch([*base, "--interval", "0.2"], tmp_path)

        try:
            reported(
                scheduled, "the dual_write run repairing the microstate", lambda report: report["repaired"]
            )
            await control.move(Phase.PRIMARY, force=True)
            await diverge(store_url, 9)  # now the microstate is right: legacy gets "Drifted"
            reported(
                scheduled,
                "a primary run repairing legacy",
                lambda report: report["truth"] == "microstate" and report["repaired"],
            )
            stopped(scheduled)
        finally:
            scheduled.stop()
    legacy = SqlAdapter.from_url(legacy_url, demo.UsersCodec(), demo.TABLE)
    try:
        assert (await legacy.get("u0009")).display_name == "Drifted"
        assert (await legacy.get("u0004")).display_name == "User 4"
    finally:
        await legacy.close()
    phases = [r["phase"] for r in json_lines(scheduled.output())]
    assert phases[0] == "dual_write" and phases[-1] == "primary"
