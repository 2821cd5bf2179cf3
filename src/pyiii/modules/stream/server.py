"""The client WebSocket listener (spec/stream.md §3.1-§3.8).

:class:`StreamServer` is the aiohttp request handler of the stream port. Per connection:

1. the upgrade checks (§3.2 rule 1: 426 without ``Upgrade: websocket``, 400 for another invalid
   upgrade), then the auth function when configured (§3.3, :mod:`.auth`), then the 101 with the first
   offered subprotocol echoed (S4);
2. registration in the :class:`~.hub.Hub` (§3.4 step 3), the URL join for ``/stream/...`` paths (S1);
3. the read loop, one message at a time; a join or leave completes before the next message (§3.4 step 5),
   and the next message is read once the frames this one caused are written (a client's own requests
   wait for it to read; only events can make it a slow consumer);
4. teardown, exactly once, whatever ended the connection (S10): the writer stops, the subscriptions
   leave the index, and the ``stream:leave`` triggers run for each of them in a background task (so a
   cancelled handler cannot cut them short).

Limits (:class:`~.limits.StreamLimits`): a client message larger than 1 MiB (the minimum §3.2 rule 4
allows) closes the connection with 1009. A connection holds at most 65,536 subscriptions; a join of a
new id beyond that closes it with 1008 (policy violation), so one socket cannot grow the index without
bound. Each accepted socket may hold at most 128 KiB of unsent data in the kernel (``TCP_NOTSENT_LOWAT``,
:data:`~.limits.SOCKET_UNSENT_BYTES`), so a client that never reads meets backpressure, fills its frame
queue and is closed with 1013 after a bounded number of bytes. permessage-deflate is declined (§3.2 rule
3): frames are written as pre-built bytes, the same for every client.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from . import frames
from .frames import Ignored, Join, Leave, Ping
from .hub import Connection, Hub, Subscription
from .limits import DEFAULT_LIMITS, StreamLimits

if TYPE_CHECKING:
    from .module import StreamModule

log = logging.getLogger("pyiii.stream")

#: Warnings logged per connection for ignored messages; later ones are logged at debug level.
WARNINGS_PER_CONNECTION: Final = 10

CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011
CLOSE_TRY_AGAIN: Final = 1013

URL_SUBSCRIPTION_ID: Final = "url"


def url_subscription(path: str) -> tuple[str, str, str | None] | None:
    """``(stream, group, item)`` of a URL-subscribed path (§3.1 rule 3), else ``None``.

    ``path`` is the raw path without the query. At most one trailing ``/`` is removed; each segment
    is percent-decoded as UTF-8 (``+`` stays ``+``); a segment that does not decode makes the path
    a plain one.
    """
    if path.endswith("/"):
        path = path[:-1]
    segments = path.split("/")
    if segments[:1] == [""]:
        segments = segments[1:]
    if len(segments) not in (3, 4) or segments[0] != "stream" or not all(segments):
        return None
    decoded = []
    for segment in segments[1:]:
        try:
            decoded.append(unquote(segment, encoding="utf-8", errors="strict"))
        except UnicodeDecodeError:
            return None
    return decoded[0], decoded[1], decoded[2] if len(decoded) == 3 else None


def first_protocol(offered: str | None) -> str | None:
    """S4: the first token of ``Sec-WebSocket-Protocol`` (split on ``,``, trimmed), if any."""
    if offered is None:
        return None
    token = offered.split(",", 1)[0].strip()
    return token or None


class AiohttpWire:
    """:class:`~.hub.WireIO` over an aiohttp connection.

    The one place that looks inside aiohttp: its protocol's ``_paused`` flag (set by the event loop's
    ``pause_writing`` when the transport buffer passes its high-water mark) tells whether a write
    would only grow a buffer, and the response's public ``drain`` waits until it clears.

    ``unsent_bytes`` caps the socket's unsent kernel buffer (``TCP_NOTSENT_LOWAT``, see
    :data:`~.limits.SOCKET_UNSENT_BYTES`), so backpressure shows after a bounded number of bytes.
    """

    __slots__ = ("_protocol", "_transport", "_writer")

    def __init__(self, request: web.BaseRequest, unsent_bytes: int | None = None) -> None:
        self._protocol: Any = request.protocol
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        self._transport: Any = transport
        self._writer = request.writer
        if unsent_bytes is not None:
            _cap_unsent(transport, unsent_bytes)

    def writable(self) -> bool:
        return not self._protocol._paused and not self._transport.is_closing()

    def closing(self) -> bool:
        return bool(self._transport.is_closing())

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def abort(self) -> None:
        self._transport.abort()

    def close(self) -> None:
        """Close after the buffered data is flushed."""
        self._transport.close()

    def lost(self) -> bool:
        """Whether the connection is gone (flushed and closed, or aborted): aiohttp's protocol drops its
        transport in ``connection_lost``."""
        return self._protocol.transport is None


def _cap_unsent(transport: Any, unsent_bytes: int) -> None:
    """Set ``TCP_NOTSENT_LOWAT`` where the platform has it (Linux, macOS); elsewhere keep the default."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    sock = transport.get_extra_info("socket")
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, unsent_bytes)
    except OSError as exc:  # not a TCP socket (a Unix socket in a test, say): nothing to cap
        log.debug("stream: TCP_NOTSENT_LOWAT not set: %s", exc)


class _Client:
    """One accepted socket: its :class:`Connection`, its aiohttp response and how to close it."""

    __slots__ = ("_read_waiter", "closer", "connection", "read_done", "warnings", "wire", "ws")

    def __init__(self, connection: Connection, ws: web.WebSocketResponse, wire: AiohttpWire) -> None:
        self.connection = connection
        self.ws = ws
        self.wire = wire
        self.warnings = 0
        self.closer: asyncio.Task[None] | None = None
        #: Whether the handler's read loop has ended (the connection is lost, or the client closed). A
        #: future made only when awaited: an ``asyncio.Event`` per idle connection costs ~700 bytes.
        self.read_done = False
        self._read_waiter: asyncio.Future[None] | None = None

    def end_reading(self) -> None:
        self.read_done = True
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_read_done(self) -> None:
        if self.read_done:
            return
        if self._read_waiter is None:
            self._read_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._read_waiter)  # a cancelled waiter must not cancel it for the others


class StreamServer:
    """The request handler of the stream listener."""

    def __init__(self, module: StreamModule, limits: StreamLimits = DEFAULT_LIMITS) -> None:
        self.module = module
        self.hub: Hub = module.hub
        self.limits = limits
        self._clients: dict[str, _Client] = {}
        self._teardowns: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: Connections closed as slow consumers since start.
        self.slow_consumers = 0

    # ------------------------------------------------------------------ handshake (§3.2, §3.3)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").strip().lower() != "websocket":
            return web.Response(status=426, text="Upgrade Required", headers={"Upgrade": "websocket"})
        protocol = first_protocol(request.headers.get("Sec-WebSocket-Protocol"))
        ws = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (),
            compress=False,
            # aiohttp refuses a message of exactly max_msg_size bytes; the limit must pass (§3.2 rule 4).
            max_msg_size=self.limits.max_message_bytes + 1,
            timeout=self.limits.close_timeout_s,
            autoping=True,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="Bad Request: invalid WebSocket upgrade")
        if self._stopping:
            return web.Response(status=503, text="shutting down")
        context: Any = None
        auth = self.module.auth
        if auth is not None:
            verdict = await auth.check(request)
            if verdict.rejected:
                return verdict.response()
            context = verdict.context
        await ws.prepare(request)
        try:
            wire = AiohttpWire(request, self.limits.socket_unsent_bytes)
        except ConnectionResetError:
            return ws
        connection = Connection(
            str(uuid.uuid4()),
            wire,
            context=context,
            queue_limit=self.limits.queue_frames,
            on_slow=self._on_slow,
        )
        client = _Client(connection, ws, wire)
        self._clients[connection.id] = client
        self.hub.connections[connection.id] = connection
        try:
            url_join = url_subscription(request.raw_path.split("?", 1)[0])
            if url_join is not None:
                stream_name, group_id, item_id = url_join
                await self.join(client, Join(URL_SUBSCRIPTION_ID, stream_name, group_id, item_id))
            await self._read_loop(client)
        finally:
            client.end_reading()
            self._teardown(client)
        if client.closer is not None:
            # Returning the response makes aiohttp close with 1000: let our close (1008, 1009, 1013, 1001)
            # finish first.
            await asyncio.shield(client.closer)
        return ws

    # ------------------------------------------------------------------ read loop (§3.4 step 5)

    async def _read_loop(self, client: _Client) -> None:
        ws = client.ws
        connection = client.connection
        while not connection.closing:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                await self._dispatch(client, frames.parse_client_message(msg.data))
                # Backpressure on the client's own requests: the next message is read once what this one
                # caused is written (10,000 joins sent at once get 10,000 syncs, not a 1013).
                await connection.flushed()
            elif kind is WSMsgType.ERROR:
                log.debug("stream connection %s: %s", client.connection.id, msg.data)
                break
            elif kind in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            # PING is answered by aiohttp with the same payload (autoping); PONG is ignored.

    async def _dispatch(self, client: _Client, message: frames.ClientMessage) -> None:
        if isinstance(message, Join):
            await self.join(client, message)
        elif isinstance(message, Leave):
            await self.leave(client, message)
        elif isinstance(message, Ping):
            client.connection.send(frames.PONG_WIRE)
        elif isinstance(message, Ignored) and message.reason is not None:
            client.warnings += 1
            level = logging.WARNING if client.warnings <= WARNINGS_PER_CONNECTION else logging.DEBUG
            log.log(level, "stream connection %s: message ignored: %s", client.connection.id, message.reason)

    # ------------------------------------------------------------------ join and leave (§3.7, §3.8)

    async def join(self, client: _Client, join: Join) -> None:
        connection = client.connection
        payload = self._lifecycle_payload(connection, join)
        rejected = await self.module.triggers.run_join(payload)
        if connection.closing:
            return
        if rejected:
            event = frames.UNAUTHORIZED_EVENT
            connection.send_payload(
                frames.stream_frame(_now_ms(), join.stream_name, join.group_id, join.item_id, event)
            )
            return
        existing = connection.subscriptions.get(join.subscription_id)
        limit = self.limits.max_subscriptions
        if existing is None and len(connection.subscriptions) >= limit:
            log.warning("stream connection %s: more than %d subscriptions; closing it", connection.id, limit)
            self._close(client, CLOSE_POLICY, b"too many subscriptions")
            return
        if existing is not None:  # §3.7 step 4: replaced silently, no leave trigger
            self.hub.remove(existing)
            connection.release(existing)
        subscription = Subscription(
            connection, join.subscription_id, join.stream_name, join.group_id, join.item_id
        )
        connection.subscriptions[join.subscription_id] = subscription
        self.hub.add(subscription)
        timestamp = _now_ms()  # §3.7 step 7: after the triggers, before the read
        snapshot = await self.module.snapshot(join.stream_name, join.group_id, join.item_id)
        if connection.subscriptions.get(join.subscription_id) is not subscription:
            return  # torn down (or replaced) while reading
        if snapshot is not None:
            connection.send_payload(
                frames.stream_frame(timestamp, join.stream_name, join.group_id, join.item_id, snapshot)
            )
        connection.go_live(subscription)

    async def leave(self, client: _Client, leave: Leave) -> None:
        connection = client.connection
        await self.module.triggers.run_leave(self._lifecycle_payload(connection, leave))
        subscription = connection.subscriptions.pop(leave.subscription_id, None)
        if subscription is not None:
            self.hub.remove(subscription)
            connection.release(subscription)

    @staticmethod
    def _lifecycle_payload(connection: Connection, message: Join | Leave) -> dict[str, Any]:
        """The ``stream:join`` / ``stream:leave`` payload (§5.2)."""
        return {
            "subscription_id": message.subscription_id,
            "stream_name": message.stream_name,
            "group_id": message.group_id,
            "id": message.item_id,
            "context": connection.context,
        }

    # ------------------------------------------------------------------ teardown and closing

    def _teardown(self, client: _Client) -> None:
        """§3.4 step 6 (S10): runs once per connection, from the handler's ``finally``."""
        connection = client.connection
        if self._clients.pop(connection.id, None) is None:
            return
        self.hub.connections.pop(connection.id, None)
        connection.shut()
        held = list(connection.subscriptions.values())
        connection.subscriptions.clear()
        for subscription in held:
            self.hub.remove(subscription)
        if held:
            payloads = [
                {
                    "subscription_id": s.subscription_id,
                    "stream_name": s.stream_name,
                    "group_id": s.group_id,
                    "id": s.item_id,
                    "context": connection.context,
                }
                for s in held
            ]
            self._background(self._fire_leaves(payloads))
        if client.closer is None and not client.ws.closed:
            client.closer = self._background(self._close_ws(client, CLOSE_GOING_AWAY, b""))

    async def _fire_leaves(self, payloads: list[dict[str, Any]]) -> None:
        for payload in payloads:
            await self.module.triggers.run_leave(payload)

    def _on_slow(self, connection: Connection) -> None:
        """§3.9 rule 3: close a slow consumer with 1013 (the queue is already dropped)."""
        self.slow_consumers += 1
        log.warning("stream connection %s is a slow consumer; closing it with 1013", connection.id)
        client = self._clients.get(connection.id)
        if client is not None and client.closer is None:
            client.closer = self._background(self._close_slow(client))

    async def _close_slow(self, client: _Client) -> None:
        """A slow consumer's close (§3.9 rule 3). Its socket is full, so aiohttp's close would wait on a
        drain: the close frame is written straight after what is already buffered, the transport closes
        once that is flushed (the read loop then ends and teardown runs), and it is aborted if the
        flush has not finished within ``close_timeout_s``."""
        wire = client.wire
        wire.write(frames.ws_close_frame(CLOSE_TRY_AGAIN, b"slow consumer"))
        wire.close()
        try:
            async with asyncio.timeout(self.limits.close_timeout_s):
                # The read loop ends when the connection is lost (aiohttp feeds its reader EOF then). If it
                # ended for another reason (the client's close frame, or the drop while the loop waited in
                # ``flushed``), the flush may still be under way, and aiohttp's protocol offers no hook for
                # its end (its slots refuse a patched ``connection_lost``): poll, at most 10 times a second
                # until the timeout, on this rare path.
                await client.wait_read_done()
                while not wire.lost():  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        except TimeoutError:
            log.debug(
                "stream connection %s: slow consumer not flushed in time; aborting", client.connection.id
            )
            wire.abort()

    def _close(self, client: _Client, code: int, reason: bytes) -> None:
        client.connection.shut()
        if client.closer is None:
            client.closer = self._background(self._close_ws(client, code, reason))

    async def _close_ws(self, client: _Client, code: int, reason: bytes) -> None:
        """Close with ``code``; abort the transport if the handshake has not finished in 5 s (§3.9 rule 3)."""
        try:
            async with asyncio.timeout(self.limits.close_timeout_s):
                await client.ws.close(code=code, message=reason)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            log.debug("stream connection %s: close did not finish (%r); aborting", client.connection.id, exc)
            client.wire.abort()
        except asyncio.CancelledError:
            client.wire.abort()
            raise

    def _background(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)
        return task

    async def close_all(self) -> None:
        """Shutdown (§3.4 server close codes): every connection closes with 1001, teardown runs."""
        self._stopping = True
        for client in list(self._clients.values()):
            self._close(client, CLOSE_GOING_AWAY, b"server shutting down")
        await self.idle()

    async def idle(self) -> None:
        """Wait until background closes and leave triggers have finished."""
        while self._teardowns:
            await asyncio.wait(list(self._teardowns))


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "AiohttpWire",
    "StreamServer",
    "first_protocol",
    "url_subscription",
]
