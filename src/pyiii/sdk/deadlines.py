"""Client-side call timeouts on a coarse timer wheel (spec/protocol.md §10.5 rule 5).

A loop timer per call costs more than the rest of an in-process call's bookkeeping together, so
deadlines are grouped into 10 ms slots with one loop timer per slot. A call expires within 10 ms after
its deadline, never before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Deadlines"]

RESOLUTION_S = 0.01


class Deadlines:
    """``add(key, timeout_s, value)`` schedules ``on_expire(key, value)``; ``remove`` cancels it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expire: Callable[[Any, Any], None]) -> None:
        self._loop = loop
        self._on_expire = on_expire
        self._slots: dict[int, dict[Any, Any]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def add(self, key: Any, timeout_s: float, value: Any) -> int:
        """Schedule an expiry; returns the slot to pass to :meth:`remove`."""
        slot = int((self._loop.time() + timeout_s) / RESOLUTION_S) + 1
        entries = self._slots.get(slot)
        if entries is None:
            entries = self._slots[slot] = {}
            self._timers[slot] = self._loop.call_at(slot * RESOLUTION_S, self._fire, slot)
        entries[key] = value
        return slot

    def remove(self, slot: int, key: Any) -> None:
        entries = self._slots.get(slot)
        if entries is not None:
            entries.pop(key, None)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._slots.values())

    def clear(self) -> None:
        """Forget every deadline and cancel the slot timers."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._slots.clear()

    def _fire(self, slot: int) -> None:
        self._timers.pop(slot, None)
        entries = self._slots.pop(slot, None)
        if entries:
            on_expire = self._on_expire
            for key, value in entries.items():
                on_expire(key, value)
