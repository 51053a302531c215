"""The OpenFeature provider end to end: `openfeature-sdk`'s own client over a real flags server, with its
reasons, error codes, variants and provider events (READY, CONFIGURATION_CHANGED, STALE)."""

# ruff: noqa: F811 - `flags_server` is the fixture imported from the harness

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from microstate.client.flags import FlagsClient
from microstate.client.flags.provider import MicrostateProvider
from microstate.flags.v1 import flags_pb2 as f
from tests.client.flags_harness import (
    WITHIN,
    FlagsServer,
    bool_flag,
    flags_server,  # noqa: F401 (the fixture)
    model_flag,
    once_up,
    options,
)
from tests.support.processes import until


@pytest.fixture
def events() -> Iterator[list[tuple[ProviderEvent, EventDetails]]]:
    """Every provider event OpenFeature dispatches during the test (handlers run on provider threads)."""
    seen: list[tuple[ProviderEvent, EventDetails]] = []
    lock = threading.Lock()

    def recorder(kind: ProviderEvent) -> Callable[[EventDetails], None]:
        def record(details: EventDetails) -> None:
            with lock:
                seen.append((kind, details))

        return record

    for kind in ProviderEvent:
        api.add_handler(kind, recorder(kind))
    yield seen
    api.clear_providers()  # which drops the handlers too


def number_flag(key: str, number: float) -> f.Flag:
    return f.Flag(
        key=key,
        type=f.VARIANT_TYPE_NUMBER,
        variants=[f.Variant(name="n", value=f.VariantValue(number_value=number))],
        default_variant="n",
    )


async def test_openfeature_client_evaluates_through_the_provider(
    flags_server: FlagsServer, tmp_path: Path, events: list[tuple[ProviderEvent, EventDetails]]
) -> None:
    async with FlagsClient(options=options(flags_server.target)) as admin:
        await admin.create(model_flag())
        await admin.create(bool_flag("kill-switch", False))
        await admin.create(number_flag("limit", 42))
        await admin.create(number_flag("ratio", 0.25))
        provider = MicrostateProvider(
            options=options(flags_server.target), rule_set_path=str(tmp_path / "rules"), start_wait=WITHIN
        )
        await asyncio.to_thread(api.set_provider_and_wait, provider, "flags-test")
        client = api.get_client("flags-test")
        assert client.get_provider_status() is ProviderStatus.READY

        enterprise = EvaluationContext("user-1", {"plan": "enterprise", "seats": 80})
        details = client.get_string_details("model", "x", enterprise)
        assert (details.value, details.variant, details.reason) == ("large", "large", Reason.TARGETING_MATCH)
        assert details.flag_metadata["revision"] == provider.client.rule_set_status().revision
        split = client.get_string_details("model", "x", EvaluationContext("user-7", {}))
        assert split.reason == Reason.SPLIT
        assert split.value == provider.client.evaluate_string("model", "x", targeting_key="user-7")
        assert client.get_boolean_value("kill-switch", True) is False
        assert client.get_integer_details("limit", 0).value == 42
        ratio = client.get_integer_details("ratio", 7)
        assert (ratio.value, ratio.error_code) == (7, ErrorCode.TYPE_MISMATCH)
        assert client.get_float_value("ratio", 0.0) == 0.25
        missing = client.get_boolean_details("nope", True)
        assert (missing.value, missing.reason, missing.error_code) == (
            True,
            Reason.ERROR,
            ErrorCode.FLAG_NOT_FOUND,
        )
        mismatch = client.get_object_details("kill-switch", {"a": 1})
        assert (mismatch.value, mismatch.error_code) == ({"a": 1}, ErrorCode.TYPE_MISMATCH)

        await admin.update(bool_flag("kill-switch", True), ["default_variant"])
        await until(
            lambda: any(
                kind is ProviderEvent.PROVIDER_CONFIGURATION_CHANGED
                and details.flags_changed == ["kill-switch"]
                for kind, details in events
            ),
            within=WITHIN,
            what="a configuration change event",
        )
        assert client.get_boolean_value("kill-switch", False) is True

        await flags_server.stop()
        await until(
            lambda: client.get_provider_status() is ProviderStatus.STALE, within=WITHIN, what="provider STALE"
        )
        assert client.get_boolean_details("kill-switch", False).reason == Reason.STALE
        await flags_server.start()
        await until(
            lambda: client.get_provider_status() is ProviderStatus.READY,
            within=WITHIN,
            what="provider READY again",
        )
        await once_up(admin.check_contract)
    await asyncio.to_thread(api.shutdown)


async def test_provider_starts_from_the_saved_rule_set_while_the_server_is_down(
    flags_server: FlagsServer, tmp_path: Path, events: list[tuple[ProviderEvent, EventDetails]]
) -> None:
    path = str(tmp_path / "rules")
    async with FlagsClient(options=options(flags_server.target), rule_set_path=path) as warm:
        await warm.create(bool_flag("kill-switch", False))
        await warm.start(wait=WITHIN)
    await flags_server.stop()

    provider = MicrostateProvider(options=options(flags_server.target), rule_set_path=path, start_wait=WITHIN)
    await asyncio.to_thread(api.set_provider_and_wait, provider, "cold")
    client = api.get_client("cold")
    details = client.get_boolean_details("kill-switch", True)
    assert (details.value, details.reason) == (False, Reason.STALE)
    assert client.get_provider_status() is ProviderStatus.STALE  # reported at the first evaluation

    no_file = MicrostateProvider(options=options(flags_server.target), start_wait=0.5)
    with pytest.raises(Exception, match="no rule set"):
        await asyncio.to_thread(api.set_provider_and_wait, no_file, "empty")
    assert api.get_client("empty").get_provider_status() is ProviderStatus.ERROR
    assert api.get_client("empty").get_boolean_details("kill-switch", True).value is True
    await flags_server.start()
    await until(
        lambda: api.get_client("empty").get_provider_status() is ProviderStatus.READY,
        within=WITHIN,
        what="the provider to turn READY once the stream delivers",
    )
    assert api.get_client("empty").get_boolean_value("kill-switch", True) is False
    await asyncio.to_thread(api.shutdown)
