"""Audit keys: servers started together (`microstate up`) make one set of keys and all read it whole; keys
are private to the server; a subject reference is stable, keyed and never the id itself."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from microstate.server.audit.keys import CHAIN_KEYS, SIGNING_KEY, SUBJECT_KEY, AuditKeys


def _load(directory: Path) -> tuple[str, str, str]:
    keys = AuditKeys.load(directory)
    return keys.current_key_id, keys.chain_keys[keys.current_key_id].hex(), keys.subject_key.hex()


def test_servers_starting_together_share_one_whole_set_of_keys(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        loaded = pool.map(_load, [tmp_path] * 8)
    assert len(set(loaded)) == 1
    for name in (CHAIN_KEYS, SIGNING_KEY, SUBJECT_KEY):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [CHAIN_KEYS, SIGNING_KEY, SUBJECT_KEY, "checkpoint.pub"]
    )


def test_a_subject_reference_is_stable_keyed_and_not_the_id(tmp_path: Path) -> None:
    first, second = AuditKeys.load(tmp_path / "a"), AuditKeys.load(tmp_path / "b")
    assert first.subject_ref("alice") == first.subject_ref("alice") != first.subject_ref("bob")
    assert first.subject_ref("alice") != second.subject_ref("alice")  # another server key, another reference
    assert "alice" not in first.subject_ref("alice") and first.subject_ref("") == ""
