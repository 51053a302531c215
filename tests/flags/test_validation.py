"""Validation at write time: every rule and limit of flags.proto, each violation naming its field."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from microstate.flags.v1 import flags_pb2 as f
from microstate.server.errors import InvalidArgument
from microstate.server.flags import rules

from .builders import COLORS, cond, header_color, rollout, split, string_flag


def violations(flag: f.Flag) -> list[str]:
    try:
        rules.check_flag(flag)
    except InvalidArgument as error:
        assert error.reason == "INVALID_FLAG"
        return [field for field, _ in error.violations]
    return []


def with_rule(rule: f.Rule) -> f.Flag:
    return string_flag("x", COLORS, "red", [rule])


def test_a_valid_flag_passes() -> None:
    assert violations(header_color()) == []


@pytest.mark.parametrize(
    ("flag", "fields"),
    [
        (string_flag("-bad", COLORS), ["flag.key"]),
        (string_flag("k" * 129, COLORS), ["flag.key"]),
        (
            f.Flag(key="x", variants=[f.Variant(name="a", value=f.VariantValue(bool_value=True))]),
            ["flag.type"],
        ),
        (f.Flag(key="x", type=f.VARIANT_TYPE_BOOL), ["flag.variants"]),
        (string_flag("x", [f"v{i}" for i in range(65)]), ["flag.variants"]),
        (string_flag("x", ["a", "a"]), ["flag.variants[1].name"]),
        (string_flag("x", ["a b"]), ["flag.variants[0].name"]),
        (string_flag("x", ["a"], default="b"), ["flag.default_variant"]),
        (with_rule(f.Rule(variant="purple")), ["flag.rules[0].variant"]),
        (with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_EXISTS)])), ["flag.rules[0].outcome"]),
        (with_rule(f.Rule(split=split(("red", 0)))), ["flag.rules[0].split.weights"]),
        (with_rule(f.Rule(split=split())), ["flag.rules[0].split.weights"]),
        (with_rule(f.Rule(split=split(("red", 2**31 - 1), ("blue", 1)))), ["flag.rules[0].split.weights"]),
        (with_rule(f.Rule(split=split(("red", 1), ("red", 1)))), ["flag.rules[0].split.weights[1].variant"]),
        (with_rule(f.Rule(variant="red", rollout=rollout(10_001))), ["flag.rules[0].rollout.basis_points"]),
        (
            with_rule(f.Rule(split=split(("red", 1)), rollout=rollout(10, salt="x"))),
            ["flag.rules[0].rollout.bucketing.salt"],
        ),
        (
            with_rule(f.Rule(split=split(("red", 1), salt="s"), rollout=rollout(10, salt="s"))),
            ["flag.rules[0].rollout.bucketing.salt"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("", f.OPERATOR_EXISTS)], variant="red")),
            ["flag.rules[0].conditions[0].attribute"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_UNSPECIFIED)], variant="red")),
            ["flag.rules[0].conditions[0].operator"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_EQUALS)], variant="red")),
            ["flag.rules[0].conditions[0].values"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_EQUALS, 1, 2)], variant="red")),
            ["flag.rules[0].conditions[0].values"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_IN, True)], variant="red")),
            ["flag.rules[0].conditions[0].values[0]"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_IN, *range(1001))], variant="red")),
            ["flag.rules[0].conditions[0].values"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_STARTS_WITH, 1)], variant="red")),
            ["flag.rules[0].conditions[0].values[0]"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_GREATER_THAN, float("inf"))], variant="red")),
            ["flag.rules[0].conditions[0].values[0]"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_SEMVER_EQUAL, "1.0")], variant="red")),
            ["flag.rules[0].conditions[0].values[0]"],
        ),
        (
            with_rule(f.Rule(conditions=[cond("a", f.OPERATOR_EXISTS)] * 17, variant="red")),
            ["flag.rules[0].conditions"],
        ),
        (string_flag("x", ["a"], rules=[f.Rule(variant="a")] * 65), ["flag.rules"]),
        (with_rule(f.Rule(variant="red", description="d" * 257)), ["flag.rules[0].description"]),
    ],
)
def test_each_rule_names_its_field(flag: f.Flag, fields: list[str]) -> None:
    assert violations(flag) == fields


def test_types_sizes_and_metadata() -> None:
    mixed = string_flag("x", ["a", "b"])
    mixed.variants[1].value.number_value = 1
    assert violations(mixed) == ["flag.variants[1].value"]
    unset = string_flag("x", ["a"])
    unset.variants[0].ClearField("value")
    assert violations(unset) == ["flag.variants[0].value"]
    long_string = string_flag("x", ["a"])
    long_string.variants[0].value.string_value = "s" * (16 * 1024 + 1)
    assert violations(long_string) == ["flag.variants[0].value.string_value"]
    nan = f.Flag(
        key="x",
        type=f.VARIANT_TYPE_NUMBER,
        variants=[f.Variant(name="a", value=f.VariantValue(number_value=float("nan")))],
    )
    assert violations(nan) == ["flag.variants[0].value.number_value"]
    big = struct_pb2.Struct()
    big.update({"k": "v" * 17000})
    obj = f.Flag(
        key="x",
        type=f.VARIANT_TYPE_OBJECT,
        variants=[f.Variant(name="a", value=f.VariantValue(object_value=big))],
    )
    assert violations(obj) == ["flag.variants[0].value.object_value"]
    not_json = struct_pb2.Struct()
    not_json.update({"k": [1, {"n": float("nan")}]})
    obj = f.Flag(
        key="x",
        type=f.VARIANT_TYPE_OBJECT,
        variants=[f.Variant(name="a", value=f.VariantValue(object_value=not_json))],
    )
    assert violations(obj) == ["flag.variants[0].value.object_value"]
    meta = header_color()
    meta.metadata.update({f"k{i}": "v" for i in range(33)})
    assert violations(meta) == ["flag.metadata"]
    meta = header_color()
    meta.metadata.update({"bad key": "v", "ok": "v" * 1025})
    assert sorted(violations(meta)) == ["flag.metadata['bad key']", "flag.metadata['ok']"]
    described = header_color()
    described.description = "d" * 1025
    assert violations(described) == ["flag.description"]
    disabled_state = header_color()
    disabled_state.state = 7  # type: ignore[assignment]
    assert violations(disabled_state) == ["flag.state"]


def test_same_bucketing_value_with_different_salts_is_fine() -> None:
    # The defaults differ: a split salts with the flag key, a gate with the flag key and "/rollout".
    assert violations(with_rule(f.Rule(split=split(("red", 1)), rollout=rollout(10)))) == []
    assert (
        violations(with_rule(f.Rule(split=split(("red", 1)), rollout=rollout(10, bucket_by="org", salt="x"))))
        == []
    )


def test_update_mask_paths() -> None:
    assert rules.masked_paths([]) == rules.WRITABLE
    assert rules.masked_paths(["rules", "state"]) == ("rules", "state")
    with pytest.raises(InvalidArgument):
        rules.masked_paths(["etag"])
