"""The microstate side of a slice for the Router: `Candidate`, and `ProfileCandidate` over a profile client.

A candidate offers the same domain operations as a `LegacyAdapter` (get/put/delete by key with request ids),
so the Router and the outbox relay can send one call to either side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

from microstate.client import ClientOptions
from microstate.client.errors import AlreadyExists, NotFound, Unavailable
from microstate.client.extraction.legacy import M
from microstate.client.profile.v1 import Profile, ProfileClient

REQUEST_ID_ALREADY_USED = "REQUEST_ID_ALREADY_USED"


@runtime_checkable
class Candidate(Protocol[M]):
    """The microstate's operations for one slice. Errors are the SDK's typed `MicrostateError`s."""

    async def get(self, key: str) -> M | None:
        """The record, live, or None when there is none. A read the SDK could only answer from a stale
        snapshot raises Unavailable: a candidate must answer live or not at all."""
        ...

    async def put(self, key: str, value: M, *, request_id: str) -> M:
        """Create or replace the record (the fields the slice owns), applied once per request id."""
        ...

    async def create(self, key: str, value: M, *, request_id: str) -> bool:
        """Create the record unless one exists: True if created, False if it was there (for backfill)."""
        ...

    async def delete(self, key: str, *, request_id: str) -> bool:
        """Delete the record; True once it is gone. Deleting what is not there succeeds (a retry)."""
        ...


class ProfileCandidate:
    """`Candidate[Profile]` over a profile v1 `ProfileClient`. A put writes the fields in `fields` (those the
    monolith holds; the demo's: display_name, locale, attributes), so the microstate's own fields (the
    embedding) survive writes that come from legacy."""

    def __init__(
        self, client: ProfileClient, *, fields: Sequence[str] = ("display_name", "locale", "attributes")
    ) -> None:
        self._client = client
        self._fields = list(fields)

    async def get(self, key: str) -> Profile | None:
        try:
            read = await self._client.get(key)
        except NotFound:
            return None
        if read.stale:
            raise Unavailable(f"only a stale snapshot of {key!r} could be read", reason="STALE_SNAPSHOT")
        return read.value

    async def put(self, key: str, value: Profile, *, request_id: str) -> Profile:
        profile = Profile()
        profile.CopyFrom(value)
        profile.user_id = key
        profile.ClearField("etag")
        try:
            return await self._client.update(profile, self._fields, etag="", request_id=request_id)
        except NotFound:
            pass
        except AlreadyExists as error:  # the id was used by the create below, in an earlier attempt
            if error.reason != REQUEST_ID_ALREADY_USED:
                raise
            return await self._current(key, value)
        try:
            return await self._client.create(profile, request_id=request_id)
        except AlreadyExists as error:
            if error.reason == REQUEST_ID_ALREADY_USED:  # the update above applied in an earlier attempt
                return await self._current(key, value)
            # created meanwhile by another writer: this write replaces it, as on legacy
            return await self._client.update(profile, self._fields, etag="", request_id=request_id + ".u")

    async def create(self, key: str, value: Profile, *, request_id: str) -> bool:
        profile = Profile()
        profile.CopyFrom(value)
        profile.user_id = key
        profile.ClearField("etag")
        try:
            await self._client.create(profile, request_id=request_id)
        except AlreadyExists as error:
            return error.reason == REQUEST_ID_ALREADY_USED  # a retry of our own create did create it
        return True

    async def _current(self, key: str, value: Profile) -> Profile:
        return await self.get(key) or value

    async def delete(self, key: str, *, request_id: str) -> bool:
        await self._client.delete(key, must_exist=False)
        return True


@asynccontextmanager
async def open_profile_candidate(
    target: str, *, options: ClientOptions | None = None
) -> AsyncIterator[ProfileCandidate]:
    """A `ProfileCandidate` over a client of its own, closed on exit: what a Router's shadow worker opens
    on its thread (`shadow_candidate=functools.partial(open_profile_candidate, target)`)."""
    async with ProfileClient(target, options=options) as client:
        yield ProfileCandidate(client)
