"""Short builders of flags_pb2 messages for the flags tests."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from microstate.flags.v1 import flags_pb2 as f


def value(x: Any) -> struct_pb2.Value:
    """A google.protobuf.Value of a str, bool or number."""
    v = struct_pb2.Value()
    if isinstance(x, str):
        v.string_value = x
    elif isinstance(x, bool):
        v.bool_value = x
    else:
        v.number_value = x
    return v


def cond(attribute: str, operator: int, *operands: Any, negate: bool = False) -> f.Condition:
    return f.Condition(
        attribute=attribute, operator=operator, values=[value(o) for o in operands], negate=negate
    )


def split(*weights: tuple[str, int], bucket_by: str = "", salt: str | None = None) -> f.Split:
    bucketing = f.Bucketing(bucket_by=bucket_by)
    if salt is not None:
        bucketing.salt = salt
    return f.Split(bucketing=bucketing, weights=[f.SplitWeight(variant=n, weight=w) for n, w in weights])


def rollout(basis_points: int, bucket_by: str = "", salt: str | None = None) -> f.Rollout:
    bucketing = f.Bucketing(bucket_by=bucket_by)
    if salt is not None:
        bucketing.salt = salt
    return f.Rollout(bucketing=bucketing, basis_points=basis_points)


def string_flag(key: str, names: list[str], default: str = "", rules: list[f.Rule] | None = None) -> f.Flag:
    return f.Flag(
        key=key,
        type=f.VARIANT_TYPE_STRING,
        variants=[f.Variant(name=n, value=f.VariantValue(string_value=n)) for n in names],
        default_variant=default,
        rules=rules or [],
    )


COLORS = ["red", "blue", "green", "yellow"]


def header_color(default: str = "red") -> f.Flag:
    """flagd's test flag: headerColor, split 25/25/25/25 red/blue/green/yellow on the targeting key."""
    return string_flag("headerColor", COLORS, default, [f.Rule(split=split(*[(n, 25) for n in COLORS]))])
