"""A slice's operations, declared once and bound to both its async and its sync client.

A slice writes one class of operations: each public method plans a call through `ClientCore` (no I/O) and
is marked with its call kind: `@unary` (one answer: a unary or a client-streaming call) or `@iterated` (a
walk over pages, a resumable server stream, or a bidirectional exchange). Its async and sync clients both
inherit that class; when a client class is created (`AsyncClient.__init_subclass__`,
`SyncClient.__init_subclass__`) every operation becomes a coroutine method on the async client and a
blocking method on the sync one, keeping the plan's signature and docstring. So a slice lists its
operations once, and the two twins cannot drift apart.

For type checkers, an operation is a descriptor whose type depends on the client it is read from: a
coroutine function on an `AsyncClient`, a plain function on a `SyncClient`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from microstate.client._plans import Iteration, Plan

P = ParamSpec("P")
O = TypeVar("O")  # noqa: E741 - the outcome a plan produces
T = TypeVar("T")


class AsyncClient(Protocol):
    """What tells an async client apart for the type checker (the class is `_aio.AsyncClient`)."""

    async def __aenter__(self) -> Any: ...


class SyncClient(Protocol):
    """What tells a sync client apart for the type checker (the class is `_sync.SyncClient`)."""

    def __enter__(self) -> Any: ...


class _Declared:
    """An operation not yet bound: reading it from a class that is not a client is a mistake."""

    plan: Callable[..., Any]

    def _unbound(self, instance: object, owner: type[Any]) -> Any:
        if instance is None:
            return self
        raise TypeError(
            f"{owner.__name__}.{self.plan.__name__}: bound only on an AsyncClient or a SyncClient"
        )


class Unary(_Declared, Generic[P, O]):
    """An operation of one request and one answer (which may come from a snapshot)."""

    def __init__(self, plan: Callable[Concatenate[Any, P], Plan[O]]) -> None:
        self.plan = plan

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: AsyncClient, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, O]]: ...
    @overload
    def __get__(self, instance: SyncClient, owner: type[Any]) -> Callable[P, O]: ...
    def __get__(self, instance: object, owner: type[Any]) -> Any:
        return self._unbound(instance, owner)


class Iterated(_Declared, Generic[P, T]):
    """An operation that yields: every item of every page, every event of a resumable stream, or every
    response of a bidirectional exchange."""

    def __init__(self, plan: Callable[Concatenate[Any, P], Iteration[T]]) -> None:
        self.plan = plan

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: AsyncClient, owner: type[Any]) -> Callable[P, AsyncGenerator[T, None]]: ...
    @overload
    def __get__(self, instance: SyncClient, owner: type[Any]) -> Callable[P, Generator[T, None, None]]: ...
    def __get__(self, instance: object, owner: type[Any]) -> Any:
        return self._unbound(instance, owner)


def unary(plan: Callable[Concatenate[Any, P], Plan[O]]) -> Unary[P, O]:
    return Unary(plan)


def iterated(plan: Callable[Concatenate[Any, P], Iteration[T]]) -> Iterated[P, T]:
    return Iterated(plan)


def bind(
    cls: type[Any],
    bind_unary: Callable[[Callable[..., Any]], Callable[..., Any]],
    bind_iterated: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> None:
    """Replace, on client class `cls`, every operation it inherits unbound with its bound method."""
    for name in dir(cls):
        declared = inspect.getattr_static(cls, name)
        if isinstance(declared, Unary):
            setattr(cls, name, bind_unary(declared.plan))
        elif isinstance(declared, Iterated):
            setattr(cls, name, bind_iterated(declared.plan))
