"""Cancellations that drivers lose, and how loops that must end on cancellation still notice them."""

from __future__ import annotations

import asyncio


def end_if_cancelled() -> None:
    """Raise CancelledError if the current task was cancelled but the cancellation got lost on the way.

    Python 3.11's asyncio.wait_for swallows a cancellation that arrives as the call it waits for completes,
    and redis-py and PyMongo send every command through it: a watch, or a stream handler, cancelled at that
    moment would go on following the store for good. Such loops call this on every turn, so they end at
    the next one instead.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
