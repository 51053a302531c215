"""AU, the audit ledger (issue 15).

AU1: what auditing costs a profile Update: p50 latency, one call in flight, SDK→server→store, from a server
keeping the ledger (the default) vs the same server with `--audit off`, on one store, calls alternating.
The audited write appends its entry in the same Lua script (Redis) or transaction and statement (SQLite);
the sealer runs in the server's background.

AU2: verifying a ledger of 1,000,000 entries offline with `microstate audit verify` (HMAC chain, RFC 6962
root, checkpoint signature; a process of its own, timed from its start, with its default workers and with
one) vs reading and parsing the same export in Python, the floor any Python verifier pays in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bench import load, services
from bench.report import Row, at_most
from bench.stack import Settings, sample_profile
from bench.throughput import compared
from microstate.client import ClientOptions
from microstate.client.errors import DeadlineExceeded, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.server.audit import merkle
from microstate.server.audit.checkpoints import Checkpoint, append_to_file
from microstate.server.audit.entries import Entry, digest, subject_ref
from microstate.server.audit.keys import public_key_pem
from microstate.server.audit.ledger import ZERO_MAC, Sealed, leaf_of
from tests.support import processes

LEDGER_ENTRIES = 1_000_000


@contextlib.contextmanager
def _store(settings: Settings, backend: str) -> Iterator[str]:
    if backend == "redis":
        with services.redis(settings.cores.server) as url:
            yield url
    else:
        yield f"sqlite:///{(settings.workdir / 'au1.db').resolve()}"


async def au1(settings: Settings, backend: str) -> list[Row]:
    # The ratio is near 1 and the figure is a few percent: many short rounds, each alternating the two
    # servers call by call, so load from other processes lands on both alike (the median of the rounds'
    # ratios is the figure).
    rounds, samples = settings.rounds * 4, settings.samples // 2
    names = (f"n{i}" for i in itertools.count())
    with (
        _store(settings, backend) as url,
        services.profile_server(url, settings.workdir / f"au-{backend}-on", settings.cores.server) as audited,
        services.profile_server(
            url, settings.workdir / f"au-{backend}-off", settings.cores.server, flags=["--audit", "off"]
        ) as plain,
    ):
        # A generous deadline: on a loaded machine an Update has stalled past the default 5 s.
        options = ClientOptions(timeout=60.0)
        async with (
            ProfileClient(audited.target, options=options) as on,
            ProfileClient(plain.target, options=options) as off,
        ):
            await on.create(sample_profile("audited"))
            await off.create(sample_profile("plain"))

            retried = 0

            async def update(client: ProfileClient, user_id: str) -> None:
                # The machine is shared: under load 9 a store has refused a connection for a second. Such a
                # call is tried again (its sample includes the wait) and counted, rather than ending the run.
                nonlocal retried
                for attempt in range(3):
                    try:
                        await client.update(
                            Profile(user_id=user_id, display_name=next(names)), ["display_name"]
                        )
                        return
                    except (Unavailable, DeadlineExceeded):
                        if attempt == 2:
                            raise
                        retried += 1

            async def update_on() -> None:
                await update(on, "audited")

            async def update_off() -> None:
                await update(off, "plain")

            await load.block_interleaved([update_on, update_off], 100, block=1)  # warm up
            ons, offs = [], []
            for _ in range(rounds):
                # block=1: the two servers alternate call by call (ABBA), so load bursts hit both alike
                on_round, off_round = await load.block_interleaved([update_on, update_off], samples, block=1)
                ons.append(median(on_round))
                offs.append(median(off_round))
    return [
        compared(
            "AU1",
            f"{backend}: profile Update p50, audited vs --audit off, 1 in flight",
            ons,
            offs,
            "s",
            at_most(1.1),
            f"{rounds} rounds of {samples} calls each, alternating call by call"
            + (f"; {retried} calls tried again after UNAVAILABLE or DEADLINE_EXCEEDED" if retried else ""),
        )
    ]


def write_ledger(path: Path, count: int) -> tuple[Checkpoint, Ed25519PublicKey, dict[str, bytes]]:
    """An export of `count` sealed entries like a sealer writes them (realistic entry sizes), its newest
    checkpoint and the keys to check it."""
    signing, chain_key, subject_key = Ed25519PrivateKey.generate(), b"k" * 32, b"s" * 32
    frontier, mac = merkle.Frontier(), ZERO_MAC
    with open(path, "w") as out:
        for index in range(count):
            entry = Entry(
                time_ns=time.time_ns(),
                principal="token:worker-1@https://issuer.example",
                method="/microstate.profile.v2.ProfileService/UpdateProfile",
                contract="microstate.profile.v2",
                resource=f"user-{index % 10_000}",
                operation="put",
                before=digest(str(index - 1).encode()),
                after=digest(str(index).encode()),
                request_id=f"req-{index}",
                status="OK",
                subject=subject_ref(f"user-{index % 10_000}", subject_key),
            ).encode()
            hashed = merkle.leaf_hash(leaf_of("profile", index, index + 1, "k1", entry))
            mac = hmac.new(chain_key, mac + hashed, hashlib.sha256).digest()
            frontier.append(hashed)
            out.write(json.dumps(Sealed(index, index + 1, "k1", entry, mac).to_json(), separators=(",", ":")))
            out.write("\n")
    checkpoint = Checkpoint("profile", count, frontier.root(), mac, time.time_ns()).signed(signing)
    return checkpoint, signing.public_key(), {"k1": chain_key}


def _verify_rounds(settings: Settings, count: int) -> tuple[list[float], list[float], list[float], int]:
    """Seconds per round to verify the export with `microstate audit verify` (a process of its own, start
    included, its default workers: one per usable CPU), with the same command in one process, and to only
    parse the export."""
    work = settings.workdir / "au2"
    work.mkdir(parents=True, exist_ok=True)
    entries, ledger = work / "entries.jsonl", work / "ledger.jsonl"
    checkpoint, public_key, chain_keys = write_ledger(entries, count)
    try:
        # An export starts with the ledger's own checkpoints (ledger.export_lines): here, the newest.
        with open(ledger, "w") as out, open(entries) as rest:
            out.write(json.dumps({"checkpoint": json.loads(checkpoint.to_json())}) + "\n")
            shutil.copyfileobj(rest, out)
        entries.unlink()
        (work / "checkpoints.jsonl").unlink(missing_ok=True)
        append_to_file(work / "checkpoints.jsonl", checkpoint)
        (work / "checkpoint.pub").write_bytes(public_key_pem(public_key))
        (work / "chain-keys").write_text(
            "".join(f"{key_id} {key.hex()}\n" for key_id, key in chain_keys.items())
        )
        # Offline, on the whole machine: not confined to the load generator's cores like this process.
        every_core = ",".join(str(core) for core in sorted(settings.cores.server | settings.cores.client))
        command = [
            *["taskset", "--cpu-list", every_core],
            *[sys.executable, "-m", "microstate.server", "audit", "verify", str(ledger)],
            *["--checkpoints", str(work / "checkpoints.jsonl"), "--public-key", str(work / "checkpoint.pub")],
            *["--chain-keys", str(work / "chain-keys")],
        ]
        verified: list[float] = []
        alone: list[float] = []
        parsed: list[float] = []
        for _ in range(max(2, settings.rounds // 2)):
            for seconds, extra in ((verified, []), (alone, ["--workers", "1"])):
                started = time.perf_counter()
                done = subprocess.run(
                    [*command, *extra], env=processes.server_env(), capture_output=True, text=True
                )
                seconds.append(time.perf_counter() - started)
                if done.returncode != 0 or f"{count} entries" not in done.stdout:
                    raise AssertionError(done.stdout + done.stderr)
            started = time.perf_counter()
            with open(ledger) as lines:
                for line in lines:
                    json.loads(line)
            parsed.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return verified, alone, parsed, every_core.count(",") + 1


async def au2(settings: Settings) -> list[Row]:
    count = LEDGER_ENTRIES
    verified, alone, parsed, cores = await asyncio.to_thread(_verify_rounds, settings, count)
    what = f"verify {count:,} ledger entries offline (chain, Merkle root, signature) vs parsing the export"
    return [
        compared(
            "AU2",
            f"`microstate audit verify`: {what}",
            verified,
            parsed,
            "s",
            at_most(5.0, on="value", text="≤ 5 s"),
            f"{cores} workers (one per CPU), process start included;"
            f" {median(verified) / count * 1e6:.1f} µs per entry",
        ),
        compared(
            "AU2",
            "the same in one process (--workers 1)",
            alone,
            parsed,
            "s",
            at_most(5.0, on="value", text="≤ 5 s"),
            f"{median(alone) / count * 1e6:.1f} µs per entry",
        ),
    ]


async def audit(settings: Settings) -> list[Row]:
    rows: list[Row] = []
    for backend in ("sqlite", "redis"):
        rows += await au1(settings, backend)
    return rows + await au2(settings)
