"""Transport security and authentication for every microstate server, from the server's settings.

- TLS (`--tls-cert`, `--tls-key`; `--tls-client-ca` requires client certificates it signed): tls.py.
- Authentication: bearer tokens (`--auth-jwks`, `--auth-issuer`, `--auth-audience`; tokens.py) and/or client
  certificates mapped to scopes (`--auth-mtls-scopes`); authorisation by the scope each method declares
  (guard.py). Authentication is on when either is configured.
- Exposure: a server bound to a non-loopback address refuses to start without authentication, and with bearer
  tokens but no TLS (they would cross the network in clear), unless `--insecure`; on loopback it may run open,
  and says so in its log.

`Security.from_config` checks the settings (ConfigError, exit 2, naming the flag) before anything opens.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from microstate.server.config import ConfigError, ServerConfig, parse_mtls_scopes
from microstate.server.security.guard import Guard, missing_scopes
from microstate.server.security.tls import ReloadingCredentials, TlsFiles, TlsFilesError
from microstate.server.security.tokens import TokenVerifier, key_source

log = logging.getLogger(__name__)

__all__ = ["Guard", "ReloadingCredentials", "Security", "is_loopback", "missing_scopes"]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _tls(config: ServerConfig) -> ReloadingCredentials | None:
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_client_ca is not None:
            raise ConfigError("--tls-client-ca: needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ConfigError("--tls-cert and --tls-key: give both, or neither")
    try:
        return ReloadingCredentials(TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca))
    except TlsFilesError as exc:
        raise ConfigError(f"--tls-cert/--tls-key/--tls-client-ca: {exc}") from None


def _tokens(config: ServerConfig) -> TokenVerifier | None:
    if config.auth_jwks is None:
        if config.auth_issuer or config.auth_audience:
            raise ConfigError(
                "--auth-issuer/--auth-audience: need --auth-jwks, the keys tokens are checked with"
            )
        return None
    if not config.auth_issuer or not config.auth_audience:
        raise ConfigError(
            "--auth-jwks: needs --auth-issuer and --auth-audience (every token is checked for both)"
        )
    jwks_host = urlsplit(config.auth_jwks).hostname
    if config.auth_jwks.startswith("http://") and not is_loopback(jwks_host or ""):
        raise ConfigError(
            "--auth-jwks: keys fetched over plain http:// could be swapped on the way; use https://"
        )
    try:
        keys = key_source(config.auth_jwks)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--auth-jwks: {exc}") from None
    return TokenVerifier(keys, issuer=config.auth_issuer, audience=config.auth_audience)


def _certificate_scopes(config: ServerConfig) -> dict[str, frozenset[str]] | None:
    if config.auth_mtls_scopes is None:
        return None
    if config.tls_client_ca is None:
        raise ConfigError(
            "--auth-mtls-scopes: needs --tls-client-ca, the CA client certificates are checked with"
        )
    return parse_mtls_scopes(config.auth_mtls_scopes)


@dataclass(frozen=True)
class Security:
    tls: ReloadingCredentials | None
    tokens: TokenVerifier | None
    certificate_scopes: dict[str, frozenset[str]] | None

    @property
    def authenticates(self) -> bool:
        return self.tokens is not None or self.certificate_scopes is not None

    @classmethod
    def from_config(cls, config: ServerConfig) -> Security:
        """The server's security, or ConfigError if the settings do not fit together or expose it."""
        security = cls(_tls(config), _tokens(config), _certificate_scopes(config))
        if not is_loopback(config.host) and not config.insecure:
            if not security.authenticates:
                raise ConfigError(
                    f"--host {config.host}: a non-loopback address needs authentication (--auth-jwks with"
                    " --auth-issuer and --auth-audience, or --tls-client-ca with --auth-mtls-scopes);"
                    " --insecure serves it open anyway"
                )
            if security.tls is None:
                raise ConfigError(
                    f"--host {config.host}: bearer tokens on a non-loopback address need TLS (--tls-cert and"
                    " --tls-key), or anyone on the path can replay them; --insecure serves plaintext anyway"
                )
        return security

    def guard(self, scopes: Mapping[str, str], service_names: tuple[str, ...], name: str) -> Guard | None:
        """The guard for a microstate with these method scopes; None when authentication is off.
        ConfigError if a served method declares no scope (it would be refused to everyone)."""
        if not self.authenticates:
            return None
        missing = missing_scopes(service_names, scopes)
        if missing:
            raise ConfigError(
                f"authentication is on, but the {name} microstate declares no scope for {', '.join(missing)}"
                " (Microstate.scopes in its package)"
            )
        return Guard(scopes, self.tokens, self.certificate_scopes)

    def describe(self, host: str) -> str:
        """One line for the start-up log."""
        transport = "plaintext" if self.tls is None else "TLS"
        if self.tls is not None and self.tls.files.client_ca is not None:
            transport = "mutual TLS"
        if not self.authenticates:
            where = "loopback only" if is_loopback(host) else "--insecure"
            return f"{transport}, no authentication ({where}): every caller may call every method"
        ways = [
            way
            for way, on in (("bearer tokens", self.tokens), ("client certificates", self.certificate_scopes))
            if on is not None
        ]
        return f"{transport}, authentication by {' and '.join(ways)}, scopes per method"
