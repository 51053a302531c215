"""AIP-158 page tokens: opaque to clients, bound to the query they were issued for."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from microstate.server.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class PageTokens:
    """Tokens of one List method. A token holds the last key served and the `scope` of the query (its
    filter, e.g. a key prefix); a token presented with another scope, or not issued here, is
    INVALID_ARGUMENT with reason INVALID_PAGE_TOKEN."""

    method: str
    """The List method, named in errors, e.g. "ListProfiles"."""
    scope_field: str
    """The request field the scope comes from, named in errors, e.g. "user_id_prefix"."""

    def encode(self, after: str | None, scope: str) -> str:
        """The next page's token; "" when `after` is None (the last page)."""
        if after is None:
            return ""
        raw = json.dumps({"a": after, "p": scope}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def decode(self, token: str, scope: str) -> str | None:
        """The key to list after; None for the first page (an empty token)."""
        if not token:
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            after, token_scope = doc["a"], doc["p"]
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
            raise InvalidArgument(
                "page_token", f"not a page token issued by {self.method}", reason="INVALID_PAGE_TOKEN"
            ) from None
        if token_scope != scope or not isinstance(after, str):
            raise InvalidArgument(
                "page_token",
                f"this page token was issued for a different {self.scope_field}",
                reason="INVALID_PAGE_TOKEN",
            )
        return after
