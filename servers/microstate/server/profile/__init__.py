"""The user profile microstate: one domain, one stored representation, one codec per contract version."""

from __future__ import annotations

import asyncio

import grpc

from microstate.server.kit import subjects, wire
from microstate.server.kit.migrations import versioned
from microstate.server.profile import extraction, subject_data, v1, v2
from microstate.server.profile.domain import ProfileDomain
from microstate.server.profile.migrations import SCHEMA
from microstate.server.profile.servicer import ProfileServicer
from microstate.server.registry import Microstate
from microstate.server.store.roles import Stores

CODECS = (v1.CODEC, v2.CODEC)

SCOPES = {  # what each method needs when authentication is on; the same in every contract version
    "GetProfile": "profile.read",
    "BatchGetProfiles": "profile.read",
    "ListProfiles": "profile.read",
    "WatchProfiles": "profile.read",
    "CreateProfile": "profile.write",
    "UpdateProfile": "profile.write",
    "DeleteProfile": "profile.write",
}


def attach(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
    domain = ProfileDomain(versioned(stores.records(), SCHEMA))
    for codec in CODECS:
        # Not the generated registration helper: Get and BatchGet answer with ready wire bytes (wire.py).
        wire.add_service(server, codec.service, ProfileServicer(domain, codec, stopping))


MICROSTATE = Microstate(
    name="profile",
    default_port=50051,
    service_names=(*(codec.service_name for codec in CODECS), subjects.SERVICE_NAME),
    attach=attach,
    scopes={**SCOPES, **subjects.SCOPES},
    subjects=subject_data.declaration,
    audit_subject=lambda user_id: user_id,  # a profile's key is its user's id
    schema=SCHEMA,
    reconcile=extraction.RECONCILABLE,  # `microstate reconcile profile` against the demo monolith
)
