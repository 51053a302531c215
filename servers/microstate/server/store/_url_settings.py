"""Store settings from the store URL's query, the same way for every backend.

A backend's `open(url, namespace, *, retention: int = ..., poll_interval: float = ..., durable: bool = ...)`
declares its settings as keyword-only parameters annotated `int`, `float` (seconds) or `bool`.
`settings_from_url` makes each of them settable in the URL too (`sqlite:///data/x.db?busy_timeout=2`), so an
operator reaches every setting through the one URL the server is given. The rule for a query key:

- a key the backend declares is a store setting: parsed to its type, checked, and taken out of the URL;
- any other key stays in the URL for the driver (redis-py, PyMongo) if the driver takes it;
- a key neither takes is refused: ValueError naming the key and the store's settings.

A setting in the URL wins over the same keyword passed in code: code gives defaults (tests, benches, a slice's
own choice) and the operator's URL has the last word.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import unquote_plus

P = ParamSpec("P")
T = TypeVar("T")

DriverTakes = Callable[[str, str], bool]
"""(url, key) -> whether the backend's driver takes `key` from a URL like `url`."""

_WHOLE = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,18}(\.[0-9]*)?|\.[0-9]+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _whole(text: str) -> int | None:
    return int(text) if _WHOLE.fullmatch(text) else None


def _seconds(text: str) -> float | None:
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _flag(text: str) -> bool | None:
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


@dataclass(frozen=True)
class _Kind:
    parse: Callable[[str], Any]
    """The value, or None if `text` is not one."""
    expected: str


_KINDS: dict[object, _Kind] = {
    "int": _Kind(_whole, "a whole number, like 1000"),
    "float": _Kind(_seconds, "a number of seconds, like 0.5"),
    "bool": _Kind(_flag, "true or false"),
}
_KINDS.update({int: _KINDS["int"], float: _KINDS["float"], bool: _KINDS["bool"]})  # unstringified annotations


def declared_settings(open_: Callable[..., object]) -> dict[str, _Kind]:
    """The settings `open_` declares: its keyword-only parameters annotated int, float or bool."""
    return {
        name: _KINDS[parameter.annotation]
        for name, parameter in inspect.signature(open_).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.annotation in _KINDS
    }


def split_url(
    url: str, settings: dict[str, _Kind], driver: str | None, driver_takes: DriverTakes | None
) -> tuple[str, dict[str, Any]]:
    """(`url` without the store's settings, those settings parsed); see the module docstring for the rule.

    The driver's query parameters are left as written (PyMongo, for one, does not unquote all of them).
    """
    base, question, rest = url.partition("?")
    if not question:
        return url, {}
    query, hash_, fragment = rest.partition("#")
    kept: list[str] = []
    found: dict[str, Any] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = unquote_plus(raw_key)
        kind = settings.get(key)
        if kind is not None:
            text = unquote_plus(raw_value)
            value = kind.parse(text)
            if value is None:
                raise ValueError(f"store URL setting {key}={text!r} is not {kind.expected}")
            if key in found:
                raise ValueError(f"store URL setting {key} is given twice")
            found[key] = value
        elif driver_takes is not None and driver_takes(url, key):
            kept.append(part)
        else:
            takes = f" nor a URL option {driver} takes" if driver else ""
            raise ValueError(
                f"{key!r} in the store URL is not a setting of this store{takes};"
                f" its settings: {', '.join(sorted(settings))}"
            )
    return base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment, found


def settings_from_url(
    driver: str | None = None, driver_takes: DriverTakes | None = None
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate a backend's `open(cls, url, namespace, *, settings...)` so its settings can come from the URL.

    `driver` names the driver in messages; `driver_takes` says which other keys it takes (None: it takes none,
    every other key is refused). A `url` that is not a str (a path object) is left alone.
    """

    def decorate(open_: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        signature = inspect.signature(open_)
        url_parameter = list(signature.parameters)[1]  # after cls
        settings = declared_settings(open_)

        @functools.wraps(open_)
        async def open_with_url_settings(*args: P.args, **kwargs: P.kwargs) -> T:
            bound = signature.bind(*args, **kwargs)
            url = bound.arguments[url_parameter]
            if isinstance(url, str) and "://" in url:  # not a plain path
                bound.arguments[url_parameter], from_url = split_url(url, settings, driver, driver_takes)
                bound.arguments.update(from_url)
            return await cast(Callable[..., Awaitable[T]], open_)(*bound.args, **bound.kwargs)

        return open_with_url_settings

    return decorate
