"""Streaming channels (spec/protocol.md §9): a bounded pipe between one writer and one reader socket.

Transport-free: the server's ``/ws/channels/{id}`` endpoint attaches sockets and moves items; this
module keeps the registry, the access keys and the bounded buffer.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections import deque
from typing import Any

from pyiii._ids import id_source

#: An item is (is_text, payload bytes); ``None`` marks the end of the stream.
Item = tuple[bool, bytes] | None

DEFAULT_BUFFER = 64
MAX_BUFFER = 1024
UNATTACHED_TTL_S = 300.0


#: Channel ids: a random UUID-v4-shaped prefix per process and a counter (as the engine's call ids);
#: ids are not secrets, the access keys are.
_ID_PREFIX, _ID_COUNTER = id_source()
#: Access keys are UUID v4 strings of 16 random bytes, sliced from one ``os.urandom`` read per this many keys:
#: ``uuid4()`` per key was 9 % of an HTTP request's cost (bench/RESULTS.md, http section).
_KEY_BYTES = 16
_KEYS_PER_READ = 256
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class _KeyPool:
    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take(self) -> str:
        pos = self._pos
        if pos >= len(self._buf):
            self._buf, pos = os.urandom(_KEY_BYTES * _KEYS_PER_READ), 0
        self._pos = pos + _KEY_BYTES
        h = self._buf[pos : pos + _KEY_BYTES].hex()
        # A UUID v4 string (§9 rule 1): version nibble 4, variant bits 10.
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_keys = _KeyPool()


class Channel:
    """One channel. Its queue is created on first use: an HTTP request opens two channels that its
    handler usually never touches, and the engine only notes what it would put in them
    (:meth:`preload`) until someone asks for the queue."""

    __slots__ = (
        "_preload",
        "_queue",
        "buffer_size",
        "id",
        "reader_attached",
        "reader_done",
        "reader_key",
        "waiter",
        "writer_attached",
        "writer_done",
        "writer_key",
    )

    def __init__(self, id: str, writer_key: str | None, reader_key: str | None, buffer_size: int) -> None:
        self.id = id
        self.writer_key = writer_key
        self.reader_key = reader_key
        self.buffer_size = buffer_size
        self.writer_attached = False
        self.reader_attached = False
        self.writer_done = False
        self.reader_done = False
        self._queue: asyncio.Queue[Item] | None = None
        self._preload: list[Item] | None = None
        #: Resolved by the next :meth:`put` (the HTTP module waits on it together with its call).
        self.waiter: asyncio.Future[None] | None = None

    @property
    def queue(self) -> asyncio.Queue[Item]:
        q = self._queue
        if q is None:
            q = self._queue = asyncio.Queue(maxsize=self.buffer_size)
            if self._preload is not None:
                for item in self._preload:
                    q.put_nowait(item)
                self._preload = None
        return q

    @property
    def used(self) -> bool:
        """Whether a writer attached or an item was put (or preloaded)."""
        return self.writer_attached or self._queue is not None or self._preload is not None

    def preload(self, items: list[Item]) -> None:
        """Items that are there before anyone reads (at most ``buffer_size`` plus the end marker)."""
        if self._queue is not None:
            for item in items:
                self._queue.put_nowait(item)
        else:
            self._preload = items

    async def put(self, item: Item) -> None:
        """Add an item, waiting while the buffer is full; wakes :attr:`waiter`."""
        await self.queue.put(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def key_for(self, direction: str) -> str | None:
        if direction == "write":
            return self.writer_key
        if direction == "read":
            return self.reader_key
        return None


class ChannelRegistry:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        # (deadline, id) in creation order, swept by one timer: a timer per channel kept every
        # channel's callback alive for 5 minutes under HTTP load (two channels per request).
        self._expiry: deque[tuple[float, str]] = deque()
        self._sweep: asyncio.TimerHandle | None = None

    def create(self, buffer_size: Any = None) -> dict[str, Any]:
        """``engine::channels::create`` (§7.5): returns the writer and reader refs."""
        size = (
            buffer_size
            if isinstance(buffer_size, int) and not isinstance(buffer_size, bool)
            else DEFAULT_BUFFER
        )
        size = max(1, min(MAX_BUFFER, size))
        channel = self.open(size)
        return {"writer": self.ref(channel, "write"), "reader": self.ref(channel, "read")}

    def open(
        self, buffer_size: int = DEFAULT_BUFFER, engine_end: str | None = None, *, expires: bool = True
    ) -> Channel:
        """A new registered channel. ``engine_end`` (``"read"``/``"write"``): the end the engine keeps
        itself, which gets no access key, so no socket can ever attach to it; hand out the other with
        :meth:`ref`. ``expires=False``: the opener always removes it (an HTTP request's channels, at
        the end of the request), so it takes no place in the unattached-channel sweep (two entries per
        request held for 5 minutes were ~100 MB at a few thousand requests per second)."""
        take = _keys.take
        channel = Channel(
            _ID_PREFIX + hex(next(_ID_COUNTER))[3:],
            None if engine_end == "write" else take(),
            None if engine_end == "read" else take(),
            buffer_size,
        )
        self.channels[channel.id] = channel
        if not expires:
            return channel
        self._expiry.append((time.monotonic() + UNATTACHED_TTL_S, channel.id))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(UNATTACHED_TTL_S, self._sweep_expired)
        return channel

    @staticmethod
    def ref(channel: Channel, direction: str) -> dict[str, Any]:
        """The ``{channel_id, access_key, direction}`` reference of one end (§9)."""
        key = channel.key_for(direction)
        if key is None:
            raise ValueError(f"the {direction} end of channel {channel.id} is the engine's")
        return {"channel_id": channel.id, "access_key": key, "direction": direction}

    def lookup(self, channel_id: str, key: str | None, direction: str | None) -> Channel | None:
        """The channel if ``key`` opens it in ``direction`` (``read``/``write``), else None (→ 404)."""
        channel = self.channels.get(channel_id)
        if channel is None or key is None or direction is None:
            return None
        expected = channel.key_for(direction)
        if expected is None or not hmac.compare_digest(expected.encode(), key.encode()):
            return None
        return channel

    def finished(self, channel: Channel) -> None:
        if channel.writer_done and channel.reader_done:
            self.channels.pop(channel.id, None)

    def remove(self, channel_id: str) -> None:
        """Forget a channel whose users are done with it (its sweep entry expires harmlessly)."""
        self.channels.pop(channel_id, None)

    def _sweep_expired(self) -> None:
        self._sweep = None
        now, expiry = time.monotonic(), self._expiry
        while expiry and expiry[0][0] <= now:
            self._expire_unattached(expiry.popleft()[1])
        if expiry:  # at most one sweep per second
            delay = max(0.0, expiry[0][0] - now) + 1.0
            self._sweep = asyncio.get_running_loop().call_later(delay, self._sweep_expired)

    def _expire_unattached(self, channel_id: str) -> None:
        channel = self.channels.get(channel_id)
        if channel is not None and not (channel.writer_attached and channel.reader_attached):
            self.channels.pop(channel_id, None)
