"""Sessions on every backend: create, validate, expiry enforced on read by the server clock, revocation of
one session or of all of a user's, idempotent creates, and one answer for every refused token."""

from __future__ import annotations

import logging
import re
import secrets

import pytest

from microstate.server.errors import AlreadyExists, InvalidArgument, NotFound
from microstate.server.kit.access import PermissionDenied, Unauthenticated
from microstate.server.session.domain import NewSession, SessionDomain
from microstate.server.session.model import RevokeReason, user_tag
from microstate.server.session.rules import REQUEST_ID_WINDOW_NS
from microstate.server.session.tokens import SESSION_TOKEN, ServerKey
from microstate.server.store import Store
from tests.session.conftest import SECOND, Clock

MINUTE = 60


async def refused(domain: SessionDomain, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        await domain.validate(token, [])
    return caught.value


async def test_a_created_session_validates_and_reads_back(domain: SessionDomain, clock: Clock) -> None:
    issued = await domain.create(
        NewSession("ada", scopes=["write", "read", "write"], attributes={"device": "laptop"})
    )
    session = issued.session.data

    assert re.fullmatch(r"[0-9a-f]{32}", session.session_id) and session.session_id.startswith(
        user_tag("ada")
    )
    assert session.scopes == ("read", "write")
    assert (session.create_time_ns, session.refresh_time_ns) == (clock.now, clock.now)
    assert session.expire_time_ns == clock.now + 30 * MINUTE * SECOND  # the default idle_ttl
    assert session.max_expire_time_ns == clock.now + 24 * 60 * MINUTE * SECOND
    assert issued.token != issued.refresh_token
    validated = await domain.validate(issued.token, ["read"])
    assert validated.active and validated.data.session_id == session.session_id
    assert (await domain.get(session.session_id)).data == validated.data


async def test_idle_expiry_is_enforced_on_read(domain: SessionDomain, clock: Clock) -> None:
    issued = await domain.create(NewSession("ada", idle_ttl_ns=10 * SECOND, max_ttl_ns=60 * SECOND))
    session_id = issued.session.data.session_id

    clock.advance(9.999)
    await domain.validate(issued.token, [])
    clock.advance(0.001)  # exactly refresh_time + idle_ttl: over

    await refused(domain, issued.token)
    with pytest.raises(NotFound):
        await domain.get(session_id)
    with pytest.raises(Unauthenticated):
        await domain.refresh(issued.refresh_token)


async def test_refresh_moves_the_idle_deadline_but_never_past_max_ttl(
    domain: SessionDomain, clock: Clock
) -> None:
    issued = await domain.create(NewSession("ada", idle_ttl_ns=10 * SECOND, max_ttl_ns=25 * SECOND))
    created = clock.now

    for _ in range(3):  # at 8 s, 16 s, 24 s
        clock.advance(8)
        issued = await domain.refresh(issued.refresh_token)
        data = issued.session.data
        assert data.expire_time_ns == min(clock.now + 10 * SECOND, created + 25 * SECOND)

    clock.advance(0.999)
    await domain.validate(issued.token, [])
    clock.advance(0.001)  # created + max_ttl, although refreshed 1 s ago with a 10 s idle_ttl
    await refused(domain, issued.token)
    with pytest.raises(Unauthenticated):
        await domain.refresh(issued.refresh_token)


async def test_lifetimes_are_checked(domain: SessionDomain) -> None:
    for idle, maximum, field in [
        (0, None, "idle_ttl"),
        (None, SECOND - 1, "max_ttl"),
        (None, 367 * 24 * 3600 * SECOND, "max_ttl"),
        (20 * SECOND, 10 * SECOND, "idle_ttl"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            await domain.create(NewSession("ada", idle_ttl_ns=idle, max_ttl_ns=maximum))
        assert caught.value.violations[0][0] == field
    short = await domain.create(NewSession("ada", max_ttl_ns=5 * SECOND))
    assert short.session.data.idle_ttl_ns == 5 * SECOND  # the default idle_ttl, capped by max_ttl


async def test_a_revoked_session_is_refused_and_reads_as_revoked(
    domain: SessionDomain, clock: Clock, store: Store
) -> None:
    issued = await domain.create(NewSession("ada"))
    session_id = issued.session.data.session_id
    clock.advance(1)

    revoked = await domain.revoke(session_id)
    head = await store.head_cursor()
    again = await domain.revoke(session_id)

    assert (revoked.revoke_reason, revoked.revoke_time_ns) == (RevokeReason.REVOKED, clock.now)
    assert again == revoked and await store.head_cursor() == head  # revoking twice writes nothing
    assert not (await domain.get(session_id)).active
    await refused(domain, issued.token)
    with pytest.raises(Unauthenticated):
        await domain.refresh(issued.refresh_token)
    with pytest.raises(NotFound):
        await domain.revoke("0" * 32)


async def test_revoking_a_user_ends_their_earlier_sessions_but_the_spared_one(
    domain: SessionDomain, clock: Clock
) -> None:
    earlier = [await domain.create(NewSession("ada")) for _ in range(3)]
    other_user = await domain.create(NewSession("bob"))
    current = earlier[0]
    clock.advance(1)

    revocation = await domain.revoke_user("ada", current.session.data.session_id)
    clock.advance(1)
    later = await domain.create(NewSession("ada"))

    assert (revocation.revoke_time_ns, revocation.except_session_id) == (
        clock.now - SECOND,
        current.session.data.session_id,
    )
    for issued in earlier[1:]:
        await refused(domain, issued.token)
        view = await domain.get(issued.session.data.session_id)
        assert (view.revoke_reason, view.revoke_time_ns) == (
            RevokeReason.USER_REVOKED,
            revocation.revoke_time_ns,
        )
    await domain.validate(current.token, [])
    await domain.validate(later.token, [])
    await domain.validate(other_user.token, [])

    await domain.revoke_user("ada")  # now every session, the spared one and the later one too
    await refused(domain, current.token)
    await refused(domain, later.token)
    await domain.validate(other_user.token, [])


async def test_only_an_active_session_of_the_user_can_be_spared(domain: SessionDomain, clock: Clock) -> None:
    ada = await domain.create(NewSession("ada"))
    bob = await domain.create(NewSession("bob"))
    clock.advance(1)

    first = await domain.revoke_user("ada", bob.session.data.session_id)  # not ada's: spares nothing
    assert first.except_session_id == ""
    await refused(domain, ada.token)

    # A session an earlier revocation ended cannot be brought back by sparing it later.
    second = await domain.revoke_user("ada", ada.session.data.session_id)
    assert second.except_session_id == ""
    await refused(domain, ada.token)


async def test_a_retried_create_returns_the_same_session_and_tokens(
    domain: SessionDomain, clock: Clock
) -> None:
    request = NewSession("ada", scopes=["read"], attributes={"device": "phone"}, request_id="req-1")
    first = await domain.create(request)
    clock.advance(REQUEST_ID_WINDOW_NS / SECOND - 1)

    retried = await domain.create(request)

    assert (retried.token, retried.refresh_token) == (first.token, first.refresh_token)
    assert retried.session.data == first.session.data
    other = await domain.create(
        NewSession("ada", scopes=["read"], attributes={"device": "phone"}, request_id="req-2")
    )
    assert other.session.data.session_id != first.session.data.session_id
    with pytest.raises(AlreadyExists) as different:
        await domain.create(NewSession("ada", scopes=["write"], request_id="req-1"))
    assert different.value.reason == "REQUEST_ID_ALREADY_USED"

    clock.advance(1)  # the window is over
    with pytest.raises(AlreadyExists):
        await domain.create(request)


async def test_a_retried_create_after_a_refresh_or_revocation_returns_no_tokens(
    domain: SessionDomain,
) -> None:
    refreshed_request = NewSession("ada", request_id="refreshed")
    first = await domain.create(refreshed_request)
    await domain.refresh(first.refresh_token)
    revoked_request = NewSession("ada", request_id="revoked")
    second = await domain.create(revoked_request)
    await domain.revoke(second.session.data.session_id)

    for request in (refreshed_request, revoked_request):
        with pytest.raises(AlreadyExists) as caught:
            await domain.create(request)
        assert caught.value.reason == "REQUEST_ID_ALREADY_USED"


async def test_every_refused_token_gets_the_same_answer_and_the_log_the_cause(
    domain: SessionDomain, clock: Clock, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    live = await domain.create(NewSession("ada", idle_ttl_ns=60 * SECOND))
    expired = await domain.create(NewSession("ada", idle_ttl_ns=SECOND))
    revoked = await domain.create(NewSession("ada"))
    await domain.revoke(revoked.session.data.session_id)
    other_key = SessionDomain(store, ServerKey(secrets.token_bytes(32)), clock=clock)
    foreign = await other_key.create(NewSession("ada"))
    clock.advance(2)
    session_id = live.session.data.session_id
    candidates = {
        "malformed": "mss_not-a-token",
        "checksum": live.token[:-1] + ("0" if live.token[-1] != "0" else "1"),
        "unknown session": SESSION_TOKEN.issue("f" * 32, secrets.token_bytes(32)),
        "wrong secret": SESSION_TOKEN.issue(session_id, secrets.token_bytes(32)),
        "refresh token": live.refresh_token,
        "expired": expired.token,
        "revoked": revoked.token,
        "other key": foreign.token,
    }

    with caplog.at_level(logging.INFO, logger="microstate.server.session"):
        answers = {name: await refused(domain, token) for name, token in candidates.items()}

    assert {(e.code, e.reason, e.message, tuple(e.details())) for e in answers.values()} == {
        (answers["revoked"].code, "SESSION_INVALID", "not a valid token of an active session", ())
    }
    causes = [record.cause for record in caplog.records if record.getMessage() == "credential refused"]
    # A refresh token shows as malformed, like the malformed one: each cause is logged once (throttled).
    assert len(causes) == len(set(causes)) == len(candidates) - 1
    assert any("checksum" in cause for cause in causes)
    assert any("revoked" in cause for cause in causes) and any("expired" in cause for cause in causes)
    assert any("another server key" in cause for cause in causes)
    assert not any(token in caplog.text for token in candidates.values() if len(token) == 85)


async def test_a_missing_scope_is_permission_denied(domain: SessionDomain) -> None:
    issued = await domain.create(NewSession("ada", scopes=["read"]))

    with pytest.raises(PermissionDenied) as caught:
        await domain.validate(issued.token, ["read", "write", "admin"])

    assert caught.value.reason == "INSUFFICIENT_SCOPE"
    assert caught.value.metadata == {"missing_scopes": "admin write"}


@pytest.mark.parametrize(
    ("new", "field"),
    [
        (NewSession(""), "user_id"),
        (NewSession("a/b"), "user_id"),
        (NewSession("ada", scopes=["has space"]), "scopes[0]"),
        (NewSession("ada", scopes=[f"s{i}" for i in range(65)]), "scopes"),
        (NewSession("ada", attributes={"": "x"}), "attributes['']"),
        (NewSession("ada", attributes={"k": "v" * 1025}), "attributes['k']"),
        (NewSession("ada", request_id="has space"), "request_id"),
    ],
)
async def test_bad_input_is_refused_before_any_write(
    domain: SessionDomain, store: Store, new: NewSession, field: str
) -> None:
    head = await store.head_cursor()
    with pytest.raises(InvalidArgument) as caught:
        await domain.create(new)
    assert caught.value.violations[0][0] == field
    assert await store.head_cursor() == head


async def test_a_flood_of_refused_tokens_is_logged_a_line_per_cause(
    domain: SessionDomain, caplog: pytest.LogCaptureFixture
) -> None:
    forged = [SESSION_TOKEN.issue(secrets.token_hex(16), secrets.token_bytes(32)) for _ in range(50)]
    with caplog.at_level(logging.INFO, logger="microstate.server.session"):
        for token in forged:
            await refused(domain, token)
    lines = [record for record in caplog.records if record.getMessage() == "credential refused"]
    assert len(lines) == 1 and lines[0].held_back == 0  # 49 more held back until the interval ends
