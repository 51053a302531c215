"""The persisted rule set: every flag and the revision they are at, in the snapshot file format.

It reuses `_snapshot_file` (magic, CRC-32, written temp → fsync → rename, never pickle) under its own
contract name, so a profile or session snapshot file is never read as a rule set. The first entry, with
the empty key (no flag has it), carries the rule set: its revision as decimal ASCII and, as its time, the
Unix time the rule set was last known current; every other entry is one serialized Flag.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from microstate.client import _snapshot_file
from microstate.client._snapshot_file import SnapshotEntry, SnapshotFileError
from microstate.flags.v1 import flags_pb2

FILE_CONTRACT = flags_pb2.DESCRIPTOR.package + "/rule-set"
_HEADER_KEY = ""


class SavedRuleSet(NamedTuple):
    revision: int
    as_of: float
    """Unix time the rule set was last known current."""
    flags: list[flags_pb2.Flag]


def encode(revision: int, as_of: float, flags: Iterable[flags_pb2.Flag]) -> bytes:
    header = SnapshotEntry(str(revision).encode(), "", as_of)
    entries = [(_HEADER_KEY, header)]
    entries += [(flag.key, SnapshotEntry(flag.SerializeToString(), flag.etag, as_of)) for flag in flags]
    return _snapshot_file.encode(FILE_CONTRACT, entries)


def decode(data: bytes) -> SavedRuleSet:
    """The rule set in `data`; raises SnapshotFileError for anything this code did not write whole."""
    entries = _snapshot_file.decode(FILE_CONTRACT, data)
    if not entries or entries[0][0] != _HEADER_KEY:
        raise SnapshotFileError("no rule set header")
    header = entries[0][1]
    try:
        revision = int(header.payload.decode("ascii"))
        flags = [flags_pb2.Flag.FromString(entry.payload) for _, entry in entries[1:]]
    except Exception as exc:  # a bad number or an undecodable flag: the file is not one of ours
        raise SnapshotFileError(f"malformed rule set: {exc}") from exc
    if revision < 0:
        raise SnapshotFileError(f"rule set revision {revision} is negative")
    return SavedRuleSet(revision, header.fetched_at, flags)


def save(path: str, revision: int, as_of: float, flags: Iterable[flags_pb2.Flag]) -> None:
    """Write the rule set atomically: a reader sees the old file or the new one, never a torn one."""
    _snapshot_file.write_atomically(path, encode(revision, as_of, flags))


def load(path: str) -> SavedRuleSet | None:
    """The saved rule set, or None when there is no file; raises SnapshotFileError for a bad one."""
    data = _snapshot_file.read(path)
    return None if data is None else decode(data)
