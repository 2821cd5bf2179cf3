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


class FakeEngineServer:
    """A scripted worker-socket endpoint on 127.0.0.1: greets each connection with ``workerregistered``
    (``w1``/``t1``, ``w2``/``t2``, ...) and records every frame with the number of its connection."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.frame_kinds: list[Any] = []
        self.headers: list[Any] = []  # case-insensitive multidicts
        self.sockets: list[Any] = []
        self.connections = 0
        self.port = 0
        self._runner: Any = None
        self._changed = asyncio.Event()

    async def start(self, port: int = 0) -> str:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1012)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: Any) -> Any:
        import json

        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        self.connections += 1
        number = self.connections
        self.headers.append(request.headers.copy())
        self.sockets.append(ws)
        await ws.send_str(json.dumps({"type": "workerregistered", "worker_id": f"w{number}",
                                      "reattach_token": f"t{number}"}))  # fmt: skip
        self._changed.set()
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    frame = json.loads(msg.data)
                    frame["_conn"] = number
                    self.frames.append(frame)
                    self.frame_kinds.append(msg.type)
                    self._changed.set()
        finally:
            self.sockets.remove(ws)
            self._changed.set()
        return ws

    async def send(self, frame: dict[str, Any], connection: int | None = None) -> None:
        """Send a JSON text frame on the latest (or the given) open connection."""
        import json

        ws = self.sockets[-1] if connection is None else self.sockets[connection]
        await ws.send_str(json.dumps(frame))

    def frames_of(self, kind: str, connection: int | None = None) -> list[dict[str, Any]]:
        return [
            f for f in self.frames if f["type"] == kind and (connection is None or f["_conn"] == connection)
        ]

    def calls_to(self, function_id: str) -> list[dict[str, Any]]:
        return [f for f in self.frames_of("invokefunction") if f["function_id"] == function_id]

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy; re-checked on every frame and connection change."""

        async def loop() -> Any:
            while True:
                value = predicate()
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout_s)


async def wait_state(client: Any, *states: str, timeout_s: float = 10.0) -> None:
    """Wait (on the test's loop) until a client, whose loop may be another thread's, reaches a state."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    unsubscribe = client.add_connection_state_listener(lambda _state: loop.call_soon_threadsafe(changed.set))

    async def until() -> None:
        while client.get_connection_state() not in states:
            changed.clear()
            await changed.wait()

    try:
        await asyncio.wait_for(until(), timeout_s)
    finally:
        unsubscribe()
