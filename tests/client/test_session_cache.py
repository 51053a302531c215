"""The validation cache's rules, step by step (the session client tests show them against a real server):
an answer is kept only under a watch that covers it, a new cover drops what came before it, and an answer
in flight across a revocation is not kept."""

from __future__ import annotations

import time

from microstate.client._read import Read, Source
from microstate.client.session._cache import ValidationCache, token_key
from microstate.session.v1.session_pb2 import Session

TOKEN = "mss_token"
KEY = token_key(TOKEN)


def _answer(session_id: str = "s1", user_id: str = "ada", life: float = 600.0) -> Read[Session]:
    session = Session(session_id=session_id, user_id=user_id, scopes=["read"])
    session.expire_time.FromNanoseconds(int((time.time() + life) * 1e9))
    return Read(session, Source.LIVE, "", time.time())


def _covered() -> ValidationCache:
    cache = ValidationCache()
    cache.watch_state(True, "")
    return cache


def _keep(cache: ValidationCache, key: bytes = KEY, **answer: object) -> None:
    cache.put(key, _answer(**answer), cache.generation, time.monotonic())  # type: ignore[arg-type]


def test_keys_are_digests_of_the_tokens() -> None:
    assert len(KEY) == 32 and TOKEN.encode() not in KEY


def test_nothing_is_kept_before_a_watch_covers_it() -> None:
    cache = ValidationCache()
    assert cache.generation is None
    _keep(cache)
    assert cache.get(KEY, 30, ()) is None


def test_a_kept_answer_is_served_as_cached_within_its_bounds() -> None:
    cache = _covered()
    _keep(cache)
    served = cache.get(KEY, 30, ["read"])
    assert served is not None and served.source is Source.CACHE
    assert cache.get(KEY, 30, ["write"]) is None  # a scope it lacks: ask the service
    assert cache.get(KEY, 1e-9, ()) is None  # older than this caller accepts


def test_an_answer_for_a_session_already_over_is_not_kept() -> None:
    cache = _covered()
    _keep(cache, life=-1.0)
    assert len(cache) == 0


def test_a_new_cover_drops_everything_and_a_broken_one_keeps_nothing_new() -> None:
    cache = _covered()
    _keep(cache)
    cache.watch_state(False, "")  # ended before any event: no resume point
    assert cache.get(KEY, 30, ()) is not None  # still served (the server is likely down)
    other = token_key("mss_other")
    _keep(cache, other)
    assert cache.get(other, 30, ()) is None
    cache.watch_state(True, "")  # a new cover, from now: what came before may have missed revocations
    assert cache.get(KEY, 30, ()) is None


def test_a_resumable_stream_keeps_its_cover() -> None:
    cache = _covered()
    _keep(cache)
    cache.watch_state(False, "resume-1")
    cache.watch_state(True, "resume-1")
    other = token_key("mss_other")
    _keep(cache, other)
    assert cache.get(KEY, 30, ()) is not None and cache.get(other, 30, ()) is not None


def test_an_answer_in_flight_across_a_revocation_is_not_kept() -> None:
    cache = _covered()
    generation, started = cache.generation, time.monotonic()
    cache.revoke_session("s1")  # its event came before the (older) positive answer
    cache.put(KEY, _answer(), generation, started)
    assert cache.get(KEY, 30, ()) is None


def test_revocations_drop_the_sessions_they_name() -> None:
    cache = _covered()
    keys = {name: token_key(name) for name in ("a1", "a2", "b1")}
    _keep(cache, keys["a1"], session_id="a1")
    _keep(cache, keys["a2"], session_id="a2")
    _keep(cache, keys["b1"], session_id="b1", user_id="bob")
    cache.revoke_user("ada", except_session_id="a2")
    assert [name for name, key in keys.items() if cache.get(key, 30, ())] == ["a2", "b1"]
    cache.revoke_session("b1")
    cache.reset()
    assert len(cache) == 0 and cache.generation is None


def test_the_oldest_entry_goes_when_full() -> None:
    cache = ValidationCache(max_entries=2)
    cache.watch_state(True, "")
    keys = [token_key(f"t{i}") for i in range(3)]
    for key in keys:
        _keep(cache, key)
    assert [cache.get(key, 30, ()) is not None for key in keys] == [False, True, True]
