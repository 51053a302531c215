"""Contract version pinning: a client asking for a contract version this server does not serve is told so.

Every method path names its contract version (`/microstate.profile.v1.ProfileService/...`), and SDK clients
also name it in the `x-microstate-contract` header (for logs and proxies). A call to a served version needs no
check: the path is the version, and its messages are that version's. A call to a version the server does not
serve would get a bare UNIMPLEMENTED; instead it gets FAILED_PRECONDITION with ErrorInfo reason
CONTRACT_VERSION_NOT_SERVED naming the requested and the served versions, which a client can act on. A call to
a method a served version does not have (most often a newer client calling an RPC added after this server was
built) stays UNIMPLEMENTED, with ErrorInfo reason METHOD_NOT_IMPLEMENTED naming the service and method.

This is a catch-all generic handler, consulted by gRPC only after every served method failed to match, not a
server interceptor: a grpc.aio interceptor runs a coroutine chain on every call, which cost the profile
server ~10% of its Get throughput.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from microstate.server.errors import DomainError


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


class MethodNotImplemented(DomainError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "METHOD_NOT_IMPLEMENTED"

    def __init__(self, service: str, method: str) -> None:
        super().__init__(
            f"this server serves {contract_of(service)} but does not implement {service}/{method}"
            " (a method added after this server was built?)",
            metadata={"service": service, "method": method},
        )


class UnservedContracts(grpc.GenericRpcHandler):
    """Answers calls to `microstate.*` methods this server does not serve; see the module docstring."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self._served = frozenset(
            contract_of(name) for name in service_names if name.startswith("microstate.")
        )

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service_name, _, method_name = details.method.lstrip("/").partition("/")
        if not service_name.startswith("microstate."):
            return None  # not ours to explain: plain UNIMPLEMENTED
        contract = contract_of(service_name)
        if contract in self._served:
            status = MethodNotImplemented(service_name, method_name).to_status()
        else:
            # The versions of the contract asked for (a profile server also serves microstate.subjects.v1,
            # which a profile client has no use for); every served contract when none of it is.
            family = contract.rpartition(".")[0]
            versions = [served for served in self._served if served.rpartition(".")[0] == family]
            status = ContractNotServed(contract, versions or self._served).to_status()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort_with_status(status)

        return grpc.unary_unary_rpc_method_handler(refuse)


def refuse_unserved_contracts(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Install the catch-all; call it after every service is added (gRPC asks generic handlers in order)."""
    server.add_generic_rpc_handlers((UnservedContracts(service_names),))
