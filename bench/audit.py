"""AU, the audit ledger (issue 15).

AU1: what auditing costs a profile Update: p50 latency, one call in flight, SDK→server→store, from a server
keeping the ledger (the default) vs the same server with `--audit off`, on one store, calls alternating.
The audited write appends its entry in the same Lua script (Redis) or transaction and statement (SQLite);
the sealer runs in the server's background.

AU2: verifying a ledger of 1,000,000 entries offline (`microstate audit verify`'s work: HMAC chain,
RFC 6962 root, checkpoint signature) vs reading and parsing the same export, the floor any verifier pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bench import load, services
from bench.report import Row, at_most
from bench.stack import Settings, sample_profile
from bench.throughput import compared
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.server.audit import merkle
from microstate.server.audit.checkpoints import Checkpoint
from microstate.server.audit.entries import Entry, digest, subject_ref
from microstate.server.audit.ledger import ZERO_MAC, Sealed, leaf_of
from microstate.server.audit.verify import verify

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
        async with ProfileClient(audited.target) as on, ProfileClient(plain.target) as off:
            await on.create(sample_profile("audited"))
            await off.create(sample_profile("plain"))

            async def update_on() -> None:
                await on.update(Profile(user_id="audited", display_name=next(names)), ["display_name"])

            async def update_off() -> None:
                await off.update(Profile(user_id="plain", display_name=next(names)), ["display_name"])

            await load.alternating(update_on, update_off, 100)  # warm up
            ons, offs = [], []
            for _ in range(rounds):
                on_round, off_round = await load.alternating(update_on, update_off, samples)
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
            f"{rounds} rounds of {samples} calls each, alternating call by call",
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


def _verify_rounds(settings: Settings, count: int) -> tuple[list[float], list[float]]:
    """Seconds to verify the export, and to only parse it, per round."""
    path = settings.workdir / "au2-ledger.jsonl"
    checkpoint, public_key, chain_keys = write_ledger(path, count)
    # An export starts with the ledger's own checkpoints (ledger.export_lines): here, the newest.
    listed = json.dumps({"checkpoint": json.loads(checkpoint.to_json())})
    verified, parsed = [], []
    try:
        for _ in range(max(1, settings.rounds // 2)):
            started = time.perf_counter()
            with open(path) as lines:
                report = verify(itertools.chain([listed], lines), checkpoint, public_key, chain_keys)
            verified.append(time.perf_counter() - started)
            if not (report.ok and report.entries == count):
                raise AssertionError("\n".join(report.lines()))
            started = time.perf_counter()
            with open(path) as lines:
                for line in lines:
                    json.loads(line)
            parsed.append(time.perf_counter() - started)
    finally:
        path.unlink(missing_ok=True)
    return verified, parsed


async def au2(settings: Settings) -> list[Row]:
    count = LEDGER_ENTRIES
    verified, parsed = await asyncio.to_thread(_verify_rounds, settings, count)
    return [
        compared(
            "AU2",
            f"verify {count:,} ledger entries offline (chain, Merkle root, signature) vs parsing the export",
            verified,
            parsed,
            "s",
            at_most(5.0, on="value", text="≤ 5 s"),
            f"{median(verified) / count * 1e6:.1f} µs per entry",
        )
    ]


async def audit(settings: Settings) -> list[Row]:
    rows: list[Row] = []
    for backend in ("sqlite", "redis"):
        rows += await au1(settings, backend)
    return rows + await au2(settings)
