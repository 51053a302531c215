"""The session microstate (microstate.session.v1): login sessions with opaque tokens, rotation and revocation.

Its one setting beyond the shared ones is the server key that the digests of token secrets are made with,
kept outside the store: `MICROSTATE_SESSION_KEY_FILE` names a file of at least 32 bytes (e.g. made with
`openssl rand -hex 32 > session.key; chmod 600 session.key`). `microstate serve session` refuses to start
without it; `microstate up` makes one (mode 0600) in its data directory the first time, unless the
environment names one. Losing or changing the key ends every session (their tokens no longer verify).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc

from microstate.server.config import ConfigError
from microstate.server.kit import subjects, wire
from microstate.server.registry import Attach, Microstate
from microstate.server.session import subject_data
from microstate.server.session.domain import SessionDomain
from microstate.server.session.model import INDEX_PREFIX
from microstate.server.session.servicer import SERVICE, SessionServicer
from microstate.server.session.tokens import ServerKey, create_key_file
from microstate.server.store.roles import Stores

log = logging.getLogger(__name__)

SCOPES = {  # what each method needs when authentication is on (the caller's, not the end user's session)
    "CreateSession": "session.write",
    "RefreshSession": "session.write",
    "RevokeSession": "session.write",
    "RevokeUserSessions": "session.write",
    "ValidateSession": "session.validate",
    "WatchRevocations": "session.validate",  # what a validator follows to drop revoked sessions it cached
    "GetSession": "session.read",
    "ListUserSessions": "session.read",
}
KEY_FILE_ENV = "MICROSTATE_SESSION_KEY_FILE"
KEY_FILE_NAME = "session.key"


def load_key(environ: Mapping[str, str] = os.environ) -> ServerKey:
    """The server key named by the environment; ConfigError (a usage error) when it is missing or unusable."""
    path = environ.get(KEY_FILE_ENV)
    if not path:
        raise ConfigError(
            f"the session microstate needs a server key: set {KEY_FILE_ENV} to a file holding at least 32"
            " random bytes (e.g. `openssl rand -hex 32 > session.key; chmod 600 session.key`);"
            " `microstate up` makes one in its data directory"
        )
    try:
        return ServerKey.from_file(Path(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{KEY_FILE_ENV}: {exc}") from None


def attach_with(key: ServerKey, *, clock: Callable[[], int] = time.time_ns) -> Attach:
    """An attach function serving sessions under `key` (tests pass their own key and clock)."""

    def attach(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
        servicer = SessionServicer(SessionDomain(stores.records(), key, clock=clock), stopping)
        wire.add_service(server, SERVICE, servicer)

    return attach


def attach(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
    attach_with(load_key())(server, stores, stopping=stopping)


def prepare(data_dir: Path) -> dict[str, str]:
    """For `microstate up`: the key file in the data directory (created once, mode 0600), unless the
    environment already names one."""
    if os.environ.get(KEY_FILE_ENV):
        return {}
    path = data_dir / KEY_FILE_NAME
    if create_key_file(path):
        log.info("created a session server key", extra={"path": str(path)})
    return {KEY_FILE_ENV: str(path)}


def audit_subject(key: str) -> str | None:
    """The user a record key names: a user index entry (u/<user>/<session>); a session record's own key names
    none (its audit entry takes the call's user_id, when the request has one)."""
    if key.startswith(INDEX_PREFIX):
        return key[len(INDEX_PREFIX) :].rpartition("/")[0] or None
    return None


MICROSTATE = Microstate(
    name="session",
    default_port=50052,
    service_names=(SERVICE.full_name, subjects.SERVICE_NAME),
    attach=attach,
    scopes={**SCOPES, **subjects.SCOPES},
    subjects=subject_data.declaration,
    prepare=prepare,
    audit_subject=audit_subject,
)
