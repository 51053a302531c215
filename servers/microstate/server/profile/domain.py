"""Profile rules, independent of any contract version.

The servicer's codecs (v1, v2) translate messages to `ProfileData` and call this. The kit's keyed
resources (kit/resources.py) do the etags, the atomic read-modify-write, paging and the change feed; this
adds what is the profile's own: its ids, limits and timestamps, and which contract wrote last.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, replace

from microstate.server.errors import InvalidArgument
from microstate.server.kit.idempotency import WriteRequest
from microstate.server.kit.paging import PageTokens
from microstate.server.kit.resources import ResourceChange, Resources
from microstate.server.profile import rules
from microstate.server.profile.model import PROFILE, ProfileData, StoredProfile
from microstate.server.store.base import Store

Patch = Callable[[ProfileData], ProfileData]
"""Turns the current profile into the updated one (built by an adapter from its update_mask)."""

PAGE_TOKENS = PageTokens("ListProfiles", "user_id_prefix")
ProfileChange = ResourceChange[ProfileData]


@dataclass(frozen=True, slots=True)
class Contract:
    """The contract version calling the domain: recorded on writes, and how it names fields in errors."""

    name: str
    """e.g. microstate.profile.v1; stored as ProfileData.written_by."""
    field_path: rules.FieldPath


class ProfileDomain:
    def __init__(self, store: Store, *, clock: Callable[[], int] = time.time_ns) -> None:
        self._profiles = Resources(store, PROFILE, PAGE_TOKENS)
        self._clock = clock

    async def get(self, user_id: str) -> StoredProfile:
        rules.check_user_id(user_id, "user_id")
        return await self._profiles.get(user_id)

    async def batch_get(self, user_ids: Sequence[str]) -> tuple[list[StoredProfile], list[str]]:
        """Found profiles and missing ids, both in request order, duplicates answered once."""
        if not user_ids:
            raise InvalidArgument("user_ids", "at least one id is required")
        if len(user_ids) > rules.MAX_BATCH:
            raise InvalidArgument(
                "user_ids", f"{len(user_ids)} ids; at most {rules.MAX_BATCH}", reason="LIMIT_EXCEEDED"
            )
        rules.check_user_ids(user_ids, "user_ids")
        return await self._profiles.batch_get(user_ids)

    async def list(
        self,
        prefix: str,
        page_size: int,
        page_token: str,
        take: Callable[[StoredProfile], bool] = lambda _: True,
    ) -> tuple[list[StoredProfile], str]:
        """A page of profiles and the token of the next (see Resources.list for `take`)."""
        return await self._profiles.list(prefix, rules.page_size_of(page_size), page_token, take)

    async def create(
        self, data: ProfileData, *, contract: Contract, request: WriteRequest | None = None
    ) -> StoredProfile:
        now = self._clock()
        data = replace(data, create_time_ns=now, update_time_ns=now, written_by=contract.name)
        rules.check_profile(data, contract.field_path)
        return await self._profiles.create(data.user_id, data, request=request)

    async def update(
        self,
        user_id: str,
        patch: Patch,
        *,
        etag: str,
        contract: Contract,
        request: WriteRequest | None = None,
    ) -> StoredProfile:
        """Apply `patch` atomically. With an etag, a concurrent change is ABORTED; without, it is retried."""
        rules.check_user_id(user_id, contract.field_path("user_id"))

        def change(current: StoredProfile) -> ProfileData:
            updated = replace(
                patch(current.data),
                user_id=user_id,
                applied_requests=current.data.applied_requests,
                create_time_ns=current.data.create_time_ns,
                update_time_ns=max(self._clock(), current.data.update_time_ns + 1),
                written_by=contract.name,
            )
            rules.check_profile(updated, contract.field_path, current.data)
            return updated

        return await self._profiles.update(user_id, change, etag=etag, request=request)

    async def delete(self, user_id: str, *, etag: str, request: WriteRequest | None = None) -> None:
        rules.check_user_id(user_id, "user_id")
        await self._profiles.delete(user_id, etag=etag, request=request)

    async def watch_start(self, resume_token: str) -> str:
        """Where a watch begins: after `resume_token`, or after the current head when it is empty."""
        return await self._profiles.watch_start(resume_token)

    def watch(self, prefix: str, start: str) -> AsyncGenerator[ProfileChange, None]:
        """Changes strictly after `start` (from watch_start)."""
        return self._profiles.watch(prefix, start)
