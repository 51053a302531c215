"""Client of the microstate.profile.v1 contract: importing this module pins a client to v1.

from microstate.client.profile.v1 import ProfileClient

async with ProfileClient("localhost:50051") as profiles:
    read = await profiles.get("user-1")
    if read.stale:  # served from the snapshot: the service was down, slow, or its breaker open
        log.info("profile %s is %.0fs old (%s)", read.value.user_id, read.age, read.fallback_reason)
"""

from microstate.client._read import BatchRead, Page, Read, Source
from microstate.client.profile._shared import (
    DEFAULT_TARGET,
    ENV_TARGET,
    CallMetadata,
    ChangeType,
    ProfileChange,
)
from microstate.client.profile.v1._client import CONTRACT, ProfileClient, SyncProfileClient
from microstate.profile.v1.profile_pb2 import Profile

__all__ = [
    "CONTRACT",
    "DEFAULT_TARGET",
    "ENV_TARGET",
    "BatchRead",
    "CallMetadata",
    "ChangeType",
    "Page",
    "Profile",
    "ProfileChange",
    "ProfileClient",
    "Read",
    "Source",
    "SyncProfileClient",
]
