"""Server settings: one frozen dataclass, filled from CLI flags, then `MICROSTATE_*` env vars, then defaults.

Every field of `ServerConfig` is a setting. Its flag is the field name in kebab case (`drain_seconds` →
`--drain-seconds`) and its env var the name in upper case behind `MICROSTATE_` (`MICROSTATE_DRAIN_SECONDS`),
so the three stay in step by construction. `add_arguments` registers the flags without argparse defaults, so
`load` can tell "flag not given" from "flag given with the default value".
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from microstate.server.store.roles import parse_role_urls

ENV_PREFIX = "MICROSTATE_"
LOG_FORMATS = ("auto", "json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
MIB = 1024 * 1024
MAX_RESPONSE_BYTES = 4 * MIB
"""The largest response any microstate sends, as its contract documents: gRPC's default receive limit, so
every client (the SDK, or one generated in any language) receives every response without raising its own
limit. Pages and batches are cut to fit (microstate.server.responses)."""

N = TypeVar("N", int, float)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the flag or env var it came from."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _checked(kind: Callable[[str], N], valid: Callable[[N], bool], expected: str) -> Callable[[str], N]:
    """A parser of `kind` values that must be `valid`; what fails either says what was expected (not
    Python's "invalid literal for int() with base 10")."""

    def parse(text: str) -> N:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise ValueError(f"expected {expected}, got {text!r}")
        return value

    return parse


_parse_seconds = _checked(float, lambda value: value >= 0, "a non-negative number of seconds")  # NaN: False
_parse_port = _checked(int, lambda port: 0 <= port <= 65535, "a port in 0..65535")
_parse_positive_int = _checked(int, lambda value: value > 0, "a positive integer")


def _parse_optional_seconds(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none", "off") else _parse_seconds(text)


def _parse_role_stores(text: str) -> str:
    parse_role_urls(text)  # raises ValueError naming the bad entry
    return text


def _parse_mtls_scopes(text: str) -> str:
    parse_mtls_scopes(text)  # raises ValueError naming the bad entry
    return text


def parse_mtls_scopes(text: str) -> dict[str, frozenset[str]]:
    """'NAME=scope,scope NAME2=scope' -> {NAME: {scope, ...}}; a NAME may itself hold '=' (a URI)."""
    mapping: dict[str, frozenset[str]] = {}
    for entry in text.split():
        name, equals, scopes = entry.rpartition("=")
        if not equals or not name:
            raise ValueError(f"expected NAME=scope,scope..., got {entry!r}")
        mapping[name] = frozenset(scope for scope in scopes.split(",") if scope)
    return mapping


def _choice(choices: Collection[str], *, upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _meta(parse: Callable[[str], Any], help: str, metavar: str | None = None) -> dict[str, Any]:
    return {"parse": parse, "help": help, "metavar": metavar}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How one microstate server runs. Every field: flag `--kebab-name`, env `MICROSTATE_UPPER_NAME`."""

    store: str | None = field(
        default=None,
        metadata=_meta(
            str,
            "store URL: sqlite:///path, redis://host:port/db or mongodb://host:port/db (default: SQLite)",
            "URL",
        ),
    )
    role_stores: str | None = field(
        default=None,
        metadata=_meta(
            _parse_role_stores,
            "URLs of the microstate's other store roles, 'ROLE=URL ...' (default: the --store URL where"
            " its backend serves that role, else a store under --data-dir)",
            "'ROLE=URL ...'",
        ),
    )
    host: str = field(
        default="127.0.0.1",
        metadata=_meta(str, "interface to bind; 127.0.0.1 keeps a laptop private, use 0.0.0.0 in containers"),
    )
    port: int | None = field(
        default=None,
        metadata=_meta(_parse_port, "port to bind; 0 picks a free one; default: the microstate's own", "N"),
    )
    data_dir: Path = field(
        default=Path(".microstate"),
        metadata=_meta(Path, "where embedded SQLite stores and `up` logs live", "DIR"),
    )
    drain_seconds: float = field(
        default=5.0,
        metadata=_meta(
            _parse_seconds, "on SIGTERM, report NOT_SERVING this long before closing the listener", "S"
        ),
    )
    grace_seconds: float = field(
        default=10.0,
        metadata=_meta(_parse_seconds, "then let in-flight calls finish for at most this long", "S"),
    )
    max_message_bytes: int = field(
        default=MAX_RESPONSE_BYTES,
        metadata=_meta(
            _parse_positive_int,
            "largest request or response message, in bytes; responses are cut to 4 MiB by contract, so a"
            " lower value can refuse a full page or batch",
            "N",
        ),
    )
    keepalive_time_seconds: float = field(
        default=60.0,
        metadata=_meta(
            _parse_seconds, "ping idle client connections this often (keeps NAT/LB paths open)", "S"
        ),
    )
    keepalive_timeout_seconds: float = field(
        default=20.0,
        metadata=_meta(
            _parse_seconds, "close a connection whose keepalive ping is not answered in time", "S"
        ),
    )
    keepalive_permit_without_calls: bool = field(
        default=True,
        metadata=_meta(_parse_bool, "send and accept keepalive pings on connections with no call in flight"),
    )
    min_ping_interval_seconds: float = field(
        default=10.0,
        metadata=_meta(
            _parse_seconds, "shortest client ping interval accepted (faster: too_many_pings)", "S"
        ),
    )
    max_connection_age_seconds: float | None = field(
        default=None,
        metadata=_meta(
            _parse_optional_seconds,
            "close connections older than this (then --grace-seconds), to rebalance",
            "S",
        ),
    )
    health_interval_seconds: float = field(
        default=5.0,
        metadata=_meta(_parse_seconds, "how often the store is pinged to keep the health status true", "S"),
    )
    log_format: str = field(
        default="auto",
        metadata=_meta(
            _choice(LOG_FORMATS), "json lines, readable text, or auto (text on a terminal, else json)"
        ),
    )
    log_level: str = field(
        default="INFO", metadata=_meta(_choice(LOG_LEVELS, upper=True), "lowest level logged")
    )
    event_loop: str = field(
        default="auto",
        metadata=_meta(
            _choice(EVENT_LOOPS),
            "auto: uvloop's event loop when installed (microstate-server[fast]: less CPU per call), else"
            " asyncio's; or either one by name",
        ),
    )
    tracing: str = field(
        default="off",
        metadata=_meta(
            _choice(("off", "otlp")),
            "trace every call with OpenTelemetry, exported over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT...);"
            " needs the `tracing` extra",
        ),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_meta(
            _parse_port,
            "serve Prometheus metrics at http://HOST:N/metrics (0: a free port); default: off",
            "N",
        ),
    )
    tls_cert: Path | None = field(
        default=None,
        metadata=_meta(
            Path,
            "PEM certificate chain to serve TLS with (with --tls-key); reloaded on change or SIGHUP",
            "PEM",
        ),
    )
    tls_key: Path | None = field(default=None, metadata=_meta(Path, "PEM private key of --tls-cert", "PEM"))
    tls_client_ca: Path | None = field(
        default=None,
        metadata=_meta(Path, "PEM CA bundle: require client certificates it signed (mutual TLS)", "PEM"),
    )
    tls_reload_seconds: float = field(
        default=5.0,
        metadata=_meta(_parse_seconds, "check the TLS files for changes this often (SIGHUP: at once)", "S"),
    )
    auth_jwks: str | None = field(
        default=None,
        metadata=_meta(
            str, "verify bearer tokens (JWT) with the keys of this JWKS file or https:// URL", "PATH|URL"
        ),
    )
    auth_issuer: str | None = field(
        default=None, metadata=_meta(str, "the `iss` every bearer token must carry", "ISS")
    )
    auth_audience: str | None = field(
        default=None, metadata=_meta(str, "the `aud` every bearer token must be meant for", "AUD")
    )
    auth_mtls_scopes: str | None = field(
        default=None,
        metadata=_meta(
            _parse_mtls_scopes,
            "scopes of client-certificate principals (needs --tls-client-ca), 'NAME=scope,scope ...';"
            " NAME is a subject alternative name or the common name of the certificate",
            "'NAME=SCOPES ...'",
        ),
    )
    reflection: str = field(
        default="on", metadata=_meta(_choice(("on", "off")), "serve gRPC reflection (open to every caller)")
    )
    audit: str = field(
        default="on",
        metadata=_meta(
            _choice(("on", "off")),
            "keep the tamper-evident audit ledger of every state-changing call (see SECURITY.md)",
        ),
    )
    audit_dir: Path | None = field(
        default=None,
        metadata=_meta(
            Path,
            "the audit keys and checkpoint files (keep the checkpoint files where the store's admins cannot"
            " rewrite them); default: DATA_DIR/audit",
            "DIR",
        ),
    )
    audit_checkpoint_every: int = field(
        default=1024, metadata=_meta(_parse_positive_int, "sign an audit checkpoint every N entries", "N")
    )
    audit_checkpoint_seconds: float = field(
        default=60.0,
        metadata=_meta(_parse_seconds, "and at least this often while entries arrive", "S"),
    )
    insecure: bool = field(
        default=False,
        metadata=_meta(
            _parse_bool, "allow serving a non-loopback address without authentication or without TLS"
        ),
    )
    ready_file: Path | None = field(
        default=None,
        metadata=_meta(
            Path,
            "once serving, write {host, port, pid, metrics_port} as JSON here (for supervisors like `up`)",
            "PATH",
        ),
    )

    @property
    def level(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(ServerConfig)


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def flag_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser,
    only: Collection[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Register one flag per setting (or those in `only`); unset flags stay absent from the namespace.

    `defaults` only changes the default shown in --help; pass the same mapping to `load`.
    """
    for setting in SETTINGS:
        if only is not None and setting.name not in only:
            continue
        default = (defaults or {}).get(setting.name, setting.default)
        shown_default = "" if default is None else f" (default {default})"
        options: dict[str, Any] = {
            "dest": setting.name,
            "default": argparse.SUPPRESS,
            "help": f"{setting.metadata['help']}{shown_default} [env {env_name(setting.name)}]",
        }
        if setting.metadata["parse"] is _parse_bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = setting.metadata["metavar"] or setting.name.split("_")[-1].upper()
        parser.add_argument(flag_name(setting.name), **options)


def load(
    flags: Mapping[str, Any] | argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """The config from given flags (strings or typed values), then env vars, then `defaults`, then ours."""
    given = vars(flags) if isinstance(flags, argparse.Namespace) else flags
    env = os.environ if environ is None else environ
    values: dict[str, Any] = dict(defaults or {})
    for setting in SETTINGS:
        parse: Callable[[str], Any] = setting.metadata["parse"]
        if setting.name in given:
            raw, source = given[setting.name], flag_name(setting.name)
        elif env_name(setting.name) in env:
            raw, source = env[env_name(setting.name)], env_name(setting.name)
        else:
            continue
        try:
            values[setting.name] = parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return ServerConfig(**values)


def to_flags(config: ServerConfig, names: Collection[str]) -> list[str]:
    """The command-line flags that reproduce the named settings (to start a child server with them)."""
    argv: list[str] = []
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag_name(name) if value else "--no-" + flag_name(name)[2:])
        else:
            argv += [flag_name(name), str(value)]
    return argv
