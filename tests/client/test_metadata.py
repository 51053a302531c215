"""Every call carries x-microstate-contract, the client's default metadata and the call's own."""

from __future__ import annotations

import asyncio

import pytest

from microstate.client import CONTRACT_METADATA_KEY, ClientOptions
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from microstate.profile.v1 import profile_pb2
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import ScriptedProfiles

Scripted = tuple[ScriptedProfiles, RestartableServer]


async def test_every_method_sends_the_contract(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.put("u")
    await servicer.append_event("u")
    options = fast_options(server.target, metadata=(("x-team", "ranking"),))
    async with ProfileClient(options=options) as client:
        per_call = {"x-request-id": "r1"}
        await client.get("u", metadata=per_call)
        await client.batch_get(["u"], metadata=per_call)
        await client.list(metadata=per_call)
        await client.create(Profile(user_id="v"), metadata=per_call)
        await client.update(Profile(user_id="v"), metadata=per_call)
        await client.delete("v", metadata=[("x-request-id", "r1")])
        events = client.watch(resume_token="0", metadata=per_call)
        await asyncio.wait_for(anext(events), 5)
        await events.aclose()

    every_method = set(profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].methods_by_name)
    assert {method for method, _ in servicer.metadata} == every_method
    for method, sent in servicer.metadata:
        assert sent[CONTRACT_METADATA_KEY] == "microstate.profile.v1", method
        assert sent["x-team"] == "ranking" and sent["x-request-id"] == "r1", method


async def test_the_sync_client_sends_the_contract(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.put("u")

    def get() -> None:
        with SyncProfileClient(options=fast_options(server.target)) as client:
            client.get("u")

    await asyncio.to_thread(get)
    assert servicer.metadata[0][1][CONTRACT_METADATA_KEY] == "microstate.profile.v1"


def test_target_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROSTATE_PROFILE_TARGET", raising=False)
    assert ProfileClient.CONTRACT.default_target == "localhost:50051"
    assert ClientOptions().resolve_target("profile", "localhost:50051") == "localhost:50051"
    monkeypatch.setenv("MICROSTATE_PROFILE_TARGET", "env-host:1")
    assert ClientOptions().resolve_target("profile", "localhost:50051") == "env-host:1"
    assert ClientOptions(target="opt-host:2").resolve_target("profile", "x") == "opt-host:2"


def test_from_env_reads_the_slice_variables() -> None:
    options = ClientOptions.from_env(
        "profile",
        {
            "MICROSTATE_PROFILE_TARGET": "h:1",
            "MICROSTATE_PROFILE_TIMEOUT": "2.5",
            "MICROSTATE_PROFILE_LATENCY_BUDGET": "0.05",
            "MICROSTATE_PROFILE_SNAPSHOT_PATH": "/tmp/p.snap",
        },
    )
    assert (options.target, options.timeout, options.latency_budget, options.snapshot.path) == (
        "h:1",
        2.5,
        0.05,
        "/tmp/p.snap",
    )
    assert ClientOptions.from_env("profile", {}) == ClientOptions()


@pytest.mark.parametrize(
    "bad", [dict(timeout=0), dict(latency_budget=-1), dict(metadata=(("X-Upper", "v"),))]
)
def test_options_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ClientOptions(**bad)  # type: ignore[arg-type]


async def test_a_target_argument_overrides_options(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.put("u")
    async with ProfileClient(server.target, options=fast_options("unused:1")) as client:
        assert client.target == server.target
        assert (await client.get("u")).value.user_id == "u"
