"""Where a Redis Cluster namespace's partitions are: its layout, and the next one while a repartition runs.

The descriptor (`msc:{ns}:partitions`) holds it. A namespace created before repartitioning existed holds
just its partition count there ("32"): that is layout generation 0, whose tags are `ns:p:n`. Once a
namespace has been repartitioned the descriptor is a JSON `Layouts`. Each layout is a generation (its
tags are `ns/g:p:n`, so no two generations share a key; '/' is not allowed in a namespace) and a suffix
base: a revision ends in `base + partition` (three digits), and a repartition picks a base whose range
does not overlap the current layout's, so the two layouts' revisions stay distinct while both take writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from microstate.server.store.base import StoreMisconfigured

SUFFIXES = 1000
"""A revision ends in three digits: a layout's `base + partitions` must stay within them."""


class LayoutChanged(Exception):
    """The descriptor changed under a repartition run: another run is under way."""


@dataclass(frozen=True)
class Layout:
    partitions: int
    generation: int = 0
    base: int = 0

    def tag_namespace(self, namespace: str) -> str:
        """What partition_tags() spreads: the namespace itself for generation 0, else `ns/g`."""
        return namespace if self.generation == 0 else f"{namespace}/{self.generation}"


@dataclass(frozen=True)
class Layouts:
    """The descriptor: where the keys are, where they are going, and what a watch must know of the past."""

    current: Layout
    next: Layout | None = None
    """The layout a running repartition moves the keys to."""
    dropped: Layout | None = None
    """The layout a finished repartition left, until its logs are deleted."""
    dropped_heads: tuple[int, ...] = ()
    """The last revision in each of the dropped layout's logs (0: none)."""
    expired_below: int = 0
    """Cursors below this cannot resume: the logs that held the changes after them are deleted."""
    retired: tuple[Layout, ...] = field(default=())
    """Every earlier layout: their audit journals are kept and read (they are never trimmed)."""

    def encode(self) -> str:
        if self == Layouts(self.current) and self.current.generation == 0:
            return str(self.current.partitions)  # what a namespace that was never repartitioned holds
        return json.dumps(
            {
                "current": _plain(self.current),
                "next": None if self.next is None else _plain(self.next),
                "dropped": None if self.dropped is None else _plain(self.dropped),
                "dropped_heads": list(self.dropped_heads),
                "expired_below": self.expired_below,
                "retired": [_plain(layout) for layout in self.retired],
            },
            sort_keys=True,
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Layouts:
        text = raw.decode() if isinstance(raw, bytes) else raw
        if text.isdigit():
            return cls(Layout(int(text)))
        try:
            doc = json.loads(text)
            return cls(
                current=Layout(**doc["current"]),
                next=None if doc["next"] is None else Layout(**doc["next"]),
                dropped=None if doc["dropped"] is None else Layout(**doc["dropped"]),
                dropped_heads=tuple(doc["dropped_heads"]),
                expired_below=int(doc["expired_below"]),
                retired=tuple(Layout(**layout) for layout in doc["retired"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreMisconfigured(
                f"redis cluster: unreadable partition descriptor {text[:200]!r}"
            ) from exc

    def watched(self) -> list[Layout]:
        """The layouts whose logs take changes now."""
        return [self.current] if self.next is None else [self.current, self.next]

    def journaled(self) -> list[Layout]:
        """Every layout that has an audit journal."""
        every = [*self.retired, *([self.dropped] if self.dropped else []), *self.watched()]
        return list(dict.fromkeys(every))  # the dropped layout is retired too

    def starting(self, partitions: int) -> Layouts:
        """These layouts with a repartition to `partitions` begun; ValueError if it cannot be."""
        if self.next is not None or self.dropped is not None:
            raise ValueError("a repartition is already under way")
        current = self.current
        below = range(0, partitions)  # the free ranges: before the current one, or after it
        above = range(current.base + current.partitions, current.base + current.partitions + partitions)
        fits = [
            span
            for span in (below, above)
            if span.stop <= current.base or span.start >= current.base + current.partitions
        ]
        fits = [span for span in fits if span.stop <= SUFFIXES]
        if not fits:
            raise ValueError(
                f"from {current.partitions} to {partitions} partitions: both layouts take writes during the"
                f" move, so their revisions need distinct suffixes, and {SUFFIXES} do not leave room for"
                f" {partitions} beside suffixes {current.base}..{current.base + current.partitions - 1};"
                " go through a smaller count first"
            )
        generations = [layout.generation for layout in (current, *self.retired)]
        return replace(self, next=Layout(partitions, max(generations) + 1, fits[0].start))

    def switched(self, heads: tuple[int, ...]) -> Layouts:
        """The repartition done: the next layout is current, the old one dropped (its logs still read)."""
        assert self.next is not None
        return Layouts(
            current=self.next,
            dropped=self.current,
            dropped_heads=heads,
            expired_below=self.expired_below,
            retired=(*self.retired, self.current),
        )

    def cleaned(self) -> Layouts:
        """The dropped layout's logs deleted: cursors below its last change can no longer resume."""
        below = max((self.expired_below, *self.dropped_heads))
        return replace(self, dropped=None, dropped_heads=(), expired_below=below)


def _plain(layout: Layout) -> dict[str, int]:
    return {"partitions": layout.partitions, "generation": layout.generation, "base": layout.base}
