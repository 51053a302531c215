"""Hypothesis strategies for any protobuf request, built from its message descriptor alone.

Nothing here knows a microstate. A request is drawn either *tame* (every field unset or plausible: short
identifiers, small numbers, known enum values, valid timestamps), which gets past the first validation to
the rules and the store behind it, or *wild*, where each field may instead take an edge of its type: extreme
integers, NaN and infinities, huge and odd unicode strings, unknown enum numbers, absurd repeat counts,
Timestamps beyond year 9999, nanos out of range, junk FieldMask paths. Strings are drawn in part from
`hints`: the names the contract itself uses (field paths, enum names) and values harvested from the
server's earlier answers (ids, etags, tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
INTEGERS = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
}
MAX_DEPTH = 4
"""Nested messages deeper than this are left unset (recursive types would never end)."""
SMALL_LIST = 4
"""Repeated fields hold up to this many independently drawn elements, or an absurd count of one element.

A `small` value (an element of a repeated field, a map entry) holds no huge strings and no absurd counts,
so sizes multiply only once: a request stays within a few megabytes however the choices combine."""
HUGE_SIZES = (129, 257, 1_025, 4_097, 65_537, 1_048_577)
"""String and bytes lengths just past common limits, and one past a mebibyte."""
ABSURD_COUNTS = (999, 1_000, 1_001, 4_096, 4_097, 100_000)
"""Repeat counts around common limits and far beyond them."""
ABSURD_MESSAGE_COUNTS = ABSURD_COUNTS[:3]
ODD_TEXT = (
    "\x00",
    " ",
    "\t\n",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "a\u0301",
    "💥",
    "\uff21",  # a fullwidth A
    "..",
    "/",
    "%",
    "*",
    "'\"",
    "-",
    "_",
)
IDENTIFIER = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,15}"
"""What a plausible id, name or tag looks like."""

# The valid ranges of google.protobuf.Timestamp (years 0001..9999) and Duration (±10,000 years).
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MAX_DURATION_SECONDS = 315_576_000_000
NANOS_EDGES = (0, 1, 999_999_999, 1_000_000_000, -1, -999_999_999, -1_000_000_000, *INT32)


def requests(descriptor: Descriptor, hints: Iterable[str]) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type, tame or wild (see the module docstring)."""
    strategies = RequestStrategies(hints)
    return st.one_of(strategies.message(descriptor, tame=True), strategies.message(descriptor, tame=False))


def edges(low: int, high: int, *inner: int) -> st.SearchStrategy[int]:
    """Integers in [low, high], with the bounds, 0, ±1 and `inner` (those in range) often among them."""
    special = sorted({value for value in (low, high, 0, 1, -1, *inner) if low <= value <= high})
    return st.one_of(st.sampled_from(special), st.integers(low, high))


def huge_text() -> st.SearchStrategy[str]:
    pieces = st.sampled_from(["x", "é", "💥", "a."])
    return st.builds(lambda piece, size: (piece * size)[:size], pieces, st.sampled_from(HUGE_SIZES))


def _bend(hint: str, odd: str, how: int) -> str:
    """A near miss of a valid value: cut short, an odd character added, doubled, or a character changed."""
    if how == 0:
        return hint[: len(hint) // 2]
    if how == 1:
        return hint + odd
    if how == 2:
        return hint + hint
    return odd + hint[1:]


def _repeat(element: st.SearchStrategy[Any], counts: Iterable[int]) -> st.SearchStrategy[list[Any]]:
    return st.builds(lambda one, count: [one] * count, element, st.sampled_from(tuple(counts)))


class RequestStrategies:
    """Strategies for the messages under one request type; `hints` feed string fields (see module doc)."""

    def __init__(self, hints: Iterable[str]) -> None:
        self.hints = sorted(set(hints))
        self._cache: dict[tuple[str, int, bool, bool], st.SearchStrategy[Any]] = {}

    def message(
        self, descriptor: Descriptor, *, tame: bool, depth: int = 0, small: bool = False
    ) -> st.SearchStrategy[Any]:
        """Messages of `descriptor`'s type: every field unset or drawn from its strategy."""
        key = (descriptor.full_name, depth, small, tame)
        if key not in self._cache:
            self._cache[key] = self._build(descriptor, depth, small, tame)
        return self._cache[key]

    def _build(self, descriptor: Descriptor, depth: int, small: bool, tame: bool) -> st.SearchStrategy[Any]:
        well_known = WELL_KNOWN.get(descriptor.full_name)
        if well_known is not None:
            return well_known(self, descriptor, tame)
        cls = message_factory.GetMessageClass(descriptor)
        if depth >= MAX_DEPTH:
            return st.just(cls())
        fields = {
            field.name: st.one_of(st.none(), self.field(field, depth=depth, small=small, tame=tame))
            for field in descriptor.fields
        }
        return st.fixed_dictionaries(fields).map(lambda values: _fill(cls(), descriptor, values))

    def field(self, field: FieldDescriptor, *, depth: int, small: bool, tame: bool) -> st.SearchStrategy[Any]:
        """A value for `field`: in a wild message, tame values stay likely, so one odd field is tried
        against otherwise plausible neighbours."""
        plausible = self._field(field, depth=depth, small=small, tame=True)
        if tame:
            return plausible
        return st.one_of(plausible, self._field(field, depth=depth, small=small, tame=False))

    def _field(
        self, field: FieldDescriptor, *, depth: int, small: bool, tame: bool
    ) -> st.SearchStrategy[Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = field.message_type.fields_by_name["key"]
            value = field.message_type.fields_by_name["value"]
            entries = st.dictionaries(
                self.single(key, depth=depth, small=True, tame=tame),
                self.single(value, depth=depth, small=small, tame=tame),
                max_size=SMALL_LIST,
            )
            if tame or small or key.type != FieldDescriptor.TYPE_STRING:
                return entries
            return st.one_of(entries, self._absurd_map(key, value, depth))
        if field.is_repeated:
            # Huge elements only in short lists of scalars, absurd counts only of small elements.
            few = self.single(field, depth=depth, small=small or field.message_type is not None, tame=tame)
            lists = st.lists(few, max_size=SMALL_LIST)
            if tame or small:
                return lists
            counts = ABSURD_COUNTS if field.message_type is None else ABSURD_MESSAGE_COUNTS
            return st.one_of(lists, _repeat(self.single(field, depth=depth, small=True, tame=tame), counts))
        return self.single(field, depth=depth, small=small, tame=tame)

    def _absurd_map(self, key: FieldDescriptor, value: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        """A string-keyed map with an absurd number of distinct entries, keys derived from one drawn key."""

        def entries(prefix: str, one: Any, count: int) -> dict[str, Any]:
            return {f"{prefix}{number}": one for number in range(count)}

        return st.builds(
            entries,
            self.single(key, depth=depth, small=True, tame=False),
            self.single(value, depth=depth, small=True, tame=False),
            st.sampled_from(ABSURD_MESSAGE_COUNTS),
        )

    def single(
        self, field: FieldDescriptor, *, depth: int, small: bool, tame: bool
    ) -> st.SearchStrategy[Any]:
        """One value of `field`'s type (an element, when the field is repeated)."""
        kind = field.type
        if field.message_type is not None:  # TYPE_MESSAGE or TYPE_GROUP
            return self.message(field.message_type, depth=depth + 1, small=small, tame=tame)
        if kind == FieldDescriptor.TYPE_STRING:
            return self.text(small=small, tame=tame)
        if kind == FieldDescriptor.TYPE_BYTES:
            return binary(small=small, tame=tame)
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return floats(field, tame=tame)
        if field.enum_type is not None:
            known = sorted(value.number for value in field.enum_type.values)
            if tame:
                return st.sampled_from(known)
            return st.one_of(st.sampled_from(known), edges(*INT32, max(known) + 1))  # open enums: any int32
        low, high = INTEGERS[kind]
        if tame:
            return st.integers(max(low, -10), 1_000)
        return edges(low, high)

    def text(self, *, small: bool, tame: bool) -> st.SearchStrategy[str]:
        """Unicode text (protobuf cannot carry lone surrogates; invalid UTF-8 comes from mutations.py)."""
        identifiers = st.from_regex(IDENTIFIER, fullmatch=True)
        hinted = st.sampled_from(self.hints) if self.hints else identifiers
        if tame:
            return st.one_of(hinted, hinted, identifiers)
        odd = st.sampled_from(ODD_TEXT)
        choices = [
            st.text(max_size=40),
            odd,
            st.lists(odd, max_size=8).map("".join),
            st.builds(_bend, hinted, odd, st.integers(0, 3)),
        ]
        if not small:
            choices.append(huge_text())
        return st.one_of(choices)


def binary(*, small: bool, tame: bool) -> st.SearchStrategy[bytes]:
    if tame:
        return st.binary(max_size=16)
    choices = [st.binary(max_size=64)]
    if not small:
        choices.append(st.builds(lambda size: b"\xff" * size, st.sampled_from(HUGE_SIZES)))
    return st.one_of(choices)


def floats(field: FieldDescriptor, *, tame: bool) -> st.SearchStrategy[float]:
    width: Literal[32, 64] = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
    if tame:
        return st.floats(-1_000, 1_000, width=width)
    extremes = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308]
    if width == 32:
        extremes += [3.4028234663852886e38, 1.401298464324817e-45]
    return st.one_of(st.sampled_from(extremes), st.floats(width=width))


def _fill(message: Message, descriptor: Descriptor, values: dict[str, Any]) -> Message:
    """Set the drawn `values` (None: leave unset) on `message`."""
    for name, value in values.items():
        if value is None:
            continue
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is None:
                target.update(value)
            else:
                for key, entry in value.items():
                    target[key].CopyFrom(entry)
        elif field.is_repeated:
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def field_paths(descriptor: Descriptor, *, depth: int = MAX_DEPTH) -> set[str]:
    """Every dotted field path of `descriptor` and of each message under it, relative to each
    (what an update_mask may name, whichever message it is relative to)."""
    paths: set[str] = set()
    seen: set[str] = set()

    def walk(message: Descriptor, level: int) -> set[str]:
        own: set[str] = set()
        for field in message.fields:
            own.add(field.name)
            if field.message_type is not None and level < depth:
                own |= {f"{field.name}.{path}" for path in walk(field.message_type, level + 1)}
        if message.full_name not in seen:
            seen.add(message.full_name)
            paths.update(own)
        return own

    walk(descriptor, 0)
    return paths


def contract_hints(descriptor: Descriptor) -> set[str]:
    """Names the contract uses under `descriptor`: field paths, enum value names, and `*`."""
    hints = field_paths(descriptor) | {"*"}
    pending, seen = [descriptor], set()
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        for field in message.fields:
            if field.enum_type is not None:
                hints.update(value.name for value in field.enum_type.values)
            if field.message_type is not None:
                pending.append(field.message_type)
    return hints


def _timestamp(strategies: RequestStrategies, descriptor: Descriptor, tame: bool) -> st.SearchStrategy[Any]:
    if tame:  # 1970..2100
        return _seconds_and_nanos(descriptor, st.integers(0, 4_102_444_800), st.integers(0, 999_999_999))
    bound = MAX_TIMESTAMP_SECONDS
    seconds = edges(*INT64, bound, bound + 1, MIN_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS - 1, -bound - 1)
    return _seconds_and_nanos(descriptor, seconds, _wild_nanos())


def _duration(strategies: RequestStrategies, descriptor: Descriptor, tame: bool) -> st.SearchStrategy[Any]:
    if tame:
        return _seconds_and_nanos(descriptor, st.integers(0, 86_400), st.integers(0, 999_999_999))
    bound = MAX_DURATION_SECONDS
    return _seconds_and_nanos(descriptor, edges(*INT64, bound, bound + 1, -bound, -bound - 1), _wild_nanos())


def _wild_nanos() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(NANOS_EDGES), edges(*INT32))


def _seconds_and_nanos(
    descriptor: Descriptor, seconds: st.SearchStrategy[int], nanos: st.SearchStrategy[int]
) -> st.SearchStrategy[Any]:
    cls = message_factory.GetMessageClass(descriptor)
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


def _field_mask(strategies: RequestStrategies, descriptor: Descriptor, tame: bool) -> st.SearchStrategy[Any]:
    cls = message_factory.GetMessageClass(descriptor)
    path = strategies.text(small=True, tame=True)
    if tame:
        return st.lists(path, max_size=SMALL_LIST).map(lambda drawn: cls(paths=drawn))
    junk = st.sampled_from(["", ".", "..", "a..b", ".x", "x.", "*.*", "**", "paths", "0"])
    odd = st.one_of(path, junk, strategies.text(small=True, tame=False))
    paths = st.one_of(st.lists(st.one_of(odd, huge_text()), max_size=SMALL_LIST), _repeat(odd, ABSURD_COUNTS))
    return paths.map(lambda drawn: cls(paths=drawn))


WELL_KNOWN: dict[str, Callable[[RequestStrategies, Descriptor, bool], st.SearchStrategy[Any]]] = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Duration": _duration,
    "google.protobuf.FieldMask": _field_mask,
}
"""Well-known types whose edges matter more than their generic shape."""
