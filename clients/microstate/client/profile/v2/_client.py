"""ProfileClient and SyncProfileClient of the microstate.profile.v2 contract.

Their operations are those of every profile version, defined once in `profile/_shared.py`; this module
only pins them to v2's messages and stub.
"""

from __future__ import annotations

from microstate.client.profile import _shared
from microstate.client.profile._shared import ProfileVersion
from microstate.profile.v2 import profile_pb2, profile_pb2_grpc
from microstate.profile.v2.profile_pb2 import Profile

VERSION = ProfileVersion(profile_pb2, profile_pb2_grpc.ProfileServiceStub)
CONTRACT = VERSION.contract


class ProfileClient(_shared.AsyncProfileClient[Profile], version=VERSION):
    """Async client of microstate.profile.v2 (structured name, typed preferences, consents, tagged
    embedding): `async with ProfileClient("host:port") as profiles:`. Same methods, fallback and errors
    as the v1 client; it reads and writes the same profiles, and etags cross versions."""


class SyncProfileClient(_shared.SyncProfileClient[Profile], version=VERSION):
    """The blocking twin of `ProfileClient`, with the same methods; thread-safe:
    `with SyncProfileClient("host:port") as profiles:`."""
