"""A slice declares its operations once; its async and sync clients both get every one, typed by kind."""

from __future__ import annotations

import inspect

import pytest

from microstate.client._operations import Iterated, Unary
from microstate.client.profile import _shared
from microstate.client.profile.v1 import ProfileClient, SyncProfileClient
from microstate.client.profile.v2 import ProfileClient as ProfileClientV2

DECLARED = {
    name: value
    for name, value in vars(_shared.ProfileOperations).items()
    if isinstance(value, Unary | Iterated)
}


def test_every_declared_operation_is_bound_on_both_twins_with_its_signature_and_doc() -> None:
    assert set(DECLARED) == {
        "get", "batch_get", "list", "list_all", "create", "update", "delete", "watch", "check_contract",
        "_near_cache_feed",  # the watch the near-cache follows in the background
    }  # fmt: skip
    for client in (ProfileClient, SyncProfileClient, ProfileClientV2):
        for name, declared in DECLARED.items():
            method = getattr(client, name)
            assert not isinstance(method, Unary | Iterated), f"{client.__name__}.{name} left unbound"
            assert method.__doc__ == declared.plan.__doc__
            assert list(inspect.signature(method).parameters) == list(
                inspect.signature(declared.plan).parameters
            )


def test_async_operations_are_coroutines_and_iterators_sync_ones_are_plain() -> None:
    for name, declared in DECLARED.items():
        asynchronous, blocking = getattr(ProfileClient, name), getattr(SyncProfileClient, name)
        assert inspect.iscoroutinefunction(asynchronous) == isinstance(declared, Unary)
        assert not inspect.iscoroutinefunction(blocking)


def test_an_operation_read_from_a_class_that_is_no_client_says_so() -> None:
    class NotAClient(_shared.ProfileOperations[object]):  # type: ignore[type-var]
        pass

    with pytest.raises(TypeError, match="bound only on an AsyncClient or a SyncClient"):
        NotAClient.__new__(NotAClient).get  # noqa: B018
