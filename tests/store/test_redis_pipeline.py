"""The Redis store's multiplexed read connection, against a real redis-server: replies reach the right
callers, failures fail every read in flight and heal by reconnecting, URLs mean what they mean to redis-py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis import exceptions as rexc

from microstate.server.cli import event_loop_factory
from microstate.server.store.redis_pipeline import RedisPipeline
from tests.support.redis_server import RedisServer, running_redis_server

pytestmark = pytest.mark.redis

TIMEOUT = 0.5


def pipeline_for(url: str, client_name: str = "ms-test") -> RedisPipeline:
    return RedisPipeline.for_url(url, timeout=TIMEOUT, connect_timeout=TIMEOUT, client_name=client_name)


@pytest.fixture
async def pipeline(redis_server: RedisServer) -> AsyncIterator[RedisPipeline]:
    redis_server.start()  # heals a server another test left stopped
    pipeline = pipeline_for(redis_server.url)
    yield pipeline
    await pipeline.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server


def sync_client(server: RedisServer, db: int = 0) -> redis.Redis:
    return redis.Redis(port=server.port, db=db)


async def test_concurrent_reads_each_get_their_own_reply(
    pipeline: RedisPipeline, redis_server: RedisServer
) -> None:
    prefix = uuid.uuid4().hex
    values = {f"{prefix}:{n}": f"value-{n}".encode() * (n % 7 + 1) for n in range(500)}
    sync_client(redis_server).mset(values)
    replies = await asyncio.gather(*(pipeline.execute("GET", key) for key in values))
    assert replies == list(values.values())


async def test_a_cancelled_read_does_not_shift_the_replies_of_others(
    pipeline: RedisPipeline, redis_server: RedisServer
) -> None:
    prefix = uuid.uuid4().hex
    values = {f"{prefix}:{n}": str(n).encode() for n in range(200)}
    sync_client(redis_server).mset(values)
    reads = [asyncio.ensure_future(pipeline.execute("GET", key)) for key in values]
    await asyncio.sleep(0)  # let every read be written before some callers give up
    for read in reads[::3]:
        read.cancel()
    kept = [(key, read) for n, (key, read) in enumerate(zip(values, reads, strict=True)) if n % 3]
    assert [await read for _, read in kept] == [values[key] for key, _ in kept]
    assert await pipeline.execute("GET", f"{prefix}:5") == b"5"


async def test_an_error_reply_fails_only_its_own_read(pipeline: RedisPipeline) -> None:
    bad = pipeline.execute("INCR", "not a number", "extra argument")
    good = pipeline.execute("PING")
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(results[0], rexc.ResponseError)
    assert results[1] == b"PONG"


async def test_a_transaction_answers_with_its_commands_replies(
    pipeline: RedisPipeline, redis_server: RedisServer
) -> None:
    key = uuid.uuid4().hex
    sync_client(redis_server).set(key, b"v")
    concurrent = pipeline.execute("PING")  # interleaved with the transaction's replies on the wire
    replies = await pipeline.transaction([("GET", key), ("TIME",), ("GET", "absent-" + key)])
    assert replies[0] == b"v" and len(replies[1]) == 2 and replies[2] is None
    assert await concurrent == b"PONG"


async def test_a_failing_transaction_raises_and_leaves_the_connection_usable(pipeline: RedisPipeline) -> None:
    key = uuid.uuid4().hex
    await pipeline.execute("SET", key, "not a number")
    with pytest.raises(rexc.ResponseError):  # fails inside EXEC
        await pipeline.transaction([("GET", key), ("INCR", key)])
    with pytest.raises(rexc.ResponseError, match="EXECABORT"):  # refused while queueing
        await pipeline.transaction([("GET", key), ("NO-SUCH-COMMAND",)])
    assert await pipeline.transaction([("GET", key)]) == [b"not a number"]


async def test_scripts_load_themselves_when_redis_does_not_know_them(
    pipeline: RedisPipeline, redis_server: RedisServer
) -> None:
    source = "return {KEYS[1], ARGV[1]}"
    script = sync_client(redis_server).register_script(source)
    sync_client(redis_server).script_flush()
    assert await pipeline.run_script(script.sha, source, ["k"], ["a"]) == [b"k", b"a"]
    assert sync_client(redis_server).script_exists(script.sha) == [True]  # EVAL cached it for next time
    assert await pipeline.run_script(script.sha, source, ["k2"], ["b"]) == [b"k2", b"b"]


async def test_a_server_that_never_answers_fails_every_pending_read_within_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    pipeline = pipeline_for(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    results = await asyncio.gather(*(pipeline.execute("GET", "k") for _ in range(5)), return_exceptions=True)
    elapsed = time.monotonic() - started
    assert all(isinstance(result, rexc.TimeoutError) for result in results), results
    assert TIMEOUT <= elapsed < TIMEOUT + 2.0
    for writer in accepted:
        writer.close()
    silent.close()
    await pipeline.close()


async def test_a_lost_connection_fails_reads_then_heals_when_redis_returns(
    private_redis: RedisServer,
) -> None:
    pipeline = pipeline_for(private_redis.url)
    sync_client(private_redis).set("k", b"v")
    assert await pipeline.execute("GET", "k") == b"v"
    private_redis.kill()
    with pytest.raises(rexc.ConnectionError):
        await pipeline.execute("GET", "k")
    private_redis.start()  # AOF with appendfsync always: the value is back
    assert await pipeline.execute("GET", "k") == b"v"
    await pipeline.close()


async def test_the_url_selects_the_database_and_the_connection_is_named(redis_server: RedisServer) -> None:
    key = uuid.uuid4().hex
    sync_client(redis_server, db=3).set(key, b"in db 3")
    pipeline = pipeline_for(f"redis://127.0.0.1:{redis_server.port}/3")
    assert await pipeline.execute("GET", key) == b"in db 3"
    assert await pipeline.execute("CLIENT", "GETNAME") == b"ms-test"
    await pipeline.close()


async def test_a_password_the_server_does_not_take_is_a_connection_error(redis_server: RedisServer) -> None:
    pipeline = pipeline_for(f"redis://:wrong@127.0.0.1:{redis_server.port}/0")
    with pytest.raises(rexc.AuthenticationError, match="refused AUTH"):
        await pipeline.execute("PING")
    await pipeline.close()


async def test_a_database_the_server_does_not_have_is_refused_as_redis_py_refuses_it(
    redis_server: RedisServer,
) -> None:
    """A ResponseError, as from redis-py, not a ConnectionError: the store must not take a wrong URL for an
    outage (it would wait for the server to come back forever)."""
    pipeline = pipeline_for(f"redis://127.0.0.1:{redis_server.port}/999")
    with pytest.raises(rexc.ResponseError, match=r"refused SELECT while connecting: .*DB index is out of"):
        await pipeline.execute("PING")
    await pipeline.close()


async def test_a_server_that_wants_a_password_the_url_lacks_is_an_authentication_error(
    private_redis: RedisServer,
) -> None:
    sync_client(private_redis).config_set("requirepass", "secret")
    pipeline = pipeline_for(private_redis.url)
    with pytest.raises(rexc.AuthenticationError, match="NOAUTH"):
        await pipeline.execute("GET", "k")
    await pipeline.close()


def test_it_runs_on_the_servers_event_loop(redis_server: RedisServer) -> None:
    """The servers run on uvloop when it is installed, whose transports differ from asyncio's."""
    redis_server.start()
    sync_client(redis_server).set("on-uvloop", b"yes")

    async def read() -> list[object]:
        pipeline = pipeline_for(redis_server.url)
        try:
            return list(await asyncio.gather(*(pipeline.execute("GET", "on-uvloop") for _ in range(10))))
        finally:
            await pipeline.close()

    loop_factory = event_loop_factory()
    assert loop_factory is not None, "uvloop is a test requirement"
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(read()) == [b"yes"] * 10


def test_tls_settings_it_cannot_use_are_refused_before_any_connection(tmp_path: Path) -> None:
    """The pipelined TLS path itself is proven against a TLS-only server in test_redis_tls.py."""
    missing = tmp_path / "no-such-ca.pem"
    not_a_certificate = tmp_path / "empty.pem"
    not_a_certificate.touch()
    for settings in (f"ssl_ca_certs={missing}", f"ssl_ca_certs={not_a_certificate}", "ssl_cert_reqs=maybe"):
        with pytest.raises(ValueError, match="unusable TLS settings"):
            RedisPipeline.for_url(f"rediss://127.0.0.1:6380/0?{settings}", timeout=1, connect_timeout=1)


async def test_a_closed_pipeline_refuses_reads(pipeline: RedisPipeline) -> None:
    assert await pipeline.execute("PING") == b"PONG"
    await pipeline.close()
    with pytest.raises(rexc.ConnectionError):
        await pipeline.execute("PING")


async def test_closing_while_connecting_leaves_no_connection_open(redis_server: RedisServer) -> None:
    name = f"ms-close-{uuid.uuid4().hex[:8]}"
    pipeline = pipeline_for(redis_server.url, client_name=name)
    read = asyncio.ensure_future(pipeline.execute("PING"))
    await asyncio.sleep(0)  # the connection attempt has started
    await pipeline.close()
    with pytest.raises(rexc.ConnectionError):
        await read

    def named_connections() -> int:
        return sum(client["name"] == name for client in sync_client(redis_server).client_list())

    deadline = time.monotonic() + 5
    while named_connections():  # Redis notices the abort a moment later
        assert time.monotonic() < deadline, "the connection opened during close() is still open"
        await asyncio.sleep(0.01)
