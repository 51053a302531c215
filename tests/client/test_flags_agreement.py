"""The SDK's public local evaluation agrees with the server's over the wire on a generated corpus: the
FlagsClient's `evaluate_*_details` (rule set synced by its own stream) against `evaluate_all_remote`, field
by field, for 200 generated flags and 150 contexts (30,000 pairs; tests/flags/test_agreement.py runs the
shared evaluator on 100,000)."""

# ruff: noqa: F811 - `flags_server` is the fixture imported from the harness

from __future__ import annotations

import random
from typing import Any

from google.protobuf import json_format

from microstate.client.flags import FlagsClient, Reason, RuleSetState
from microstate.flags.v1 import flags_pb2 as f
from tests.client.flags_harness import WITHIN, FlagsServer, flags_server, options  # noqa: F401
from tests.flags.corpus import generate_context, generate_flag, struct_of

FLAGS = 200
CONTEXTS = 150
MISSING: Any = object()
"""The caller's default: never a flag's value, so a default served is told apart from a variant."""


async def test_local_and_remote_evaluation_agree(flags_server: FlagsServer) -> None:
    rng = random.Random(7)
    async with FlagsClient(options=options(flags_server.target)) as client:
        for i in range(FLAGS):
            await client.create(generate_flag(rng, f"flag-{i:03}"))
        assert (await client.start(wait=WITHIN)).state is RuleSetState.READY
        evaluators = {
            f.VARIANT_TYPE_BOOL: client.evaluate_bool_details,
            f.VARIANT_TYPE_STRING: client.evaluate_string_details,
            f.VARIANT_TYPE_NUMBER: client.evaluate_number_details,
            f.VARIANT_TYPE_OBJECT: client.evaluate_object_details,
        }
        pairs, reasons = 0, set()
        for _ in range(CONTEXTS):
            targeting_key, generated = generate_context(rng)
            # The context as a caller holds it: what the wire carries (numbers as doubles).
            attributes = json_format.MessageToDict(struct_of(generated))
            remote = await client.evaluate_all_remote(attributes, targeting_key=targeting_key)
            for answer in remote:
                flag = client.local_flag(answer.flag_key)
                assert flag is not None
                local = evaluators[flag.type](
                    answer.flag_key, MISSING, attributes, targeting_key=targeting_key
                )
                expected_value = MISSING if answer.value is None else answer.value
                assert (local.value, local.variant, local.reason, local.error_code, local.revision) == (
                    expected_value,
                    answer.variant,
                    answer.reason,
                    answer.error_code,
                    answer.revision,
                ), (answer.flag_key, targeting_key, attributes)
                reasons.add(local.reason)
                pairs += 1
        assert pairs == FLAGS * CONTEXTS
        assert reasons >= {Reason.STATIC, Reason.TARGETING_MATCH, Reason.SPLIT, Reason.DEFAULT, Reason.ERROR}
