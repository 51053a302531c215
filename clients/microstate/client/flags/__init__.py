"""Client of the feature-flags microstate (microstate.flags.v1): admin calls, and local evaluation from a rule
set kept in sync over SyncFlags and saved to disk.

from microstate.client.flags import FlagsClient

async with FlagsClient("localhost:50053", rule_set_path="/var/lib/app/flags.rules") as flags:
    await flags.start()  # loads the saved rule set, follows SyncFlags in the background
    if flags.evaluate_bool("new-checkout", False, {"targetingKey": user_id, "plan": "pro"}):
        ...
    details = flags.evaluate_string_details("model", "small", {"targetingKey": user_id})
    log.info("%s via %s at revision %d", details.value, details.reason, details.revision)

Evaluations make no call and never raise: a missing rule set, flag or type gives the caller's default with
reason ERROR and an error code. While the sync stream is down or silent (two heartbeat intervals), answers
carry reason STALE and `stale_age`. `microstate.client.flags.provider` is the OpenFeature provider.
"""

from microstate.client._read import Page, Read
from microstate.client.flags._client import (
    CONTRACT,
    DEFAULT_START_WAIT,
    DEFAULT_TARGET,
    ENV_RULE_SET_PATH,
    ENV_TARGET,
    CallMetadata,
    Context,
    FlagsClient,
    SyncFlagsClient,
)
from microstate.client.flags._local import (
    ErrorCode,
    EvaluationDetails,
    EventKind,
    Reason,
    RuleSetEvent,
    RuleSetState,
    RuleSetStatus,
)
from microstate.flags.v1.flags_pb2 import Flag, UpdateFlagResponse

__all__ = [
    "CONTRACT",
    "DEFAULT_START_WAIT",
    "DEFAULT_TARGET",
    "ENV_RULE_SET_PATH",
    "ENV_TARGET",
    "CallMetadata",
    "Context",
    "ErrorCode",
    "EvaluationDetails",
    "EventKind",
    "Flag",
    "FlagsClient",
    "Page",
    "Read",
    "Reason",
    "RuleSetEvent",
    "RuleSetState",
    "RuleSetStatus",
    "SyncFlagsClient",
    "UpdateFlagResponse",
]
