"""`python -m tests.support.hooked_server [HOOKS] NAME [FLAGS]`: `microstate serve NAME [FLAGS]` with
test-only interceptors handed to the Runtime, so the production package needs no test hooks.

HOOKS:
  --slow-calls S    each unary call to the microstate's own services waits S seconds first (slow_calls.py)
  --log-first-call  log FIRST_CALL when the first call to those services arrives, so a test can wait until
                    a client's channel really uses this server

`processes.start_server(..., hooks=[...])` starts servers this way.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

import grpc

from microstate.server import logs, registry
from microstate.server.config import add_arguments, load
from microstate.server.serve import serve
from tests.support.slow_calls import SlowCallsInterceptor

FIRST_CALL = "test hook: first call"
log = logging.getLogger(__name__)


class FirstCallLog(grpc.aio.ServerInterceptor):
    """Logs FIRST_CALL once, when the first call to one of `service_names` arrives."""

    def __init__(self, service_names: Sequence[str]) -> None:
        self._prefixes = tuple(f"/{name}/" for name in service_names)
        self._seen = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not self._seen and handler_call_details.method.startswith(self._prefixes):
            self._seen = True
            log.info(FIRST_CALL, extra={"method": handler_call_details.method})
        return await continuation(handler_call_details)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hooked_server")
    parser.add_argument("--slow-calls", type=float, metavar="S", dest="hook_slow_calls")
    parser.add_argument("--log-first-call", action="store_true", dest="hook_log_first_call")
    parser.add_argument("name")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = load(args)  # takes the settings; the hooks and the name are not settings
    microstate = registry.get(args.name)
    logs.configure(level=config.level, fmt=config.log_format, microstate=args.name)
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if args.hook_log_first_call:
        interceptors.append(FirstCallLog(microstate.service_names))
    if args.hook_slow_calls is not None:
        interceptors.append(SlowCallsInterceptor(args.hook_slow_calls, microstate.service_names))
    return asyncio.run(serve(microstate, config, interceptors=interceptors))


if __name__ == "__main__":
    sys.exit(main())
