"""Deadlines on a coarse timer wheel, shared by the SDK's call timeouts (protocol.md §10.5 rule 5),
the engine's invocation timeouts (§4.5) and the HTTP module's request deadlines (http.md §13.1).

A loop timer per call costs more than the rest of an in-process call's bookkeeping together (and
cancelling a uvloop timer costs one more loop iteration), so deadlines are grouped into slots of
``resolution_s`` (10 ms by default) with one loop timer per slot. An entry expires within one slot
after its deadline, never before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Deadlines"]

RESOLUTION_S = 0.01


class Deadlines:
    """``add(key, timeout_s, value)`` schedules ``on_expire(key, value)``; ``remove`` cancels it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        on_expire: Callable[[Any, Any], None],
        resolution_s: float = RESOLUTION_S,
    ) -> None:
        #: ``None``: the running loop of the first :meth:`add`.
        self._loop = loop
        self._resolution_s = resolution_s
        self._on_expire = on_expire
        self._slots: dict[int, dict[Any, Any]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def add(self, key: Any, timeout_s: float, value: Any) -> int:
        """Schedule an expiry; returns the slot to pass to :meth:`remove`."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        resolution = self._resolution_s
        slot = int((loop.time() + timeout_s) / resolution) + 1
        entries = self._slots.get(slot)
        if entries is None:
            entries = self._slots[slot] = {}
            self._timers[slot] = loop.call_at(slot * resolution, self._fire, slot)
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
