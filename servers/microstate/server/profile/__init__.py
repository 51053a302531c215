"""The user profile microstate: one domain, one stored representation, one codec per contract version."""

from __future__ import annotations

import asyncio

import grpc

from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.profile.v2 import profile_pb2_grpc as v2_grpc
from microstate.server.profile import v1, v2
from microstate.server.profile.domain import ProfileDomain
from microstate.server.profile.servicer import ProfileServicer
from microstate.server.registry import Microstate
from microstate.server.store.base import Store

CODECS = (v1.CODEC, v2.CODEC)


def attach(server: grpc.aio.Server, store: Store, *, stopping: asyncio.Event | None = None) -> None:
    domain = ProfileDomain(store)
    # The generated *_pb2_grpc registration helpers carry no annotations.
    v1_grpc.add_ProfileServiceServicer_to_server(ProfileServicer(domain, v1.CODEC, stopping), server)  # type: ignore[no-untyped-call]
    v2_grpc.add_ProfileServiceServicer_to_server(ProfileServicer(domain, v2.CODEC, stopping), server)  # type: ignore[no-untyped-call]


MICROSTATE = Microstate(
    name="profile",
    default_port=50051,
    service_names=tuple(codec.service_name for codec in CODECS),
    attach=attach,
)
