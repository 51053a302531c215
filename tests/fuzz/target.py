"""One microstate server process under fuzz: raw calls, the verdict on each answer, and its stored state.

Requests go out as bytes through identity serializers, so a body can be anything. Descriptors come from the
server's own reflection service, so a slice added to the registry is fuzzed with no change here. The stored
state is read through the store protocol from this process (the same URL and namespace the server uses), so
a rejected request that wrote anything is caught, whatever the slice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from microstate.server.errors import DOMAIN
from microstate.server.store import Store, open_store
from tests.support.processes import ServerProcess, json_lines

UNARY_TIMEOUT = 15.0
"""A unary call with no answer by then counts as a hang (generous: the machine is shared and loaded)."""
WATCH_WINDOW = 0.3
"""How long a server-streaming call may stay silent: one still open then was accepted (its status would
have come at once otherwise); the client's deadline then ends it, which is also the cancellation path."""
SLOWEST_TRANSFER = 2**20
"""Bytes per second a request is given on top of the window (4 MiB can take seconds on a loaded machine)."""
HEALTH_TIMEOUT = 5.0
MAX_HARVEST = 256
"""Strings kept from earlier answers (ids, etags, tokens) to steer later requests; the newest win."""
MAX_HARVESTED_LENGTH = 256
MAX_ERROR_BYTES = 4096
"""An error status (message and details) must stay this small whatever the request held: an error that
echoes its input grows with it, past the 8 KiB of metadata clients accept by default."""
CORE_SIZE_LIMIT = "Received message larger than max"
"""gRPC core's own refusal of an oversize request, sent before any handler runs (so without details)."""
REASON = re.compile(r"^[A-Z][A-Z0-9_]*$")
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
CLIENT_SIDE = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
TALLY: Counter[tuple[str, str]] = Counter()
"""(method, answer) -> cases, for the run's summary: a fuzzer whose cases all fail the first check
reaches nothing behind it."""


@dataclass
class Outcome:
    """What one call got back."""

    code: grpc.StatusCode
    message: str = ""
    details_bin: bytes | None = None
    """grpc-status-details-bin: the serialized google.rpc.Status, if the server sent one."""
    response: bytes | None = None
    """The unary response, or the first streamed one."""
    open_stream: bool = False
    """A server-streaming call still open, without a message, when the client's window ended."""

    @property
    def rejected(self) -> bool:
        """The server refused the request (so it must not have changed anything)."""
        return self.code != grpc.StatusCode.OK and not self.open_stream

    def describe(self) -> str:
        shown = (
            self.message if len(self.message) <= 300 else f"{self.message[:300]}… ({len(self.message)} chars)"
        )
        return f"{self.code.name} {shown!r}" + (" (stream open)" if self.open_stream else "")


def _error_outcome(error: grpc.RpcError) -> Outcome:
    call: Any = error  # a grpc.Call too
    trailers = dict(call.trailing_metadata() or ())
    details = trailers.get("grpc-status-details-bin")
    return Outcome(call.code(), call.details() or "", details if isinstance(details, bytes) else None)


@dataclass
class Target:
    """A running server of one microstate on one store, and what the fuzz suite learned from it."""

    server: ServerProcess
    store_url: str
    namespace: str
    max_message_bytes: int
    settles_within: float = 0.0
    """The microstate's `settles_within`: after an accepted call, wait for the state to hold still."""
    harvest: dict[str, None] = field(default_factory=dict)
    """Strings from successful answers, oldest first (a dict as an ordered set)."""
    channel: grpc.Channel = field(init=False)
    _loop: asyncio.AbstractEventLoop = field(init=False)
    _store: Store | None = None
    _calls: dict[str, Any] = field(default_factory=dict)
    _state: object = None
    _unsettled: bool = False

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.server.target, options=CHANNEL_OPTIONS)
        self._loop = asyncio.new_event_loop()
        self._pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        """Close the store, the loop and the channel; safe to call twice."""
        if self._loop.is_closed():
            return
        if self._store is not None:
            self._loop.run_until_complete(self._store.close())
        self._loop.close()
        self.channel.close()

    def service(self, name: str) -> ServiceDescriptor:
        """`name`'s descriptor as the server's reflection service describes it."""
        return self._pool.FindServiceByName(name)

    # --- calls -------------------------------------------------------------------------------------------

    def send(self, method: MethodDescriptor, body: bytes) -> Outcome:
        path = f"/{method.containing_service.full_name}/{method.name}"
        if method.server_streaming:
            return self._stream(path, body)
        call = self._calls.get(path) or self._calls.setdefault(path, self.channel.unary_unary(path))
        try:
            response = call(body, timeout=UNARY_TIMEOUT)
        except grpc.RpcError as error:
            return _error_outcome(error)
        return Outcome(grpc.StatusCode.OK, response=response)

    def _stream(self, path: str, body: bytes) -> Outcome:
        call = self._calls.get(path) or self._calls.setdefault(path, self.channel.unary_stream(path))
        responses = call(body, timeout=WATCH_WINDOW + len(body) / SLOWEST_TRANSFER)
        try:
            first = next(responses)
        except StopIteration:
            return Outcome(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            outcome = _error_outcome(error)
            if outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED and outcome.details_bin is None:
                outcome.open_stream = True  # our window ended, not the server's verdict
            return outcome
        finally:
            responses.cancel()
        return Outcome(grpc.StatusCode.OK, response=first)

    # --- verdicts ----------------------------------------------------------------------------------------

    def problems(self, method: MethodDescriptor, body: bytes, outcome: Outcome) -> list[str]:
        """What is wrong with `outcome` as the answer to `body` (empty: nothing)."""
        if outcome.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            return [f"{outcome.code.name}: the server failed instead of judging the request"]
        if outcome.code == grpc.StatusCode.OK:
            return self._response_problems(method, outcome)
        if outcome.open_stream:
            return []
        if outcome.code in CLIENT_SIDE:
            return [f"{outcome.code.name}: no verdict within {UNARY_TIMEOUT}s"]
        if (
            outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            and CORE_SIZE_LIMIT in outcome.message
            and len(body) > self.max_message_bytes
        ):
            return []  # gRPC core refused it before any handler ran; nothing of ours could add details
        return status_problems(outcome)

    def _response_problems(self, method: MethodDescriptor, outcome: Outcome) -> list[str]:
        if outcome.response is None:
            return []
        output = message_factory.GetMessageClass(method.output_type)
        try:
            response = output.FromString(outcome.response)
        except DecodeError as error:
            return [f"the OK answer is not a valid {method.output_type.full_name}: {error}"]
        self._remember(response)
        return []

    def _remember(self, response: Message) -> None:
        for value in strings_in(response):
            if 0 < len(value) <= MAX_HARVESTED_LENGTH:
                self.harvest.pop(value, None)
                self.harvest[value] = None
        while len(self.harvest) > MAX_HARVEST:
            del self.harvest[next(iter(self.harvest))]

    def serving(self, service_name: str) -> list[str]:
        """Problems if the server process is gone or its health for `service_name` is not SERVING."""
        if self.server.process.poll() is not None:
            return [f"the server process exited: {self.server.describe()[-3000:]}"]
        try:
            answer = self._health.Check(
                health_pb2.HealthCheckRequest(service=service_name), timeout=HEALTH_TIMEOUT
            )
        except grpc.RpcError as error:
            return [f"the server no longer answers a health check: {_error_outcome(error).describe()}"]
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            return [f"health of {service_name} is {answer.status}, not SERVING"]
        return []

    def _logged_errors(self, offset: int) -> list[str]:
        """The errors the server logged since byte `offset` of its log, each by its message and the last
        line of its traceback (what names the cause)."""
        with self.server.stderr_path.open("rb") as log:
            log.seek(offset)
            records = json_lines(log.read().decode(errors="replace"))
        return [
            f"server logged: {record.get('msg')}: {_last_line(str(record.get('exc', '')))[:500]}"
            for record in records
            if record.get("level") == "ERROR"
        ]

    # --- stored state ------------------------------------------------------------------------------------

    def state(self) -> object:
        """The `digest` of the microstate's namespace, read through the store as the server wrote it."""
        return self._loop.run_until_complete(self._read_state())

    async def _read_state(self) -> object:
        if self._store is None:
            self._store = await open_store(self.store_url, self.namespace)
        return await digest(self._store)

    def remembered_state(self) -> object:
        """The state as last read (read now if never), the baseline for the next case."""
        if self._state is None:
            self._state = self.state()
        return self._state

    def refresh_state(self) -> object:
        self._state = self.state()
        return self._state

    def settled_state(self) -> object:
        """The state once background work set going by earlier calls has written it: unchanged over
        `settles_within` seconds (a quiet period is the condition; the harness cannot see the work)."""
        deadline = time.monotonic() + 30 * max(self.settles_within, 1.0)
        state = self.remembered_state()
        while time.monotonic() < deadline:
            time.sleep(self.settles_within)  # the quiet period under test, not a synchronisation sleep
            if (now := self.refresh_state()) == state:
                return state
            state = now
        raise AssertionError("the stored state never held still after earlier calls")

    def check(self, method: MethodDescriptor, body: bytes) -> tuple[Outcome, list[str]]:
        """Send `body` to `method` and judge everything the suite promises about it."""
        before = self.settled_state() if self._unsettled else self.remembered_state()
        log_offset = self.server.stderr_path.stat().st_size
        outcome = self.send(method, body)
        TALLY[method.full_name, outcome.code.name + (" (stream open)" if outcome.open_stream else "")] += 1
        problems = self.problems(method, body, outcome)
        if problems:
            problems += self._logged_errors(log_offset)
        problems += self.serving(method.containing_service.full_name)
        after = self.refresh_state()
        self._unsettled = self.settles_within > 0 and not outcome.rejected
        if outcome.rejected and after != before:
            problems.append("the stored state changed although the request was rejected")
        return outcome, problems


async def digest(store: Store) -> object:
    """Everything stored in `store`'s namespace: the change-log head and every record's key, revision and
    value (equal digests: nothing was written)."""
    head = await store.head_cursor()
    records = []
    after = None
    while True:
        page = await store.list(after=after, limit=1000)
        records += [(record.key, record.revision, record.value) for record in page.records]
        if page.next_after is None:
            return head, tuple(records)
        after = page.next_after


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def status_problems(outcome: Outcome) -> list[str]:
    """What an error status lacks: a google.rpc.Status matching the code, with one ErrorInfo of ours."""
    if outcome.details_bin is None:
        return [f"{outcome.code.name} without google.rpc.Status details (no ErrorInfo)"]
    problems = []
    if len(outcome.details_bin) + len(outcome.message.encode()) > MAX_ERROR_BYTES:
        problems.append(f"the error is {len(outcome.details_bin)} bytes of details: it echoes its input")
    try:
        status = status_pb2.Status.FromString(outcome.details_bin)
    except DecodeError:
        return [*problems, "grpc-status-details-bin is not a google.rpc.Status"]
    if status.code != outcome.code.value[0]:
        problems.append(f"details say code {status.code}, the call {outcome.code.name}")
    infos = [detail for detail in status.details if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    if len(infos) != 1:
        return [*problems, f"{len(infos)} ErrorInfo details, not one"]
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    if info.domain != DOMAIN or not REASON.match(info.reason):
        problems.append(f"ErrorInfo domain {info.domain!r} reason {info.reason!r}")
    return problems


def strings_in(message: Message) -> Iterator[str]:
    """Every string value anywhere in `message` (map keys and values, repeated elements, nested)."""
    for descriptor, value in message.ListFields():
        yield from _strings_of(descriptor, value)


def _strings_of(descriptor: FieldDescriptor, value: Any) -> Iterator[str]:
    if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
        items = [*value.keys(), *value.values()]
    else:
        items = value if descriptor.is_repeated else [value]
    for item in items:
        if isinstance(item, str):
            yield item
        elif isinstance(item, Message):
            yield from strings_in(item)
