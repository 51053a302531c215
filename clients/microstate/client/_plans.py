"""Planned calls: what the shared core decides, for the async and sync drivers to perform.

A plan holds no I/O, so every rule (deadlines, fallback, snapshots, breaker, typed errors) is written
once in `ClientCore` and the two drivers (`_aio.py`, `_sync.py`) only move bytes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from microstate.client._options import Metadata
from microstate.client._read import Page
from microstate.client._watch import WatchCursor

R = TypeVar("R")
T = TypeVar("T")
O = TypeVar("O")  # noqa: E741 - the outcome a plan produces
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Unary(Generic[R, O]):
    """One planned call with one answer: what to send and what its response or error becomes. A
    client-streaming call is one too: its `request` is an iterable of request messages (an async iterable
    too on the async client), sent as the iterable yields them."""

    method: str
    """The stub attribute, e.g. "GetProfile"."""
    request: object
    timeout: float | None
    metadata: Metadata
    on_response: Callable[[R], O]
    on_error: Callable[[grpc.RpcError], O | Split[O]]
    """Returns a fallback, or the parts to ask for instead (`Split`), or raises the typed error."""


@dataclass(frozen=True, slots=True)
class Split(Generic[O]):
    """A call the server refused as too large for one response, asked for again in parts, one after the
    other: each part's plan is made only when its turn comes (so it gets what is left of the deadline),
    and `combine` turns their outcomes, in order, into the call's."""

    parts: Sequence[Callable[[], Plan[Any]]]
    combine: Callable[[list[Any]], O]


class Answered(Generic[O]):
    """A plan that needs no call (e.g. the breaker is open and a snapshot is served): its result."""

    __slots__ = ("value",)

    def __init__(self, value: O) -> None:
        self.value = value


Plan = Unary[Any, O] | Answered[O]


@dataclass(frozen=True, slots=True)
class Pages(Generic[T]):
    """A planned walk over every page of a List call."""

    page: Callable[[str], Plan[Page[T]]]
    """The plan for the page at a token ("" for the first page)."""


def every_page(list_page: Callable[..., Plan[Page[T]]], *args: Any, **kwargs: Any) -> Pages[T]:
    """The walk over every page of a slice's list operation: `list_page` is its plan (`Ops.list.plan`),
    called with `args`, `kwargs` and each page's token."""
    return Pages(lambda page_token: list_page(*args, page_token=page_token, **kwargs))


@dataclass(frozen=True, slots=True)
class Stream(Generic[E]):
    """A planned, resumable server stream."""

    method: str
    request_for: Callable[[str], object]
    """The request that resumes after a resume token ("" for none)."""
    cursor: WatchCursor[Any]
    """Turns each event into the change (an E) the caller gets, and resumes after it."""
    metadata: Metadata


@dataclass(frozen=True, slots=True)
class Exchange(Generic[E]):
    """A planned bidirectional stream: requests go out as the caller's iterable yields them (an async
    iterable too on the async client), and each response comes back through `on_item`. Not resumed and
    not retried: what was sent may have been acted on, so a cut stream raises its typed error. A
    server-streaming call that is not a resumable watch (a download) is one too: `requests` is then its
    one request message."""

    method: str
    requests: Any
    timeout: float | None
    metadata: Metadata
    on_item: Callable[[Any], E]


Iteration = Pages[T] | Stream[T] | Exchange[T]
"""What an iterated operation plans."""


def signed_like(bound: Callable[..., Any], plan: Callable[..., Any]) -> None:
    """Give a client method bound from a plan the plan's name, docs and parameters (for help() and IDEs),
    without the plan's internal return type."""
    functools.update_wrapper(bound, plan)
    delattr(bound, "__wrapped__")
    signature = inspect.signature(plan).replace(return_annotation=inspect.Signature.empty)
    bound.__signature__ = signature  # type: ignore[attr-defined]
