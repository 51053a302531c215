"""The size limit every microstate response keeps (config.MAX_RESPONSE_BYTES, 4 MiB), shared by all slices.

A List page is cut short to fit, which AIP-158 allows: its next_page_token continues after the last item
returned. A BatchGet cannot be cut short without the caller mistaking the ids left out for answered ones, so
one that does not fit is refused with `ResponseTooLarge`, which says how large it would have been; the SDK
then asks for the ids in smaller batches by itself.
"""

from __future__ import annotations

import grpc

from microstate.server.config import MAX_RESPONSE_BYTES
from microstate.server.errors import DomainError

PAGE_TOKEN_ROOM = 1024
"""Bytes kept free in a page for its next_page_token (a token names a key and a prefix; keys are short)."""


class ResponseTooLarge(DomainError):
    """The response asked for would exceed MAX_RESPONSE_BYTES: RESOURCE_EXHAUSTED, the code gRPC itself
    gives a message over the limit, with the sizes in ErrorInfo metadata so a client can split its request."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESPONSE_TOO_LARGE"

    def __init__(self, what: str, size: int) -> None:
        super().__init__(
            f"{what} take {size:,} bytes, more than the {MAX_RESPONSE_BYTES:,} a response may hold;"
            " ask for fewer at a time",
            metadata={"response_bytes": str(size), "max_response_bytes": str(MAX_RESPONSE_BYTES)},
        )


class PageEntries:
    """The encoded items of one page, taken in order while they fit in `limit` bytes. The first item is
    always taken, so a page always makes progress (no valid item comes near the limit)."""

    def __init__(self, limit: int = MAX_RESPONSE_BYTES - PAGE_TOKEN_ROOM) -> None:
        self.limit = limit
        self.entries: list[bytes] = []
        self.size = 0

    def take(self, entry: bytes) -> bool:
        """Add `entry` if it fits; False (and nothing added) if the page is full."""
        if self.entries and self.size + len(entry) > self.limit:
            return False
        self.entries.append(entry)
        self.size += len(entry)
        return True

    def joined(self) -> bytes:
        return b"".join(self.entries)
