"""Flag evaluation of microstate.flags.v1, shared by the server and the SDK so both answer alike.

`compile_flag` turns a validated `flags_pb2.Flag` into a `CompiledFlag` once (variant values as Python
values, conditions as small closures, a split as cumulative bounds); `evaluate` then answers for one subject
without touching protobuf, following the contract's evaluation rules (see flags.proto):

- a type mismatch (`expected_type` set and not the flag's type) is reason ERROR, TYPE_MISMATCH;
- a disabled flag gives its default variant, reason DISABLED;
- rules are tried in order; the first whose conditions all hold and whose rollout gate admits the subject
  decides: its variant (TARGETING_MATCH) or its split (SPLIT). A split without a bucketing value gives the
  default variant (DEFAULT), or ERROR, TARGETING_KEY_MISSING when the flag has none;
- otherwise the default variant: reason STATIC when the flag has no rules, DEFAULT otherwise; no default
  variant means no value (reason DEFAULT), so the caller's default applies.

Bucketing is flagd's fractional: h = murmur3_32(UTF-8 of salt + value), bucket = (h * total) >> 32, the first
variant whose running weight exceeds the bucket. Attributes are plain Python values (str, int/float, bool,
None, list, dict); numbers compare as numbers (1 == 1.0), bools are never numbers, and an absent attribute or
one of a type the operator does not take makes the condition false (true when negated).
"""

from __future__ import annotations

import functools
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from google.protobuf import struct_pb2

from microstate.flags.v1 import flags_pb2

from ._murmur import murmur3_32

__all__ = [
    "ROLLOUT_SCALE",
    "TARGETING_KEY",
    "CompiledFlag",
    "CompiledSplit",
    "CompiledVariant",
    "Resolution",
    "bucket",
    "compile_flag",
    "evaluate",
    "flag_not_found",
    "murmur3_32",
    "parse_semver",
    "python_value",
    "rollout_salt",
    "split_salt",
    "struct_dict",
]

#: The condition attribute that names the evaluation context's targeting key.
TARGETING_KEY = "targetingKey"
#: A rollout gate buckets into this many slots: basis points.
ROLLOUT_SCALE = 10_000

_STATIC = flags_pb2.REASON_STATIC
_TARGETING_MATCH = flags_pb2.REASON_TARGETING_MATCH
_SPLIT = flags_pb2.REASON_SPLIT
_DEFAULT = flags_pb2.REASON_DEFAULT
_DISABLED = flags_pb2.REASON_DISABLED
_ERROR = flags_pb2.REASON_ERROR
_NO_ERROR = flags_pb2.ERROR_CODE_UNSPECIFIED


class Resolution(NamedTuple):
    """The answer of one evaluation."""

    #: The variant's value as a Python value (bool, str, float or dict: do not mutate it); None when no
    #: variant applies.
    value: Any
    #: The variant's name; "" when value is None.
    variant: str
    #: A flags_pb2.Reason number.
    reason: int
    #: A flags_pb2.ErrorCode number; ERROR_CODE_UNSPECIFIED (0) unless reason is ERROR.
    error_code: int
    #: Human-readable detail of error_code; "" without one.
    error_message: str
    #: The rule set revision the caller evaluated at (as passed to `evaluate`).
    revision: int


class CompiledVariant(NamedTuple):
    """A variant: its name, its Python value and its wire value."""

    name: str
    value: Any
    proto: flags_pb2.VariantValue


class CompiledSplit(NamedTuple):
    """A split: the bucketing value's attribute ("" for the targeting key), the salt, the total weight, the
    running sums of the weights (bounds[i] = weights[0] + ... + weights[i]) and the variants in order."""

    bucket_by: str
    salt: str
    total: int
    bounds: tuple[int, ...]
    variants: tuple[CompiledVariant, ...]

    def variant_at(self, bucket_index: int) -> CompiledVariant:
        """The variant of a bucket in [0, total): the first whose running weight exceeds it."""
        return self.variants[bisect_right(self.bounds, bucket_index)]


class _Gate(NamedTuple):
    bucket_by: str
    salt: str
    basis_points: int


Test = Callable[[str, Mapping[str, Any]], bool]


class _Rule(NamedTuple):
    conditions: tuple[Test, ...]
    gate: _Gate | None
    variant: CompiledVariant | None
    split: CompiledSplit | None


class CompiledFlag:
    """A flag ready to evaluate; built by `compile_flag`, immutable by convention."""

    __slots__ = ("default", "enabled", "key", "metadata", "proto", "revision", "rules", "type", "variants")

    def __init__(
        self,
        proto: flags_pb2.Flag,
        variants: dict[str, CompiledVariant],
        rules: tuple[_Rule, ...],
    ) -> None:
        #: The flag as it was compiled.
        self.proto = proto
        self.key: str = proto.key
        #: A flags_pb2.VariantType number.
        self.type: int = proto.type
        self.enabled = proto.state != flags_pb2.FLAG_STATE_DISABLED
        self.variants = variants
        self.default: CompiledVariant | None = (
            variants.get(proto.default_variant) if proto.default_variant else None
        )
        self.rules = rules
        self.metadata: dict[str, str] = dict(proto.metadata)
        #: The rule set revision of the flag's last change.
        self.revision: int = proto.revision

    def splits(self) -> list[CompiledSplit | None]:
        """Each rule's split, None for a rule that names a variant; for the impact of an edit."""
        return [rule.split for rule in self.rules]


def bucket(key: str, total: int) -> int:
    """flagd's bucket of a bucketing key among `total` slots: (murmur3_32(UTF-8 key) * total) >> 32."""
    return (murmur3_32(key.encode()) * total) >> 32


def split_salt(flag_key: str, bucketing: flags_pb2.Bucketing) -> str:
    """The salt a split hashes with: its own when set (even ""), else the flag key, as flagd."""
    return bucketing.salt if bucketing.HasField("salt") else flag_key


def rollout_salt(flag_key: str, bucketing: flags_pb2.Bucketing) -> str:
    """The salt a rollout gate hashes with: its own when set, else the flag key followed by "/rollout"."""
    return bucketing.salt if bucketing.HasField("salt") else flag_key + "/rollout"


def python_value(value: flags_pb2.VariantValue) -> Any:
    """A variant value as a Python value: bool, str, float or dict (None when unset)."""
    kind = value.WhichOneof("kind")
    if kind == "object_value":
        return struct_dict(value.object_value)
    return None if kind is None else getattr(value, kind)


def struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A google.protobuf.Struct as plain Python values (dict, list, str, float, bool, None), as JSON reads
    it; unlike json_format it takes any double, NaN included (a condition then compares it as Python
    does: false)."""
    return {key: _plain(value) for key, value in struct.fields.items()}


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)


def flag_not_found(key: str, revision: int) -> Resolution:
    """The answer for a key no flag has (reason ERROR, FLAG_NOT_FOUND), as OpenFeature asks."""
    return Resolution(
        None, "", _ERROR, flags_pb2.ERROR_CODE_FLAG_NOT_FOUND, f"no flag has the key {key!r}", revision
    )


def evaluate(
    flag: CompiledFlag,
    targeting_key: str,
    attributes: Mapping[str, Any],
    revision: int,
    expected_type: int = flags_pb2.VARIANT_TYPE_UNSPECIFIED,
) -> Resolution:
    """Evaluates `flag` for a subject (its targeting key, "" for none, and its attributes) at a rule set
    `revision`; `expected_type` (a VariantType number, 0 for any) makes another type a TYPE_MISMATCH.
    Never raises for a compiled flag and a mapping of attributes."""
    if expected_type and expected_type != flag.type:
        return _type_mismatch(flag, expected_type, revision)
    if not flag.enabled:
        return _fallback(flag, _DISABLED, revision)
    for conditions, gate, variant, split in flag.rules:
        for test in conditions:
            if not test(targeting_key, attributes):
                break
        else:
            if gate is not None:
                value = attributes.get(gate.bucket_by) if gate.bucket_by else targeting_key
                if not value or not isinstance(value, str):
                    continue
                if (murmur3_32((gate.salt + value).encode()) * ROLLOUT_SCALE) >> 32 >= gate.basis_points:
                    continue
            if variant is not None:
                return Resolution(variant.value, variant.name, _TARGETING_MATCH, _NO_ERROR, "", revision)
            assert split is not None
            value = attributes.get(split.bucket_by) if split.bucket_by else targeting_key
            if not value or not isinstance(value, str):
                return _unbucketed(flag, split, revision)
            chosen = split.variants[
                bisect_right(split.bounds, (murmur3_32((split.salt + value).encode()) * split.total) >> 32)
            ]
            return Resolution(chosen.value, chosen.name, _SPLIT, _NO_ERROR, "", revision)
    return _fallback(flag, _DEFAULT if flag.rules else _STATIC, revision)


def _fallback(flag: CompiledFlag, reason: int, revision: int) -> Resolution:
    default = flag.default
    if default is None:
        return Resolution(None, "", _DISABLED if reason == _DISABLED else _DEFAULT, _NO_ERROR, "", revision)
    return Resolution(default.value, default.name, reason, _NO_ERROR, "", revision)


def _unbucketed(flag: CompiledFlag, split: CompiledSplit, revision: int) -> Resolution:
    if flag.default is not None:
        return _fallback(flag, _DEFAULT, revision)
    missing = f"attribute {split.bucket_by!r}" if split.bucket_by else "targeting key"
    return Resolution(
        None,
        "",
        _ERROR,
        flags_pb2.ERROR_CODE_TARGETING_KEY_MISSING,
        f"flag {flag.key!r} splits on the {missing}, which the context lacks, and has no default variant",
        revision,
    )


def _type_mismatch(flag: CompiledFlag, expected_type: int, revision: int) -> Resolution:
    message = f"flag {flag.key!r} is {_type_name(flag.type)}, not {_type_name(expected_type)}"
    return Resolution(None, "", _ERROR, flags_pb2.ERROR_CODE_TYPE_MISMATCH, message, revision)


def _type_name(number: int) -> str:
    try:
        return flags_pb2.VariantType.Name(number)
    except ValueError:
        return f"type {number}"


# --- compiling -----------------------------------------------------------------------------------------


def compile_flag(flag: flags_pb2.Flag) -> CompiledFlag:
    """Compiles a flag that passed validation; raises ValueError for one that cannot be evaluated."""
    variants = {v.name: CompiledVariant(v.name, python_value(v.value), v.value) for v in flag.variants}
    if flag.default_variant and flag.default_variant not in variants:
        raise ValueError(f"default variant {flag.default_variant!r} is not a variant")
    rules = tuple(_compile_rule(flag.key, rule, variants) for rule in flag.rules)
    return CompiledFlag(flag, variants, rules)


def _compile_rule(flag_key: str, rule: flags_pb2.Rule, variants: dict[str, CompiledVariant]) -> _Rule:
    conditions = tuple(compile_condition(condition) for condition in rule.conditions)
    gate = None
    if rule.HasField("rollout"):
        rollout = rule.rollout
        gate = _Gate(
            rollout.bucketing.bucket_by, rollout_salt(flag_key, rollout.bucketing), rollout.basis_points
        )
    outcome = rule.WhichOneof("outcome")
    if outcome == "variant":
        return _Rule(conditions, gate, _variant(variants, rule.variant), None)
    if outcome == "split":
        return _Rule(conditions, gate, None, compile_split(flag_key, rule.split, variants))
    raise ValueError("a rule needs a variant or a split")


def compile_split(
    flag_key: str, split: flags_pb2.Split, variants: Mapping[str, CompiledVariant]
) -> CompiledSplit:
    """A split's bucketing and running bounds; ValueError for a total weight of 0 or above 2^31 - 1."""
    bounds: list[int] = []
    total = 0
    for weight in split.weights:
        total += weight.weight
        bounds.append(total)
    if not 0 < total <= 2**31 - 1:
        raise ValueError(f"total weight {total} is not in [1, 2^31 - 1]")
    chosen = tuple(_variant(variants, weight.variant) for weight in split.weights)
    return CompiledSplit(
        split.bucketing.bucket_by, split_salt(flag_key, split.bucketing), total, tuple(bounds), chosen
    )


def _variant(variants: Mapping[str, CompiledVariant], name: str) -> CompiledVariant:
    try:
        return variants[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a variant") from None


_MISSING: Any = object()


def compile_condition(condition: flags_pb2.Condition) -> Test:
    """A condition as a test of (targeting key, attributes); raises ValueError for one that is not valid."""
    predicate = _predicate(condition.operator, [operand(v) for v in condition.values])
    negate = condition.negate
    name = condition.attribute
    if name == TARGETING_KEY:

        def test_targeting_key(targeting_key: str, attributes: Mapping[str, Any]) -> bool:
            return predicate(targeting_key if targeting_key else _MISSING) is not negate

        return test_targeting_key

    def test_attribute(targeting_key: str, attributes: Mapping[str, Any]) -> bool:
        return predicate(attributes.get(name, _MISSING)) is not negate

    return test_attribute


def operand(value: Any) -> str | float | bool:
    """A condition operand (google.protobuf.Value) as a Python str, float or bool; ValueError otherwise."""
    kind = value.WhichOneof("kind")
    if kind == "string_value" or kind == "bool_value":
        result: str | float | bool = getattr(value, kind)
        return result
    if kind == "number_value":
        if not math.isfinite(value.number_value):
            raise ValueError("a number operand must be finite")
        return float(value.number_value)
    raise ValueError(f"an operand must be a string, number or bool, not {kind or 'unset'}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value is not True and value is not False


_ORDERINGS: dict[int, Callable[[Any, Any], bool]] = {
    flags_pb2.OPERATOR_LESS_THAN: lambda a, b: bool(a < b),
    flags_pb2.OPERATOR_LESS_THAN_OR_EQUAL: lambda a, b: bool(a <= b),
    flags_pb2.OPERATOR_GREATER_THAN: lambda a, b: bool(a > b),
    flags_pb2.OPERATOR_GREATER_THAN_OR_EQUAL: lambda a, b: bool(a >= b),
}
_SEMVER_ORDERINGS: dict[int, Callable[[Any, Any], bool]] = {
    flags_pb2.OPERATOR_SEMVER_EQUAL: lambda a, b: bool(a == b),
    flags_pb2.OPERATOR_SEMVER_LESS_THAN: _ORDERINGS[flags_pb2.OPERATOR_LESS_THAN],
    flags_pb2.OPERATOR_SEMVER_LESS_THAN_OR_EQUAL: _ORDERINGS[flags_pb2.OPERATOR_LESS_THAN_OR_EQUAL],
    flags_pb2.OPERATOR_SEMVER_GREATER_THAN: _ORDERINGS[flags_pb2.OPERATOR_GREATER_THAN],
    flags_pb2.OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL: _ORDERINGS[flags_pb2.OPERATOR_GREATER_THAN_OR_EQUAL],
}


def _predicate(operator: int, operands: list[str | float | bool]) -> Callable[[Any], bool]:
    """A test of one attribute value (_MISSING when absent) for an operator and its operands."""
    if operator == flags_pb2.OPERATOR_EXISTS:
        _count(operands, 0, 0)
        return lambda value: value is not _MISSING
    if operator == flags_pb2.OPERATOR_EQUALS:
        _count(operands, 1, 1)
        expected = operands[0]
        if isinstance(expected, bool):
            return lambda value: value is expected
        if isinstance(expected, str):
            return lambda value: isinstance(value, str) and value == expected
        return lambda value: _is_number(value) and value == expected
    if operator == flags_pb2.OPERATOR_IN:
        _count(operands, 1, None)
        if any(isinstance(o, bool) for o in operands):
            raise ValueError("IN takes strings or numbers")
        strings = frozenset(o for o in operands if isinstance(o, str))
        numbers = frozenset(o for o in operands if not isinstance(o, str))
        return lambda value: (
            (value in strings) if isinstance(value, str) else (_is_number(value) and value in numbers)
        )
    if operator in (flags_pb2.OPERATOR_STARTS_WITH, flags_pb2.OPERATOR_ENDS_WITH):
        _count(operands, 1, None)
        affixes = tuple(_strings(operands))
        if operator == flags_pb2.OPERATOR_STARTS_WITH:
            return lambda value: isinstance(value, str) and value.startswith(affixes)
        return lambda value: isinstance(value, str) and value.endswith(affixes)
    if operator in _ORDERINGS:
        _count(operands, 1, 1)
        bound = operands[0]
        if not _is_number(bound):
            raise ValueError("an ordering takes a number")
        compare = _ORDERINGS[operator]
        return lambda value: _is_number(value) and compare(value, bound)
    if operator in _SEMVER_ORDERINGS:
        _count(operands, 1, 1)
        (text,) = _strings(operands)
        version = parse_semver(text)
        if version is None:
            raise ValueError(f"{text!r} is not a semantic version")
        compare = _SEMVER_ORDERINGS[operator]

        def semver_test(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            parsed = parse_semver(value)
            return parsed is not None and compare(parsed, version)

        return semver_test
    raise ValueError(f"operator {operator} is not an operator")


def _count(operands: list[Any], least: int, most: int | None) -> None:
    if len(operands) < least or (most is not None and len(operands) > most):
        raise ValueError(f"wrong number of operands: {len(operands)}")


def _strings(operands: list[str | float | bool]) -> list[str]:
    if not all(isinstance(o, str) for o in operands):
        raise ValueError("the operator takes strings")
    return [o for o in operands if isinstance(o, str)]


_SEMVER = re.compile(
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)

SemverKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def parse_semver(text: str) -> SemverKey | None:
    """A semantic version (semver.org 2.0.0, an optional leading "v") as a key ordered by precedence, build
    metadata dropped; None when `text` is not one. A prerelease sorts below its release; prerelease
    identifiers compare numerically when numeric, in ASCII order otherwise, numeric below alphanumeric, and a
    longer list above its prefix."""
    # Versions repeat across evaluations: the short ones are parsed once (a bounded cache of small keys).
    return _parse_cached(text) if len(text) <= _CACHED_LENGTH else _parse_semver(text)


_CACHED_LENGTH = 64


def _parse_semver(text: str) -> SemverKey | None:
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    major, minor, patch, prerelease = match.groups()
    if prerelease is None:
        return (int(major), int(minor), int(patch), 1, ())
    identifiers = tuple((0, int(part)) if part.isdigit() else (1, part) for part in prerelease.split("."))
    return (int(major), int(minor), int(patch), 0, identifiers)


_parse_cached = functools.lru_cache(maxsize=4096)(_parse_semver)
