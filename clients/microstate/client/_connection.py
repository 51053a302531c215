"""A call on a channel without a connection fails at once with UNAVAILABLE, rather than at its deadline.

Reads carry gRPC's retry policy (UNAVAILABLE, several attempts; _channel.py). While the channel has no
connection (the server refused it, or is gone) each attempt fails at once, but gRPC waits its retry
backoff between them (0.1 s, 0.2 s, 0.4 s by default), and none can succeed: the channel does not try to
connect again before its own reconnect backoff has passed. So a read of a dead server took ~0.7 s to
report UNAVAILABLE, or its whole deadline when that was shorter and then reported DEADLINE_EXCEEDED, before
its snapshot was served; `check_contract()` timed out the same way.

So the drivers look at the channel before each unary call (`gate`): connected, the call goes out as ever;
idle or connecting, they wait, within the call's deadline, for the outcome of the connection attempt
(which gRPC would also make the call wait for); not connected (TRANSIENT_FAILURE), the call fails at once
with UNAVAILABLE and reads fall back to their snapshots. gRPC keeps reconnecting in the background, its
backoff bounded by ClientOptions.max_reconnect_backoff, and calls go out again as soon as it connects.
"""

from __future__ import annotations

import time

import grpc

READY = grpc.ChannelConnectivity.READY
PENDING = frozenset({grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING})
"""States in which a connection attempt is to be made or is under way: wait for its outcome."""
NOT_CONNECTED = grpc.ChannelConnectivity.TRANSIENT_FAILURE
BY_CODE = {state.value[0]: state for state in grpc.ChannelConnectivity}
"""Connectivity by gRPC core's number for it."""


class Gate:
    """The wait before one call: how much of its `timeout` is left, and the error that fails it."""

    def __init__(self, target: str, timeout: float | None) -> None:
        self._target = target
        self._timeout = timeout
        self._started = time.monotonic()

    def left(self) -> float | None:
        """What remains of the timeout (None: no deadline)."""
        if self._timeout is None:
            return None
        return max(0.0, self._started + self._timeout - time.monotonic())

    def not_connected(self) -> grpc.aio.AioRpcError:
        """UNAVAILABLE, as gRPC reports a call it could not send, for the call's on_error."""
        return _error(
            grpc.StatusCode.UNAVAILABLE,
            f"not connected to {self._target}: the last attempt to connect failed; the call was not sent"
            " (the channel keeps reconnecting in the background)",
        )

    def timed_out(self) -> grpc.aio.AioRpcError:
        """DEADLINE_EXCEEDED while still connecting, as gRPC reports a call that waited for a connection."""
        message = f"deadline exceeded while connecting to {self._target}"
        return _error(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
