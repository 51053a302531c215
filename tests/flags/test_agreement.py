"""Server and local evaluation agree exactly on a generated corpus of (flag, context) pairs: the server's
answers over the wire against the shared evaluator run on the flags as a replica synced them."""

from __future__ import annotations

import random

import pytest
from google.protobuf import json_format

from microstate.client.flags.evaluation import compile_flag, evaluate, python_value
from microstate.flags.v1 import flags_pb2 as f
from microstate.flags.v1 import flags_pb2_grpc
from microstate.server.flags.rules import check_flag

from .corpus import generate_context, generate_flag, struct_of
from .replica import Replica, follow_until

Stub = flags_pb2_grpc.FlagServiceStub
FLAGS = 200


async def agree(stub: Stub, contexts: int, seed: int) -> int:
    rng = random.Random(seed)
    for i in range(FLAGS):
        flag = generate_flag(rng, f"flag-{i:03}")
        check_flag(flag)
        await stub.CreateFlag(f.CreateFlagRequest(flag=flag))
    replica = Replica()
    stream = stub.SyncFlags(f.SyncFlagsRequest(), timeout=60)
    await follow_until(stream, replica, lambda: replica.snapshots == 1)
    stream.cancel()
    compiled = {key: compile_flag(flag) for key, flag in replica.flags.items()}
    pairs = 0
    reasons: set[int] = set()
    for _ in range(contexts):
        targeting_key, attributes = generate_context(rng)
        context = f.EvaluationContext(targeting_key=targeting_key, attributes=struct_of(attributes))
        # What the SDK sees: the context as the caller gave it, numbers as the wire carries them (doubles).
        local_attributes = json_format.MessageToDict(context.attributes)
        answers = await stub.EvaluateAll(f.EvaluateAllRequest(context=context))
        assert answers.revision == replica.revision
        for answer in answers.evaluations:
            local = evaluate(compiled[answer.flag_key], targeting_key, local_attributes, replica.revision)
            remote = (
                python_value(answer.value) if answer.HasField("value") else None,
                answer.variant,
                answer.reason,
                answer.error_code,
                answer.error_message,
                answer.revision,
            )
            assert remote == tuple(local), (answer.flag_key, targeting_key, attributes)
            reasons.add(answer.reason)
            pairs += 1
    assert reasons >= {
        f.REASON_STATIC,
        f.REASON_TARGETING_MATCH,
        f.REASON_SPLIT,
        f.REASON_DEFAULT,
        f.REASON_DISABLED,
        f.REASON_ERROR,
    }
    # EvaluateFlag answers as EvaluateAll does, expected types included.
    for key in rng.sample(sorted(compiled), 20):
        targeting_key, attributes = generate_context(rng)
        expected = rng.choice([0, f.VARIANT_TYPE_BOOL, f.VARIANT_TYPE_STRING])
        answer = await stub.EvaluateFlag(
            f.EvaluateFlagRequest(
                key=key,
                context=f.EvaluationContext(targeting_key=targeting_key, attributes=struct_of(attributes)),
                expected_type=expected,
            )
        )
        local = evaluate(
            compiled[key],
            targeting_key,
            json_format.MessageToDict(struct_of(attributes)),
            replica.revision,
            expected,
        )
        assert (answer.variant, answer.reason, answer.error_code) == local[1:4]
    return pairs


async def test_agreement_on_100000_pairs(stub: Stub) -> None:
    assert await agree(stub, 500, seed=1) >= 100_000


@pytest.mark.slow
async def test_agreement_on_a_million_pairs(stub: Stub) -> None:
    assert await agree(stub, 5000, seed=2) >= 1_000_000
