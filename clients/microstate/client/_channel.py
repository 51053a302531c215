"""Channels: retries declared in the service config, reconnect backoff bounded, TLS when asked.

Retries are gRPC's own (gRFC A6): a retryPolicy for the idempotent methods only, UNAVAILABLE only,
bounded attempts and exponential backoff, all inside the call's one deadline. Writes get no policy: a
write whose answer was lost may have been applied, so retrying it blindly is not safe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

from microstate.client._options import MAX_RESPONSE_BYTES, ClientOptions, RetryPolicy

ChannelArguments = list[tuple[str, str | int]]


def _duration(seconds: float) -> str:
    # Protobuf JSON duration: decimal seconds with at most nine fractional digits and an "s" suffix.
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def service_config(service: str, idempotent_methods: Sequence[str], retry: RetryPolicy) -> str:
    """The service config JSON that gives `idempotent_methods` of `service` the retry policy."""
    method_configs: list[dict[str, object]] = []
    if retry.max_attempts > 1 and idempotent_methods:
        method_configs.append(
            {
                "name": [{"service": service, "method": method} for method in idempotent_methods],
                "retryPolicy": {
                    "maxAttempts": retry.max_attempts,
                    "initialBackoff": _duration(retry.initial_backoff),
                    "maxBackoff": _duration(retry.max_backoff),
                    "backoffMultiplier": retry.backoff_multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps({"methodConfig": method_configs})


def channel_arguments(
    options: ClientOptions, service: str, idempotent_methods: Sequence[str]
) -> ChannelArguments:
    backoff_ms = int(options.max_reconnect_backoff * 1000)
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(service, idempotent_methods, options.retry)),
        # gRPC would otherwise back off up to 120 s between reconnects, keeping reads on snapshots long
        # after the service is back.
        ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
        # What the servers promise never to exceed; stated so the two sides agree by construction.
        ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
        *options.channel_options,
    ]


def credentials(options: ClientOptions) -> grpc.ChannelCredentials | None:
    """The channel credentials to use, or None for plaintext."""
    if options.credentials is not None:
        return options.credentials
    if options.tls is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=options.tls.root_certificates,
        private_key=options.tls.private_key,
        certificate_chain=options.tls.certificate_chain,
    )


def open_aio_channel(target: str, options: ClientOptions, arguments: ChannelArguments) -> grpc.aio.Channel:
    creds = credentials(options)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=arguments)
    return grpc.aio.secure_channel(target, creds, options=arguments)


def open_sync_channel(target: str, options: ClientOptions, arguments: ChannelArguments) -> grpc.Channel:
    creds = credentials(options)
    if creds is None:
        return grpc.insecure_channel(target, options=arguments)
    return grpc.secure_channel(target, creds, options=arguments)
