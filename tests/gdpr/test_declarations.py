"""Every registered microstate takes part in data-subject requests: a slice added later is covered as soon as
it is registered, and one that forgets to declare fails here."""

from __future__ import annotations

import pytest

from microstate.server import registry
from microstate.server.kit import subjects


@pytest.mark.parametrize("name", registry.names())
def test_every_microstate_declares_its_subject_data_and_serves_the_contract(name: str) -> None:
    microstate = registry.get(name)
    assert microstate.subjects is not None, f"{name} does not declare where it keeps a subject's data"
    assert subjects.SERVICE_NAME in microstate.service_names
    assert {method: microstate.scopes.get(method) for method in subjects.SCOPES} == subjects.SCOPES
