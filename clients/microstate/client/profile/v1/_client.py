"""ProfileClient and SyncProfileClient of the microstate.profile.v1 contract.

Their operations are those of every profile version, defined once in `profile/_shared.py`; this module
only pins them to v1's messages and stub.
"""

from __future__ import annotations

from microstate.client.profile import _shared
from microstate.client.profile._shared import ProfileVersion
from microstate.profile.v1 import profile_pb2, profile_pb2_grpc
from microstate.profile.v1.profile_pb2 import Profile

VERSION = ProfileVersion(profile_pb2, profile_pb2_grpc.ProfileServiceStub)
CONTRACT = VERSION.contract


class ProfileClient(_shared.AsyncProfileClient[Profile], version=VERSION):
    """Async client of microstate.profile.v1: `async with ProfileClient("host:port") as profiles:`.

    Reads (`get`, `batch_get`) return `Read` values that say whether they are live or a snapshot, and
    fall back to the snapshot when the service cannot answer in time. Lists and writes are always live.
    Every failure raises a typed `MicrostateError`.
    """


class SyncProfileClient(_shared.SyncProfileClient[Profile], version=VERSION):
    """The blocking twin of `ProfileClient`, with the same methods; thread-safe:
    `with SyncProfileClient("host:port") as profiles:`."""
