"""The flags slice's declaration for `microstate reconcile flags` (kit/extraction.py).

A monolith's feature toggles (the demo's `feature_toggles` table, client/extraction/demo.py) become boolean
flags. The binding reads a stored flag as the `Flag` clients read, and writes a repair as the flags domain
would store it: validated by the slice's rules, etag and revision left to the record, create_time kept,
update_time now. A repair goes to the store's change log, so every server's rule set (and every SDK's
synced copy) applies it as any write.

The route flags of extractions (`route.<slice>`, client/extraction/phases.py) live in the same namespace
and are never the monolith's: the declaration does not own them, so no reconcile lists, deletes or writes
one.
"""

from __future__ import annotations

import time

from google.protobuf.message import Message

from microstate.client.extraction.phases import ROUTE_PREFIX
from microstate.flags.v1 import flags_pb2 as pb
from microstate.server.flags.domain import new_flag
from microstate.server.flags.model import FLAG, read_form
from microstate.server.kit.extraction import Reconcilable
from microstate.server.store.base import Record
from microstate.server.wellknown import timestamp


class FlagBinding:
    def to_message(self, record: Record) -> Message:
        return read_form(FLAG.from_bytes(record.value), record.revision)

    def to_bytes(self, key: str, message: Message, current: Record | None) -> bytes:
        if not isinstance(message, pb.Flag):
            raise TypeError(f"a flag repair needs a microstate.flags.v1.Flag, not {type(message)}")
        named = pb.Flag()
        named.CopyFrom(message)
        named.key = key
        # InvalidArgument: the repair fails and is reported, nothing is stored.
        flag = new_flag(named, timestamp(time.time_ns()))
        if current is not None:
            flag.create_time.CopyFrom(FLAG.from_bytes(current.value).create_time)
        return FLAG.to_bytes(flag)


def is_toggle(key: str) -> bool:
    """A monolith's toggle, not a route flag (the extraction's own state)."""
    return not key.startswith(ROUTE_PREFIX)


BINDING = FlagBinding()
RECONCILABLE = Reconcilable(
    BINDING,
    "microstate.client.extraction.demo:TogglesCodec",
    "feature_toggles",
    "toggles:",
    owns=is_toggle,
)
