"""What the flags microstate stores: one record per flag, under the flag's key, in the flags namespace.

The value is the `microstate.flags.v1.Flag` message itself (its wire form is kept compatible by `buf
breaking`), with create_time and update_time set and etag and revision left empty: both come from the
record's revision, which is also the rule set revision of the flag's last change (the store's revisions
increase strictly across the namespace, so the namespace's head is the rule set revision).
"""

from __future__ import annotations

from microstate.flags.v1 import flags_pb2
from microstate.server.kit.resources import Kind, Stored, etag_of


def _to_bytes(flag: flags_pb2.Flag) -> bytes:
    return flag.SerializeToString(deterministic=True)


FLAG: Kind[flags_pb2.Flag] = Kind("flag", "key", _to_bytes, flags_pb2.Flag.FromString)


def with_output(stored: Stored[flags_pb2.Flag]) -> flags_pb2.Flag:
    """The flag as clients read it: the stored message with its etag and revision."""
    return read_form(stored.data, stored.revision)


def read_form(flag: flags_pb2.Flag, revision: int) -> flags_pb2.Flag:
    """A copy of a stored flag with the etag and revision of the record it was read at."""
    out = flags_pb2.Flag()
    out.CopyFrom(flag)
    out.etag = etag_of(revision)
    out.revision = revision
    return out


def stored_form(flag: flags_pb2.Flag) -> flags_pb2.Flag:
    """A copy without the fields the record's revision supplies (etag, revision)."""
    out = flags_pb2.Flag()
    out.CopyFrom(flag)
    out.ClearField("etag")
    out.ClearField("revision")
    return out
