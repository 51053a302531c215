"""Helpers of the extraction tests: a recording comparison observer, profile builders, and a demo monolith
and a slice's store holding the same records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from microstate.client.extraction import demo
from microstate.client.extraction.legacy import RowCodec
from microstate.client.extraction.router import ComparisonObserver
from microstate.client.extraction.sql import SqlAdapter
from microstate.profile.v1.profile_pb2 import Profile
from microstate.server.kit.extraction import StoreBinding
from microstate.server.store import open_store

MONOLITH_FIELDS = ("user_id", "display_name", "locale", "attributes")


def user_profile(user_id: str, name: str, *, theme: str = "dark") -> Profile:
    made = Profile(user_id=user_id, display_name=name, locale="en-GB")
    made.attributes["pref.theme"] = theme
    return made


def monolith_view(profile: Message | None) -> Profile | None:
    """The fields the monolith holds (what both sides must agree on); None stays None."""
    if profile is None:
        return None
    assert isinstance(profile, Profile)
    view = Profile(user_id=profile.user_id, display_name=profile.display_name, locale=profile.locale)
    view.attributes.update(profile.attributes)
    return view


@dataclass
class Observation:
    operation: str
    legacy: Message | None
    candidate: Message | None
    legacy_seconds: float
    candidate_seconds: float | None
    candidate_error: BaseException | None
    phase: str


@dataclass
class RecordingObserver:
    """A `ComparisonObserver` that keeps what it is told."""

    observations: list[Observation] = field(default_factory=list)
    noise: list[tuple[Message | None, Message | None]] = field(default_factory=list)

    def observe(
        self,
        operation: str,
        legacy: Message | None,
        candidate: Message | None,
        *,
        legacy_seconds: float,
        candidate_seconds: float | None,
        candidate_error: BaseException | None,
        phase: str,
    ) -> None:
        self.observations.append(
            Observation(
                operation, legacy, candidate, legacy_seconds, candidate_seconds, candidate_error, phase
            )
        )

    def observe_noise(self, operation: str, first: Message | None, second: Message | None) -> None:
        self.noise.append((first, second))


def _is_observer(observer: ComparisonObserver) -> None:
    """Type-checks that RecordingObserver satisfies the Router's protocol."""


_is_observer(RecordingObserver())


async def same_records(
    tmp_path: Path,
    namespace: str,
    codec: RowCodec[Any],
    table: str,
    binding: StoreBinding,
    records: Mapping[str, Message],
) -> tuple[str, str]:
    """A demo monolith (SQLite, `table` through `codec`) and the slice's store (`namespace`, through its
    `binding`) holding the same `records`; their URLs."""
    legacy_url = f"sqlite:///{tmp_path / 'monolith.db'}"
    store_url = f"sqlite:///{tmp_path / f'{namespace}.db'}"
    demo.create_sqlite(str(tmp_path / "monolith.db"))
    legacy = SqlAdapter.from_url(legacy_url, codec, table)
    await legacy.ensure_outbox()
    store = await open_store(store_url, namespace)
    try:
        for key, record in records.items():
            await legacy.put(key, record, request_id=uuid.uuid4().hex)
            await store.put(key, binding.to_bytes(key, record, None))
    finally:
        await legacy.close()
        await store.close()
    return legacy_url, store_url
