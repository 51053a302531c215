"""The shared evaluator: flagd's vectors, the contract's evaluation rules, operators, semver precedence,
split accuracy, sticky ramps and independent gates."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from google.protobuf import struct_pb2

from microstate.client.flags import evaluation
from microstate.client.flags._murmur import murmur3_32_pure
from microstate.client.flags.evaluation import (
    bucket,
    compile_flag,
    evaluate,
    flag_not_found,
    murmur3_32,
    parse_semver,
)
from microstate.flags.v1 import flags_pb2 as f

from .builders import COLORS, cond, header_color, rollout, split, string_flag

FLAGD_VECTORS = [
    ("rachel@faas.com", "blue", 1805633606, 42),
    ("monica@faas.com", "yellow", 3314683759, 77),
    ("joey@faas.com", "red", 309582631, 7),
    ("ross@faas.com", "blue", 1595699981, 37),
]


@pytest.mark.parametrize(("email", "variant", "h", "bucket_index"), FLAGD_VECTORS)
def test_flagd_vectors(email: str, variant: str, h: int, bucket_index: int) -> None:
    key = "headerColor" + email
    assert murmur3_32(key.encode()) == h
    assert murmur3_32_pure(key.encode()) == h
    assert bucket(key, 100) == bucket_index
    result = evaluate(compile_flag(header_color()), email, {}, 3)
    assert (result.value, result.variant, result.reason, result.revision) == (
        variant,
        variant,
        f.REASON_SPLIT,
        3,
    )


def test_flagd_fifty_fifty_vector() -> None:
    flag = string_flag(
        "headerColor", ["blue", "green"], rules=[f.Rule(split=split(("blue", 50), ("green", 50)))]
    )
    assert bucket("headerColorfoo@foo.com", 100) == 80
    assert evaluate(compile_flag(flag), "foo@foo.com", {}, 1).variant == "green"


def test_bucket_by_attribute_and_explicit_salt() -> None:
    by_email = string_flag(
        "x", COLORS, rules=[f.Rule(split=split(*[(n, 25) for n in COLORS], bucket_by="email"))]
    )
    assert (
        evaluate(compile_flag(by_email), "someone", {"email": "rachel@faas.com"}, 1).variant
        == (COLORS[bisect_of(bucket("xrachel@faas.com", 100))])
    )
    # An empty salt hashes the value alone (flagd's fractional with a first argument).
    salted = string_flag("x", COLORS, rules=[f.Rule(split=split(*[(n, 25) for n in COLORS], salt=""))])
    assert evaluate(compile_flag(salted), "headerColorrachel@faas.com", {}, 1).variant == "blue"


def bisect_of(bucket_index: int) -> int:
    return bucket_index // 25


def test_reasons() -> None:
    static = compile_flag(string_flag("s", ["a", "b"], default="a"))
    assert evaluate(static, "u", {}, 9)[:4] == ("a", "a", f.REASON_STATIC, 0)
    no_default = compile_flag(string_flag("s", ["a"]))
    assert evaluate(no_default, "u", {}, 9)[:4] == (None, "", f.REASON_DEFAULT, 0)
    ruled = string_flag(
        "r",
        ["a", "b"],
        default="a",
        rules=[f.Rule(conditions=[cond("plan", f.OPERATOR_EQUALS, "pro")], variant="b")],
    )
    compiled = compile_flag(ruled)
    assert evaluate(compiled, "u", {"plan": "pro"}, 1)[:4] == ("b", "b", f.REASON_TARGETING_MATCH, 0)
    assert evaluate(compiled, "u", {"plan": "free"}, 1)[:4] == ("a", "a", f.REASON_DEFAULT, 0)
    ruled.state = f.FLAG_STATE_DISABLED
    assert evaluate(compile_flag(ruled), "u", {"plan": "pro"}, 1)[:4] == ("a", "a", f.REASON_DISABLED, 0)
    mismatch = evaluate(compiled, "u", {}, 1, f.VARIANT_TYPE_BOOL)
    assert (mismatch.value, mismatch.reason, mismatch.error_code) == (
        None,
        f.REASON_ERROR,
        f.ERROR_CODE_TYPE_MISMATCH,
    )
    assert "VARIANT_TYPE_STRING" in mismatch.error_message
    assert evaluate(compiled, "u", {}, 1, f.VARIANT_TYPE_STRING).reason == f.REASON_DEFAULT
    missing = flag_not_found("nope", 4)
    assert (missing.reason, missing.error_code, missing.revision) == (
        f.REASON_ERROR,
        f.ERROR_CODE_FLAG_NOT_FOUND,
        4,
    )


def test_split_without_bucketing_value() -> None:
    with_default = compile_flag(header_color(default="green"))
    assert evaluate(with_default, "", {}, 1)[:4] == ("green", "green", f.REASON_DEFAULT, 0)
    without = evaluate(compile_flag(header_color(default="")), "", {}, 1)
    assert (without.value, without.reason, without.error_code) == (
        None,
        f.REASON_ERROR,
        f.ERROR_CODE_TARGETING_KEY_MISSING,
    )
    # A split decides even without a bucketing value: later rules are not tried.
    flag = header_color(default="green")
    flag.rules.append(f.Rule(variant="yellow"))
    assert evaluate(compile_flag(flag), "", {}, 1).variant == "green"
    by_attr = compile_flag(
        string_flag("x", COLORS, "red", [f.Rule(split=split(("blue", 1), bucket_by="team"))])
    )
    for attrs in ({}, {"team": ""}, {"team": 7}, {"team": None}):
        assert evaluate(by_attr, "u", attrs, 1).reason == f.REASON_DEFAULT
    assert evaluate(by_attr, "u", {"team": "ml"}, 1).reason == f.REASON_SPLIT


def test_typed_values() -> None:
    bools = f.Flag(
        key="b",
        type=f.VARIANT_TYPE_BOOL,
        variants=[
            f.Variant(name="on", value=f.VariantValue(bool_value=True)),
            f.Variant(name="off", value=f.VariantValue(bool_value=False)),
        ],
        default_variant="off",
    )
    assert evaluate(compile_flag(bools), "u", {}, 1).value is False
    obj = struct_pb2.Struct()
    obj.update({"model": "llama", "temperature": 0.5, "stop": ["a"]})
    objects = f.Flag(
        key="o",
        type=f.VARIANT_TYPE_OBJECT,
        variants=[f.Variant(name="v", value=f.VariantValue(object_value=obj))],
        default_variant="v",
    )
    assert evaluate(compile_flag(objects), "u", {}, 1).value == {
        "model": "llama",
        "temperature": 0.5,
        "stop": ["a"],
    }
    numbers = f.Flag(
        key="n",
        type=f.VARIANT_TYPE_NUMBER,
        variants=[f.Variant(name="v", value=f.VariantValue(number_value=0.25))],
        default_variant="v",
    )
    assert evaluate(compile_flag(numbers), "u", {}, 1).value == 0.25


def holds(condition: f.Condition, attributes: dict[str, Any], targeting_key: str = "user-1") -> bool:
    return evaluation.compile_condition(condition)(targeting_key, attributes)


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        (cond("n", f.OPERATOR_EQUALS, 1), {"n": 1}, True),
        (cond("n", f.OPERATOR_EQUALS, 1), {"n": 1.0}, True),
        (cond("n", f.OPERATOR_EQUALS, 1), {"n": True}, False),
        (cond("n", f.OPERATOR_EQUALS, 1), {"n": "1"}, False),
        (cond("b", f.OPERATOR_EQUALS, True), {"b": True}, True),
        (cond("b", f.OPERATOR_EQUALS, True), {"b": 1}, False),
        (cond("b", f.OPERATOR_EQUALS, False), {"b": 0}, False),
        (cond("s", f.OPERATOR_EQUALS, "x"), {"s": "x"}, True),
        (cond("s", f.OPERATOR_EQUALS, "x"), {}, False),
        (cond("s", f.OPERATOR_EQUALS, "x", negate=True), {}, True),
        (cond("s", f.OPERATOR_IN, "a", 2), {"s": "a"}, True),
        (cond("s", f.OPERATOR_IN, "a", 2), {"s": 2}, True),
        (cond("s", f.OPERATOR_IN, "a", 1), {"s": True}, False),
        (cond("s", f.OPERATOR_IN, "a", 2), {"s": "2"}, False),
        (cond("s", f.OPERATOR_IN, "a", 2), {"s": ["a"]}, False),
        (cond("e", f.OPERATOR_STARTS_WITH, "ad", "ro"), {"e": "root"}, True),
        (cond("e", f.OPERATOR_ENDS_WITH, "@x.com"), {"e": "a@x.com"}, True),
        (cond("e", f.OPERATOR_ENDS_WITH, "@x.com"), {"e": 5}, False),
        (cond("n", f.OPERATOR_LESS_THAN, 3), {"n": 2}, True),
        (cond("n", f.OPERATOR_LESS_THAN, 3), {"n": 3}, False),
        (cond("n", f.OPERATOR_LESS_THAN_OR_EQUAL, 3), {"n": 3.0}, True),
        (cond("n", f.OPERATOR_GREATER_THAN, 3), {"n": 3.5}, True),
        (cond("n", f.OPERATOR_GREATER_THAN_OR_EQUAL, 3), {"n": 2}, False),
        (cond("n", f.OPERATOR_GREATER_THAN, 0), {"n": True}, False),
        (cond("n", f.OPERATOR_GREATER_THAN, 0), {"n": "5"}, False),
        (cond("n", f.OPERATOR_GREATER_THAN, 0), {"n": float("nan")}, False),
        (cond("x", f.OPERATOR_EXISTS), {"x": None}, True),
        (cond("x", f.OPERATOR_EXISTS), {}, False),
        (cond("x", f.OPERATOR_EXISTS, negate=True), {}, True),
        (cond("targetingKey", f.OPERATOR_STARTS_WITH, "user-"), {}, True),
        (cond("targetingKey", f.OPERATOR_EXISTS), {"targetingKey": "x"}, True),
        (cond("v", f.OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL, "1.2.0"), {"v": "v1.10.0"}, True),
        (cond("v", f.OPERATOR_SEMVER_LESS_THAN, "1.2.0"), {"v": "1.2.0-rc.1"}, True),
        (cond("v", f.OPERATOR_SEMVER_EQUAL, "1.2.0"), {"v": "1.2.0+build.5"}, True),
        (cond("v", f.OPERATOR_SEMVER_EQUAL, "1.2.0"), {"v": "1.2"}, False),
        (cond("v", f.OPERATOR_SEMVER_LESS_THAN, "1.2.0"), {"v": 1.1}, False),
        (cond("v", f.OPERATOR_SEMVER_LESS_THAN, "1.2.0", negate=True), {"v": "garbage"}, True),
    ],
)
def test_operators(condition: f.Condition, attributes: dict[str, Any], expected: bool) -> None:
    assert holds(condition, attributes) is expected


def test_targeting_key_condition_without_one() -> None:
    assert holds(cond("targetingKey", f.OPERATOR_EXISTS), {}, targeting_key="") is False


def test_semver_precedence_of_the_spec() -> None:
    # semver.org 2.0.0, item 11: each is lower than the next.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
        "v10.0.0",
    ]
    keys = [parse_semver(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert all(a < b for a, b in itertools.pairwise(keys))  # type: ignore[operator]
    for bad in ["1.0", "01.0.0", "1.0.0-01", "1.0.0-", "1.0.0+", "V1.0.0", " 1.0.0", "1.0.0-a..b", "1.2.3.4"]:
        assert parse_semver(bad) is None, bad
    assert parse_semver("1.0.0-0A.is.legal") is not None
    long_one = "1.0.0-" + "a" * 100  # past the cached length: parsed the same way
    assert parse_semver(long_one) == (1, 0, 0, 0, ((1, "a" * 100),))
    assert parse_semver("1.0.0+20130313144700") == parse_semver("1.0.0")


def test_first_deciding_rule_wins_and_gate_falls_through() -> None:
    flag = string_flag(
        "gated",
        ["a", "b", "c"],
        default="c",
        rules=[
            f.Rule(conditions=[cond("tier", f.OPERATOR_EQUALS, "gold")], variant="a", rollout=rollout(0)),
            f.Rule(conditions=[cond("tier", f.OPERATOR_EQUALS, "gold")], variant="b"),
        ],
    )
    compiled = compile_flag(flag)
    assert evaluate(compiled, "u", {"tier": "gold"}, 1).variant == "b"
    flag.rules[0].rollout.basis_points = 10_000
    assert evaluate(compile_flag(flag), "u", {"tier": "gold"}, 1).variant == "a"
    flag.rules[0].rollout.bucketing.bucket_by = "org"
    assert evaluate(compile_flag(flag), "u", {"tier": "gold"}, 1).variant == "b"  # no org: gate admits nobody


KEYS = [f"user-{i}" for i in range(100_000)]


def test_split_accuracy_on_100000_keys() -> None:
    weights = [("a", 10), ("b", 20), ("c", 30), ("d", 40)]
    compiled = compile_flag(
        string_flag("accuracy", ["a", "b", "c", "d"], rules=[f.Rule(split=split(*weights))])
    )
    counts = Counter(evaluate(compiled, k, {}, 1).variant for k in KEYS)
    for name, weight in weights:
        assert abs(counts[name] / len(KEYS) - weight / 100) <= 0.005, (name, counts)


def test_ramp_from_10_to_20_percent_reassigns_no_member() -> None:
    def ramp(percent: int) -> evaluation.CompiledFlag:
        return compile_flag(
            string_flag(
                "ramp", ["on", "off"], rules=[f.Rule(split=split(("on", percent), ("off", 100 - percent)))]
            )
        )

    ten, twenty = ramp(10), ramp(20)
    before = {k for k in KEYS if evaluate(ten, k, {}, 1).variant == "on"}
    after = {k for k in KEYS if evaluate(twenty, k, {}, 1).variant == "on"}
    assert before <= after
    assert abs(len(before) / len(KEYS) - 0.10) <= 0.005 and abs(len(after) / len(KEYS) - 0.20) <= 0.005


def test_gate_raise_admits_everyone_admitted_before() -> None:
    def gated(basis_points: int) -> evaluation.CompiledFlag:
        return compile_flag(
            string_flag("g", ["on"], rules=[f.Rule(variant="on", rollout=rollout(basis_points))])
        )

    ten, twenty = gated(1000), gated(2000)
    before = {k for k in KEYS[:20_000] if evaluate(ten, k, {}, 1).variant == "on"}
    after = {k for k in KEYS[:20_000] if evaluate(twenty, k, {}, 1).variant == "on"}
    assert before <= after


def test_gate_and_split_are_independent() -> None:
    """Unleash's bug: one hash for both left a 10% gate reaching 10% of variant groups. Here a 10% gate
    reaches every variant of a 10-way split, each in its proportion."""
    names = [f"v{i}" for i in range(10)]
    flag = string_flag(
        "indep", names, rules=[f.Rule(split=split(*[(n, 1) for n in names]), rollout=rollout(1000))]
    )
    compiled = compile_flag(flag)
    results = [evaluate(compiled, k, {}, 1) for k in KEYS]
    admitted = Counter(r.variant for r in results if r.reason == f.REASON_SPLIT)
    total = sum(admitted.values())
    assert abs(total / len(KEYS) - 0.10) <= 0.005
    assert set(admitted) == set(names)
    for name in names:
        assert abs(admitted[name] / total - 0.1) <= 0.015, admitted
