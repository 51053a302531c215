"""Bearer tokens: JWTs verified with PyJWT against the keys of a JWKS file or URL.

PyJWT (with `cryptography`) over joserfc: it is the most used JWT library for Python, small, typed, keeps its
checks of registered claims strict by default, and ships `PyJWKClient` to fetch a JWKS over HTTPS. joserfc
covers more of JOSE (JWE, JWS serialisations) than a bearer token check needs.

What a token must have: a signature by a key of the set, with the algorithm that key is for (taken from the
key, never from the token's header, so there is no algorithm confusion and no `none`); `exp` in the future,
`nbf` (if any) in the past, both within LEEWAY_SECONDS; `iss` and `aud` equal to the configured ones; a `sub`.
Scopes come from `scope` (space-separated, RFC 8693/9068) or `scp` (a list or a string). Only public keys
verify tokens: a symmetric (`oct`) key in the set is refused, since whoever can read it could mint tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from microstate.server.errors import Unavailable
from microstate.server.kit.access import Principal, Unauthenticated
from microstate.server.logs import Throttle

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 30.0
"""Clock skew tolerated on `exp` and `nbf` between the token's issuer and this server."""
FILE_CHECK_SECONDS = 1.0
"""A JWKS file is checked for changes at most this often (a key taken out of it stops verifying then)."""
URL_KEYS_LIFESPAN_SECONDS = 300.0
"""A JWKS fetched from a URL is fetched again after this long (PyJWKClient's default)."""
URL_FETCH_TIMEOUT_SECONDS = 5.0
VERIFIED_TOKENS = 4096
"""Tokens remembered as verified (the oldest is forgotten first): a fleet's workers each send one."""
UNKNOWN_KID_COOLDOWN_SECONDS = 30.0
"""A token with a key id not in the set fetched from a URL refetches the set at most this often."""
_log_throttle = Throttle(60.0)


class KeysUnavailable(Unavailable):
    """The key set cannot be fetched now: the caller may retry (UNAVAILABLE), its token may well be good."""

    reason = "KEYS_UNAVAILABLE"


def refused(reason: str, message: str, cause: str) -> Unauthenticated:
    """An UNAUTHENTICATED error that tells the caller `message` and the log (throttled) the `cause`."""
    if _log_throttle.admit(reason) is not None:
        log.warning("credentials refused", extra={"reason": reason, "cause": cause})
    return Unauthenticated(message, reason=reason)


class KeySource(Protocol):
    async def key(self, kid: str | None) -> PyJWK:
        """The verification key named `kid` (None: the set's only key); Unauthenticated if there is none."""

    def generation(self) -> int | None:
        """A number that changes whenever the keys do; None when they are due for a check (then tokens
        verified earlier are verified again, through `key`, which checks)."""


def _usable(keys: PyJWKSet, origin: str) -> dict[str | None, PyJWK]:
    usable: dict[str | None, PyJWK] = {}
    for key in keys.keys:
        if key.key_type == "oct":
            raise ValueError(f"{origin} holds a symmetric (oct) key; only public keys may verify tokens")
        usable[key.key_id] = key
    return usable


def _pick(keys: dict[str | None, PyJWK], kid: str | None) -> PyJWK | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class JwksFile:
    """The keys of a JWKS file, read again when the file changes (checked at most every FILE_CHECK_SECONDS).
    A file that no longer loads keeps the last good keys (and says so in the log)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._keys = self._load()  # ValueError/OSError here stops the start
        self._checked = time.monotonic()
        self._generation = 0

    def _stat(self) -> tuple[int, int, int]:
        status = os.stat(self.path)
        return (status.st_ino, status.st_size, status.st_mtime_ns)

    def _load(self) -> dict[str | None, PyJWK]:
        try:
            return _usable(PyJWKSet.from_json(self.path.read_text()), str(self.path))
        except jwt.PyJWKSetError as exc:
            raise ValueError(f"{self.path}: not a usable JWKS ({exc})") from None

    def _refresh(self) -> None:
        self._checked = time.monotonic()
        try:
            stamp = self._stat()
            if stamp != self._stamp:
                self._keys, self._stamp = self._load(), stamp
                self._generation += 1
                log.info("JWKS file reloaded", extra={"path": str(self.path), "keys": len(self._keys)})
        except (OSError, ValueError) as exc:
            log.error("JWKS file not reloaded; keeping the last good keys", extra={"error": str(exc)})

    def generation(self) -> int | None:
        return None if time.monotonic() - self._checked >= FILE_CHECK_SECONDS else self._generation

    async def key(self, kid: str | None) -> PyJWK:
        if time.monotonic() - self._checked >= FILE_CHECK_SECONDS:
            self._refresh()
        found = _pick(self._keys, kid)
        if found is None:
            raise refused("TOKEN_INVALID", "the bearer token is not valid", f"no key for kid {kid!r}")
        return found


class JwksUrl:
    """The keys at a JWKS URL, fetched with PyJWKClient in a worker thread (it blocks) and kept for
    URL_KEYS_LIFESPAN_SECONDS. A token naming an unknown `kid` (a key rotated in) refetches, but at most once
    per UNKNOWN_KID_COOLDOWN_SECONDS, so made-up key ids cannot make the server hammer the URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Its own cache is off: this class keeps the keys, checked without a thread hop on every call.
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=URL_FETCH_TIMEOUT_SECONDS)
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched = float("-inf")
        self._attempted = float("-inf")
        self._generation = 0

    async def _fetch(self) -> None:
        self._attempted = time.monotonic()
        try:
            keys = await asyncio.to_thread(self._client.get_jwk_set, True)
            usable = _usable(keys, self.url)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as exc:
            if self._keys:  # keep serving with what we have
                log.warning("JWKS refetch failed", extra={"url": self.url, "error": str(exc)})
                return
            raise KeysUnavailable(f"the token keys cannot be fetched: {exc}") from None
        self._generation += 1  # tokens verified under the old set are verified again
        self._keys, self._fetched = usable, time.monotonic()

    def generation(self) -> int | None:
        return None if time.monotonic() - self._fetched >= URL_KEYS_LIFESPAN_SECONDS else self._generation

    async def key(self, kid: str | None) -> PyJWK:
        now = time.monotonic()
        if now - self._fetched >= URL_KEYS_LIFESPAN_SECONDS and now - self._attempted >= 1.0:
            await self._fetch()
        found = _pick(self._keys, kid)
        if (
            found is None
            and kid is not None
            and time.monotonic() - self._attempted >= UNKNOWN_KID_COOLDOWN_SECONDS
        ):
            await self._fetch()
            found = _pick(self._keys, kid)
        if found is None:
            raise refused("TOKEN_INVALID", "the bearer token is not valid", f"no key for kid {kid!r}")
        return found


def key_source(jwks: str) -> KeySource:
    """The key source a `--auth-jwks` value names: an http(s) URL, else a file path."""
    if jwks.startswith(("https://", "http://")):
        return JwksUrl(jwks)
    return JwksFile(Path(jwks))


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """The token's scopes: `scope` (space-separated) or `scp` (a list, or a space-separated string)."""
    granted = claims.get("scope", claims.get("scp", ""))
    if isinstance(granted, str):
        return frozenset(granted.split())
    if isinstance(granted, list):
        return frozenset(item for item in granted if isinstance(item, str))
    return frozenset()


class TokenVerifier:
    """Verifies bearer tokens for one issuer and audience; see the module docstring for the rules."""

    def __init__(
        self, keys: KeySource, *, issuer: str, audience: str, leeway: float = LEEWAY_SECONDS
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._verified: dict[str, tuple[Principal, float, int]] = {}
        """token -> (its principal, its exp, the key generation it verified under); insertion order."""

    async def verify(self, token: str) -> Principal:
        """The token's principal; Unauthenticated (TOKEN_INVALID / TOKEN_EXPIRED) when it does not verify.

        Callers send one token for many calls: a token verified before, under keys unchanged since, is taken
        without its signature checked again (~80 us each) until it expires."""
        verified = self._verified.get(token)
        if verified is not None:
            caller, expires, verified_under = verified
            if verified_under == self.keys.generation() and time.time() < expires + self.leeway:
                return caller
            del self._verified[token]
        caller, expires = await self._verify(token)
        generation = self.keys.generation()
        if generation is not None:
            if len(self._verified) >= VERIFIED_TOKENS:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = (caller, expires, generation)
        return caller

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.DecodeError as exc:
            raise refused("TOKEN_INVALID", "the bearer token is not a JWT", str(exc)) from None
        key = await self.keys.key(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            # Said plainly (unlike the other causes): the caller's remedy is a fresh token.
            raise Unauthenticated("the bearer token has expired", reason="TOKEN_EXPIRED") from None
        except jwt.InvalidTokenError as exc:
            cause = f"{type(exc).__name__}: {exc}"
            raise refused("TOKEN_INVALID", "the bearer token is not valid", cause) from None
        caller = Principal(
            kind="token", name=str(claims["sub"]), issuer=self.issuer, scopes=scopes_of(claims)
        )
        return caller, float(claims["exp"])
