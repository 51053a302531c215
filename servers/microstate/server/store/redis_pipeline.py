"""One multiplexed Redis connection for the Redis store's commands.

redis-py checks a pooled connection out for every command and holds it until the reply is in: under
concurrency that is one connection per call in flight, a pool lock and a timeout timer per command, about
80-100 µs of CPU per command here, as much as a whole bare gRPC call. Redis answers the commands of a
connection in order, so this writes every command to one connection the moment it is asked for and hands the
replies, parsed by hiredis (the parser redis-py itself uses), to a FIFO of waiters: about 8 µs per command.
Being an asyncio protocol, it also learns at once when Redis closes the connection (a restart), so the next
command goes out on a new connection instead of into a dead socket.

It never resends anything. A late reply (`timeout`) or a lost connection fails every command in flight with
redis-py's own ConnectionError/TimeoutError, which the store maps to StoreUnavailable; the store retries reads
and never writes (a write whose reply was lost may have committed). The next command connects again. Blocking
watch reads (they would hold up every command behind them) stay on redis-py.

TLS (rediss://) takes the same path: the connection is wrapped in the SSLContext redis-py itself would build
from the URL's ssl_* parameters (its own SSLConnection builds it), so certificates are checked exactly as
redis-py checks them. The context is built again for every new connection, as redis-py does, so renewed
certificate files are picked up on reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

import hiredis
from redis import exceptions as rexc
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

Arg = str | bytes | memoryview | int

# Error replies whose redis-py exception class the store's failure policy tells apart.
_ERRORS_BY_PREFIX: dict[str, type[rexc.RedisError]] = {
    "NOSCRIPT": rexc.NoScriptError,
    "LOADING": rexc.BusyLoadingError,
    "READONLY": rexc.ReadOnlyError,
    "NOAUTH": rexc.AuthenticationError,  # the server asks for a password the URL does not give
    "WRONGPASS": rexc.AuthenticationError,
    "NOPERM": rexc.NoPermissionError,  # the URL's ACL user may not run a command
}


def _error(reply: hiredis.ReplyError) -> rexc.RedisError:
    message = str(reply)
    error_class = _ERRORS_BY_PREFIX.get(message.partition(" ")[0], rexc.ResponseError)
    return error_class(message)


def _tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The SSLContext redis-py builds for a connection with these ssl_* settings (parsed from a URL).

    ValueError for settings it cannot use (a file that is missing or not a certificate, an unknown value)."""
    try:
        return SSLConnection(**settings).ssl_context.get()
    except (OSError, TypeError, rexc.RedisError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"unusable TLS settings in the redis URL: {exc}") from exc


def _pack(command: tuple[Arg, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]  # the stub says a 1-tuple
    return packed


_MULTI = _pack(("MULTI",))
_EXEC = _pack(("EXEC",))


class _Connection(asyncio.Protocol):
    """The socket half: feeds bytes to hiredis and resolves waiters in reply order."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._parser = hiredis.Reader()
        # (waiter, deadline, replies still to come, the replies so far or None): a transaction's waiter takes
        # its last reply only (None), a batch's all of them (a list).
        self._waiters: collections.deque[tuple[asyncio.Future[Any], float, int, list[Any] | None]] = (
            collections.deque()
        )
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def send(self, packed: bytes, replies: int = 1, *, every: bool = False) -> asyncio.Future[Any]:
        """Write `packed` (one or more commands); the future gets the last of their `replies`, or with
        `every` the list of them all (error replies as hiredis.ReplyError)."""
        assert self._transport is not None
        waiter = self._loop.create_future()
        if self.closed:  # lost between the caller's check and now: never write into a dead connection
            waiter.set_exception(rexc.ConnectionError("connection to redis lost"))
            return waiter
        deadline = self._loop.time() + self._timeout
        self._waiters.append((waiter, deadline, replies, [] if every else None))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_late)
        self._transport.write(packed)
        return waiter

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            while (reply := self._parser.gets()) is not False:
                waiter, deadline, replies, collected = self._waiters[0]
                if collected is not None:
                    collected.append(reply)
                if replies > 1:  # MULTI's OK and the QUEUEDs; EXEC's reply (or EXECABORT) comes last
                    self._waiters[0] = (waiter, deadline, replies - 1, collected)
                    continue
                self._waiters.popleft()
                if waiter.done():  # its caller gave up (cancelled); the reply still had to be consumed
                    continue
                if collected is not None:
                    waiter.set_result(collected)
                elif isinstance(reply, hiredis.ReplyError):
                    waiter.set_exception(_error(reply))
                else:
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.abort(rexc.ConnectionError(f"redis protocol error: {exc!r}"))

    def _check_late(self) -> None:
        """One timer per connection, not per command: it fires at the oldest command's deadline."""
        self._watchdog = None
        if not self._waiters:
            return
        oldest_deadline = self._waiters[0][1]
        if oldest_deadline <= self._loop.time():
            self.abort(rexc.TimeoutError(f"no reply from redis within {self._timeout:g} s"))
        else:
            self._watchdog = self._loop.call_at(oldest_deadline, self._check_late)

    def abort(self, error: rexc.RedisError) -> None:
        """Close, failing every command in flight with `error`: later replies could no longer be matched."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiters:
            waiter = self._waiters.popleft()[0]
            if not waiter.done():
                waiter.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(rexc.ConnectionError(f"connection to redis lost: {exc or 'closed by the server'}"))


class RedisPipeline:
    """Commands over one lazily (re)connected connection; see the module docstring."""

    def __init__(
        self,
        address: tuple[str, int] | str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_name: str | None = None,
        timeout: float,
        connect_timeout: float,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self._address = address  # (host, port), or the path of a unix socket
        self._tls = tls  # builds the SSLContext of each new connection; None: plain TCP
        self._handshake: list[tuple[str | int, ...]] = [
            *([("AUTH", *([username] if username else []), password)] if password else []),
            *([("SELECT", db)] if db else []),
            *([("CLIENT", "SETNAME", client_name)] if client_name else []),
        ]
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._attempt: asyncio.Task[_Connection] | None = None
        self._closed = False

    @classmethod
    def for_url(cls, url: str, **options: Any) -> RedisPipeline:
        """A pipeline for a redis://, rediss:// or unix:// URL, read as redis-py reads it: address, database,
        credentials and, for rediss://, the ssl_* parameters (ValueError if they are unusable)."""
        settings: Mapping[str, Any] = parse_url(url)
        tls = None
        if settings.get("connection_class") is SSLConnection:
            tls_settings = {name: value for name, value in settings.items() if name.startswith("ssl_")}
            tls = partial(_tls_context, tls_settings)
            tls()  # refuse unusable settings now rather than at every connection attempt
        if settings.get("connection_class") is UnixDomainSocketConnection:
            address: tuple[str, int] | str = settings["path"]
        else:
            address = (settings.get("host", "localhost"), settings.get("port", 6379))
        return cls(
            address,
            db=int(settings.get("db") or 0),
            username=settings.get("username"),
            password=settings.get("password"),
            tls=tls,
            **options,
        )

    async def execute(self, *args: Arg) -> Any:
        connection = await self._connection_for_use()
        return await connection.send(_pack(args))

    async def _connection_for_use(self) -> _Connection:
        if self._closed:
            raise rexc.ConnectionError("the store is closed")
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        if self._closed:
            raise rexc.ConnectionError("the store is closed")
        return connection

    async def transaction(self, commands: Sequence[tuple[Arg, ...]]) -> list[Any]:
        """MULTI, `commands`, EXEC in one write: their replies, from one atomic step of Redis's."""
        connection = await self._connection_for_use()
        packed = b"".join([_MULTI, *[_pack(command) for command in commands], _EXEC])
        replies: list[Any] = await connection.send(packed, replies=len(commands) + 2)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise _error(reply)
        return replies

    async def execute_many(self, commands: Sequence[tuple[Arg, ...]]) -> list[Any]:
        """`commands` in one write, not a transaction: each one's reply, an error reply as its redis-py
        exception (not raised: the others' replies stand)."""
        connection = await self._connection_for_use()
        replies: list[Any] = await connection.send(
            b"".join(_pack(command) for command in commands), replies=len(commands), every=True
        )
        return [_error(reply) if isinstance(reply, hiredis.ReplyError) else reply for reply in replies]

    async def run_script(
        self, sha: str, source: str | bytes | memoryview, keys: Sequence[str], args: Sequence[Any] = ()
    ) -> Any:
        """EVALSHA, falling back to EVAL (which also caches the script) when Redis does not know it yet."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            return await self.execute("EVAL", source, len(keys), *keys, *args)

    async def _connect(self) -> _Connection:
        """Commands that find no connection share one attempt, and its failure: N waiting ones against a
        dead server cost one connect timeout, not N in a row."""
        if self._attempt is None:
            self._attempt = asyncio.ensure_future(self._open_within_timeout())
            self._attempt.add_done_callback(self._attempt_done)
        return await asyncio.shield(self._attempt)

    def _attempt_done(self, attempt: asyncio.Task[_Connection]) -> None:
        self._attempt = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._connection = attempt.result()
            if self._closed:  # closed while connecting: the new connection must not outlive the store
                self._connection.abort(rexc.ConnectionError("the store is closed"))

    async def _open_within_timeout(self) -> _Connection:
        try:
            return await asyncio.wait_for(self._open(), self._connect_timeout)
        except TimeoutError:
            seconds = f"{self._connect_timeout:g}"
            raise rexc.TimeoutError(f"redis did not accept a connection within {seconds} s") from None

    def _new_connection(self) -> _Connection:
        return _Connection(self._timeout)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if isinstance(self._address, str):
                _, connection = await loop.create_unix_connection(
                    lambda: _Connection(self._timeout), self._address
                )
            else:
                tls = None if self._tls is None else self._tls()
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._timeout), *self._address, ssl=tls
                )
        except (OSError, ValueError) as exc:  # ValueError: TLS files that became unusable since the start
            raise rexc.ConnectionError(f"cannot connect to redis: {exc}") from exc
        for command in self._handshake:
            try:
                await connection.send(_pack(command))
            except (rexc.ResponseError, rexc.AuthenticationError) as exc:  # the URL is wrong
                connection.abort(rexc.ConnectionError(str(exc)))
                # As redis-py raises them: AuthenticationError for credentials, else the reply's own class
                # (ResponseError "DB index is out of range" for a database the server does not have).
                refused = rexc.AuthenticationError if command[0] == "AUTH" else type(exc)
                raise refused(f"redis refused {command[0]} while connecting: {exc}") from exc
        return connection

    async def close(self) -> None:
        self._closed = True
        if self._connection is not None:
            self._connection.abort(rexc.ConnectionError("the store is closed"))
