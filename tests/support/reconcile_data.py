"""A demo monolith and a profile store holding the same users, and divergences injected between them: the
data of the reconciliation tests and of bench figure RC."""

from __future__ import annotations

import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from microstate.client.extraction import demo
from microstate.profile.v1.profile_pb2 import Profile
from microstate.server.profile.extraction import BINDING
from microstate.server.store import open_store

PERSONAL = "Person"
"""Every display name starts with it: a report must never show it."""
KINDS = ("missing", "extra", "differs", "differs")


def key_of(n: int) -> str:
    return f"u{n:07d}"


def theme(n: int) -> str:
    return "dark" if n % 2 else "light"


def legacy_profile(n: int) -> Profile:
    made = Profile(user_id=key_of(n), display_name=f"{PERSONAL} {n}", locale="en-GB")
    made.attributes["pref.theme"] = theme(n)
    return made


def microstate_profile(n: int) -> Profile:
    """The same user as the microstate holds it: plus fields legacy has no column for."""
    made = legacy_profile(n)
    made.attributes["ml.segment"] = "b"
    made.embedding.extend([0.5, 0.25])
    return made


def request_id() -> str:
    return uuid.uuid4().hex


async def bulk_load(workdir: Path, count: int) -> tuple[str, str]:
    """`count` users in a demo monolith and a profile store under `workdir`, written the fast way (one
    transaction each, straight into the monolith's table and the store's records table, as a store whose
    change log was long trimmed): a million users in seconds. Returns (legacy URL, store URL)."""
    legacy_path, store_path = workdir / "monolith.db", workdir / "microstate.db"
    demo.create_sqlite(str(legacy_path))
    store = await open_store(f"sqlite:///{store_path}", "profile")  # its tables
    await store.close()
    with sqlite3.connect(legacy_path) as db:
        rows = ((key_of(n), f"{PERSONAL} {n}", "en-GB", theme(n)) for n in range(count))
        db.executemany("INSERT INTO users (id, display_name, locale, theme) VALUES (?, ?, ?, ?)", rows)
    db.close()
    template = microstate_profile(0)

    def record(n: int) -> tuple[str, bytes, int]:
        template.user_id, template.display_name = key_of(n), f"{PERSONAL} {n}"
        template.attributes["pref.theme"] = theme(n)
        return key_of(n), BINDING.to_bytes(key_of(n), template, None), n + 1

    with sqlite3.connect(store_path) as db:
        db.executemany(
            'INSERT INTO "records_profile" (key, value, revision) VALUES (?, ?, ?)', map(record, range(count))
        )
        db.execute("UPDATE microstate_namespaces SET head = ? WHERE name = 'profile'", [count])
    db.close()
    return f"sqlite:///{legacy_path}", f"sqlite:///{store_path}"


async def inject(side: Any, numbers: list[int], other: Any) -> dict[str, str]:
    """Make `side` diverge from `other` at each user number, cycling through the kinds (a key missing from
    `side`, a key only `side` has, a changed display name, a changed theme); returns key -> kind."""
    expected = {}
    for turn, n in enumerate(numbers):
        key = key_of(n)
        kind = KINDS[turn % len(KINDS)]
        if kind == "missing":
            await side.delete(key, request_id=request_id())
        elif kind == "extra":
            await other.delete(key, request_id=request_id())
        else:
            current = await side.get(key)
            if turn % 8 == 2:
                current.display_name = "Someone Else"
            else:
                current.attributes["pref.theme"] = "neon"
            await side.put(key, current, request_id=request_id())
        expected[key] = kind
    return expected


def sample(count: int, among: int, seed: int) -> list[int]:
    return random.Random(seed).sample(range(among), count)
