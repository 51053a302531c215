"""Client of the microstate.session.v1 contract: importing this module pins a client to v1.

from microstate.client.session.v1 import SessionClient

async with SessionClient("localhost:50052") as sessions:
    issued = await sessions.create("user-1", scopes=["read"], idle_ttl=1800)
    read = await sessions.validate(issued.token, ["read"], accept_cached_for=5)
    log.info("session %s (%s, %.1fs old)", read.value.session_id, read.source, read.age)

`validate` fails closed: with the server down it raises a typed error (Unavailable, ...), unless the call
opts in with `accept_cached_for` and a positive answer at most that old is cached.
"""

from microstate.client._read import Page, Read, Source
from microstate.client.session._cache import MAX_ACCEPT_CACHED_FOR
from microstate.client.session.v1._client import (
    CONTRACT,
    DEFAULT_TARGET,
    ENV_TARGET,
    CallMetadata,
    IssuedSession,
    Revocation,
    RevocationType,
    SessionClient,
    SyncSessionClient,
)
from microstate.session.v1.session_pb2 import RevokeUserSessionsResponse, Session

__all__ = [
    "CONTRACT",
    "DEFAULT_TARGET",
    "ENV_TARGET",
    "MAX_ACCEPT_CACHED_FOR",
    "CallMetadata",
    "IssuedSession",
    "Page",
    "Read",
    "Revocation",
    "RevocationType",
    "RevokeUserSessionsResponse",
    "Session",
    "SessionClient",
    "Source",
    "SyncSessionClient",
]
