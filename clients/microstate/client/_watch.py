"""The state of one resumable watch, shared by the async and sync stream drivers."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import grpc

from microstate.client._options import RetryPolicy
from microstate.client.errors import DeadlineExceeded, Unavailable, from_grpc_error


class Change(Protocol):
    """What a watch yields: at least the token that resumes after it."""

    @property
    def resume_token(self) -> str: ...


C = TypeVar("C", bound=Change)

ConnectionListener = Callable[[bool, str], None]
"""Told (True, resume_token) when a stream is open (its response headers arrived) and (False, resume_token)
when it ended, with the token it was opened from or has reached since; see `WatchCursor`."""


class WatchCursor(Generic[C]):
    """The resumable state of one watch: the last resume token, the reconnect backoff, the deadline.

    A stream that fails with UNAVAILABLE, or ends cleanly (the server drained), is reopened after a
    jittered backoff from the last resume token, so the caller sees no gap and no duplicate. Any other
    failure is raised typed.

    A `listener` learns when streams open and end. A cache that must hear of every change after some
    moment needs it: a stream opened from "" covers only what follows its start, and one that ends before
    its first event leaves nothing to resume from, so the next one starts a new, later cover.
    """

    def __init__(
        self,
        resume_token: str,
        observe: Callable[[Any], C],
        retry: RetryPolicy,
        timeout: float | None,
        listener: ConnectionListener | None = None,
    ) -> None:
        self.resume_token = resume_token
        self._observe = observe
        self.listener = listener
        self._retry = retry
        self._backoff = self._retry.initial_backoff
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def seen(self, event: Any) -> C:
        """The change the stream's `event` is for the caller; the watch resumes after it from now on."""
        change = self._observe(event)
        self.resume_token = change.resume_token
        self._backoff = self._retry.initial_backoff
        return change

    def opened(self) -> None:
        """The drivers call this once a stream's response headers arrived (only when there is a listener).

        gRPC's Python API cannot tell headers from the empty ones of a call refused before any: a call the
        drivers see done is not reported, and one whose status comes a moment later is reported open, then
        ended (listener(False, ...)) as soon as its status arrives."""
        if self.listener is not None:
            self.listener(True, self.resume_token)

    def reconnect_delay(self, err: grpc.RpcError | None) -> float:
        """Seconds to wait before reopening the stream; raises when it must not be reopened."""
        if self.listener is not None:
            self.listener(False, self.resume_token)
        if err is not None and not isinstance(error := from_grpc_error(err), Unavailable):
            raise error from err
        delay = random.uniform(0, self._backoff)  # full jitter, so a fleet does not reconnect in lockstep
        self._backoff = min(self._backoff * self._retry.backoff_multiplier, self._retry.max_backoff)
        remaining = self.remaining()
        if remaining is not None and remaining <= delay:
            if err is not None:
                raise DeadlineExceeded("watch deadline passed while reconnecting") from err
            raise DeadlineExceeded("watch deadline passed while reconnecting")
        return delay
