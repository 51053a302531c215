"""An OpenFeature provider (`openfeature-sdk`, the `openfeature` extra) that evaluates from a flags client's
synced rule set, so OpenFeature users plug Microstate in unchanged:

from openfeature import api
from microstate.client.flags.provider import MicrostateProvider

api.set_provider_and_wait(MicrostateProvider(target="flags:50053", rule_set_path="/var/lib/app/flags.rules"))
context = EvaluationContext("user-1", {"plan": "pro"})
enabled = api.get_client().get_boolean_value("new-checkout", False, context)

Reasons and error codes map one to one (OpenFeature's names are the contract's). Provider events follow
the rule set: READY when it is current, CONFIGURATION_CHANGED with the keys of changed flags, STALE while
its stream is down or silent (evaluations say STALE too), ERROR when the stream fails for another reason.
`initialize` starts the client and waits for a current rule set, or for a saved one when the service is down
(the provider is then READY with STALE answers, and reports STALE at its first evaluation); with neither it
fails with PROVIDER_NOT_READY and the provider turns READY by event once the stream delivers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode as OpenFeatureErrorCode
from openfeature.exception import GeneralError, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.provider import AbstractProvider, Metadata

from microstate.client import _options
from microstate.client.flags._client import DEFAULT_START_WAIT, FlagsClient, FlagsOperations, SyncFlagsClient
from microstate.client.flags._local import (
    ErrorCode,
    EvaluationDetails,
    EventKind,
    Reason,
    RuleSetEvent,
    RuleSetState,
)

T = TypeVar("T")

NAME = "microstate-flags"
Structure = Sequence[FlagValueType] | Mapping[str, FlagValueType]


class MicrostateProvider(AbstractProvider):
    """OpenFeature provider over a `SyncFlagsClient` (made from `target`, `options` and `rule_set_path`
    when none is given, and then closed at shutdown), or over a `FlagsClient` already started on its loop.
    `start_wait`: seconds `initialize` waits for a rule set."""

    def __init__(
        self,
        client: FlagsOperations | None = None,
        *,
        target: str | None = None,
        options: _options.ClientOptions | None = None,
        rule_set_path: str | None = None,
        start_wait: float = DEFAULT_START_WAIT,
    ) -> None:
        super().__init__()
        self._owned = client is None
        self._client: FlagsOperations = (
            SyncFlagsClient(target, options=options, rule_set_path=rule_set_path)
            if client is None
            else client
        )
        self._start_wait = start_wait
        self._remove_listener: Any = None
        self._stale_unreported = False

    @property
    def client(self) -> FlagsOperations:
        return self._client

    def get_metadata(self) -> Metadata:
        return Metadata(name=NAME)

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self._remove_listener is None:
            self._remove_listener = self._client.add_listener(self._on_event)
        if isinstance(self._client, SyncFlagsClient):
            status = self._client.start(wait=self._start_wait)
        else:
            status = self._client.rule_set_status()  # an async client is started on its own loop
        if status.state is RuleSetState.NOT_READY:
            raise ProviderNotReadyError(f"no rule set from {self._client.target} yet, and none saved")
        if status.revision is None:
            raise GeneralError(f"the sync stream from {self._client.target} failed")
        # Registration reports READY once this returns; a rule set started from the file is STALE, which
        # the provider reports at its first evaluation (an event sent now would come before READY).
        self._stale_unreported = status.state is not RuleSetState.READY

    def shutdown(self) -> None:
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            remove()
        if self._owned and isinstance(self._client, SyncFlagsClient):
            self._client.close()

    def _on_event(self, event: RuleSetEvent) -> None:
        self._stale_unreported = False
        details = ProviderEventDetails(
            message=event.message or None, metadata={"revision": event.revision or 0}
        )
        if event.kind is EventKind.READY:
            self.emit_provider_ready(details)
        elif event.kind is EventKind.CHANGED:
            details.flags_changed = list(event.flags_changed)
            self.emit_provider_configuration_changed(details)
        elif event.kind is EventKind.STALE:
            self.emit_provider_stale(details)
        elif event.kind is EventKind.ERROR:
            details.error_code = OpenFeatureErrorCode.GENERAL
            self.emit_provider_error(details)

    def _resolved(self, details: EvaluationDetails[T]) -> FlagResolutionDetails[T]:
        if self._stale_unreported and details.reason is Reason.STALE:
            self._stale_unreported = False
            self.emit_provider_stale(ProviderEventDetails(message="serving the saved rule set"))
        error = details.error_code
        metadata: dict[str, bool | int | float | str] = {
            **details.flag_metadata,
            "revision": details.revision,
        }
        if details.stale_age is not None and math.isfinite(details.stale_age):
            metadata["staleAge"] = details.stale_age
        return FlagResolutionDetails(
            value=details.value,
            error_code=None if error is ErrorCode.UNSPECIFIED else _ERROR_CODES[error],
            error_message=details.error_message or None,
            reason=_REASONS.get(details.reason, OpenFeatureReason.UNKNOWN),
            variant=details.variant or None,
            flag_metadata=metadata,
        )

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        context, key = _context(evaluation_context)
        return self._resolved(
            self._client.evaluate_bool_details(flag_key, default_value, context, targeting_key=key)
        )

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        context, key = _context(evaluation_context)
        return self._resolved(
            self._client.evaluate_string_details(flag_key, default_value, context, targeting_key=key)
        )

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        context, key = _context(evaluation_context)
        details = self._client.evaluate_number_details(flag_key, default_value, context, targeting_key=key)
        resolved: FlagResolutionDetails[Any] = self._resolved(details)
        if details.variant:  # the flag's own number: an integer only if it is a whole one
            value = details.value
            if isinstance(value, float) and value.is_integer():
                resolved.value = int(value)
            else:
                resolved = FlagResolutionDetails(
                    value=default_value,
                    error_code=OpenFeatureErrorCode.TYPE_MISMATCH,
                    error_message=f"flag {flag_key!r} has the number {value!r}, not an integer",
                    reason=OpenFeatureReason.ERROR,
                )
        return resolved

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        context, key = _context(evaluation_context)
        return self._resolved(
            self._client.evaluate_number_details(flag_key, default_value, context, targeting_key=key)
        )

    def resolve_object_details(
        self, flag_key: str, default_value: Structure, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[Structure]:
        context, key = _context(evaluation_context)
        return self._resolved(
            self._client.evaluate_object_details(flag_key, default_value, context, targeting_key=key)
        )


def _context(context: EvaluationContext | None) -> tuple[Mapping[str, Any] | None, str | None]:
    """OpenFeature's context as the client's: its attributes (datetimes as ISO 8601 strings, which compare
    as strings) and its targeting key (None: the attributes' "targetingKey", if any)."""
    if context is None:
        return None, None
    attributes = context.attributes
    if any(isinstance(value, datetime) for value in attributes.values()):
        attributes = {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in attributes.items()
        }
    return attributes, context.targeting_key or None


_REASONS = {
    Reason.STATIC: OpenFeatureReason.STATIC,
    Reason.TARGETING_MATCH: OpenFeatureReason.TARGETING_MATCH,
    Reason.SPLIT: OpenFeatureReason.SPLIT,
    Reason.DEFAULT: OpenFeatureReason.DEFAULT,
    Reason.DISABLED: OpenFeatureReason.DISABLED,
    Reason.ERROR: OpenFeatureReason.ERROR,
    Reason.STALE: OpenFeatureReason.STALE,
    Reason.CACHED: OpenFeatureReason.CACHED,
}
_ERROR_CODES = {
    ErrorCode.FLAG_NOT_FOUND: OpenFeatureErrorCode.FLAG_NOT_FOUND,
    ErrorCode.TYPE_MISMATCH: OpenFeatureErrorCode.TYPE_MISMATCH,
    ErrorCode.TARGETING_KEY_MISSING: OpenFeatureErrorCode.TARGETING_KEY_MISSING,
    ErrorCode.INVALID_CONTEXT: OpenFeatureErrorCode.INVALID_CONTEXT,
    ErrorCode.PROVIDER_NOT_READY: OpenFeatureErrorCode.PROVIDER_NOT_READY,
    ErrorCode.GENERAL: OpenFeatureErrorCode.GENERAL,
    ErrorCode.PARSE_ERROR: OpenFeatureErrorCode.PARSE_ERROR,
    ErrorCode.UNSPECIFIED: OpenFeatureErrorCode.GENERAL,
}

__all__ = ["NAME", "FlagsClient", "MicrostateProvider", "SyncFlagsClient"]
