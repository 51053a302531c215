"""Structured logs with the standard library only.

JSON lines for machines (one object per record: ts, level, logger, msg, microstate, then the record's
`extra=` fields), readable text for people on a terminal. Log with fields, not formatted strings:
`log.info("serving", extra={"endpoint": "127.0.0.1:50051"})`, so both renderings carry the same data.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from collections.abc import Callable, Hashable
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=` and is rendered as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and key != "microstate" and not key.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values JSON cannot hold are rendered with str()."""

    def __init__(self, microstate: str | None = None) -> None:
        super().__init__()
        self._microstate = microstate

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "microstate": getattr(record, "microstate", self._microstate),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`12:00:01.234 INFO  [profile] serving endpoint=127.0.0.1:50051` for a terminal."""

    def __init__(self, microstate: str | None = None) -> None:
        super().__init__()
        self._microstate = microstate

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        microstate = getattr(record, "microstate", self._microstate)
        tag = f" [{microstate}]" if microstate else ""
        pairs = "".join(f" {key}={value}" for key, value in _fields(record).items())
        line = f"{moment} {record.levelname:<5}{tag} {record.getMessage()}{pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `configure` installed, so a second call replaces exactly it."""


def configure(
    *,
    level: int | str = logging.INFO,
    fmt: str = "auto",
    microstate: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every logger to one handler on `stream` (stderr by default); returns the handler.

    `fmt` is json, text, or auto: text when the stream is a terminal, json otherwise. Replaces the handler
    installed by an earlier call, so calling it twice does not duplicate lines; other handlers stay.
    """
    target = sys.stderr if stream is None else stream
    use_text = fmt == "text" or (fmt == "auto" and target.isatty())
    handler = _OurHandler(target)
    handler.setFormatter(TextFormatter(microstate) if use_text else JsonFormatter(microstate))
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _OurHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class Throttle:
    """Lets through at most one log line per key per `interval` seconds.

    For events a client can repeat at will (a malformed request, say): one line per request would let anyone
    flood the log. Keys must come from a small fixed set (a method name, never client input): each is kept.
    """

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[Hashable, tuple[float, int]] = {}  # key -> (last line's time, held back since)

    def admit(self, key: Hashable) -> int | None:
        """None: hold this line back. Else log it, with the returned count of lines held back before it."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return None
        self._last[key] = (now, 0)
        return 0 if last is None else last[1]
