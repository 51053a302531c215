"""The user profile microstate: one domain, one stored representation, one adapter per contract version."""

from __future__ import annotations

import grpc

from microstate.profile.v1 import profile_pb2_grpc
from microstate.server.profile import v1
from microstate.server.profile.domain import ProfileDomain
from microstate.server.registry import Microstate
from microstate.server.store.base import Store


def attach(server: grpc.aio.Server, store: Store) -> None:
    domain = ProfileDomain(store)
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(v1.ProfileServiceV1(domain), server)


MICROSTATE = Microstate(name="profile", default_port=50051, service_names=(v1.SERVICE_NAME,), attach=attach)
