"""pyiii._deadlines: the coarse timer wheel behind call timeouts and HTTP request deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import TIME_FACTOR
from pyiii._deadlines import RESOLUTION_S, Deadlines


async def test_entries_expire_in_deadline_order_never_early() -> None:
    """Each entry expires after its deadline and within about one slot of it, in deadline order, even
    when a shorter deadline is added after longer ones (the one timer is re-armed earlier)."""
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    deadlines = Deadlines(loop, lambda key, value: fired.append((key, loop.time() - value)))
    for key, timeout in (("late", 0.12), ("mid", 0.06), ("soon", 0.02)):
        deadlines.add(key, timeout, loop.time() + timeout)
    await asyncio.sleep(0.25)
    assert [key for key, _ in fired] == ["soon", "mid", "late"]
    for _, lateness in fired:
        # never early (uvloop may wake up to 1 ms early; a slot is 10 ms), and not a later slot's time
        assert -0.002 <= lateness < 0.04 * TIME_FACTOR
    assert len(deadlines) == 0


async def test_removed_entries_never_expire_and_the_rest_do() -> None:
    """Removing entries (the common case: the call answered in time) leaves their slots empty;
    others in the same and later slots still expire, once."""
    loop = asyncio.get_running_loop()
    fired: list[Any] = []
    deadlines = Deadlines(loop, lambda key, value: fired.append(key))
    slots = {i: deadlines.add(i, 0.03 + (i % 5) * RESOLUTION_S, None) for i in range(1000)}
    for i, slot in slots.items():
        if i % 100:
            deadlines.remove(slot, i)
    await asyncio.sleep(0.2)
    assert sorted(fired) == list(range(0, 1000, 100))


async def test_expiry_handler_can_add_and_clear_stops_everything() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []

    def on_expire(key: str, value: Any) -> None:
        fired.append(key)
        if key == "first":
            deadlines.add("second", 0.02, None)

    deadlines = Deadlines(loop, on_expire)
    deadlines.add("first", 0.01, None)
    await asyncio.sleep(0.1)
    assert fired == ["first", "second"]
    deadlines.add("never", 0.02, None)
    deadlines.clear()
    await asyncio.sleep(0.06)
    assert fired == ["first", "second"] and len(deadlines) == 0
