"""A generated corpus of valid flags and evaluation contexts that reach every operator, reason and error."""

from __future__ import annotations

import random
from typing import Any

from google.protobuf import struct_pb2

from microstate.flags.v1 import flags_pb2 as f

from .builders import cond, rollout, split

ATTRIBUTES = ["plan", "country", "version", "age", "beta", "email", "org", "tags"]
STRINGS = ["pro", "free", "team", "fr", "de", "us", "", "é-ü", "a@x.com", "b@y.org"]
VERSIONS = ["1.0.0", "1.2.3", "v1.2.3", "2.0.0-rc.1", "2.0.0", "1.10.0", "0.9.9-alpha.beta", "1.2", "x"]
NUMBERS = [0, 1, 1.5, 17, 18, 21.0, 65, -3]


def _operand_condition(rng: random.Random) -> f.Condition:
    attribute = rng.choice([*ATTRIBUTES, "targetingKey"])
    negate = rng.random() < 0.2
    choice = rng.randrange(8)
    if choice == 0:
        return cond(
            attribute, f.OPERATOR_EQUALS, rng.choice([*STRINGS, *NUMBERS, True, False]), negate=negate
        )
    if choice == 1:
        values = rng.sample([*STRINGS, *NUMBERS], rng.randint(1, 4))
        return cond(attribute, f.OPERATOR_IN, *values, negate=negate)
    if choice == 2:
        return cond(
            attribute,
            rng.choice([f.OPERATOR_STARTS_WITH, f.OPERATOR_ENDS_WITH]),
            *rng.sample(["a", "b", ".org", "@x.com", "p", "u"], 2),
            negate=negate,
        )
    if choice == 3:
        operator = rng.choice(
            [
                f.OPERATOR_LESS_THAN,
                f.OPERATOR_LESS_THAN_OR_EQUAL,
                f.OPERATOR_GREATER_THAN,
                f.OPERATOR_GREATER_THAN_OR_EQUAL,
            ]
        )
        return cond(attribute, operator, rng.choice(NUMBERS), negate=negate)
    if choice in (4, 5):
        operator = rng.choice(range(f.OPERATOR_SEMVER_EQUAL, f.OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL + 1))
        return cond(attribute, operator, rng.choice(VERSIONS[:7]), negate=negate)
    return cond(attribute, f.OPERATOR_EXISTS, negate=negate)


def _value(kind: int, rng: random.Random, index: int) -> f.VariantValue:
    if kind == f.VARIANT_TYPE_BOOL:
        return f.VariantValue(bool_value=index % 2 == 0)
    if kind == f.VARIANT_TYPE_STRING:
        return f.VariantValue(string_value=f"s{index}-{rng.random()}")
    if kind == f.VARIANT_TYPE_NUMBER:
        return f.VariantValue(number_value=rng.uniform(-1e6, 1e6))
    obj = struct_pb2.Struct()
    obj.update({"i": index, "nested": {"list": [1, "two", None]}})
    return f.VariantValue(object_value=obj)


def generate_flag(rng: random.Random, key: str) -> f.Flag:
    kind = rng.choice(
        [f.VARIANT_TYPE_BOOL, f.VARIANT_TYPE_STRING, f.VARIANT_TYPE_NUMBER, f.VARIANT_TYPE_OBJECT]
    )
    names = [f"v{i}" for i in range(2 if kind == f.VARIANT_TYPE_BOOL else rng.randint(1, 5))]
    flag = f.Flag(
        key=key,
        type=kind,
        state=f.FLAG_STATE_DISABLED if rng.random() < 0.1 else f.FLAG_STATE_ENABLED,
        variants=[f.Variant(name=n, value=_value(kind, rng, i)) for i, n in enumerate(names)],
        default_variant=rng.choice([*names, ""]),
        metadata={"owner": "team-" + key},
    )
    for _ in range(rng.choice([0, 1, 2, 3, 4])):
        rule = f.Rule(conditions=[_operand_condition(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))])
        if rng.random() < 0.5:
            rule.variant = rng.choice(names)
        else:
            weights = [
                (n, rng.choice([0, 1, 5, 25, 1000])) for n in rng.sample(names, rng.randint(1, len(names)))
            ]
            if sum(w for _, w in weights) == 0:
                weights[0] = (weights[0][0], 1)
            rule.split.CopyFrom(
                split(
                    *weights,
                    bucket_by=rng.choice(["", "", "org", "email"]),
                    salt=rng.choice([None, None, "", "s1"]),
                )
            )
        if rng.random() < 0.3:
            rule.rollout.CopyFrom(
                rollout(
                    rng.choice([0, 1000, 5000, 10_000]),
                    bucket_by=rng.choice(["", "org"]),
                    salt=rng.choice([None, "g1"]),
                )
            )
            if rule.HasField("split") and rule.split.bucketing == rule.rollout.bucketing:
                rule.rollout.bucketing.salt = "g2"
        flag.rules.append(rule)
    return flag


def generate_context(rng: random.Random) -> tuple[str, dict[str, Any]]:
    targeting_key = rng.choice(["", f"user-{rng.randrange(10**6)}", f"ü-{rng.randrange(100)}", "a@x.com"])
    attributes: dict[str, Any] = {}
    for name in ATTRIBUTES:
        if rng.random() < 0.6:
            attributes[name] = rng.choice(
                [
                    *STRINGS,
                    *VERSIONS,
                    *NUMBERS,
                    True,
                    False,
                    None,
                    ["pro"],
                    {"k": 1},
                    f"org-{rng.randrange(50)}",
                ]
            )
    return targeting_key, attributes


def struct_of(attributes: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(attributes)
    return struct
