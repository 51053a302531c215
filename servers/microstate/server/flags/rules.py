"""The flags microstate's rules: what a valid flag is, checked when it is written and never at evaluation.

`check_flag` collects every violation of the limits and rules in flags.proto, each naming its field
(`flag.rules[2].split.weights[0].variant`), and raises one INVALID_ARGUMENT with all of them, so an operator
fixes a flag in one round. A flag that passes compiles and evaluates without error (the shared evaluator).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final

from google.protobuf import struct_pb2

from microstate.client.flags.evaluation import parse_semver, rollout_salt, split_salt
from microstate.flags.v1 import flags_pb2 as pb
from microstate.server.errors import InvalidArgument
from microstate.server.kit import limits

KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
KEY_RULE: Final = "1 to 128 letters, digits, '.', '_' or '-', the first a letter or digit"
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE: Final = "1 to 64 letters, digits, '.', '_' or '-', the first a letter or digit"
MAX_VARIANTS: Final = 64
MAX_RULES: Final = 64
MAX_CONDITIONS: Final = 16
MAX_IN_VALUES: Final = 1_000
MAX_VALUE_BYTES: Final = 16 * 1024
MAX_ATTRIBUTE_BYTES: Final = 128
MAX_SALT_BYTES: Final = 1024
MAX_METADATA: Final = 32
MAX_METADATA_VALUE_BYTES: Final = 1024
MAX_DESCRIPTION_BYTES: Final = 1024
MAX_RULE_DESCRIPTION_BYTES: Final = 256
MAX_TOTAL_WEIGHT: Final = 2**31 - 1
MAX_BASIS_POINTS: Final = 10_000
MAX_FLAG_BYTES: Final = 1024 * 1024
"""A flag's encoded size: one flag always fits in one SyncFlags message of about 1 MiB."""
MAX_TARGETING_KEY_BYTES: Final = 1024
MAX_ATTRIBUTES_BYTES: Final = 256 * 1024
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1_000

TYPES: Final = {
    pb.VARIANT_TYPE_BOOL: "bool_value",
    pb.VARIANT_TYPE_STRING: "string_value",
    pb.VARIANT_TYPE_NUMBER: "number_value",
    pb.VARIANT_TYPE_OBJECT: "object_value",
}
WRITABLE: Final = ("state", "type", "variants", "default_variant", "rules", "metadata", "description")
"""The fields an update_mask may name; an empty mask means all of them."""

_ONE = "one"
_SOME = "one or more"
_NONE = "none"
# Each operator: how many operands it takes and of which kinds (google.protobuf.Value kinds).
_OPERANDS: Final[dict[int, tuple[str, frozenset[str]]]] = {
    pb.OPERATOR_EQUALS: (_ONE, frozenset({"string_value", "number_value", "bool_value"})),
    pb.OPERATOR_IN: (_SOME, frozenset({"string_value", "number_value"})),
    pb.OPERATOR_STARTS_WITH: (_SOME, frozenset({"string_value"})),
    pb.OPERATOR_ENDS_WITH: (_SOME, frozenset({"string_value"})),
    pb.OPERATOR_LESS_THAN: (_ONE, frozenset({"number_value"})),
    pb.OPERATOR_LESS_THAN_OR_EQUAL: (_ONE, frozenset({"number_value"})),
    pb.OPERATOR_GREATER_THAN: (_ONE, frozenset({"number_value"})),
    pb.OPERATOR_GREATER_THAN_OR_EQUAL: (_ONE, frozenset({"number_value"})),
    pb.OPERATOR_SEMVER_EQUAL: (_ONE, frozenset({"string_value"})),
    pb.OPERATOR_SEMVER_LESS_THAN: (_ONE, frozenset({"string_value"})),
    pb.OPERATOR_SEMVER_LESS_THAN_OR_EQUAL: (_ONE, frozenset({"string_value"})),
    pb.OPERATOR_SEMVER_GREATER_THAN: (_ONE, frozenset({"string_value"})),
    pb.OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL: (_ONE, frozenset({"string_value"})),
    pb.OPERATOR_EXISTS: (_NONE, frozenset()),
}
_SEMVER_OPERATORS: Final = frozenset(
    {
        pb.OPERATOR_SEMVER_EQUAL,
        pb.OPERATOR_SEMVER_LESS_THAN,
        pb.OPERATOR_SEMVER_LESS_THAN_OR_EQUAL,
        pb.OPERATOR_SEMVER_GREATER_THAN,
        pb.OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL,
    }
)


def check_key(key: str, field: str = "key") -> None:
    limits.check_form(key, KEY, field, KEY_RULE)


def page_size_of(requested: int) -> int:
    return limits.page_size_of(requested, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class _Violations:
    """Violations collected while checking one flag, each (field path, description)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.found: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.found.append((f"{self.prefix}.{field}", description))


def check_flag(flag: pb.Flag, prefix: str = "flag") -> None:
    """INVALID_ARGUMENT naming every field of `flag` that breaks a rule or limit of flags.proto."""
    found = _Violations(prefix)
    if not KEY.fullmatch(flag.key):
        found.add("key", f"{limits.shown(flag.key)} is not valid: {KEY_RULE}")
    if flag.state not in (pb.FLAG_STATE_UNSPECIFIED, pb.FLAG_STATE_ENABLED, pb.FLAG_STATE_DISABLED):
        found.add("state", f"{flag.state} is not a FlagState")
    names = _check_variants(flag, found)
    if flag.default_variant and flag.default_variant not in names:
        found.add("default_variant", f"{limits.shown(flag.default_variant)} is not a variant of the flag")
    if len(flag.rules) > MAX_RULES:
        found.add("rules", f"{len(flag.rules)} rules; at most {MAX_RULES}")
    for index, rule in enumerate(flag.rules):
        _check_rule(flag.key, rule, f"rules[{index}]", names, found)
    _check_metadata(flag, found)
    if _size(flag.description) > MAX_DESCRIPTION_BYTES:
        found.add("description", f"at most {MAX_DESCRIPTION_BYTES} bytes")
    if not found.found and flag.ByteSize() > MAX_FLAG_BYTES:
        found.found.append((prefix, f"takes {flag.ByteSize()} bytes encoded; at most {MAX_FLAG_BYTES}"))
    if found.found:
        raise InvalidArgument.of(found.found, reason="INVALID_FLAG")


def _check_variants(flag: pb.Flag, found: _Violations) -> set[str]:
    kind = TYPES.get(flag.type)
    if kind is None:
        found.add("type", "required: VARIANT_TYPE_BOOL, _STRING, _NUMBER or _OBJECT")
    if not 1 <= len(flag.variants) <= MAX_VARIANTS:
        found.add("variants", f"{len(flag.variants)} variants; 1 to {MAX_VARIANTS}")
    names: set[str] = set()
    for index, variant in enumerate(flag.variants):
        field = f"variants[{index}]"
        if not NAME.fullmatch(variant.name):
            found.add(f"{field}.name", f"{limits.shown(variant.name)} is not valid: {NAME_RULE}")
        elif variant.name in names:
            found.add(f"{field}.name", f"{limits.shown(variant.name)} is not unique")
        names.add(variant.name)
        value = variant.value
        has = value.WhichOneof("kind")
        if has is None:
            found.add(f"{field}.value", "required")
        elif kind is not None and has != kind:
            found.add(f"{field}.value", f"a {has} in a flag of {pb.VariantType.Name(flag.type)}")
        elif has == "string_value" and _size(value.string_value) > MAX_VALUE_BYTES:
            found.add(f"{field}.value.string_value", f"at most {MAX_VALUE_BYTES} bytes")
        elif has == "number_value" and not math.isfinite(value.number_value):
            found.add(f"{field}.value.number_value", "must be finite")
        elif has == "object_value" and value.object_value.ByteSize() > MAX_VALUE_BYTES:
            found.add(f"{field}.value.object_value", f"at most {MAX_VALUE_BYTES} bytes encoded")
        elif has == "object_value" and not _json_numbers(value.object_value):
            found.add(f"{field}.value.object_value", "numbers must be finite (it must be valid JSON)")
    return names


def _json_numbers(struct: struct_pb2.Struct) -> bool:
    """Whether every number in `struct`, at any depth, is finite (so the value is valid JSON)."""
    pending: list[struct_pb2.Value] = list(struct.fields.values())
    while pending:
        value = pending.pop()
        kind = value.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(value.number_value):
            return False
        if kind == "struct_value":
            pending.extend(value.struct_value.fields.values())
        elif kind == "list_value":
            pending.extend(value.list_value.values)
    return True


def _check_rule(flag_key: str, rule: pb.Rule, field: str, names: set[str], found: _Violations) -> None:
    if len(rule.conditions) > MAX_CONDITIONS:
        found.add(f"{field}.conditions", f"{len(rule.conditions)} conditions; at most {MAX_CONDITIONS}")
    for index, condition in enumerate(rule.conditions):
        _check_condition(condition, f"{field}.conditions[{index}]", found)
    outcome = rule.WhichOneof("outcome")
    if outcome is None:
        found.add(f"{field}.outcome", "a rule needs a variant or a split")
    elif outcome == "variant" and rule.variant not in names:
        found.add(f"{field}.variant", f"{limits.shown(rule.variant)} is not a variant of the flag")
    elif outcome == "split":
        _check_split(rule.split, f"{field}.split", names, found)
    if rule.HasField("rollout"):
        _check_bucketing(rule.rollout.bucketing, f"{field}.rollout.bucketing", found)
        if rule.rollout.basis_points > MAX_BASIS_POINTS:
            found.add(
                f"{field}.rollout.basis_points", f"{rule.rollout.basis_points}; at most {MAX_BASIS_POINTS}"
            )
        if outcome == "split" and _same_hash(flag_key, rule):
            found.add(
                f"{field}.rollout.bucketing.salt",
                "the rollout gate and the split hash the same value with the same salt, so the gate would"
                " admit whole variant groups; give the gate another salt",
            )
    if _size(rule.description) > MAX_RULE_DESCRIPTION_BYTES:
        found.add(f"{field}.description", f"at most {MAX_RULE_DESCRIPTION_BYTES} bytes")


def _same_hash(flag_key: str, rule: pb.Rule) -> bool:
    gate, split = rule.rollout.bucketing, rule.split.bucketing
    return gate.bucket_by == split.bucket_by and rollout_salt(flag_key, gate) == split_salt(flag_key, split)


def _check_split(split: pb.Split, field: str, names: set[str], found: _Violations) -> None:
    _check_bucketing(split.bucketing, f"{field}.bucketing", found)
    if not split.weights:
        found.add(f"{field}.weights", "at least one variant")
    seen: set[str] = set()
    total = 0
    for index, weight in enumerate(split.weights):
        if weight.variant not in names:
            found.add(
                f"{field}.weights[{index}].variant",
                f"{limits.shown(weight.variant)} is not a variant of the flag",
            )
        elif weight.variant in seen:
            found.add(f"{field}.weights[{index}].variant", f"{limits.shown(weight.variant)} appears twice")
        seen.add(weight.variant)
        total += weight.weight
    if split.weights and not 0 < total <= MAX_TOTAL_WEIGHT:
        found.add(f"{field}.weights", f"the total weight is {total}; it must be 1 to 2^31 - 1")


def _check_bucketing(bucketing: pb.Bucketing, field: str, found: _Violations) -> None:
    if _size(bucketing.bucket_by) > MAX_ATTRIBUTE_BYTES:
        found.add(f"{field}.bucket_by", f"at most {MAX_ATTRIBUTE_BYTES} bytes")
    if _size(bucketing.salt) > MAX_SALT_BYTES:
        found.add(f"{field}.salt", f"at most {MAX_SALT_BYTES} bytes")


def _check_condition(condition: pb.Condition, field: str, found: _Violations) -> None:
    if not 0 < _size(condition.attribute) <= MAX_ATTRIBUTE_BYTES:
        found.add(f"{field}.attribute", f"1 to {MAX_ATTRIBUTE_BYTES} bytes")
    spec = _OPERANDS.get(condition.operator)
    if spec is None:
        found.add(f"{field}.operator", f"{condition.operator} is not an operator")
        return
    count, kinds = spec
    values = condition.values
    wanted = {_ONE: len(values) == 1, _SOME: len(values) >= 1, _NONE: not values}[count]
    if not wanted:
        found.add(
            f"{field}.values",
            f"{pb.Operator.Name(condition.operator)} takes {count} value(s), not {len(values)}",
        )
    if condition.operator == pb.OPERATOR_IN and len(values) > MAX_IN_VALUES:
        found.add(f"{field}.values", f"{len(values)} values; at most {MAX_IN_VALUES}")
    for index, value in _bad_operands(values, kinds):
        found.add(f"{field}.values[{index}]", f"{pb.Operator.Name(condition.operator)} does not take {value}")
    if condition.operator in _SEMVER_OPERATORS:
        for index, operand in enumerate(values):
            if operand.WhichOneof("kind") == "string_value" and parse_semver(operand.string_value) is None:
                found.add(
                    f"{field}.values[{index}]",
                    f"{limits.shown(operand.string_value)} is not a semantic version",
                )


def _bad_operands(values: Iterable[struct_pb2.Value], kinds: frozenset[str]) -> Iterable[tuple[int, str]]:
    for index, value in enumerate(values):
        kind = value.WhichOneof("kind")
        if kind not in kinds:
            yield index, (kind or "an unset value")
        elif kind == "number_value" and not math.isfinite(value.number_value):
            yield index, "a number that is not finite"


def _check_metadata(flag: pb.Flag, found: _Violations) -> None:
    if len(flag.metadata) > MAX_METADATA:
        found.add("metadata", f"{len(flag.metadata)} entries; at most {MAX_METADATA}")
    for key, value in flag.metadata.items():
        if not NAME.fullmatch(key):
            found.add(f"metadata[{limits.shown(key)}]", f"keys: {NAME_RULE}")
        elif _size(value) > MAX_METADATA_VALUE_BYTES:
            found.add(
                f"metadata[{limits.shown(key)}]", f"values are at most {MAX_METADATA_VALUE_BYTES} bytes"
            )


def masked_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """The fields an AIP-134 update_mask names (all writable ones when empty); unknown ones are
    INVALID_ARGUMENT."""
    named = tuple(paths)
    if not named or named == ("*",):
        return WRITABLE
    unknown = [path for path in named if path not in WRITABLE]
    if unknown:
        raise InvalidArgument(
            "update_mask", f"unknown path {limits.shown(unknown[0])}; paths: {', '.join(WRITABLE)}"
        )
    return named


def check_context(context: pb.EvaluationContext, field: str = "context") -> None:
    if _size(context.targeting_key) > MAX_TARGETING_KEY_BYTES:
        raise InvalidArgument(f"{field}.targeting_key", f"at most {MAX_TARGETING_KEY_BYTES} bytes")
    if context.attributes.ByteSize() > MAX_ATTRIBUTES_BYTES:
        raise InvalidArgument(f"{field}.attributes", f"at most {MAX_ATTRIBUTES_BYTES} bytes encoded")


__all__ = ["check_context", "check_flag", "check_key", "masked_paths", "page_size_of"]
