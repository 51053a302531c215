"""The ledger as a served microstate keeps it: every registered slice's records store is audited by
declaration (the registry), and calls to profile v1 and v2 leave entries that name the authenticated
principal, the method, the contract version, digests that chain value to value, the request id and the
subject reference; the ledger sealed at a clean stop verifies against the checkpoint file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.profile.v2 import profile_pb2 as v2
from microstate.profile.v2 import profile_pb2_grpc as v2_grpc
from microstate.server import registry
from microstate.server.audit.audited import AuditedLog, AuditedStore
from microstate.server.audit.checkpoints import newest_in_file
from microstate.server.audit.entries import digest
from microstate.server.audit.ledger import export_lines
from microstate.server.audit.serving import AUDITED_KINDS, Auditing, checkpoint_file
from microstate.server.audit.verify import verify
from microstate.server.config import ServerConfig
from microstate.server.runtime import Runtime
from microstate.server.serve import store_urls
from microstate.server.store.roles import StoreKind, open_stores
from microstate.session.v1 import session_pb2 as session_pb
from microstate.session.v1 import session_pb2_grpc as session_grpc
from tests.security.conftest import _environment, issuer  # noqa: F401  (issuer: a fixture)
from tests.support.issuer import ISSUER, Issuer


@asynccontextmanager
async def audited(name: str, data_dir: Path, **settings: Any) -> AsyncIterator[tuple[Runtime, Auditing]]:
    """Microstate `name` served on SQLite in this process, audited as `microstate serve` audits it."""
    microstate = registry.get(name)
    config = ServerConfig(port=0, drain_seconds=0.0, grace_seconds=0.0, data_dir=data_dir, **settings)
    with _environment(microstate.prepare(data_dir) if microstate.prepare else {}):
        urls = store_urls(microstate, config)
        stores = await open_stores(microstate.name, microstate.stores, urls)
        auditing = await Auditing.open(
            microstate.name, stores, urls, data_dir / "audit", subject_of=microstate.audit_subject
        )
        try:
            runtime = Runtime(microstate, stores, config, auditing=auditing)
            await runtime.start()
            try:
                yield runtime, auditing
            finally:
                await runtime.drain()
        finally:
            await auditing.stop()
            await stores.close()


async def test_every_registered_slice_gets_only_audited_records_stores(tmp_path: Path) -> None:
    for name in registry.names():
        microstate = registry.get(name)
        (tmp_path / name).mkdir()
        async with audited(name, tmp_path / name) as (_, auditing):
            for role, store in auditing.stores:
                if role.kind is StoreKind.RECORDS:
                    assert isinstance(store, AuditedStore), (name, role.name)
                elif role.kind is StoreKind.LOG:
                    assert isinstance(store, AuditedLog), (name, role.name)
                else:  # blobs: the slice must say why their writes need no entries of their own
                    assert microstate.unaudited_roles.get(role.name), (name, role.name)
            assert len(auditing.sealers) == sum(role.kind in AUDITED_KINDS for role in microstate.stores)


async def test_profile_calls_leave_verifiable_entries_naming_who_what_and_which_contract(
    tmp_path: Path,
    issuer: Issuer,  # noqa: F811
) -> None:
    token = issuer.token("profile.write", "profile.read", subject="alice")
    metadata = (("authorization", f"Bearer {token}"),)
    async with audited("profile", tmp_path, **issuer.settings()) as (runtime, auditing):
        async with grpc.aio.insecure_channel(str(runtime.endpoint)) as channel:
            stub2, stub1 = v2_grpc.ProfileServiceStub(channel), v1_grpc.ProfileServiceStub(channel)
            created = await stub2.CreateProfile(
                v2.CreateProfileRequest(profile=v2.Profile(user_id="u1", locale="en-GB"), request_id="req-1"),
                metadata=metadata,
            )
            await stub2.UpdateProfile(
                v2.UpdateProfileRequest(
                    profile=v2.Profile(user_id="u1", locale="fr-FR", etag=created.etag),
                    update_mask=field_mask_pb2.FieldMask(paths=["locale"]),
                ),
                metadata=metadata,
            )
            await stub1.CreateProfile(
                v1.CreateProfileRequest(profile=v1.Profile(user_id="u2", display_name="Bob")),
                metadata=metadata,
            )
            await stub2.DeleteProfile(v2.DeleteProfileRequest(user_id="u1"), metadata=metadata)
        keys = auditing.keys
    # drained: the sealer sealed and checkpointed everything at the stop
    async with audited("profile", tmp_path) as (_, auditing):
        lines = [line async for line in export_lines(auditing.sealers[0].ledger, readable=True)]
    checkpoint = newest_in_file(checkpoint_file(tmp_path / "audit", "profile"))
    assert checkpoint is not None
    report = verify(lines, checkpoint, keys.public_key, keys.chain_keys)
    assert report.ok and report.entries == 4, report.lines()
    entries = [json.loads(line)["entry"] for line in lines if "checkpoint" not in line]
    assert [(e["method"].rpartition("/")[2], e["contract"], e["resource"]) for e in entries] == [
        ("CreateProfile", "microstate.profile.v2", "u1"),
        ("UpdateProfile", "microstate.profile.v2", "u1"),
        ("CreateProfile", "microstate.profile.v1", "u2"),
        ("DeleteProfile", "microstate.profile.v2", "u1"),
    ]
    assert {e["principal"] for e in entries} == {f"token:alice@{ISSUER}"}
    assert entries[0]["request_id"] == "req-1" and entries[0]["before"] == ""
    assert entries[1]["before"] == entries[0]["after"] != entries[1]["after"]  # value to value, by digest
    assert entries[3]["after"] == "" and entries[3]["operation"] == "delete"
    assert [e["subject"] for e in entries] == [keys.subject_ref(u) for u in ("u1", "u1", "u2", "u1")]
    assert all(e["status"] == "OK" for e in entries)
    assert "fr-FR" not in "".join(lines) and digest(b"") not in {e["after"] for e in entries}


async def test_a_session_create_names_its_user_in_every_entry_it_writes(tmp_path: Path) -> None:
    async with audited("session", tmp_path) as (runtime, auditing):
        async with grpc.aio.insecure_channel(str(runtime.endpoint)) as channel:
            stub = session_grpc.SessionServiceStub(channel)
            await stub.CreateSession(session_pb.CreateSessionRequest(user_id="alice", request_id="r-9"))
        keys, sealer = auditing.keys, auditing.sealers[0]
        await sealer.seal_all()
        lines = [line async for line in export_lines(sealer.ledger, readable=True)]
    entries = [json.loads(line)["entry"] for line in lines if "checkpoint" not in line]
    assert entries and {e["subject"] for e in entries} == {keys.subject_ref("alice")}
    assert {e["contract"] for e in entries} == {"microstate.session.v1"}
    assert {e["request_id"] for e in entries} == {"r-9"}
    assert any(e["resource"].startswith("u/alice/") for e in entries)  # the user's index entry
