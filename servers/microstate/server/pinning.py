"""Contract version pinning: clients name their contract in metadata; the server checks it first.

A client pinned to a version this server does not serve gets FAILED_PRECONDITION
with ErrorInfo reason CONTRACT_VERSION_NOT_SERVED naming the requested and the
served versions, instead of a bare UNIMPLEMENTED it could not act on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from microstate.server.errors import DomainError

CONTRACT_METADATA_KEY = "x-microstate-contract"


def contract_of(service_name: str) -> str:
    """ "microstate.profile.v1.ProfileService" -> "microstate.profile.v1"."""
    return service_name.rpartition(".")[0]


class ContractNotServed(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CONTRACT_VERSION_NOT_SERVED"

    def __init__(self, requested: str, served: Iterable[str]) -> None:
        served_list = ", ".join(sorted(served))
        super().__init__(
            f"this server does not serve contract {requested}; it serves {served_list}",
            metadata={"requested": requested, "served": served_list},
        )


class ContractPinningInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service_names: Iterable[str]) -> None:
        self._served = frozenset(
            contract_of(name) for name in service_names if name.startswith("microstate.")
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        requested = dict(details.invocation_metadata or ()).get(CONTRACT_METADATA_KEY)
        if requested is None or requested in self._served:
            return await continuation(details)
        status = ContractNotServed(str(requested), self._served).to_status()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort_with_status(status)

        return grpc.unary_unary_rpc_method_handler(refuse)
