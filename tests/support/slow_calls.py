"""A test-only interceptor that slows the unary calls of a microstate, so drain tests have calls in flight.

Each unary call to the microstate's own services waits before its handler runs; health and reflection are
never delayed. Servers get it through tests.support.hooked_server (`--slow-calls SECONDS`): the production
package has no test hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from tests.support.unary_hooks import Behaviour, UnaryHook

DELAYING = "test hook: delaying call"
"""Logged as each call starts waiting, so a test can tell when its calls are really in flight."""
log = logging.getLogger(__name__)


class SlowCallsInterceptor(UnaryHook):
    def __init__(self, delay_seconds: float, service_names: Sequence[str]) -> None:
        super().__init__([f"/{name}/" for name in service_names])
        self._delay = delay_seconds

    def around(self, method: str, handler: Behaviour) -> Behaviour:
        delay = self._delay

        async def slow(request: Any, context: grpc.aio.ServicerContext) -> Any:
            log.info(DELAYING, extra={"method": method, "delay_seconds": delay})
            await asyncio.sleep(delay)
            return await handler(request, context)

        return slow
