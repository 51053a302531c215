"""The impact of an edit: which fraction of each rule's bucket space it moves to another variant.

Exact, by integer arithmetic over the hash space. A split with total weight T maps a hash h in [0, 2^32) to
bucket (h * T) >> 32, and bucket b belongs to variant i when bounds[i-1] <= b < bounds[i] (running sums of
the weights). Since (h * T) >> 32 >= b exactly when h * T >= b * 2^32, that is when h >= ceil(b * 2^32 / T),
variant i owns the hashes [ceil(bounds[i-1] * 2^32 / T), ceil(bounds[i] * 2^32 / T)). Laying the old and the
new split's ranges side by side and adding up the lengths where the variants differ counts the reassigned
hashes exactly; divided by 2^32 it is a double exact to 2^-32.
"""

from __future__ import annotations

from microstate.client.flags.evaluation import CompiledSplit, compile_flag
from microstate.flags.v1 import flags_pb2 as pb

SPACE = 2**32


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def hash_ranges(split: CompiledSplit) -> list[tuple[int, str]]:
    """(end, variant) per variant in order: the variant owns the hashes from the previous end (0 first) up
    to `end`, exclusive; variants of weight 0 own nothing and are left out."""
    ranges: list[tuple[int, str]] = []
    for bound, variant in zip(split.bounds, split.variants, strict=True):
        end = _ceil_div(bound * SPACE, split.total)
        if end > (ranges[-1][0] if ranges else 0):
            ranges.append((end, variant.name))
    return ranges


def reassigned_hashes(old: CompiledSplit, new: CompiledSplit) -> int:
    """How many hashes h in [0, 2^32) the two splits give different variants (same bucketing key)."""
    old_ranges, new_ranges = hash_ranges(old), hash_ranges(new)
    i = j = start = moved = 0
    while start < SPACE:
        (old_end, old_variant), (new_end, new_variant) = old_ranges[i], new_ranges[j]
        end = min(old_end, new_end)
        if old_variant != new_variant:
            moved += end - start
        start = end
        if old_end == end:
            i += 1
        if new_end == end:
            j += 1
    return moved


def impact(old: pb.Flag, new: pb.Flag) -> pb.Impact:
    """The Impact of replacing `old` by `new` (both valid): rules matched by position; a pair of splits on
    the same bucketing key (attribute and salt) reports its exact fraction; a pair of variant rules 0 or 1
    as the variant stays or changes; any other pair, and rules added or removed, 1."""
    old_splits, new_splits = compile_flag(old).splits(), compile_flag(new).splits()
    rules = []
    for index in range(max(len(old.rules), len(new.rules))):
        if index >= len(old.rules) or index >= len(new.rules):
            fraction = 1.0
        else:
            fraction = _fraction(old.rules[index], new.rules[index], old_splits[index], new_splits[index])
        rules.append(pb.RuleImpact(rule_index=index, reassigned_fraction=fraction))
    largest = max((rule.reassigned_fraction for rule in rules), default=0.0)
    return pb.Impact(rules=rules, max_reassigned_fraction=largest)


def _fraction(
    old: pb.Rule, new: pb.Rule, old_split: CompiledSplit | None, new_split: CompiledSplit | None
) -> float:
    if old_split is None and new_split is None:
        return 0.0 if old.variant == new.variant else 1.0
    if old_split is None or new_split is None:
        return 1.0
    if (old_split.bucket_by, old_split.salt) != (new_split.bucket_by, new_split.salt):
        return 1.0
    return reassigned_hashes(old_split, new_split) / SPACE
