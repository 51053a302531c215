"""Every RPC of every served contract, fuzzed against a real server process.

The methods come from the registry: each microstate's service names, looked up in the contracts' descriptors,
so a slice that registers gets this suite with no change here; the requests are built from the descriptors
the server itself publishes through reflection. Each case must get a verdict, never a crash: no INTERNAL or
UNKNOWN, every error a google.rpc.Status with one ErrorInfo, the server still SERVING afterwards, and the
stored state untouched by every request it rejected.

The default run takes a small, fixed sample (`sample`: each method on one store, SQLite and Redis taking
turns); `pytest -m fuzz` runs the full suite (`full`: every method on both stores, more than 10,000 cases,
random each run); MICROSTATE_FUZZ_EXAMPLES sets the examples per full test.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from microstate.server import registry
from microstate.server.store import open_store
from tests.fuzz.conftest import Targets
from tests.fuzz.known import known_defect
from tests.fuzz.mutations import padded, undecodable, unused_field_number
from tests.fuzz.strategies import contract_hints, requests
from tests.fuzz.target import Outcome, Target, digest

pytestmark = pytest.mark.process

IDS = tuple(f"fuzz-{number}" for number in range(4))
"""A few well-formed-looking ids, so that writes and reads meet on the same records."""


@dataclass(frozen=True)
class Depth:
    """How many cases each test runs, by store, and whether they are drawn afresh each run."""

    structured: dict[str, int]
    undecodable: dict[str, int]
    randomized: bool


SAMPLE = Depth(structured={"sqlite": 12, "redis": 4}, undecodable={"sqlite": 6, "redis": 2}, randomized=False)
FULL = Depth(
    structured={"sqlite": 500, "redis": 60}, undecodable={"sqlite": 250, "redis": 30}, randomized=True
)
STORES = ("sqlite", "redis")


def served_methods() -> list[Any]:
    """(microstate, service, method) for every method of every service every registered microstate serves."""
    found = []
    for name in registry.names():
        microstate = registry.get(name)  # imports the slice, and with it its contracts' descriptors
        for service_name in microstate.service_names:
            service = descriptor_pool.Default().FindServiceByName(service_name)
            contract = service_name.removeprefix("microstate.").rpartition(".")[0]
            found += [
                pytest.param(name, service_name, method.name, id=f"{contract}.{method.name}")
                for method in service.methods
            ]
    return found


METHODS = served_methods()


def fuzz_cases() -> list[Any]:
    """(microstate, service, method, store, depth): every method on every store in the full run (`-m fuzz`);
    the default run's sample takes each method on one store, the stores taking turns method by method."""
    cases = []
    for index, method in enumerate(METHODS):
        for store in STORES:
            cases.append(
                pytest.param(
                    *method.values, store, FULL, id=f"{method.id}-{store}-full", marks=pytest.mark.fuzz
                )
            )
            if store == STORES[index % len(STORES)]:
                cases.append(pytest.param(*method.values, store, SAMPLE, id=f"{method.id}-{store}-sample"))
    return cases


class Body(bytes):
    """A request body that shows itself briefly in Hypothesis' reports (some are megabytes)."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        head = bytes(self[:48])
        return f"Body({head!r}{'…' if len(self) > 48 else ''}, {len(self)} bytes)"


def method_of(target: Target, service_name: str, method_name: str) -> MethodDescriptor:
    """The method as the server's reflection describes it (which must match the registered contract)."""
    methods = target.service(service_name).methods_by_name
    assert method_name in methods, f"reflection does not list {service_name}.{method_name}: {list(methods)}"
    return methods[method_name]


def structured_bodies(target: Target, method: MethodDescriptor) -> st.SearchStrategy[bytes]:
    """Well-formed requests: every field drawn from the descriptor's types, hinted by the contract's names,
    a few ids and what the server answered so far."""
    hints = contract_hints(method.input_type) | set(IDS) | set(target.harvest)
    return requests(method.input_type, hints).map(lambda message: message.SerializeToString())


def fuzz(
    target: Target, method: MethodDescriptor, bodies: st.SearchStrategy[bytes], depth: Depth, examples: int
) -> None:
    """Run `examples` cases of `bodies` against `method`; each must pass `Target.check`."""
    if depth.randomized and (override := os.environ.get("MICROSTATE_FUZZ_EXAMPLES")):
        examples = int(override)
    phases = (Phase.explicit, Phase.reuse, Phase.generate) + ((Phase.shrink,) if depth.randomized else ())
    target.refresh_state()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=not depth.randomized,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(bodies.map(Body))
    def case(body: Body) -> None:
        judge(target, method, body, known)

    known: dict[str, str] = {}
    case()
    xfail_if(known)


def judge(target: Target, method: MethodDescriptor, body: bytes, known: dict[str, str]) -> Outcome:
    """Check one case; a failure a tracked defect explains is noted in `known` (item -> an example)."""
    outcome, problems = target.check(method, bytes(body))
    tracked = known_defect(outcome, problems)
    if tracked is not None:
        known.setdefault(tracked.item, f"{Body(body)!r}: {outcome.describe()}")
        return outcome
    assert not problems, f"{method.full_name} answered {outcome.describe()}: {'; '.join(problems)}"
    return outcome


def xfail_if(known: dict[str, str]) -> None:
    """End the test as xfail if tracked defects showed (and nothing else failed)."""
    if known:
        pytest.xfail("; ".join(f"{item} (e.g. {example})" for item, example in known.items()))


@pytest.mark.parametrize("family", ["structured", "undecodable"])
@pytest.mark.parametrize(("microstate", "service_name", "method_name", "store", "depth"), fuzz_cases())
def test_fuzzed_requests(
    fuzz_targets: Targets,
    microstate: str,
    service_name: str,
    method_name: str,
    store: str,
    family: str,
    depth: Depth,
) -> None:
    """Every request gets a verdict: `structured` ones protobuf can express, from plausible to absurd, and
    `undecodable` bodies that are not the request message (bad UTF-8, cut short, corrupt framing, random
    bytes)."""
    target = fuzz_targets.get(microstate, store)
    method = method_of(target, service_name, method_name)
    bodies = structured_bodies(target, method)
    if family == "undecodable":
        bodies = undecodable(method.input_type, bodies)
    fuzz(target, method, bodies, depth, getattr(depth, family)[store])
    assert_answers_normal_calls(target, method)


@pytest.mark.parametrize(("microstate", "service_name", "method_name"), METHODS)
def test_requests_at_and_over_the_size_limit(
    fuzz_targets: Targets, microstate: str, service_name: str, method_name: str
) -> None:
    """A request of exactly the server's max message size is judged; one byte more is refused by size."""
    target = fuzz_targets.get(microstate, "sqlite")
    method = method_of(target, service_name, method_name)
    number = unused_field_number(method.input_type)
    target.refresh_state()
    known: dict[str, str] = {}
    judge(target, method, padded(b"", target.max_message_bytes, number), known)
    over = judge(target, method, padded(b"", target.max_message_bytes + 1, number), known)
    assert over.code == grpc.StatusCode.RESOURCE_EXHAUSTED, over.describe()
    xfail_if(known)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_the_state_digest_sees_every_write(fuzz_targets: Targets, store: str) -> None:
    """The check that rejected requests change nothing is only as good as the digest: a write shows.

    On a namespace of its own, so no server ever reads the made-up record."""
    target = fuzz_targets.get(registry.names()[0], store)
    opened = await open_store(target.store_url, f"fuzz-self-check-{uuid.uuid4().hex[:8]}")
    try:
        empty = await digest(opened)
        await opened.put("key", b"value")
        written = await digest(opened)
        await opened.put("key", b"value")
        rewritten = await digest(opened)
        await opened.delete("key")
        assert len({empty, written, rewritten, await digest(opened)}) == 4
    finally:
        await opened.close()


def assert_answers_normal_calls(target: Target, method: MethodDescriptor) -> None:
    """After the fuzz, every method of the service still answers an empty request properly."""
    target.refresh_state()
    for sibling in method.containing_service.methods:
        judge(target, sibling, b"", {})
