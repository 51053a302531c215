"""Sealing on every backend: two sealers on one journal (two server processes on one store) seal each entry
exactly once, and a sealer that stopped after writing a batch but before its head is caught up by the next."""

from __future__ import annotations

import asyncio

from microstate.server.audit import Sealer
from microstate.server.audit.checkpoints import newest_in_file
from microstate.server.audit.ledger import HEAD, export_lines
from microstate.server.audit.verify import verify
from tests.audit.conftest import Ledger, write_some
from tests.audit.test_tamper import read_ledger


async def verified_ok(ledger: Ledger, size: int) -> None:
    checkpoint = newest_in_file(ledger.checkpoints)
    assert checkpoint is not None and checkpoint.size == size
    lines = [line async for line in export_lines(ledger.sealer.ledger)]
    report = verify(lines, checkpoint, ledger.keys.public_key, ledger.keys.chain_keys)
    assert report.ok and report.entries == size, report.lines()


async def test_two_sealers_seal_each_entry_once(ledger: Ledger) -> None:
    other = Sealer(
        ledger.sealer.journal, ledger.sealer.ledger, ledger.sealer.log_id, ledger.keys, batch=3,
        checkpoint_file=ledger.checkpoints,
    )  # fmt: skip
    for _ in range(4):
        await write_some(ledger.store, 5)
        await asyncio.gather(ledger.sealer.seal(), other.seal(), ledger.sealer.seal(), other.seal())
    await ledger.sealer.seal_all()
    sealed = await read_ledger(ledger.sealer.ledger)
    revisions = [each.revision for each in sealed]
    assert len(sealed) == 20 and revisions == sorted(set(revisions))
    await verified_ok(ledger, 20)


async def test_a_batch_written_before_a_crash_is_adopted_not_sealed_twice(ledger: Ledger) -> None:
    await write_some(ledger.store, 6)
    await ledger.sealer.seal_all()
    await write_some(ledger.store, 6)
    before = await ledger.sealer.ledger.get(HEAD)
    assert before is not None
    await ledger.sealer.seal()  # seals the second batch and moves the head on ...
    await ledger.sealer.ledger.put(HEAD, before.value)  # ... which the crash lost
    await write_some(ledger.store, 3)
    await ledger.sealer.seal_all()
    assert len(await read_ledger(ledger.sealer.ledger)) == 15
    await verified_ok(ledger, 15)
