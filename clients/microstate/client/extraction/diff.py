"""Field-by-field differences between two protobuf messages of one type, redacted, and their canonical form.

`differences(legacy, candidate, rules)` walks the descriptor: scalars compare by value (floats within
`rules.float_tolerance`), singular messages by presence then field by field, google.protobuf well-known types
as one value, repeated fields in order (or as multisets where `rules.unordered` names them), maps by key.
A difference is reported at a field path without indexes or map keys (`consents.granted`, `attributes`), so
counters per path stay bounded and a path never carries a user's data. What a difference says about the two
values is redacted: a kind, a length and a keyed digest, never the value, unless `rules.reveal` names the
path.

`canonical_bytes(message, rules)` is the message with ignored fields cleared and unordered fields sorted,
serialised deterministically: equal for two messages that compare equal (floats aside: tolerance applies
only field by field), so digests of it can stand for a record when whole key ranges are compared.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_WELL_KNOWN = "google.protobuf."
Field = Any
"""A field descriptor: to mypy the pure-Python and the upb descriptor classes are two types."""
PRESENCE = "(presence)"
"""The path of a difference in whether there is a message at all (one side answered None)."""


def _paths(given: FieldMask | Iterable[str]) -> frozenset[str]:
    return frozenset(given.paths if isinstance(given, FieldMask) else given)


@dataclass(frozen=True, slots=True)
class CompareRules:
    """How two answers of one operation are compared. Paths are dotted field names, as in a FieldMask."""

    ignore: frozenset[str] = frozenset()
    """Fields never compared (with everything under them): server-made etags, times of the answer."""
    unordered: frozenset[str] = frozenset()
    """Repeated fields compared as multisets: the two sides may list the same elements in any order."""
    float_tolerance: float = 1e-6
    """Floats match when within this, absolutely or relatively (math.isclose); NaN matches NaN."""
    reveal: frozenset[str] = frozenset()
    """Fields whose values are not personal data: their differences show the values themselves."""

    @classmethod
    def of(
        cls,
        *,
        ignore: FieldMask | Iterable[str] = (),
        unordered: FieldMask | Iterable[str] = (),
        float_tolerance: float = 1e-6,
        reveal: FieldMask | Iterable[str] = (),
    ) -> CompareRules:
        """Rules from field masks or iterables of paths."""
        if float_tolerance < 0:
            raise ValueError(f"float_tolerance must be >= 0, not {float_tolerance}")
        return cls(_paths(ignore), _paths(unordered), float_tolerance, _paths(reveal))

    def ignored(self, path: str) -> bool:
        return path in self.ignore or any(path.startswith(f"{p}.") for p in self.ignore)


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field that differs, described without the values (unless revealed)."""

    path: str
    legacy: str
    candidate: str


@dataclass(slots=True)
class _Walk:
    rules: CompareRules
    key: bytes
    found: dict[str, FieldDiff] = field(default_factory=dict)

    def add(self, path: str, legacy: str, candidate: str) -> None:
        self.found.setdefault(path, FieldDiff(path, legacy, candidate))

    def describe(self, path: str, fd: Field, value: Any) -> str:
        """What may be said about one value: its kind and size and a keyed digest; the value if revealed."""
        if path in self.rules.reveal:
            return repr(value)[:80]
        if fd.type == FieldDescriptor.TYPE_ENUM:  # enum names are the schema's, not a user's
            number = fd.enum_type.values_by_number.get(value)
            return number.name if number is not None else str(value)
        if isinstance(value, Message):
            raw = value.SerializeToString(deterministic=True)
            return f"{value.DESCRIPTOR.name}#{self.digest(raw)}"
        if isinstance(value, str):
            return f"str[{len(value)}]#{self.digest(value.encode())}"
        if isinstance(value, bytes):
            return f"bytes[{len(value)}]#{self.digest(value)}"
        return f"{type(value).__name__}#{self.digest(repr(value).encode())}"

    def digest(self, raw: bytes) -> str:
        return hmac.new(self.key, raw, hashlib.sha256).hexdigest()[:8]

    def messages(self, legacy: Message, candidate: Message, prefix: str) -> None:
        for fd in legacy.DESCRIPTOR.fields:
            path = prefix + fd.name
            if self.rules.ignored(path):
                continue
            if _is_map(fd):
                self.maps(path, fd, getattr(legacy, fd.name), getattr(candidate, fd.name))
            elif fd.is_repeated:
                self.repeated(path, fd, list(getattr(legacy, fd.name)), list(getattr(candidate, fd.name)))
            elif fd.message_type is not None:
                present = (legacy.HasField(fd.name), candidate.HasField(fd.name))
                if present == (False, False):
                    continue
                if present != (True, True):
                    self.add(path, _presence(present[0]), _presence(present[1]))
                else:
                    self.value(path, fd, getattr(legacy, fd.name), getattr(candidate, fd.name))
            else:
                self.value(path, fd, getattr(legacy, fd.name), getattr(candidate, fd.name))

    def value(self, path: str, fd: Field, legacy: Any, candidate: Any) -> None:
        """One element: recursing into messages (but not well-known types, which are values)."""
        if _nested(fd):
            self.messages(legacy, candidate, f"{path}.")
        elif not self.equal(fd, legacy, candidate):
            self.add(path, self.describe(path, fd, legacy), self.describe(path, fd, candidate))

    def equal(self, fd: Field, legacy: Any, candidate: Any) -> bool:
        if fd.type in _FLOATS:
            return _close(legacy, candidate, self.rules.float_tolerance)
        if isinstance(legacy, Message) and _floating_wrapper(legacy.DESCRIPTOR):
            return _close(legacy.value, candidate.value, self.rules.float_tolerance)  # type: ignore[attr-defined]
        return bool(legacy == candidate)

    def repeated(self, path: str, fd: Field, legacy: list[Any], candidate: list[Any]) -> None:
        if len(legacy) != len(candidate):
            self.add(path, f"{len(legacy)} elements", f"{len(candidate)} elements")
            return
        if path in self.rules.unordered:
            legacy, candidate = _sorted(fd, legacy, self.rules), _sorted(fd, candidate, self.rules)
        if _nested(fd):
            for one, other in zip(legacy, candidate, strict=True):
                self.messages(one, other, f"{path}.")
            return
        differing = sum(not self.equal(fd, a, b) for a, b in zip(legacy, candidate, strict=True))
        if differing:
            self.add(path, f"{differing} of {len(legacy)} differ", f"{differing} of {len(legacy)} differ")

    def maps(self, path: str, fd: Field, legacy: Any, candidate: Any) -> None:
        value_fd = fd.message_type.fields_by_name["value"]
        only_legacy = len(legacy.keys() - candidate.keys())
        only_candidate = len(candidate.keys() - legacy.keys())
        inner = _Walk(self.rules, self.key)
        changed = 0
        for key in legacy.keys() & candidate.keys():
            before = len(inner.found)
            inner.value(path, value_fd, legacy[key], candidate[key])
            changed += len(inner.found) > before
            inner.found.clear()
        if only_legacy or only_candidate or changed:
            self.add(
                path,
                f"{len(legacy)} keys, {only_legacy} only here, {changed} changed",
                f"{len(candidate)} keys, {only_candidate} only here, {changed} changed",
            )


def _is_map(fd: Field) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _nested(fd: Field) -> bool:
    """A field whose values are messages compared field by field (not maps, not well-known types)."""
    kind = fd.message_type
    return kind is not None and not kind.GetOptions().map_entry and not kind.full_name.startswith(_WELL_KNOWN)


def _presence(present: bool) -> str:
    return "set" if present else "absent"


def _floating_wrapper(descriptor: Any) -> bool:
    return descriptor.full_name in ("google.protobuf.FloatValue", "google.protobuf.DoubleValue")


def _close(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def _sorted(fd: Field, values: list[Any], rules: CompareRules) -> list[Any]:
    if fd.message_type is None:
        return sorted(values)
    return sorted(values, key=lambda element: canonical_bytes(element, rules))


def differences(
    legacy: Message | None, candidate: Message | None, rules: CompareRules, *, key: bytes = b""
) -> list[FieldDiff]:
    """The fields in which `candidate` differs from `legacy` (None: no answer), in descriptor order.

    `key` keys the digests in the descriptions, so that someone holding only the diffs cannot test
    guesses of a short value against them."""
    if legacy is None or candidate is None:
        if legacy is None and candidate is None:
            return []
        return [FieldDiff(PRESENCE, _presence(legacy is not None), _presence(candidate is not None))]
    if legacy.DESCRIPTOR.full_name != candidate.DESCRIPTOR.full_name:
        raise TypeError(f"cannot compare {legacy.DESCRIPTOR.full_name} with {candidate.DESCRIPTOR.full_name}")
    walk = _Walk(rules, key)
    walk.messages(legacy, candidate, "")
    return list(walk.found.values())


def canonical_bytes(message: Message, rules: CompareRules) -> bytes:
    """`message` without its ignored fields, its unordered fields sorted, serialised deterministically."""
    if not rules.ignore and not rules.unordered:
        return message.SerializeToString(deterministic=True)
    copy = type(message)()
    copy.CopyFrom(message)
    _canonicalise(copy, "", rules)
    return copy.SerializeToString(deterministic=True)


def _canonicalise(message: Message, prefix: str, rules: CompareRules) -> None:
    for fd, value in message.ListFields():
        path = prefix + fd.name
        if rules.ignored(path):
            message.ClearField(fd.name)
            continue
        elements: Sequence[Any] = value if fd.is_repeated else [value]
        if _nested(fd):
            for element in elements:
                _canonicalise(element, f"{path}.", rules)
        if fd.is_repeated and path in rules.unordered:
            ordered = _sorted(fd, list(value), rules)
            message.ClearField(fd.name)
            getattr(message, fd.name).extend(ordered)
