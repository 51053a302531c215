"""Session rules over the records store, independent of the contract's messages.

A session is active while it is not revoked (by itself, or by its user's revoked-before mark) and
now < min(refresh_time + idle_ttl, create_time + max_ttl), on this server's clock (injectable for tests):
every read checks it, whatever the store's own expiry did. The kit's keyed resources do the atomic
read-modify-writes (per-key lock, compare-and-set, retry); this module owns the tokens, the lifetimes,
rotation and reuse detection, the per-user marks and index (layout in model.py).

Every refusal of a credential is the same UNAUTHENTICATED / SESSION_INVALID; the cause goes to the log.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from microstate.server.errors import AlreadyExists, NotFound
from microstate.server.kit.access import PermissionDenied, Unauthenticated
from microstate.server.kit.paging import PageTokens
from microstate.server.kit.resources import UNCHANGED, Resources, Stored, Unchanged, changes
from microstate.server.logs import Throttle
from microstate.server.session import rules
from microstate.server.session.model import (
    MARKS,
    MARKS_PREFIX,
    SESSION,
    Mark,
    Marks,
    RevokeReason,
    Rotation,
    SessionData,
    StoredSession,
    index_prefix,
    is_session_key,
    marks_key,
    user_tag,
)
from microstate.server.session.tokens import (
    REFRESH_TOKEN,
    SECRET_BYTES,
    SESSION_TOKEN,
    Credential,
    Malformed,
    ServerKey,
    TokenKind,
    new_secret,
)
from microstate.server.store.base import Change, PreconditionFailed, Record, Store

log = logging.getLogger(__name__)
REFUSAL_LOG_INTERVAL_SECONDS = 10.0

LIST_TOKENS = PageTokens("ListUserSessions", "user_id")
CHECKPOINT_EVERY = 256
"""A revocation watch reports its position after this many changes that revoked nothing, so a client's
resume token never falls behind the retained change log while nothing is revoked."""
_SPENT_DIGEST_BYTES = 16


class Refused(Exception):
    """Why a credential does not authenticate: for the log only."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _invalid() -> Unauthenticated:
    # One message and one reason for every cause: no oracle.
    return Unauthenticated("not a valid token of an active session", reason="SESSION_INVALID")


@dataclass(frozen=True, slots=True)
class NewSession:
    user_id: str
    scopes: Sequence[str] = ()
    attributes: Mapping[str, str] | None = None
    idle_ttl_ns: int | None = None
    """None: the default."""
    max_ttl_ns: int | None = None
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as read at one moment: its data, and whether and why it is revoked."""

    data: SessionData
    revoke_time_ns: int = 0
    revoke_reason: RevokeReason = RevokeReason.UNSPECIFIED

    @property
    def active(self) -> bool:
        return self.revoke_reason is RevokeReason.UNSPECIFIED


def view_of(data: SessionData, marks: Marks | None) -> SessionView:
    if data.revoke_time_ns:
        return SessionView(data, data.revoke_time_ns, data.revoke_reason)
    mark = marks.by_user.get(data.user_id) if marks is not None else None
    if mark is not None and mark.covers(data):
        return SessionView(data, mark.revoked_before_ns, RevokeReason.USER_REVOKED)
    return SessionView(data)


@dataclass(frozen=True, slots=True)
class Issued:
    """A session with its plaintext tokens: what Create and Refresh return, once."""

    session: SessionView
    token: str
    refresh_token: str


@dataclass(frozen=True, slots=True)
class UserRevocation:
    user_id: str
    revoke_time_ns: int
    except_session_id: str


class RevocationType(enum.IntEnum):
    """microstate.session.v1.RevocationType, by number."""

    SESSION = 1
    USER = 2
    CHECKPOINT = 3


@dataclass(frozen=True, slots=True)
class Revocation:
    type: RevocationType
    resume_token: str
    commit_time: float
    session_id: str = ""
    user_id: str = ""
    revoke_time_ns: int = 0
    revoke_reason: RevokeReason = RevokeReason.UNSPECIFIED
    except_session_id: str = ""


@dataclass(slots=True)
class _Refresh:
    """What a refresh's read-modify-write decided (it runs inside the kit's CAS loop)."""

    secrets: tuple[bytes, bytes] | None = None
    reused: bool = False


class SessionDomain:
    def __init__(self, store: Store, key: ServerKey, *, clock: Callable[[], int] = time.time_ns) -> None:
        self._store = store
        self._key = key
        self._clock = clock
        self._sessions = Resources(store, SESSION, LIST_TOKENS)
        self._marks = Resources(store, MARKS, LIST_TOKENS)
        # Anyone can send refused tokens at will: one line per method and cause per interval, with a count.
        self._refusals = Throttle(REFUSAL_LOG_INTERVAL_SECONDS)

    # -- reads -----------------------------------------------------------------------------------------------

    async def _read(self, session_id: str) -> tuple[StoredSession | None, Marks | None]:
        """The session and its user's marks, in one batch read (the session id names the marks' key)."""
        mark_key = marks_key(session_id)
        records = await self._store.batch_get([session_id, mark_key])
        session, marks = records.get(session_id), records.get(mark_key)
        return (
            None if session is None else self._sessions.decode(session),
            None if marks is None else self._marks.decode(marks).data,
        )

    async def _marks_of(self, session_id_or_tag: str) -> Marks | None:
        record = await self._store.get(marks_key(session_id_or_tag))
        return None if record is None else self._marks.decode(record).data

    def _seconds_left(self, data: SessionData) -> float:
        """The store TTL of a session record: until it expires (the store's expiry only reclaims space;
        every read checks expiry itself)."""
        return max((data.expire_time_ns - self._clock()) / 1e9, 0.001)

    async def get(self, session_id: str) -> SessionView:
        rules.check_session_id(session_id, "session_id")
        stored, marks = await self._read(session_id)
        if stored is None or self._clock() >= stored.data.expire_time_ns:
            raise SESSION.not_found(session_id)
        return view_of(stored.data, marks)

    async def validate(self, token: str, required_scopes: Sequence[str]) -> SessionView:
        required = rules.scopes_of(required_scopes, "required_scopes")
        credential = self._parse(SESSION_TOKEN, token, "ValidateSession")
        stored, marks = await self._read(credential.session_id)
        try:
            view = self._authenticate(credential, stored, marks, self._clock())
        except Refused as refused:
            raise self._refuse("ValidateSession", credential.session_id, refused.cause) from None
        missing = [scope for scope in required if scope not in view.data.scopes]
        if missing:
            raise PermissionDenied(
                f"the session lacks the scopes {' '.join(missing)}",
                reason="INSUFFICIENT_SCOPE",
                metadata={"missing_scopes": " ".join(missing)},
            )
        return view

    def _parse(self, kind: TokenKind, token: str, method: str) -> Credential:
        try:
            return kind.parse(token)
        except Malformed as malformed:  # refused before any store read
            raise self._refuse(method, "", malformed.cause) from None

    def _refuse(self, method: str, session_id: str, cause: str) -> Unauthenticated:
        held_back = self._refusals.admit((method, cause))
        if held_back is not None:
            log.info(
                "credential refused",
                extra={"method": method, "session_id": session_id, "cause": cause, "held_back": held_back},
            )
        return _invalid()

    def _authenticate(
        self, credential: Credential, stored: StoredSession | None, marks: Marks | None, now: int
    ) -> SessionView:
        """The active session `credential` (a session token) belongs to; Refused otherwise."""
        if stored is None:
            raise Refused("no such session (never created, expired or evicted)")
        data = stored.data
        self._check_key(data)
        if not self._key.matches(SESSION_TOKEN, credential, data.token_digest):
            previous = data.previous
            if previous is None or not self._key.matches(SESSION_TOKEN, credential, previous.token_digest):
                raise Refused("the secret does not match the session's")
            if now >= previous.rotate_time_ns + rules.REFRESH_GRACE_NS:
                raise Refused("a token replaced by a refresh, after the grace period")
        return self._active(data, marks, now)

    def _check_key(self, data: SessionData) -> None:
        if not hmac.compare_digest(data.key_id, self._key.key_id):
            raise Refused("the session was issued under another server key")

    @staticmethod
    def _active(data: SessionData, marks: Marks | None, now: int) -> SessionView:
        view = view_of(data, marks)
        if not view.active:
            raise Refused(f"the session is revoked ({view.revoke_reason.name})")
        if now >= data.expire_time_ns:
            cap = "max_ttl" if data.expire_time_ns == data.max_expire_time_ns else "idle_ttl"
            raise Refused(f"the session expired ({cap})")
        return view

    # -- create ----------------------------------------------------------------------------------------------

    async def create(self, new: NewSession) -> Issued:
        rules.check_user_id(new.user_id, "user_id")
        scopes = rules.scopes_of(new.scopes, "scopes")
        attributes = dict(new.attributes or {})
        rules.check_attributes(attributes, "attributes")
        rules.check_request_id(new.request_id, "request_id")
        idle_ns, max_ns = rules.lifetimes_of(new.idle_ttl_ns, new.max_ttl_ns)
        user = new.user_id.encode()
        if new.request_id:
            # A retry derives the same id, so the store's create-if-absent catches it.
            own = self._key.mac(b"request session id", user, new.request_id.encode())[:8].hex()
            request_digest = self._key.mac(
                b"create request",
                user,
                len(scopes).to_bytes(4, "big"),
                *(scope.encode() for scope in scopes),
                *(part.encode() for item in sorted(attributes.items()) for part in item),
                idle_ns.to_bytes(8, "big"),
                max_ns.to_bytes(8, "big"),
            )
        else:
            own, request_digest = secrets.token_hex(8), b""
        session_id = user_tag(new.user_id) + own
        access, refresh = new_secret(), new_secret()
        now = self._clock()
        data = SessionData(
            session_id=session_id,
            user_id=new.user_id,
            scopes=scopes,
            attributes=attributes,
            create_time_ns=now,
            refresh_time_ns=now,
            idle_ttl_ns=idle_ns,
            max_ttl_ns=max_ns,
            key_id=self._key.key_id,
            token_digest=self._key.digest(SESSION_TOKEN, Credential(session_id, access)),
            refresh_digest=self._key.digest(REFRESH_TOKEN, Credential(session_id, refresh)),
            request_digest=request_digest,
            sealed_first_secrets=self._seal_first(access + refresh, session_id, new.request_id),
        )
        # The index entry first: a session that exists is always listed (an entry without a session is
        # removed by the next listing).
        await self._store.put(index_prefix(new.user_id) + session_id, b"", ttl=max_ns / 1e9)
        try:
            stored = await self._sessions.create(session_id, data, ttl=self._seconds_left(data))
        except AlreadyExists:
            return await self._replay(session_id, new.request_id, request_digest)
        return self._issued(view_of(stored.data, None), access, refresh)

    def _seal_first(self, plaintext: bytes, session_id: str, request_id: str) -> bytes:
        if not request_id:
            return b""
        return self._key.seal(plaintext, b"first secrets", session_id.encode(), request_id.encode())

    async def _replay(self, session_id: str, request_id: str, request_digest: bytes) -> Issued:
        """The answer to a retried create: the session and tokens the first attempt made, if still fit."""
        if not request_id:  # a random id taken: as likely as guessing a 64-bit number
            raise SESSION.already_exists(session_id)
        stored, marks = await self._read(session_id)
        if stored is None or not hmac.compare_digest(stored.data.request_digest, request_digest):
            raise _request_id_used("for a different request")
        data, now = stored.data, self._clock()
        view = view_of(data, marks)
        fresh = now < data.create_time_ns + rules.REQUEST_ID_WINDOW_NS and now < data.expire_time_ns
        if not (view.active and fresh and data.sealed_first_secrets):
            raise _request_id_used("and its session was since refreshed, revoked, or is over 10 minutes old")
        secrets_ = self._key.seal(
            data.sealed_first_secrets, b"first secrets", session_id.encode(), request_id.encode()
        )
        access, refresh = secrets_[:SECRET_BYTES], secrets_[SECRET_BYTES:]
        if not self._current(
            data, access, refresh
        ):  # pragma: no cover - only if the record was tampered with
            raise _request_id_used("and its tokens cannot be recovered")
        return self._issued(view, access, refresh)

    def _current(self, data: SessionData, access: bytes, refresh: bytes) -> bool:
        session_id = data.session_id
        return self._key.matches(
            SESSION_TOKEN, Credential(session_id, access), data.token_digest
        ) and self._key.matches(REFRESH_TOKEN, Credential(session_id, refresh), data.refresh_digest)

    @staticmethod
    def _issued(view: SessionView, access: bytes, refresh: bytes) -> Issued:
        session_id = view.data.session_id
        return Issued(view, SESSION_TOKEN.issue(session_id, access), REFRESH_TOKEN.issue(session_id, refresh))

    # -- refresh ---------------------------------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> Issued:
        """Rotate both tokens (RFC 9700 refresh-token rotation), with a grace period for the spent refresh
        token and reuse detection after it; see session.proto."""
        credential = self._parse(REFRESH_TOKEN, refresh_token, "RefreshSession")
        session_id = credential.session_id
        marks = await self._marks_of(session_id)
        presented = self._key.digest(REFRESH_TOKEN, credential)
        outcome = _Refresh()

        def change(current: StoredSession) -> SessionData | Unchanged:
            data, now = current.data, self._clock()
            self._check_key(data)
            if hmac.compare_digest(presented, data.refresh_digest):
                self._active(data, marks, now)
                rotated, outcome.secrets = self._rotate(data, credential, now)
                return rotated
            previous = data.previous
            if previous is not None and hmac.compare_digest(presented, previous.refresh_digest):
                if now < previous.rotate_time_ns + rules.REFRESH_GRACE_NS:
                    self._active(data, marks, now)
                    outcome.secrets = self._successor(data, previous, credential)
                    return UNCHANGED
                return self._reused(data, marks, now, outcome)
            spent = presented[:_SPENT_DIGEST_BYTES]
            if any(hmac.compare_digest(spent, old) for old in data.spent_refresh_digests):
                return self._reused(data, marks, now, outcome)
            raise Refused("the secret does not match the session's refresh token")

        try:
            stored = await self._sessions.update(session_id, change, etag="", ttl=self._seconds_left)
        except NotFound:
            raise self._refuse("RefreshSession", session_id, "no such session") from None
        except Refused as refused:
            raise self._refuse("RefreshSession", session_id, refused.cause) from None
        if outcome.reused:
            log.warning(
                "spent refresh token presented after the grace period: session revoked",
                extra={"session_id": session_id, "user_id": stored.data.user_id},
            )
            raise _invalid()
        assert outcome.secrets is not None
        return self._issued(view_of(stored.data, marks), *outcome.secrets)

    def _rotate(
        self, data: SessionData, spent: Credential, now: int
    ) -> tuple[SessionData, tuple[bytes, bytes]]:
        access, refresh = new_secret(), new_secret()
        session_id = data.session_id
        # The successor is kept encrypted under the spent refresh token itself, so only its holder (within
        # the grace period) can get it again, and a copy of the store cannot.
        sealed = self._seal_successor(access + refresh, session_id, spent)
        older = data.spent_refresh_digests
        if data.previous is not None:
            older = (*older, data.previous.refresh_digest[:_SPENT_DIGEST_BYTES])
        rotated = replace(
            data,
            refresh_time_ns=now,
            token_digest=self._key.digest(SESSION_TOKEN, Credential(session_id, access)),
            refresh_digest=self._key.digest(REFRESH_TOKEN, Credential(session_id, refresh)),
            generation=data.generation + 1,
            previous=Rotation(data.token_digest, data.refresh_digest, now, sealed),
            spent_refresh_digests=older[-rules.MAX_SPENT_REFRESH_DIGESTS :],
            sealed_first_secrets=b"",
        )
        return rotated, (access, refresh)

    def _seal_successor(self, plaintext: bytes, session_id: str, spent: Credential) -> bytes:
        return self._key.seal(plaintext, b"successor", session_id.encode(), spent.secret)

    def _successor(self, data: SessionData, previous: Rotation, spent: Credential) -> tuple[bytes, bytes]:
        plain = self._key.seal(
            previous.sealed_successor, b"successor", data.session_id.encode(), spent.secret
        )
        access, refresh = plain[:SECRET_BYTES], plain[SECRET_BYTES:]
        if not self._current(
            data, access, refresh
        ):  # pragma: no cover - only if the record was tampered with
            raise Refused("the sealed successor does not match the session's tokens")
        return access, refresh

    def _reused(self, data: SessionData, marks: Marks | None, now: int, outcome: _Refresh) -> SessionData:
        """A spent refresh token came back after its grace period: two parties hold the session's
        credentials, so the whole session (every token it issued) is revoked."""
        self._active(data, marks, now)  # a session that already ended has nothing left to revoke
        outcome.reused = True
        return data.revoked(now, RevokeReason.REFRESH_TOKEN_REUSED)

    # -- revoke ----------------------------------------------------------------------------------------------

    async def revoke(self, session_id: str) -> SessionView:
        rules.check_session_id(session_id, "session_id")
        marks = await self._marks_of(session_id)

        def change(current: StoredSession) -> SessionData | Unchanged:
            now = self._clock()
            if now >= current.data.expire_time_ns:
                raise SESSION.not_found(session_id)
            if not view_of(current.data, marks).active:
                return UNCHANGED
            return current.data.revoked(now, RevokeReason.REVOKED)

        stored = await self._sessions.update(session_id, change, etag="", ttl=self._seconds_left)
        return view_of(stored.data, marks)

    async def revoke_user(self, user_id: str, except_session_id: str = "") -> UserRevocation:
        """Revoke every session of `user_id` created up to now, but `except_session_id` if it is an active
        session of theirs: one write of the user's mark, whatever the number of sessions."""
        rules.check_user_id(user_id, "user_id")
        spared: SessionData | None = None
        if except_session_id:
            rules.check_session_id(except_session_id, "except_session_id")
            stored, marks = await self._read(except_session_id)
            if stored is not None and stored.data.user_id == user_id:
                try:
                    spared = self._active(stored.data, marks, self._clock()).data
                except Refused:
                    spared = None
        now = self._clock()

        def change(current: Stored[Marks] | None) -> Marks:
            marks = current.data if current is not None else Marks()
            previous = marks.by_user.get(user_id)
            # Checked again here, on the marks being replaced: a concurrent revocation may have covered it.
            keep = spared is not None and not (previous is not None and previous.covers(spared))
            before = max(now, previous.revoked_before_ns if previous is not None else 0)
            by_user = {
                user: mark
                for user, mark in marks.by_user.items()
                if mark.revoked_before_ns + rules.MAX_MAX_TTL_NS > now  # else it covers no live session
            }
            by_user[user_id] = Mark(before, spared.session_id if keep and spared is not None else "")
            return Marks(by_user, user_id)

        written = await self._marks.upsert(
            marks_key(user_tag(user_id)), change, ttl=lambda _: rules.MAX_MAX_TTL_NS / 1e9
        )
        assert written is not None
        mark = written.data.by_user[user_id]
        log.info(
            "user sessions revoked",
            extra={
                "user_id": user_id,
                "revoked_before_ns": mark.revoked_before_ns,
                "spared": mark.except_session_id,
            },
        )
        return UserRevocation(user_id, mark.revoked_before_ns, mark.except_session_id)

    # -- list ------------------------------------------------------------------------------------------------

    async def list_user(self, user_id: str, page_size: int, page_token: str) -> tuple[list[SessionView], str]:
        """Active sessions of `user_id` in session id order, and the next page's token. Looks at no more than
        MAX_LISTING_SCAN index entries, and deletes those of sessions that ended (so the index never keeps
        dead members once read)."""
        rules.check_user_id(user_id, "user_id")
        size = rules.page_size_of(page_size)
        after = LIST_TOKENS.decode(page_token, user_id)
        prefix = index_prefix(user_id)
        marks = await self._marks_of(user_tag(user_id))
        found: list[SessionView] = []
        scanned = 0
        while len(found) < size and scanned < rules.MAX_LISTING_SCAN:
            page = await self._store.list(
                prefix, after=after, limit=min(size - len(found), rules.MAX_LISTING_SCAN - scanned)
            )
            scanned += len(page.records)
            session_ids = [entry.key[len(prefix) :] for entry in page.records]
            sessions = await self._store.batch_get(session_ids) if session_ids else {}
            now = self._clock()
            ended: list[Record] = []
            for entry, session_id in zip(page.records, session_ids, strict=True):
                record = sessions.get(session_id)
                view = (
                    None
                    if record is None
                    else self._live_view(self._sessions.decode(record).data, marks, now)
                )
                if view is not None and view.data.user_id == user_id:
                    found.append(view)
                else:
                    ended.append(entry)
            await self._forget(ended)
            after = page.next_after
            if after is None:
                break
        return found, LIST_TOKENS.encode(after, user_id)

    @staticmethod
    def _live_view(data: SessionData, marks: Marks | None, now: int) -> SessionView | None:
        view = view_of(data, marks)
        return view if view.active and now < data.expire_time_ns else None

    async def _forget(self, entries: Sequence[Record]) -> None:
        """Delete index entries of ended sessions, each only if unchanged since it was read."""
        for entry in entries:
            # Rewritten meanwhile (a session re-created under the same id)? Then it stays.
            with contextlib.suppress(PreconditionFailed):
                await self._store.delete(entry.key, if_match=entry.revision)

    # -- watch -----------------------------------------------------------------------------------------------

    async def watch_start(self, resume_token: str) -> str:
        """Where a watch begins: after `resume_token`, or after the current head when it is empty."""
        return await self._sessions.watch_start(resume_token)

    async def watch(self, start: str) -> AsyncGenerator[Revocation, None]:
        """Revocations strictly after `start`, and a checkpoint after every CHECKPOINT_EVERY other changes."""
        skipped = 0
        async for change in changes(self._store, "", start):
            event = self._revocation(change)
            if event is None:
                skipped += 1
                if skipped < CHECKPOINT_EVERY:
                    continue
                event = Revocation(RevocationType.CHECKPOINT, change.cursor, change.commit_time)
            skipped = 0
            yield event

    def _revocation(self, change: Change) -> Revocation | None:
        record = change.record
        if record is None and is_session_key(change.key):
            # Sessions are deleted only when their user's data is erased (subject_data.py): the event names
            # the session id alone, so validators drop it without the stream repeating whose it was.
            return Revocation(
                RevocationType.SESSION,
                change.cursor,
                change.commit_time,
                session_id=change.key,
                revoke_time_ns=int(change.commit_time * 1e9),
                revoke_reason=RevokeReason.ERASED,
            )
        if record is None:
            return None  # a deletion (of an index entry or of erased marks): nothing revoked
        if is_session_key(change.key):
            data = SESSION.from_bytes(record.value)
            if not data.revoke_time_ns:
                return None
            return Revocation(
                RevocationType.SESSION,
                change.cursor,
                change.commit_time,
                session_id=data.session_id,
                user_id=data.user_id,
                revoke_time_ns=data.revoke_time_ns,
                revoke_reason=data.revoke_reason,
            )
        if change.key.startswith(MARKS_PREFIX):
            marks = MARKS.from_bytes(record.value)
            mark = marks.by_user[marks.last_user_id]
            return Revocation(
                RevocationType.USER,
                change.cursor,
                change.commit_time,
                user_id=marks.last_user_id,
                revoke_time_ns=mark.revoked_before_ns,
                except_session_id=mark.except_session_id,
            )
        return None


def _request_id_used(why: str) -> AlreadyExists:
    return AlreadyExists(f"request_id was already used {why}", reason="REQUEST_ID_ALREADY_USED")
