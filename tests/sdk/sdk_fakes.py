"""A transport the SDK tests drive by hand (imported by conftest.py and the tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pyiii.protocol.codec import encode
from pyiii.protocol.messages import WorkerRegistered
from pyiii.sdk.transport import PayloadTooLarge, Transport, TransportEvents


class FakeTransport(Transport):
    """A transport the test drives by hand: ``open()``, ``drop()``, ``deliver(msg)``; ``sent`` records."""

    def __init__(self, limit: int | None = None, channel_base: str | None = None) -> None:
        self.sent: list[Any] = []
        self.events: TransportEvents | None = None
        self.connected = False
        self.closed = False
        self.limit = limit
        self._channel_base = channel_base
        self._changed = asyncio.Event()
        self._worker_n = 0

    # -- Transport
    def start(self, events: TransportEvents) -> None:
        self.events = events
        events.state_changed("connecting")

    def send(self, message: Any) -> None:
        if self.limit is not None:
            size = len(encode(message))
            if size > self.limit:
                raise PayloadTooLarge(size, self.limit)
        self.sent.append(message)
        self._changed.set()

    async def close(self) -> None:
        self.connected = False
        self.closed = True

    @property
    def address(self) -> str:
        return "fake://engine"

    def channel_base_url(self) -> str | None:
        return self._channel_base

    # -- driving it
    def open(self) -> str:
        """Open a connection, then send ``workerregistered`` like the engine; returns the worker id."""
        assert self.events is not None
        self.connected = True
        self.events.connection_opened()
        self._worker_n += 1
        worker_id = f"worker-{self._worker_n}"
        self.events.message_received(
            WorkerRegistered(worker_id=worker_id, reattach_token=f"token-{self._worker_n}")
        )
        return worker_id

    def drop(self) -> None:
        assert self.events is not None
        self.connected = False
        self.events.connection_lost()
        self.events.state_changed("reconnecting")

    def deliver(self, message: Any) -> None:
        assert self.events is not None
        self.events.message_received(message)

    def of_type(self, cls: type) -> list[Any]:
        return [m for m in self.sent if type(m) is cls]

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy; re-checked whenever something is sent."""

        async def loop() -> Any:
            while True:
                value = predicate()
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout_s)
