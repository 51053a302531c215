"""Helpers of the extraction tests: a recording comparison observer and profile builders."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from microstate.client.extraction.router import ComparisonObserver
from microstate.profile.v1.profile_pb2 import Profile

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
