"""`microstate audit export` then `verify`, offline, with the files an auditor holds (the checkpoint file,
checkpoint.pub, chain-keys): both verdicts printed, exit 0 when both hold and 1 when one fails; entries
chained after a key rotation verify with the rotated key file; `follow` prints checkpoints as they come."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from microstate.server.audit import AuditKeys, open_audited
from microstate.server.audit import cli as audit_cli
from microstate.server.audit.keys import CHAIN_KEYS, PUBLIC_KEY
from microstate.server.cli import main
from tests.audit.conftest import write_some
from tests.support.processes import until


async def write_and_seal(url: str, key_dir: Path, count: int) -> None:
    keys = AuditKeys.load(key_dir)
    store, sealer = await open_audited(url, "profile", keys, checkpoint_file=key_dir / "checkpoints.jsonl")
    try:
        await write_some(store, count)
        await sealer.seal_all()
    finally:
        await store.close()
        await sealer.close()


def verify_args(export: Path, key_dir: Path) -> list[str]:
    return [
        "audit",
        "verify",
        str(export),
        "--checkpoints",
        str(key_dir / "checkpoints.jsonl"),
        "--public-key",
        str(key_dir / PUBLIC_KEY),
        "--chain-keys",
        str(key_dir / CHAIN_KEYS),
    ]


def test_export_then_verify_offline_reports_both_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key_dir, export = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "audit", tmp_path / "ledger.jsonl"
    asyncio.run(write_and_seal(url, key_dir, 12))
    assert main(["audit", "export", "profile", "--store", url, "--out", str(export)]) == 0
    assert main(verify_args(export, key_dir)) == 0
    out = capsys.readouterr().out
    assert "12 entries" in out and "integrity: OK" in out and "completeness: OK" in out

    lines = export.read_text().splitlines()
    export.write_text("\n".join(lines[:-3]) + "\n")  # the tail truncated
    assert main(verify_args(export, key_dir)) == 1
    out = capsys.readouterr().out
    assert "integrity: OK" in out and "completeness: FAILED" in out


def test_entries_chained_after_a_key_rotation_verify_with_the_rotated_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key_dir, export = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "audit", tmp_path / "ledger.jsonl"
    asyncio.run(write_and_seal(url, key_dir, 5))
    assert main(["audit", "rotate", "--audit-dir", str(key_dir)]) == 0
    assert capsys.readouterr().out.strip() == "k2"
    asyncio.run(write_and_seal(url, key_dir, 5))
    assert main(["audit", "export", "profile", "--store", url, "--out", str(export)]) == 0
    key_ids = [json.loads(line)["key_id"] for line in export.read_text().splitlines() if "key_id" in line]
    assert key_ids == ["k1"] * 5 + ["k2"] * 5
    assert main(verify_args(export, key_dir)) == 0, capsys.readouterr().out


def test_verify_without_a_checkpoint_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_dir = tmp_path / "audit"
    AuditKeys.load(key_dir)
    (key_dir / "checkpoints.jsonl").write_text("")
    (tmp_path / "ledger.jsonl").write_text("")
    assert main(verify_args(tmp_path / "ledger.jsonl", key_dir)) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


async def test_follow_prints_the_newest_checkpoint_then_each_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key_dir = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "audit"
    await write_and_seal(url, key_dir, 4)
    printed: list[int] = []

    def sizes() -> list[int]:
        printed.extend(json.loads(line)["size"] for line in capsys.readouterr().out.splitlines())
        return printed

    follow = asyncio.create_task(audit_cli._follow(argparse.Namespace(name="profile", store=url)))
    try:
        await until(lambda: sizes() == [4], within=20, what="the newest checkpoint printed")
        await write_and_seal(url, key_dir, 3)
        await until(lambda: sizes() == [4, 7], within=20, what="the new checkpoint printed")
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
