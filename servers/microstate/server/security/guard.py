"""The guard: every call to a slice's methods is authenticated and checked against the scope its method needs.

Each slice declares, in its `Microstate.scopes`, the one scope each of its methods needs (method name → scope,
for every contract version it serves). With authentication on, the runtime hands the slice's `attach` a
server that wraps every handler the slice adds, however it adds it, with `Guard.wrap` (handlers.py), so
that before the handler runs

- the caller is authenticated: a bearer token (`authorization: Bearer <JWT>`) if one is sent, else the client
  certificate of a mutual TLS connection whose name is mapped to scopes; neither → UNAUTHENTICATED
  CREDENTIALS_MISSING; a token that does not verify → UNAUTHENTICATED TOKEN_INVALID or TOKEN_EXPIRED;
- the caller's scopes must hold the method's scope, else PERMISSION_DENIED SCOPE_MISSING (metadata: method,
  required_scope); a method without a declared scope is refused the same way (fail closed), though the
  runtime already refuses to start when a served method has none (`missing_scopes`);
- the Principal is set for the handler (microstate.server.kit.access.principal()).

A handler wrapper, not a grpc.aio server interceptor: an interceptor sees no auth context (no peer
certificate), and its coroutine chain on every call cost ~10% of Get throughput (see pinning.py). Health,
reflection and the unserved-contract answers are added to the real server, so they stay open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import grpc
from google.protobuf import descriptor_pool

from microstate.server.errors import DomainError
from microstate.server.handlers import method_name, preceded
from microstate.server.kit.access import PermissionDenied, Principal, Unauthenticated, set_principal
from microstate.server.logs import Throttle
from microstate.server.security.tokens import TokenVerifier, refused

BEARER = "bearer "
DENIAL_LOG_INTERVAL = 60.0
"""Seconds between two log lines of scope refusals of one method (the rest are counted into the next)."""
log = logging.getLogger(__name__)


def missing_scopes(service_names: Iterable[str], scopes: Mapping[str, str]) -> list[str]:
    """`Service/Method` of every method of the named services that has no scope in `scopes`."""
    pool = descriptor_pool.Default()
    return [
        f"{name}/{method.name}"
        for name in service_names
        for method in pool.FindServiceByName(name).methods
        if not scopes.get(method.name)
    ]


def certificate_names(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The names a verified client certificate goes by: its subject alternative names, then its CN."""
    names = [
        *auth_context.get("x509_subject_alternative_name", ()),
        *auth_context.get("x509_common_name", ()),
    ]
    return [name.decode("utf-8", "replace") for name in names]


class Guard:
    """Authenticates calls and checks their scope; one per server."""

    def __init__(
        self,
        scopes: Mapping[str, str],
        tokens: TokenVerifier | None,
        certificate_scopes: Mapping[str, frozenset[str]] | None,
    ) -> None:
        self.scopes = dict(scopes)
        self.tokens = tokens
        self.certificate_scopes = certificate_scopes
        """None: client certificates do not authenticate callers (no --tls-client-ca)."""
        self._denials = Throttle(DENIAL_LOG_INTERVAL)

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return await self._bearer(value if isinstance(value, str) else value.decode("latin-1"))
        if self.certificate_scopes is not None:
            names = certificate_names(context.auth_context())
            for name in names:
                if name in self.certificate_scopes:
                    return Principal("certificate", name, scopes=self.certificate_scopes[name])
            if names:  # authenticated by the TLS handshake, but granted nothing
                return Principal("certificate", names[0])
        raise Unauthenticated(
            "this call needs credentials: a bearer token (authorization: Bearer <JWT>)"
            + (" or a client certificate" if self.certificate_scopes is not None else ""),
            reason="CREDENTIALS_MISSING",
        )

    async def _bearer(self, value: str) -> Principal:
        if self.tokens is None:
            raise refused("TOKEN_INVALID", "this server does not accept bearer tokens", "no --auth-jwks")
        if value[: len(BEARER)].lower() != BEARER or not value[len(BEARER) :].strip():
            raise refused("TOKEN_INVALID", "expected authorization: Bearer <token>", "not a bearer header")
        return await self.tokens.verify(value[len(BEARER) :].strip())

    async def admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Let the call to `method` (its name) through with its Principal set, or abort it."""
        try:
            caller = await self.authenticate(context)
            needed = self.scopes.get(method)
            if needed is None or needed not in caller.scopes:
                self._log_denial(caller, method, needed)
                raise PermissionDenied(
                    f"{method} needs the scope {needed!r}" if needed else f"{method} declares no scope",
                    reason="SCOPE_MISSING",
                    metadata={"method": method, "required_scope": needed or ""},
                )
            set_principal(caller)
        except DomainError as error:
            await context.abort_with_status(error.to_status())

    def _log_denial(self, caller: Principal, method: str, needed: str | None) -> None:
        """Who was refused what: an authenticated caller lacking a scope is worth an operator's look (a
        misconfigured worker, or a stolen token probing), throttled per method so no caller floods the log."""
        held_back = self._denials.admit(method)
        if held_back is not None:
            log.warning(
                "call refused: scope missing",
                extra={
                    "method": method,
                    "principal": f"{caller.kind}:{caller.name}",
                    "issuer": caller.issuer,
                    "required_scope": needed or "",
                    "held_back": held_back,
                },
            )

    def wrap(self, path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler of `path` ("/pkg.Service/Method"), whose behaviour runs only after `admit`."""
        method = method_name(path)
        return preceded(handler, lambda _request, context: self.admit(method, context))
