"""Connections, subscriptions and the fan-out index (spec/stream.md §3.7, §3.9, S5, S8).

* :class:`Hub` maps ``(stream_name, group_id)`` to the subscriptions on it, split into group
  subscriptions and item subscriptions by item id, so delivering an event touches only the matching
  subscriptions, never every connection. :meth:`Hub.deliver` turns the event's payload into one
  WebSocket frame (bytes) and offers that same object to every match.
* :class:`Connection` is the output side of one client socket, and :meth:`Connection.send` is its one
  write path (STYLE habit 2): while the transport accepts data and nothing is queued, a frame is written
  at once; otherwise it joins a bounded queue drained by a writer task that exists only while there is
  a backlog (10,000 idle clients have no task each). Enqueueing never waits (§3.9 rule 2).
* A connection whose backlog (queued plus held frames) would exceed ``queue_limit`` is a **slow
  consumer** (§3.9 rule 3): its queue is dropped, it stops accepting frames and ``on_slow`` is called
  (the server closes it with 1013). Nothing it does can delay another connection.
* A subscription is *pending-sync* while its join reads the snapshot: frames for it are **held**
  (they count toward the backlog) and enqueued after the ``sync`` frame (§3.7 steps 5-9, S8).

Nothing here awaits during delivery, so an event reaches every matching subscription before any other
code runs: per connection, frames are enqueued in the order events are delivered (§3.9 Ordering).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from .frames import ws_text_frame

log = logging.getLogger("pyiii.stream")

#: §3.9 rule 1: frames a connection may have queued (held frames included) before it is a slow consumer.
QUEUE_LIMIT: Final = 1024


class WireIO(Protocol):
    """The byte-level transport of one socket (see ``server.AiohttpWire``)."""

    def writable(self) -> bool:
        """Whether the transport accepts data without buffering beyond its high-water mark."""

    def closing(self) -> bool:
        """Whether the transport is closed or closing."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait until :meth:`writable` may be true again (or the transport is gone)."""


class Subscription:
    """One ``(subscriptionId, streamName, groupId, id)`` record of a connection (§1)."""

    __slots__ = ("connection", "group_id", "held", "item_id", "stream_name", "subscription_id")

    def __init__(
        self,
        connection: Connection,
        subscription_id: str,
        stream_name: str,
        group_id: str,
        item_id: str | None,
    ) -> None:
        self.connection = connection
        self.subscription_id = subscription_id
        self.stream_name = stream_name
        self.group_id = group_id
        self.item_id = item_id
        #: Frames held while pending-sync (§3.7 step 5); ``None`` once live.
        self.held: list[bytes] | None = []

    def offer(self, wire: bytes) -> None:
        """A matching event's frame: enqueued when live, held while pending-sync."""
        held = self.held
        if held is None:
            self.connection.send(wire)
        else:
            self.connection.hold(held, wire)


class Connection:
    """The output side and the subscription table of one client (§3.4 step 3)."""

    __slots__ = (
        "_io",
        "_on_slow",
        "_queue",
        "_writer",
        "closing",
        "context",
        "held",
        "id",
        "queue_limit",
        "slow",
        "subscriptions",
    )

    def __init__(
        self,
        connection_id: str,
        io: WireIO,
        *,
        context: Any = None,
        queue_limit: int = QUEUE_LIMIT,
        on_slow: Callable[[Connection], None] | None = None,
    ) -> None:
        self.id = connection_id
        self.context = context
        self.subscriptions: dict[str, Subscription] = {}
        self.queue_limit = queue_limit
        self.closing = False
        #: Set when the connection was dropped as a slow consumer.
        self.slow = False
        #: Frames held by pending-sync subscriptions (they count toward the backlog).
        self.held = 0
        self._io = io
        #: Created with a backlog and dropped once it is written: an empty deque costs ~600 bytes, and an
        #: idle connection (10,000 of them) needs none.
        self._queue: deque[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._on_slow = on_slow

    @property
    def backlog(self) -> int:
        queue = self._queue
        return (len(queue) if queue else 0) + self.held

    def send(self, wire: bytes) -> None:
        """The one write path (§3.9): write now, or queue without waiting; overflow drops the client."""
        if self.closing:
            return  # §3.9 rule 5
        io = self._io
        queue = self._queue
        if not queue and io.writable():
            io.write(wire)
            return
        if io.closing():
            return
        if (len(queue) if queue else 0) + self.held >= self.queue_limit:
            self.drop_slow()
            return
        if queue is None:
            queue = self._queue = deque()
        queue.append(wire)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def flushed(self) -> None:
        """Wait until nothing is queued and the transport accepts data, or the connection closes.

        The read loop awaits this between a client's messages, so the frames a client's own messages cause
        (``sync`` of its joins, ``pong``) wait for it to read instead of filling its queue: only events, which
        never wait (§3.9 rule 2), can make a connection a slow consumer.
        """
        io = self._io
        while not self.closing and not io.closing():
            writer = self._writer
            try:
                if writer is not None:  # a backlog: its writer ends once the queue is written
                    await asyncio.wait((writer,))  # (its own outcome is its business)
                elif not io.writable():
                    await io.drain()
                else:
                    return
            except (ConnectionError, RuntimeError):
                return

    def send_payload(self, payload: bytes) -> None:
        """A frame for this connection alone (``sync``, ``unauthorized``, ``pong``)."""
        self.send(ws_text_frame(payload))

    def hold(self, held: list[bytes], wire: bytes) -> None:
        """Hold a frame for a pending-sync subscription (§3.7 step 5)."""
        if self.closing:
            return
        if self.backlog >= self.queue_limit:
            self.drop_slow()
            return
        held.append(wire)
        self.held += 1

    def go_live(self, subscription: Subscription) -> None:
        """Enqueue a subscription's held frames in order and make it live (§3.7 step 9).

        Synchronous, so no event can arrive between the last held frame and the switch.
        """
        held, subscription.held = subscription.held, None
        if not held:
            return
        self.held -= len(held)
        for wire in held:
            self.send(wire)

    def release(self, subscription: Subscription) -> None:
        """Forget the held frames of a subscription that is removed while pending-sync."""
        if subscription.held:
            self.held -= len(subscription.held)
            subscription.held = []

    def drop_slow(self) -> None:
        """§3.9 rule 3: drop the queue, stop accepting frames, let the server close with 1013."""
        if self.closing:
            return
        self.slow = True
        self.shut()
        if self._on_slow is not None:
            self._on_slow(self)

    def shut(self) -> None:
        """Stop the writer and drop everything queued or held (teardown, §3.4 step 6)."""
        self.closing = True
        self._queue = None
        for subscription in self.subscriptions.values():
            if subscription.held:
                subscription.held = []
        self.held = 0
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()

    async def _drain(self) -> None:
        io = self._io
        queue = self._queue
        assert queue is not None  # a writer starts with the first queued frame
        try:
            while queue and not self.closing:
                if io.closing():
                    queue.clear()
                    break
                if not io.writable():
                    await io.drain()
                    continue
                while queue and io.writable():
                    io.write(queue.popleft())
        except (ConnectionError, RuntimeError) as exc:  # the transport went away under the writer
            log.debug("stream connection %s: writer stopped: %s", self.id, exc)
            queue.clear()
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
                if self._queue is queue and not queue:
                    self._queue = None


class _Slot:
    """The subscriptions on one (stream, group)."""

    __slots__ = ("group", "items")

    def __init__(self) -> None:
        self.group: dict[Subscription, None] = {}
        self.items: dict[str, dict[Subscription, None]] = {}


class Hub:
    """The local connections and the subscription index of one engine."""

    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}
        self._slots: dict[tuple[str, str], _Slot] = {}
        #: Frames offered to subscriptions since start (for statistics and tests).
        self.delivered = 0

    def add(self, subscription: Subscription) -> None:
        key = (subscription.stream_name, subscription.group_id)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        if subscription.item_id is None:
            slot.group[subscription] = None
        else:
            slot.items.setdefault(subscription.item_id, {})[subscription] = None

    def remove(self, subscription: Subscription) -> None:
        key = (subscription.stream_name, subscription.group_id)
        slot = self._slots.get(key)
        if slot is None:
            return
        if subscription.item_id is None:
            slot.group.pop(subscription, None)
        else:
            subs = slot.items.get(subscription.item_id)
            if subs is not None:
                subs.pop(subscription, None)
                if not subs:
                    del slot.items[subscription.item_id]
        if not slot.group and not slot.items:
            del self._slots[key]

    def deliver(self, stream_name: str, group_id: str, item_id: str | None, payload: bytes) -> int:
        """Offer one event to every matching subscription, once per subscription (§3.9 Filter).

        ``payload`` is the frame's JSON text; it is framed once and the same bytes are offered to all.
        Returns the number of subscriptions offered the frame.
        """
        slot = self._slots.get((stream_name, group_id))
        if slot is None:
            return 0
        targets = list(slot.group)
        if item_id is not None:
            items = slot.items.get(item_id)
            if items:
                targets.extend(items)
        if not targets:
            return 0
        wire = ws_text_frame(payload)
        for subscription in targets:
            held = subscription.held
            if held is None:
                subscription.connection.send(wire)
            else:
                subscription.connection.hold(held, wire)
        self.delivered += len(targets)
        return len(targets)

    def subscription_count(self) -> int:
        return sum(len(s.group) + sum(len(i) for i in s.items.values()) for s in self._slots.values())


__all__ = ["QUEUE_LIMIT", "Connection", "Hub", "Subscription", "WireIO"]
