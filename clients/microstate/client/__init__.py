"""Microstate client SDK: typed, deadline-bound clients with snapshot fallback, one module per contract.

Clients live in per-contract modules (`microstate.client.profile.v1`, `microstate.client.profile.v2`);
this package holds what all of them share: options, read results and the error hierarchy.
"""

from microstate.client._base import CONTRACT_METADATA_KEY
from microstate.client._breaker import BreakerState
from microstate.client._options import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_BREAKER_FAILURE_THRESHOLD,
    DEFAULT_BREAKER_RESET_TIMEOUT,
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_RECONNECT_BACKOFF,
    DEFAULT_NEAR_CACHE_MAX_ENTRIES,
    DEFAULT_NEAR_CACHE_MAX_STALENESS,
    DEFAULT_SNAPSHOT_FLUSH_INTERVAL,
    DEFAULT_SNAPSHOT_MAX_AGE,
    DEFAULT_SNAPSHOT_MAX_ENTRIES,
    DEFAULT_TIMEOUT,
    ENV_LATENCY_BUDGET,
    ENV_SNAPSHOT_PATH,
    ENV_TARGET,
    ENV_TIMEOUT,
    BreakerOptions,
    ClientOptions,
    NearCacheOptions,
    RetryPolicy,
    SnapshotOptions,
    TlsOptions,
)
from microstate.client._read import BatchRead, Page, Read, Source
from microstate.client._replica import Liveness, Replica, ReplicaStatus
from microstate.client.errors import ContractVersionNotServed, MicrostateError, NoSnapshotError

__all__ = [
    "CONTRACT_METADATA_KEY",
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_BREAKER_FAILURE_THRESHOLD",
    "DEFAULT_BREAKER_RESET_TIMEOUT",
    "DEFAULT_INITIAL_BACKOFF",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_MAX_RECONNECT_BACKOFF",
    "DEFAULT_NEAR_CACHE_MAX_ENTRIES",
    "DEFAULT_NEAR_CACHE_MAX_STALENESS",
    "DEFAULT_SNAPSHOT_FLUSH_INTERVAL",
    "DEFAULT_SNAPSHOT_MAX_AGE",
    "DEFAULT_SNAPSHOT_MAX_ENTRIES",
    "DEFAULT_TIMEOUT",
    "ENV_LATENCY_BUDGET",
    "ENV_SNAPSHOT_PATH",
    "ENV_TARGET",
    "ENV_TIMEOUT",
    "BatchRead",
    "BreakerOptions",
    "BreakerState",
    "ClientOptions",
    "ContractVersionNotServed",
    "Liveness",
    "MicrostateError",
    "NearCacheOptions",
    "NoSnapshotError",
    "Page",
    "Read",
    "Replica",
    "ReplicaStatus",
    "RetryPolicy",
    "SnapshotOptions",
    "Source",
    "TlsOptions",
]
