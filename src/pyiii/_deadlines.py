"""Deadlines on a coarse timer wheel, shared by the SDK's call timeouts (protocol.md §10.5 rule 5),
the engine's invocation timeouts (§4.5) and the HTTP module's request deadlines (http.md §13.1).

A loop timer per call costs more than the rest of an in-process call's bookkeeping together (and
cancelling a uvloop timer costs one more loop iteration), so deadlines are grouped into slots of
``resolution_s`` (10 ms by default). An entry expires within one slot after its deadline, never
before it.

One loop timer per instance, armed for the earliest slot (slots wait in a heap): a timer per slot
meant about 3,000 live timer handles per instance under load with 30 s timeouts (each a handle, a
context and a bound method the garbage collector walks in every young collection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from heapq import heappop, heappush
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
        #: The slots in ``_slots``, earliest first.
        self._heap: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        #: The slot the timer is armed for.
        self._armed = 0

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
            heappush(self._heap, slot)
            if self._timer is None or slot < self._armed:
                self._arm(slot)
        entries[key] = value
        return slot

    def remove(self, slot: int, key: Any) -> None:
        entries = self._slots.get(slot)
        if entries is not None:
            entries.pop(key, None)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._slots.values())

    def clear(self) -> None:
        """Forget every deadline and cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slots.clear()
        self._heap.clear()

    def _arm(self, slot: int) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._armed = slot
        self._timer = self._loop.call_at(slot * self._resolution_s, self._fire)

    def _fire(self) -> None:
        """Expire every slot that is due, then arm the timer for the next one."""
        self._timer = None
        loop = self._loop
        assert loop is not None
        now_slot = int(loop.time() / self._resolution_s)
        heap, slots, on_expire = self._heap, self._slots, self._on_expire
        while heap and heap[0] <= max(now_slot, self._armed):
            entries = slots.pop(heappop(heap), None)
            if entries:
                for key, value in entries.items():
                    on_expire(key, value)
        if heap and self._timer is None:  # (an expiry handler may have added and armed already)
            self._arm(heap[0])
