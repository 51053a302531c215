"""`microstate reconcile` finds a slice through its declaration (`Microstate.reconcile`): the flags slice
against the demo monolith's `feature_toggles`, with divergences of every kind injected, found and repaired
while a flags server and an SDK follow; a slice without a declaration refused with the list of those that
have one; and the profile store read as `serve` reads it after `microstate migrate profile --to 2`."""

from __future__ import annotations

from pathlib import Path

from microstate.client.extraction import demo
from microstate.client.extraction.phases import ROUTE_PREFIX, Phase, RouteSettings, flag_key, route_flag
from microstate.client.flags import FlagsClient
from microstate.flags.v1 import flags_pb2 as pb
from microstate.server import registry
from microstate.server.flags import MICROSTATE as FLAGS
from microstate.server.flags.extraction import BINDING as FLAG_BINDING
from microstate.server.kit.migrate import migrate
from microstate.server.kit.migrations import SCHEMA_KEY, stored_version, versioned
from microstate.server.profile.extraction import BINDING as PROFILE_BINDING
from microstate.server.profile.migrations import SCHEMA
from microstate.server.reconcile_command import reconcilable
from microstate.server.store import open_store
from tests.extraction.support import same_records
from tests.extraction.test_reconcile_command import monolith_and_store, profile
from tests.support.inproc import serve_in_process
from tests.support.processes import json_lines, launch, until

TOGGLES = 60
EXTRA = "zz-only-in-the-microstate"


def name_of(n: int) -> str:
    return f"t{n:03d}"


async def toggles_and_flags(tmp_path: Path) -> tuple[str, str]:
    """A demo monolith whose `feature_toggles` and a flags store hold the same toggles; their URLs."""
    toggles = {name_of(n): demo.toggle(name_of(n), n % 2 == 0, f"toggle {n}") for n in range(TOGGLES)}
    return await same_records(
        tmp_path, "flags", demo.TogglesCodec(), demo.TOGGLES_TABLE, FLAG_BINDING, toggles
    )


async def edit(store_url: str, key: str, change: object = None) -> None:
    """Rewrite the stored flag `key` with `change(flag)` applied; a new flag when `change` is a Flag; a
    deletion when it is None."""
    store = await open_store(store_url, "flags")
    try:
        current = await store.get(key)
        if change is None:
            await store.delete(key)
            return
        if isinstance(change, pb.Flag):
            flag = change
        else:
            assert current is not None and callable(change)
            flag = pb.Flag.FromString(current.value)
            change(flag)
        await store.put(key, FLAG_BINDING.to_bytes(key, flag, current))
    finally:
        await store.close()


def flipped(flag: pb.Flag) -> None:
    flag.default_variant = demo.OFF if flag.default_variant == demo.ON else demo.ON


def redescribed(flag: pb.Flag) -> None:
    flag.description = "changed in the microstate"


def targeted(flag: pb.Flag) -> None:
    """A rule only the microstate can hold: never a divergence, and a repair keeps it."""
    flag.rules.add(variant=demo.ON, description="beta testers")


def flipped_and_targeted(flag: pb.Flag) -> None:
    flipped(flag)
    targeted(flag)


async def test_the_flags_slice_is_reconciled_with_the_monoliths_toggles(tmp_path: Path) -> None:
    legacy_url, store_url = await toggles_and_flags(tmp_path)
    route = flag_key("profile")
    assert route.startswith(ROUTE_PREFIX)
    await edit(store_url, route, route_flag(route, Phase.DUAL_WRITE, RouteSettings()))
    await edit(store_url, name_of(4), flipped)
    await edit(store_url, name_of(17), redescribed)
    await edit(store_url, name_of(30))
    await edit(store_url, EXTRA, demo.toggle(EXTRA, True))
    await edit(store_url, name_of(40), targeted)
    await edit(store_url, name_of(41), flipped_and_targeted)
    base = ["reconcile", "flags", "--store", store_url, "--legacy", legacy_url, "--phase", "dual_write"]
    base += ["--json", "--range-size", "16"]

    dry = launch([*base, "--dry-run"], tmp_path)
    assert dry.wait() == 1, dry.describe()
    [found] = json_lines(dry.output())
    assert [(d["key"], d["kind"], d["paths"]) for d in found["divergences"]] == [
        ("t004", "differs", ["default_variant"]),
        ("t017", "differs", ["description"]),
        ("t030", "missing", []),
        ("t041", "differs", ["default_variant"]),
        (EXTRA, "extra", []),
    ]
    assert found["truth_keys"] == TOGGLES and found["other_keys"] == TOGGLES  # the route flag is not listed

    store = await open_store(store_url, "flags")
    try:
        route_before = await store.get(route)
        async with (
            serve_in_process(FLAGS, store) as target,
            FlagsClient(target) as sdk,
        ):
            await sdk.start()
            assert sdk.evaluate_bool("t004", default=True) is False  # flipped: t004 is "on" in legacy

            fixed = launch(base, tmp_path)
            assert fixed.wait() == 0, fixed.describe()
            [report] = json_lines(fixed.output())
            assert report["repaired"] == 5 and report["unresolved"] == 0

            # The repairs reach the flags server's rule set through the store's change log, and its SDKs.
            await until(lambda: sdk.evaluate_bool("t004", default=False), within=15, what="t004 on again")
            await until(lambda: sdk.local_flag("t030") is not None, within=15, what="t030 re-created")
            await until(lambda: sdk.local_flag(EXTRA) is None, within=15, what="extra gone")
        kept = pb.Flag.FromString((await store.get(name_of(41))).value)  # type: ignore[union-attr]
        assert kept.default_variant == demo.OFF and [rule.description for rule in kept.rules] == [
            "beta testers"
        ]
        assert (await store.get(route)) == route_before
    finally:
        await store.close()

    again = launch(base, tmp_path)
    assert again.wait() == 0, again.describe()
    assert json_lines(again.output())[0]["divergences"] == []


async def test_a_slice_without_a_declaration_is_refused_with_those_that_have_one(tmp_path: Path) -> None:
    assert reconcilable() == ["profile", "flags"]
    assert all(registry.get(name).reconcile is not None for name in reconcilable())
    url = f"sqlite:///{tmp_path / 'any.db'}"
    for name, says in (("session", "declares no legacy side"), ("orders", "is not a known microstate")):
        refused = launch(["reconcile", name, "--store", url, "--legacy", url, "--phase", "shadow"], tmp_path)
        assert refused.wait() == 2, refused.describe()
        assert says in refused.errors() and "can be reconciled: profile, flags" in refused.errors()


async def test_a_migrated_profile_store_is_read_as_serve_reads_it(tmp_path: Path) -> None:
    legacy_url, store_url = await monolith_and_store(tmp_path, 40)
    store = await open_store(store_url, "profile")
    try:
        await migrate(store, SCHEMA, 2, settle=0)
        served = versioned(store, SCHEMA)  # as a profile server writes: at the write version, 2
        current = await served.get("u0012")
        drifted = profile(12, "Drifted")
        await served.put("u0012", PROFILE_BINDING.to_bytes("u0012", drifted, current))
    finally:
        await store.close()
    fixed = launch(
        ["reconcile", "profile", "--store", store_url, "--legacy", legacy_url, "--phase", "canary", "--json"],
        tmp_path,
    )
    assert fixed.wait() == 0, fixed.describe()
    [report] = json_lines(fixed.output())
    assert [(d["key"], d["outcome"]) for d in report["divergences"]] == [("u0012", "repaired")]
    assert report["other_keys"] == 40  # the schema state is not a profile
    store = await open_store(store_url, "profile")
    try:
        repaired = await store.get("u0012")
        assert repaired is not None and stored_version(repaired.value) == 2  # written at the write version
        assert await store.get(SCHEMA_KEY) is not None
    finally:
        await store.close()
