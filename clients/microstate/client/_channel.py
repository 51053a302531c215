"""Channels: retries declared in the service config, reconnect backoff bounded, TLS when asked.

Retries are gRPC's own (gRFC A6): bounded attempts and exponential backoff, all inside the call's one
deadline, each attempt load-balanced afresh (so it can go to another address). What is retried:
- reads (the idempotent methods): UNAVAILABLE and CANCELLED. gRPC never retries a call its caller cancelled;
  a CANCELLED from the server is a call that raced a server shutting down and was dropped before any
  handler took it (see microstate.server.runtime).
- writes (every other method): CANCELLED only. gRPC never retries a call once its response headers have
  arrived, and every Microstate write handler sends its headers before it does anything else
  (microstate.server.commit), so a write that is retried provably never ran. Any other failure of a write,
  UNAVAILABLE included, may come after the write was applied (its answer lost): gRPC never retries it. The
  SDK sends such a write once more itself when it carries a request id (AIP-155; ClientCore.write's
  resend_if_lost), because the service then applies it once however often it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

from microstate.client._options import MAX_RESPONSE_BYTES, ClientOptions, RetryPolicy, names_several_addresses

ChannelArguments = list[tuple[str, str | int]]


def _duration(seconds: float) -> str:
    # Protobuf JSON duration: decimal seconds with at most nine fractional digits and an "s" suffix.
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def service_config(
    service: str,
    idempotent_methods: Sequence[str],
    retry: RetryPolicy,
    *,
    load_balancing: str | None = None,
    health_checked: bool = False,
) -> str:
    """The service config JSON: `idempotent_methods` of `service` retry UNAVAILABLE and CANCELLED, its other
    methods (the writes) CANCELLED only (see the module docstring); `load_balancing` names the policy, and
    `health_checked` has it send calls only to addresses whose health reports `service` SERVING."""
    rules = [([{"service": service}], ["CANCELLED"])]
    if idempotent_methods:
        reads = [{"service": service, "method": method} for method in idempotent_methods]
        rules.append((reads, ["UNAVAILABLE", "CANCELLED"]))
    method_configs = [
        {
            "name": names,
            "retryPolicy": {
                "maxAttempts": retry.max_attempts,
                "initialBackoff": _duration(retry.initial_backoff),
                "maxBackoff": _duration(retry.max_backoff),
                "backoffMultiplier": retry.backoff_multiplier,
                "retryableStatusCodes": codes,
            },
        }
        for names, codes in rules
        if retry.max_attempts > 1
    ]
    config: dict[str, object] = {"methodConfig": method_configs}
    if load_balancing is not None:
        config["loadBalancingConfig"] = [{load_balancing: {}}]
    if health_checked:
        config["healthCheckConfig"] = {"serviceName": service}
    return json.dumps(config)


def load_balancing(options: ClientOptions, target: str) -> str | None:
    """The policy to ask for: the one configured, else round_robin for a target of several addresses."""
    if options.load_balancing is not None:
        return options.load_balancing
    return "round_robin" if names_several_addresses(target) else None


def channel_arguments(
    options: ClientOptions, target: str, service: str, idempotent_methods: Sequence[str]
) -> ChannelArguments:
    backoff_ms = int(options.max_reconnect_backoff * 1000)
    policy = load_balancing(options, target)
    # pick_first ignores health checks: it has one address in use and fails over by connection state.
    health_checked = options.health_checked and policy == "round_robin"
    config = service_config(
        service, idempotent_methods, options.retry, load_balancing=policy, health_checked=health_checked
    )
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", config),
        # gRPC would otherwise back off up to 120 s between reconnects, keeping reads on snapshots long
        # after the service is back.
        ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
        # What the servers promise never to exceed; stated so the two sides agree by construction.
        ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
        *keepalive_arguments(options),
        *options.channel_options,
    ]


def keepalive_arguments(options: ClientOptions) -> ChannelArguments:
    """Pings while calls are open (a watch may carry no data for long). gRPC allows only two pings without
    data by default, after which a dead connection under an idle stream would go unnoticed, and waits for a
    ping's answer per `ping_timeout_ms` (a minute by default), not only `keepalive_timeout_ms`."""
    if options.keepalive_time is None:
        return []
    timeout_ms = int(options.keepalive_timeout * 1000)
    return [
        ("grpc.keepalive_time_ms", int(options.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.http2.max_pings_without_data", 0),
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


TRACING_HINT = "ClientOptions(tracing=True) needs OpenTelemetry: pip install 'microstate-client[tracing]'"


def _instrumentation() -> Any:
    try:
        from opentelemetry.instrumentation import grpc as instrumentation
    except ImportError:
        raise ImportError(TRACING_HINT) from None
    return instrumentation


def open_aio_channel(target: str, options: ClientOptions, arguments: ChannelArguments) -> grpc.aio.Channel:
    creds = credentials(options)
    interceptors = _instrumentation().aio_client_interceptors() if options.tracing else None
    if creds is None:
        return grpc.aio.insecure_channel(target, options=arguments, interceptors=interceptors)
    return grpc.aio.secure_channel(target, creds, options=arguments, interceptors=interceptors)


def open_sync_channel(target: str, options: ClientOptions, arguments: ChannelArguments) -> grpc.Channel:
    creds = credentials(options)
    if creds is None:
        channel = grpc.insecure_channel(target, options=arguments)
    else:
        channel = grpc.secure_channel(target, creds, options=arguments)
    if options.tracing:
        instrumentation = _instrumentation()
        intercepted: grpc.Channel = instrumentation.intercept_channel(
            channel, instrumentation.client_interceptor()
        )
        return intercepted
    return channel
