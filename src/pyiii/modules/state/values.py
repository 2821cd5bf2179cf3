"""Stored values: canonical JSON text and encoded sizes (spec/state.md §3.3, §3.4).

Every value is stored as its **canonical encoding**: compact UTF-8 JSON with object keys sorted in
byte order (§3.3 rule 5). Adapters move these bytes and never look inside them, so every adapter
keeps empty arrays, exact integers and key sets the same way (D4). A value read back is decoded
afresh, so no caller ever holds a reference into a store.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

#: Integers in this range stay exact; any other integer becomes the nearest double (§3.4 rule 2).
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1

_encode = msgspec.json.Encoder(order="sorted").encode
decode_value = msgspec.json.Decoder().decode
#: Digits become NUL bytes (which encoded JSON never holds: msgspec escapes control characters), so
#: a run of 19 digits or more, the only way an integer outside the exact range can appear, is a run
#: of 19 NULs: a translate and a substring search, about 5x faster than a regular expression.
_DIGITS_TO_NUL: Final = bytes.maketrans(b"0123456789", b"\x00" * 10)
_LONG_DIGITS: Final = b"\x00" * 19


class InvalidValue(ValueError):
    """A value that cannot be stored: a non-finite number, or something that is not JSON."""


def encode_value(value: Any) -> bytes:
    """The canonical encoding of ``value``; raises :class:`InvalidValue` for what JSON cannot hold.

    Non-finite doubles are refused (msgspec would write them as ``null``); integers outside
    [-2^63, 2^64-1] become doubles. Both are rare, so the common path is one C-level encode plus
    two byte scans.
    """
    try:
        encoded = _encode(value)
    except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidValue(str(exc)) from exc
    # (find, not ``in``: on 3.11 ``bytes in bytes`` first tries the operand as an int and formats
    # and clears a TypeError, which made these two scans 1.6 % of an in-process todo write)
    if encoded.find(b"null") >= 0 or encoded.translate(_DIGITS_TO_NUL).find(_LONG_DIGITS) >= 0:
        normalised = _normalise(value)
        if normalised is not value:
            return encode_value(normalised)
    return encoded


def _normalise(value: Any) -> Any:
    """``value`` with out-of-range integers turned into doubles; the same object when unchanged."""
    if type(value) is float:
        if not math.isfinite(value):
            raise InvalidValue(f"number {value!r} is not a finite double")
        return value
    if type(value) is int:
        if INT_MIN <= value <= INT_MAX:
            return value
        try:
            as_float = float(value)
        except OverflowError:
            as_float = math.inf
        if not math.isfinite(as_float):
            raise InvalidValue("number out of range")
        return as_float
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new = _normalise(item)
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if isinstance(value, (list, tuple)):
        items = [_normalise(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    if isinstance(value, float):  # a float subclass
        return _normalise(float(value))
    return value


ENTRY_OVERHEAD: Final = len(b'{"key":,"value":}')


def entry_size(key: str, encoded_value: bytes) -> int:
    """Encoded size of ``{"key":k,"value":v}`` (§5.7), without building it."""
    return ENTRY_OVERHEAD + len(_encode(key)) + len(encoded_value)


__all__ = [
    "INT_MAX",
    "INT_MIN",
    "InvalidValue",
    "decode_value",
    "encode_value",
    "entry_size",
]
