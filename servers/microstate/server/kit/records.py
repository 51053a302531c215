"""A slice's stored dataclass <-> its storage message, field by field by name.

Each slice keeps its state as a frozen dataclass and stores it as a protobuf message of its own (proto/
microstate/<slice>/storage/): most fields have the same name and meaning on both sides, so they are copied
here; a slice passes only the fields that need a conversion (packed floats, nested records, enums).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

D = TypeVar("D")
M = TypeVar("M", bound=Message)

_PLAIN, _REPEATED, _MAP = range(3)


_SHARED: dict[tuple[type[Any], object], tuple[tuple[str, int], ...]] = {}


def _shared_fields(data_type: type[Any], descriptor: Any) -> tuple[tuple[str, int], ...]:
    """The fields both have, each with how a message holds it (worked out once per pair of types).
    `descriptor` is Any: protobuf's stubs give a message's DESCRIPTOR two classes (pure Python or upb)."""
    shared = _SHARED.get((data_type, descriptor))
    if shared is None:
        shared = _SHARED[data_type, descriptor] = tuple(
            (field.name, _kind(descriptor.fields_by_name[field.name]))
            for field in dataclasses.fields(data_type)
            if field.name in descriptor.fields_by_name
        )
    return shared


def _kind(field: FieldDescriptor) -> int:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return _MAP
    return _REPEATED if field.is_repeated else _PLAIN


def to_message(value: Any, message_type: type[M], **special: Any) -> M:
    """A `message_type` holding every field of dataclass `value` it has by name; `special` gives (converted)
    the fields it must not copy as they are."""
    names = _shared_fields(type(value), message_type.DESCRIPTOR)
    copied = {name: getattr(value, name) for name, _ in names if name not in special}
    return message_type(**copied, **special)


def from_message(message: Message, data_type: type[D], **special: Any) -> D:
    """A `data_type` (dataclass) from `message`: its fields of the same names copied (repeated ones as tuples,
    maps as dicts); `special` gives the fields that need a conversion."""
    values = dict(special)
    for name, kind in _shared_fields(data_type, message.DESCRIPTOR):
        if name in special:
            continue
        held = getattr(message, name)
        values[name] = held if kind == _PLAIN else tuple(held) if kind == _REPEATED else dict(held)
    return data_type(**values)
