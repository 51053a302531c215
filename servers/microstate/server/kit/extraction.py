"""What `microstate reconcile SLICE` needs of a slice being extracted from a monolith: one declaration.

A slice whose records also live in a monolith (issue 17) declares `Microstate.reconcile`, a `Reconcilable`:

- `binding`: how one of its stored records reads as the message its legacy adapter speaks (the message the
  SDK's Router sends to either side), and how a repair writes such a message back over a stored record,
  keeping what the message does not carry (request ids, other contract versions' fields, server times);
- `codec`: the legacy `RowCodec` the command uses unless `--codec` names another, as "module:Class" (loaded
  only when reconciling: it is client code the server does not otherwise need);
- `table` / `prefix`: the legacy SQL table and Redis key prefix the command defaults to;
- `owns`: which keys of its namespace are the monolith's records. Keys it does not own (another tool's
  records kept beside them) are never compared, deleted or written by a reconcile.

The command (reconcile_command.py) finds the declaration through the registry and opens the slice's store
as `serve` does (behind its declared schema, kit/migrations.py), so a slice needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from microstate.server.store.base import Record


class StoreBinding(Protocol):
    """How a slice's stored records read as its messages, and how a message is written back over one."""

    def to_message(self, record: Record) -> Message: ...

    def to_bytes(self, key: str, message: Message, current: Record | None) -> bytes:
        """The record to store for `message` over `current` (None: a new record), keeping what the message
        does not carry (request ids, fields of other contract versions). Raises for a message the slice
        would refuse, so a repair never stores what its servers cannot serve."""
        ...


def every_key(key: str) -> bool:
    """`Reconcilable.owns` of a slice whose every key is a record the monolith also holds."""
    return True


@dataclass(frozen=True)
class Reconcilable:
    """A slice's declaration for `microstate reconcile` (see the module docstring)."""

    binding: StoreBinding
    codec: str
    """"module:Class" of the default legacy RowCodec, e.g. the demo monolith's."""
    table: str
    """The default legacy SQL table."""
    prefix: str
    """The default legacy Redis key prefix."""
    owns: Callable[[str], bool] = every_key
    """Whether a key of the slice's namespace is one of the monolith's records."""
