"""Streaming channels (spec/protocol.md §9): a bounded pipe between one writer and one reader socket.

Transport-free: the server's ``/ws/channels/{id}`` endpoint attaches sockets and moves items; this
module keeps the registry, the access keys and the bounded buffer.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: An item is (is_text, payload bytes); ``None`` marks the end of the stream.
Item = tuple[bool, bytes] | None

DEFAULT_BUFFER = 64
MAX_BUFFER = 1024
UNATTACHED_TTL_S = 300.0


@dataclass(eq=False)
class Channel:
    id: str
    writer_key: str
    reader_key: str
    buffer_size: int
    queue: asyncio.Queue[Item] = field(init=False)
    writer_attached: bool = False
    reader_attached: bool = False
    writer_done: bool = False
    reader_done: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.buffer_size)

    def key_for(self, direction: str) -> str | None:
        return {"write": self.writer_key, "read": self.reader_key}.get(direction)


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
        channel = Channel(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), size)
        self.channels[channel.id] = channel
        self._expiry.append((time.monotonic() + UNATTACHED_TTL_S, channel.id))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(UNATTACHED_TTL_S, self._sweep_expired)
        return {
            "writer": {"channel_id": channel.id, "access_key": channel.writer_key, "direction": "write"},
            "reader": {"channel_id": channel.id, "access_key": channel.reader_key, "direction": "read"},
        }

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
