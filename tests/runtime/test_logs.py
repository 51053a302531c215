"""Structured logs: one JSON object per line with the standard fields and the record's extras."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from microstate.server import logs

Captured = tuple[io.StringIO, logging.Logger]


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logs.configure(level="DEBUG", fmt="json", microstate="profile", stream=stream)
    try:
        yield stream, logging.getLogger("microstate.test")
    finally:
        logging.getLogger().removeHandler(handler)


def test_json_lines_carry_the_standard_fields_and_extras(captured: Captured) -> None:
    stream, log = captured
    log.info("serving on %s", "127.0.0.1:1", extra={"phase": "serving", "port": 1, "path": object()})
    log.warning("second")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "serving on 127.0.0.1:1"
    assert first["level"] == "INFO"
    assert first["logger"] == "microstate.test"
    assert first["microstate"] == "profile"
    assert first["ts"].endswith("Z")
    assert (first["phase"], first["port"]) == ("serving", 1)
    assert first["path"].startswith("<object")  # not JSON-native: rendered with str(), never dropped
    assert second["level"] == "WARNING"


def test_exceptions_stay_on_one_json_line(captured: Captured) -> None:
    stream, log = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert "RuntimeError: boom" in record["exc"]


def test_text_format_is_readable_and_auto_picks_json_off_a_terminal() -> None:
    stream = io.StringIO()  # not a TTY
    handler = logs.configure(fmt="text", microstate="profile", stream=stream)
    try:
        logging.getLogger("microstate.test").info("draining", extra={"drain_seconds": 5})
        handler = logs.configure(fmt="auto", stream=stream)  # replaces the first handler, no duplicate lines
        logging.getLogger("microstate.test").info("stopped")
    finally:
        logging.getLogger().removeHandler(handler)
    text_line, json_line = stream.getvalue().splitlines()
    assert "INFO" in text_line and "[profile] draining drain_seconds=5" in text_line
    assert json.loads(json_line)["msg"] == "stopped"


def test_throttle_lets_one_line_per_key_and_interval_through_and_counts_the_rest() -> None:
    now = [100.0]
    throttle = logs.Throttle(60.0, clock=lambda: now[0])

    assert throttle.admit("a") == 0
    assert [throttle.admit("a") for _ in range(5)] == [None] * 5
    assert throttle.admit("b") == 0  # keys are throttled apart
    now[0] += 59.9
    assert throttle.admit("a") is None
    now[0] += 0.1
    assert throttle.admit("a") == 6  # the lines held back since the last one, reported with the next
    assert throttle.admit("a") is None
