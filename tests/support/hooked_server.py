"""`python -m tests.support.hooked_server [HOOKS] NAME [FLAGS]`: `microstate serve NAME [FLAGS]` with
test-only interceptors handed to the Runtime, so the production package needs no test hooks.

HOOKS:
  --slow-calls S    each unary call to the microstate's own services waits S seconds first (slow_calls.py)

`processes.start_server(..., hooks=[...])` starts servers this way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import grpc

from microstate.server import logs, registry
from microstate.server.config import add_arguments, load
from microstate.server.serve import serve
from tests.support.slow_calls import SlowCallsInterceptor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hooked_server")
    parser.add_argument("--slow-calls", type=float, metavar="S", dest="hook_slow_calls")
    parser.add_argument("name")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = load(args)  # takes the settings; the hooks and the name are not settings
    microstate = registry.get(args.name)
    logs.configure(level=config.level, fmt=config.log_format, microstate=args.name)
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if args.hook_slow_calls is not None:
        interceptors.append(SlowCallsInterceptor(args.hook_slow_calls, microstate.service_names))
    return asyncio.run(serve(microstate, config, interceptors=interceptors))


if __name__ == "__main__":
    sys.exit(main())
