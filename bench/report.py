"""Result rows, the printed table (text or markdown) and the JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    text: str
    """As printed, e.g. "≥ 0.7"."""
    holds: Callable[[float], bool]
    on: str = "ratio"
    """What the target checks: "ratio" or "value"."""


def at_least(bound: float, *, on: str = "ratio", text: str | None = None) -> Target:
    return Target(text or f"≥ {bound:g}", lambda x: x >= bound, on)


def at_most(bound: float, *, on: str = "ratio", text: str | None = None) -> Target:
    return Target(text or f"≤ {bound:g}", lambda x: x <= bound, on)


@dataclass
class Row:
    figure: str
    what: str
    value: float | None
    """The subject's figure, in `unit`."""
    baseline: float | None
    unit: str
    ratio: float | None = None
    """value / baseline unless `what` says otherwise."""
    target: Target | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        checked = self.ratio if self.target.on == "ratio" else self.value
        return None if checked is None else self.target.holds(checked)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["target"] = self.target.text if self.target else None
        doc["met"] = self.met
        return doc


def skipped(figure: str, what: str, reason: str) -> Row:
    return Row(figure, what, None, None, "", note=reason)


def _number(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "s":  # latencies: pick a readable unit
        if value < 1e-3:
            return f"{value * 1e6:.2f} µs" if value < 1e-5 else f"{value * 1e6:.0f} µs"
        return f"{value * 1e3:.2f} ms"
    return f"{value:,.0f} {unit}"


def cells(row: Row) -> list[str]:
    met = {True: "yes", False: "NO", None: ""}[row.met]
    ratio = "—" if row.ratio is None else _ratio(row.ratio)
    return [
        row.figure,
        row.what,
        _number(row.value, row.unit),
        _number(row.baseline, row.unit),
        ratio,
        row.target.text if row.target else "",
        met,
        row.note,
    ]


def _ratio(ratio: float) -> str:
    """Two decimals; two significant digits below 0.1 (a share such as 0.0029 would read 0.00)."""
    if ratio >= 100:
        return f"{ratio:,.0f}"
    return f"{ratio:.2g}" if 0 < ratio < 0.1 else f"{ratio:.2f}"


HEADER = ["fig", "measurement", "subject", "baseline", "ratio", "target", "met", "note"]


def text_table(rows: Sequence[Row]) -> str:
    table = [HEADER, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Sequence[Row]) -> str:
    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    return "\n".join([line(HEADER), line(["---"] * len(HEADER)), *(line(cells(row)) for row in rows)])


def write_json(path: Path, meta: dict[str, Any], rows: Sequence[Row], extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "rows": [row.to_json() for row in rows], **extra}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def write_markdown(path: Path, meta: dict[str, Any], rows: Sequence[Row], profiles: Sequence[Any]) -> None:
    versions = ", ".join(f"{name} {value}" for name, value in meta["versions"].items())
    parts = [
        f"`{meta['command']}` — {meta['started']}, {meta['seconds']} s, {meta['pinning']}, "
        f"load average before/after {meta['load_average_before_after']}",
        "",
        markdown_table(rows),
        "",
        f"Versions: {versions}",
    ]
    for profile in profiles:
        parts += ["", "```", profile.table(), "```"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
