"""``state::list_entries`` pages: cursors and the byte budget (spec/state.md §5.7).

A cursor is unpadded base64url of the compact JSON ``{"e": epoch, "p": position, "s": scope}``: it
means "the entries after this position, as they are now", never expires and may be reused. The epoch
makes a cursor from a discarded in-memory store fail instead of silently skipping entries.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import msgspec

from .adapters.base import Entry
from .values import decode_value, entry_size

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
PAGE_BYTE_BUDGET: Final = 1_048_576

_encode = msgspec.json.Encoder(order="sorted").encode


class InvalidCursor(ValueError):
    """The cursor does not decode, or belongs to another scope or another store."""


def encode_cursor(epoch: str, scope: str, position: int) -> str:
    raw = _encode({"e": epoch, "p": position, "s": scope})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, epoch: str, scope: str) -> int:
    """The position a cursor stands after; raises :class:`InvalidCursor`."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        data: Any = msgspec.json.decode(raw)
    except (ValueError, binascii.Error, msgspec.DecodeError):
        raise InvalidCursor(cursor) from None
    if not isinstance(data, dict):
        raise InvalidCursor(cursor)
    position = data.get("p")
    if data.get("e") != epoch or data.get("s") != scope or type(position) is not int or position < 0:
        raise InvalidCursor(cursor)
    return position


def build_page(epoch: str, scope: str, candidates: list[Entry], limit: int) -> dict[str, Any]:
    """The result from up to ``limit + 1`` candidates after the cursor (§5.7 steps 3-4).

    Entries are added until ``limit`` are on the page or the next one would take the page over
    :data:`PAGE_BYTE_BUDGET`; the first entry is always added.
    """
    entries: list[dict[str, Any]] = []
    used = 0
    last = 0
    for key, value, position in candidates[:limit]:
        size = entry_size(key, value)
        if entries and used + size > PAGE_BYTE_BUDGET:
            break
        used += size
        entries.append({"key": key, "value": decode_value(value)})
        last = position
    result: dict[str, Any] = {"entries": entries}
    if len(candidates) > len(entries):
        result["next_cursor"] = encode_cursor(epoch, scope, last)
    return result


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PAGE_BYTE_BUDGET",
    "InvalidCursor",
    "build_page",
    "decode_cursor",
    "encode_cursor",
]
