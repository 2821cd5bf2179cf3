"""The event bus: how an emitted event reaches the engines' connections (spec/stream.md §7.1.5, §7.2.5-7).

One small seam with two implementations:

* :class:`LocalBus` (``kv``): hands the event straight to this engine's :class:`~.hub.Hub`.
* ``RedisBus`` (``redis``, :mod:`.redis_bus`): publishes the frame text on ``pyiii:stream:events``;
  every engine, the publisher included, delivers what its own subscription receives, so all engines
  see one order (§7.2.5).

``publish`` takes the frame's JSON text (already serialized once, S5) and its routing fields, so a
receiver never has to parse a frame to route it locally.
"""

from __future__ import annotations

from .hub import Hub


class EventBus:
    """Base of the buses. ``publish`` raises :class:`BusError` when the event cannot be emitted."""

    #: As ``StateAdapter.awaits_only_futures``: ``publish`` needs no task of its own.
    awaits_only_futures: bool = False

    async def start(self, hub: Hub) -> None:
        self.hub = hub

    async def stop(self) -> None:
        return None

    async def publish(self, stream_name: str, group_id: str, item_id: str | None, payload: bytes) -> None:
        raise NotImplementedError

    async def idle(self) -> None:
        """Wait until every event published so far has been delivered locally (tests)."""
        return None


class BusError(Exception):
    """An event could not be emitted (for example a Redis publish failed)."""


class LocalBus(EventBus):
    """In-process fan-out: every event goes to this engine's connections, synchronously, in order."""

    awaits_only_futures = True

    async def publish(self, stream_name: str, group_id: str, item_id: str | None, payload: bytes) -> None:
        self.hub.deliver(stream_name, group_id, item_id, payload)


__all__ = ["BusError", "EventBus", "LocalBus"]
