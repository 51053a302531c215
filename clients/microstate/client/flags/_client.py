"""FlagsClient and SyncFlagsClient of the microstate.flags.v1 contract, from one declaration.

`FlagsOperations` declares the admin calls once (get, list, create, update, delete, evaluate_remote) and
the local evaluation API, which reads the client's `LocalRuleSet` and makes no call. `start()` loads the
saved rule set and follows SyncFlags in the background (`_keep_following`: a task on the async client, a
daemon thread on the sync one), with a ticker that turns a silent stream STALE and saves the rule set;
close() stops both and saves it a last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, TypeVar

from google.protobuf import field_mask_pb2, json_format, struct_pb2

from microstate.client import _aio, _options, _sync
from microstate.client._base import ClientBase, Contract, Resource, raise_typed
from microstate.client._operations import iterated, unary
from microstate.client._plans import Pages, Stream, Unary, every_page
from microstate.client._read import Page, Read
from microstate.client.flags import evaluation
from microstate.client.flags._local import (
    TICK,
    ErrorCode,
    EvaluationDetails,
    Listener,
    LocalRuleSet,
    Reason,
    RuleSetStatus,
    SyncProgress,
    subject,
)
from microstate.flags.v1 import flags_pb2 as pb
from microstate.flags.v1 import flags_pb2_grpc
from microstate.flags.v1.flags_pb2 import Flag

log = logging.getLogger("microstate.client")

DEFAULT_TARGET = "localhost:50053"
"""Where `microstate serve flags` listens by default."""
ENV_TARGET = _options.ENV_TARGET.format(slice="FLAGS")
ENV_RULE_SET_PATH = "MICROSTATE_FLAGS_RULE_SET_PATH"
"""The file the rule set is saved to when the client is given none."""
DEFAULT_START_WAIT = 5.0
"""Seconds `start()` waits for a current rule set by default."""

CONTRACT = Contract(
    name=pb.DESCRIPTOR.package,
    service=pb.DESCRIPTOR.services_by_name["FlagService"].full_name,
    idempotent_methods=("GetFlag", "ListFlags", "EvaluateFlag", "EvaluateAll", "SyncFlags"),
    slice_name="flags",
    default_target=DEFAULT_TARGET,
    snapshots=False,  # local evaluation reads the synced rule set; admin reads are live
)

CallMetadata = Mapping[str, str] | Sequence[tuple[str, str]] | None
"""Per-call metadata, added to the client's (which always carries x-microstate-contract)."""
Context = Mapping[str, Any] | None
"""An evaluation context: attributes by name; "targetingKey" is the subject splits bucket on."""

O = TypeVar("O")  # noqa: E741 - what a call's answer becomes

_RESOURCE = Resource(Flag.FromString, attrgetter("etag"), attrgetter("key"))
_ANY = pb.VARIANT_TYPE_UNSPECIFIED
_BOOL, _STRING, _NUMBER, _OBJECT = (
    pb.VARIANT_TYPE_BOOL,
    pb.VARIANT_TYPE_STRING,
    pb.VARIANT_TYPE_NUMBER,
    pb.VARIANT_TYPE_OBJECT,
)


def _page(response: pb.ListFlagsResponse) -> tuple[list[Flag], str]:
    return list(response.flags), response.next_page_token


def _evaluation_context(context: Context, targeting_key: str | None) -> pb.EvaluationContext:
    key, attributes = subject(context, targeting_key)
    message = pb.EvaluationContext(targeting_key=key)
    plain = {name: value for name, value in attributes.items() if name != "targetingKey"}
    message.attributes.CopyFrom(json_format.ParseDict(plain, struct_pb2.Struct()))
    return message


def _remote_details(evaluated: pb.Evaluation) -> EvaluationDetails[Any]:
    value = evaluation.python_value(evaluated.value) if evaluated.HasField("value") else None
    return EvaluationDetails(
        evaluated.flag_key,
        value,
        evaluated.variant,
        Reason.of(evaluated.reason),
        ErrorCode.of(evaluated.error_code),
        evaluated.error_message,
        evaluated.revision,
        None,
        dict(evaluated.flag_metadata),
    )


class FlagsOperations(ClientBase):
    """The operations of both flags clients.

    Admin calls (`timeout`: the call's deadline in seconds, None for the client's default; `metadata`: added
    to the client's) raise a typed MicrostateError on failure and are never served from a snapshot.

    Local evaluation (`evaluate_*`, `evaluate_*_details`) reads the rule set that `start()` keeps in sync:
    no call per evaluation, never an exception. `context` maps attribute names to values ("targetingKey", or
    the `targeting_key` argument, is the subject splits bucket on)."""

    CONTRACT = CONTRACT
    _stub_class = flags_pb2_grpc.FlagServiceStub
    _local: LocalRuleSet

    def _write(
        self,
        method: str,
        request: object,
        key: str,
        on_success: Callable[[Any], Any],
        timeout: float | None,
        metadata: CallMetadata,
    ) -> Unary[Any, Any]:
        return self._core.write(
            method, request, key, on_success, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    def _evaluation(
        self,
        method: str,
        request: object,
        on_response: Callable[[Any], O],
        timeout: float | None,
        metadata: CallMetadata,
    ) -> Unary[Any, O]:
        """A remote evaluation: live, never from a snapshot, its failure raised typed."""
        return Unary(
            method,
            request,
            self._core.timeout(timeout),
            self._core.metadata(metadata),
            on_response,
            raise_typed,
        )

    # -- admin -----------------------------------------------------------------------------------------

    @unary
    def get(
        self, key: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, Read[Flag]]:
        """One flag, live. Raises NotFound (FLAG_NOT_FOUND), InvalidArgument."""
        request = pb.GetFlagRequest(key=key)
        return self._core.read_live(
            _RESOURCE, "GetFlag", request, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    @unary
    def list(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Page[Flag]]:
        """One page of flags in key order (page_size 0: 100). A page may hold fewer while next_page_token
        is set."""
        request = pb.ListFlagsRequest(page_size=page_size, page_token=page_token)
        return self._core.list_page(
            _RESOURCE, "ListFlags", request, _page, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    @iterated
    def list_all(
        self, *, page_size: int = 0, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Pages[Flag]:
        """Every flag in key order, fetched page by page; `timeout` is per page."""
        list_page = FlagsOperations.list.plan
        return every_page(list_page, self, page_size=page_size, timeout=timeout, metadata=metadata)

    @unary
    def create(
        self,
        flag: Flag,
        *,
        validate_only: bool = False,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Flag]:
        """Create `flag` (validated; its output-only fields are ignored); returns it as stored, with etag and
        revision. `validate_only`: validate and return what would be stored, writing nothing. Raises
        InvalidArgument (field violations), AlreadyExists (FLAG_ALREADY_EXISTS)."""
        request = pb.CreateFlagRequest(flag=flag, validate_only=validate_only)
        return self._write("CreateFlag", request, flag.key, lambda stored: stored, timeout, metadata)

    @unary
    def update(
        self,
        flag: Flag,
        update_mask: Sequence[str] = (),
        *,
        validate_only: bool = False,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, pb.UpdateFlagResponse]:
        """Update the fields of `flag` named in `update_mask` (empty: every writable field); if flag.etag is
        set it must match. Returns the flag as stored and the edit's `impact` (the fraction of each split's
        bucket space moved to another variant). `validate_only`: validate and report the impact, writing
        nothing. Raises InvalidArgument, NotFound (FLAG_NOT_FOUND), Aborted (ETAG_MISMATCH)."""
        request = pb.UpdateFlagRequest(
            flag=flag, update_mask=field_mask_pb2.FieldMask(paths=update_mask), validate_only=validate_only
        )
        return self._write("UpdateFlag", request, flag.key, lambda response: response, timeout, metadata)

    @unary
    def delete(
        self, key: str, *, etag: str = "", timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, int]:
        """Delete a flag (if `etag` is set it must match); returns the rule set revision of the delete.
        Raises NotFound (FLAG_NOT_FOUND), Aborted (ETAG_MISMATCH)."""
        request = pb.DeleteFlagRequest(key=key, etag=etag)
        return self._write("DeleteFlag", request, key, attrgetter("revision"), timeout, metadata)

    @unary
    def evaluate_remote(
        self,
        key: str,
        context: Context = None,
        *,
        targeting_key: str | None = None,
        expected_type: pb.VariantType = _ANY,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, EvaluationDetails[Any]]:
        """Evaluate one flag on the server (one call; the local `evaluate_*` make none). `value` is None
        when no variant applies; `expected_type` is a flags_pb2.VariantType number (0: any). Raises
        InvalidArgument for a malformed key or context."""
        request = pb.EvaluateFlagRequest(
            key=key,
            context=_evaluation_context(context, targeting_key),
            expected_type=expected_type,
        )
        return self._evaluation("EvaluateFlag", request, _remote_details, timeout, metadata)

    @unary
    def evaluate_all_remote(
        self,
        context: Context = None,
        *,
        targeting_key: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Sequence[EvaluationDetails[Any]]]:
        """Evaluate every flag on the server at one revision, in key order."""
        request = pb.EvaluateAllRequest(context=_evaluation_context(context, targeting_key))

        def answers(response: pb.EvaluateAllResponse) -> Sequence[EvaluationDetails[Any]]:
            return [_remote_details(evaluated) for evaluated in response.evaluations]

        return self._evaluation("EvaluateAll", request, answers, timeout, metadata)

    @unary
    def check_contract(
        self, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, None]:
        """Fail now if the server does not serve microstate.flags.v1 (one GetFlag of an empty key, which
        the server refuses without reading its store)."""
        request = pb.GetFlagRequest(key="")
        return self._core.check_contract(
            "GetFlag", request, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    @iterated
    def _rule_set_feed(self) -> Stream[SyncProgress]:
        """The SyncFlags stream that keeps the local rule set current: it resumes after the held revision
        and reconnects with backoff after UNAVAILABLE or a drain."""
        local = self._local
        return self._core.watch(
            "SyncFlags",
            lambda _: pb.SyncFlagsRequest(since_revision=local.since_revision()),
            local.resume_token(),
            local.on_message,
            timeout=None,
            metadata=self._core.metadata(None),
            listener=local.on_connection,
        )

    # -- local evaluation: no call, never raises -------------------------------------------------------

    def evaluate_bool(
        self, key: str, default: bool, context: Context = None, *, targeting_key: str | None = None
    ) -> bool:
        """The flag's value for the subject, or `default` (no rule set yet, no such flag, not a bool flag,
        no variant applies)."""
        return self._local.value(key, default, context, targeting_key, _BOOL)  # type: ignore[no-any-return]

    def evaluate_string(
        self, key: str, default: str, context: Context = None, *, targeting_key: str | None = None
    ) -> str:
        """As evaluate_bool, for a string flag."""
        return self._local.value(key, default, context, targeting_key, _STRING)  # type: ignore[no-any-return]

    def evaluate_number(
        self, key: str, default: float, context: Context = None, *, targeting_key: str | None = None
    ) -> float:
        """As evaluate_bool, for a number flag (a float)."""
        return self._local.value(key, default, context, targeting_key, _NUMBER)  # type: ignore[no-any-return]

    def evaluate_object(
        self, key: str, default: Any, context: Context = None, *, targeting_key: str | None = None
    ) -> Any:
        """As evaluate_bool, for an object flag (a dict, a copy the caller may change)."""
        return self._local.value(key, default, context, targeting_key, _OBJECT)

    def evaluate_bool_details(
        self, key: str, default: bool, context: Context = None, *, targeting_key: str | None = None
    ) -> EvaluationDetails[bool]:
        """The evaluation with its variant, reason (STALE while the rule set may be out of date, with
        stale_age), error code (reason ERROR: the caller's default) and revision."""
        return self._local.details(key, default, context, targeting_key, _BOOL)

    def evaluate_string_details(
        self, key: str, default: str, context: Context = None, *, targeting_key: str | None = None
    ) -> EvaluationDetails[str]:
        return self._local.details(key, default, context, targeting_key, _STRING)

    def evaluate_number_details(
        self, key: str, default: float, context: Context = None, *, targeting_key: str | None = None
    ) -> EvaluationDetails[float]:
        return self._local.details(key, default, context, targeting_key, _NUMBER)

    def evaluate_object_details(
        self, key: str, default: Any, context: Context = None, *, targeting_key: str | None = None
    ) -> EvaluationDetails[Any]:
        return self._local.details(key, default, context, targeting_key, _OBJECT)

    def rule_set_status(self) -> RuleSetStatus:
        """The local rule set's state (NOT_READY, READY, STALE, ERROR), revision, age and size."""
        return self._local.status()

    def local_flag(self, key: str) -> Flag | None:
        """The flag as the local rule set holds it (do not modify it), or None."""
        return self._local.flag(key)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with each RuleSetEvent (READY, CHANGED with the keys, STALE, ERROR) on the
        feed's task or thread (it must not block); returns the function that removes it."""
        return self._local.add_listener(listener)


def _rule_set_path(path: str | None) -> str | None:
    return path if path is not None else (os.environ.get(ENV_RULE_SET_PATH) or None)


class FlagsClient(_aio.AsyncClient, FlagsOperations):
    """Async client of microstate.flags.v1: `async with FlagsClient("host:port") as flags:`.

    `rule_set_path`: where the synced rule set is saved (atomically) and started from when the service is
    down; None: MICROSTATE_FLAGS_RULE_SET_PATH, else nowhere. Local evaluation needs `await start()`."""

    def __init__(
        self,
        target: str | None = None,
        *,
        options: _options.ClientOptions | None = None,
        rule_set_path: str | None = None,
    ) -> None:
        super().__init__(target, options=options)
        self._local = LocalRuleSet(_rule_set_path(rule_set_path))
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, *, wait: float | None = DEFAULT_START_WAIT) -> RuleSetStatus:
        """Start local evaluation: load the saved rule set (if any), follow SyncFlags in the background on
        this event loop, and wait up to `wait` seconds (None: no limit) until the rule set is current, or
        the stream failed while a saved rule set is held. Never raises for an unavailable service: the
        status says what evaluations will see. Calling it again only waits."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._ticker is None:  # set first: a concurrent start() only waits
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick(), name="microstate-flags-ticker"
            )
            await asyncio.to_thread(self._local.load)
            self._keep_following("_rule_set_feed", self._local.feed_failed)
        if wait is None or wait > 0:
            await asyncio.to_thread(self._local.wait_settled, wait)
        return self._local.status()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)  # a period, not synchronisation
            self._local.check()
            if self._local.save_due():
                await asyncio.to_thread(self._local.save)

    async def close(self) -> None:
        """Stop the sync stream and the ticker, save the rule set, close the channel; safe to call twice."""
        self._local.close()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await super().close()
        if ticker is not None:
            await asyncio.to_thread(self._local.save)


class SyncFlagsClient(_sync.SyncClient, FlagsOperations):
    """The blocking twin of `FlagsClient`, with the same methods; thread-safe:
    `with SyncFlagsClient("host:port") as flags:`. Its sync stream and ticker run in daemon threads."""

    def __init__(
        self,
        target: str | None = None,
        *,
        options: _options.ClientOptions | None = None,
        rule_set_path: str | None = None,
    ) -> None:
        super().__init__(target, options=options)
        self._local = LocalRuleSet(_rule_set_path(rule_set_path))
        self._ticker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self, *, wait: float | None = DEFAULT_START_WAIT) -> RuleSetStatus:
        """As FlagsClient.start, blocking; the stream and the ticker run in daemon threads."""
        if self._stopping.is_set():
            raise RuntimeError("the client is closed")
        with self._start_lock:
            if self._ticker is None and not self._stopping.is_set():
                self._local.load()
                self._keep_following("_rule_set_feed", self._local.feed_failed)
                self._ticker = threading.Thread(
                    target=self._tick, name="microstate-flags-ticker", daemon=True
                )
                self._ticker.start()
        if wait is None or wait > 0:
            self._local.wait_settled(wait)
        return self._local.status()

    def _tick(self) -> None:
        while not self._stopping.wait(TICK):
            self._local.check()
            if self._local.save_due():
                self._local.save()

    def close(self) -> None:
        """Stop the sync stream and the ticker, save the rule set, close the channel; safe to call twice."""
        self._local.close()
        super().close()  # sets _stopping, which ends the ticker
        ticker = self._ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(timeout=TICK + 1.0)
            self._local.save()
