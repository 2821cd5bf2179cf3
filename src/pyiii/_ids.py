"""Invocation and channel ids: UUID-v4-shaped strings without a ``uuid4()`` per id.

An id is a random prefix of 24 characters (the first four groups of a UUID v4, so version and variant
bits are right) and a counter as the last group of 12 hex digits::

    prefix, counter = id_source()
    invocation_id = prefix + hex(next(counter))[3:]

The counter starts at ``2**48 + 1``: ``hex()`` of such a number is ``"0x1"`` and then its low 48 bits
as exactly 12 hex digits, so slicing off 3 characters gives the same string as ``f"{n:012x}"`` at
about half the cost (an in-process todo write formats about seven ids; bench/RESULTS.md, session 6).
The expression is written out at each call site on purpose: a helper function's call would cost
most of what it saves. 2**48 ids per prefix; nothing lives that long.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

__all__ = ["COUNTER_START", "id_source"]

#: ``hex(n)[3:]`` is 12 hex digits for every ``n`` in ``[COUNTER_START, 2 * COUNTER_START)``.
COUNTER_START = 1 << 48


def id_source() -> tuple[str, Iterator[int]]:
    """A new random prefix and counter; an id is ``prefix + hex(next(counter))[3:]``."""
    return str(uuid.uuid4())[:24], itertools.count(COUNTER_START + 1)
