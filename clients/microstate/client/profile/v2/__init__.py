"""Client of the microstate.profile.v2 contract: importing this module pins a client to v2.

from microstate.client.profile.v2 import PersonName, Profile, ProfileClient

async with ProfileClient("localhost:50051") as profiles:
    await profiles.check_contract()  # optional: ContractVersionNotServed now if the server lacks v2
    read = await profiles.get("user-1")
    await profiles.update(
        Profile(user_id="user-1", name=PersonName(given_name="Ada")), ["name.given_name"], etag=read.etag
    )

v2 and v1 clients read and write the same profiles (the mapping is in proto/microstate/profile/v2):
an etag read through either guards a write through the other. Each version keeps its own snapshots.
"""

from microstate.client._read import BatchRead, Page, Read, Source
from microstate.client.profile._shared import (
    DEFAULT_TARGET,
    ENV_TARGET,
    CallMetadata,
    ChangeType,
    ProfileChange,
)
from microstate.client.profile.v2._client import CONTRACT, ProfileClient, SyncProfileClient
from microstate.profile.v2.profile_pb2 import (
    Consent,
    Embedding,
    PersonName,
    Preferences,
    Profile,
    Theme,
)

__all__ = [
    "CONTRACT",
    "DEFAULT_TARGET",
    "ENV_TARGET",
    "BatchRead",
    "CallMetadata",
    "ChangeType",
    "Consent",
    "Embedding",
    "Page",
    "PersonName",
    "Preferences",
    "Profile",
    "ProfileChange",
    "ProfileClient",
    "Read",
    "Source",
    "SyncProfileClient",
    "Theme",
]
