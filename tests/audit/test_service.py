"""microstate.audit.v1.AuditService as a served profile server offers it: the newest checkpoint, a stream of
checkpoints as they are signed, inclusion and consistency proofs that verify against signed roots, bad
arguments refused with a BadRequest, and the scope audit.read required."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from microstate.audit.v1 import audit_pb2 as pb
from microstate.audit.v1 import audit_pb2_grpc as pb_grpc
from microstate.profile.v2 import profile_pb2 as v2
from microstate.profile.v2 import profile_pb2_grpc as v2_grpc
from microstate.server.audit import merkle
from microstate.server.audit.checkpoints import Checkpoint
from tests.audit.test_serving import audited
from tests.security.conftest import issuer  # noqa: F401  (a fixture)
from tests.support.issuer import Issuer
from tests.support.rpc_errors import details


async def test_checkpoints_stream_and_proofs_verify_against_signed_roots(
    tmp_path: Path,
    issuer: Issuer,  # noqa: F811
) -> None:
    writer = (("authorization", f"Bearer {issuer.token('profile.write')}"),)
    auditor = (("authorization", f"Bearer {issuer.token('audit.read')}"),)
    async with audited("profile", tmp_path, **issuer.settings()) as (runtime, auditing):
        sealer = auditing.sealers[0]
        async with grpc.aio.insecure_channel(str(runtime.endpoint)) as channel:
            profiles, audit = v2_grpc.ProfileServiceStub(channel), pb_grpc.AuditServiceStub(channel)

            async def write(first: int, count: int) -> None:
                for i in range(first, first + count):
                    profile = v2.Profile(user_id=f"u{i}", locale="en")
                    await profiles.CreateProfile(v2.CreateProfileRequest(profile=profile), metadata=writer)

            await write(0, 5)
            await sealer.seal(force_checkpoint=True)
            first = await audit.GetCheckpoint(pb.GetCheckpointRequest(), metadata=auditor)
            assert first.log_id == "profile" and first.size == 5
            assert Checkpoint.from_json(first.json).verifies(auditing.keys.public_key)

            stream = audit.WatchCheckpoints(pb.WatchCheckpointsRequest(), metadata=auditor)
            assert (await stream.read()).checkpoint.size == 5  # the newest, first
            await write(5, 6)
            await sealer.seal(force_checkpoint=True)
            second = (await stream.read()).checkpoint
            assert second.size == 11
            stream.cancel()

            proof = await audit.ProveConsistency(
                pb.ProveConsistencyRequest(old_size=5, new_size=11), metadata=auditor
            )
            assert merkle.verify_consistency(5, 11, first.root, second.root, list(proof.hashes))
            for index in (0, 4, 10):
                included = await audit.ProveInclusion(
                    pb.ProveInclusionRequest(index=index, tree_size=11), metadata=auditor
                )
                assert len(included.hashes) <= 4  # ⌈log2 11⌉
                assert merkle.verify_inclusion(
                    index, 11, included.leaf_hash, list(included.hashes), second.root
                )

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await audit.ProveInclusion(pb.ProveInclusionRequest(index=3, tree_size=12), metadata=auditor)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert {"ErrorInfo", "BadRequest"} <= set(details(refused.value))
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await audit.GetCheckpoint(pb.GetCheckpointRequest(), metadata=writer)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
