"""WebSocket transport (spec/protocol.md §2, §10.2, §10.5): aiohttp client with reconnect.

The reconnect loop takes its delays from :func:`pyiii.sdk.backoff.backoff_delays` (a fresh generator
after every successful connect, §10.5 rule 7). Each connection has one write path (STYLE habit 2):
:meth:`RemoteTransport.send` encodes with msgspec, checks the 64 MiB limit and hands the frame to the
connection, which writes the frames of one loop iteration together, in order (one socket write;
:class:`~pyiii.protocol.wsframes.FrameBatch`). Frames are UTF-8 JSON text frames;
inbound frames are decoded with :func:`pyiii.protocol.codec.decode_engine_frame`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from pyiii._ids import id_source
from pyiii.protocol.codec import Ignored, decode_engine_frame, encode
from pyiii.protocol.messages import WorkerMessage
from pyiii.protocol.wsframes import FrameBatch
from pyiii.sdk.backoff import backoff_delays
from pyiii.sdk.transport import PayloadTooLarge, Transport, TransportEvents
from pyiii.sdk.types import ReconnectionConfig

__all__ = ["MAX_MESSAGE_BYTES", "BackgroundLoop", "RemoteTransport", "upgrade_headers"]

log = logging.getLogger("pyiii.sdk.remote")

#: Inbound and outbound message limit (§10.5 rule 11).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: WebSocket ping interval (§2.4 rule 6), and how long its pong may take before the connection is
#: taken for dead and replaced (the official Python SDK's 20 s and 20 s).
HEARTBEAT_S = 20.0
PONG_TIMEOUT_S = 20.0


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class BackgroundLoop:
    """An event loop running forever in a daemon thread (uvloop when available)."""

    def __init__(self, name: str = "pyiii-sdk") -> None:
        self.loop = _new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def stop_soon(self) -> None:
        """Stop the loop after the current callbacks (callable from any thread, never blocks)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and join the thread (not from the loop's own thread)."""
        self.stop_soon()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)


def upgrade_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """``InitOptions.headers``, plus ``Authorization: Bearer $III_TOKEN`` when set and not given (§10.2)."""
    out = dict(headers or {})
    token = os.environ.get("III_TOKEN", "").strip()
    if token and not any(key.lower() == "authorization" for key in out):
        out["Authorization"] = f"Bearer {token}"
    return out


def _socket_transport(ws: aiohttp.ClientWebSocketResponse[Any]) -> Any:
    """The socket's transport, which aiohttp keeps on its frame writer; None on an aiohttp version
    that does not, and then every frame goes through aiohttp's own ``send_frame``."""
    return getattr(getattr(ws, "_writer", None), "transport", None)


class _Connection:
    """One open socket: its outbound frames, batched into one socket write per loop iteration.

    Frames are masked and framed here (:class:`~pyiii.protocol.wsframes.FrameBatch`) instead of by
    aiohttp, which writes every message to the socket at once; pings, pongs and the close frame still
    go through aiohttp.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.ws = ws
        transport = _socket_transport(ws)
        self.frames = FrameBatch(transport, loop, mask=True) if transport is not None else None
        self.keepalive: asyncio.Task[None] | None = None
        #: Resolved by the read loop when the pong of the keepalive's ping arrives.
        self.pong: asyncio.Future[None] | None = None
        #: Set when the keepalive gave up on the socket (its close is already under way).
        self.dead = False
        self._fallback: asyncio.Task[None] | None = None

    def write(self, data: bytes, late: bool = False) -> None:
        frames = self.frames
        if frames is None:
            self._write_fallback(data)
        elif late:
            frames.write_late(data)  # False: the socket is closing; the read loop reports it
        else:
            frames.write(data)

    def flush(self) -> None:
        if self.frames is not None:
            self.frames.flush()

    def _write_fallback(self, data: bytes) -> None:
        previous = self._fallback

        async def write() -> None:
            if previous is not None:
                await previous  # keep the order
            try:
                await self.ws.send_frame(data, WSMsgType.TEXT)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                log.debug("write failed: %s", exc)  # the read loop reports the dead socket

        self._fallback = asyncio.ensure_future(write())


class RemoteTransport(Transport):
    """A worker socket to ``url`` that reconnects with backoff until closed."""

    def __init__(self, url: str, headers: dict[str, str], reconnection: ReconnectionConfig) -> None:
        self._url = url
        self._headers = headers
        self._reconnection = reconnection
        self._events: TransportEvents | None = None
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = False
        # Invocation ids: a random UUID v4 prefix and a counter, as in the in-process transport: still
        # UUID v4-shaped and unique (§10.5 rule 5, D6), without uuid4()'s getrandom syscall and UUID
        # object on every call.
        self._id_prefix, self._ids = id_source()

    @property
    def address(self) -> str:
        return self._url

    def new_invocation_id(self) -> str:
        return self._id_prefix + hex(next(self._ids))[3:]

    def channel_base_url(self) -> str | None:
        url = self._url.split("?", 1)[0].rstrip("/")
        return url or None

    def start(self, events: TransportEvents) -> None:
        self._events = events
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pyiii-connect {self._url}")

    def send(self, message: WorkerMessage) -> None:
        self._write(message, late=False)

    def send_late(self, message: WorkerMessage) -> None:
        """Written after this iteration's other messages, in the same socket write: the engine then
        handles a handler's ``stream::send`` before the log record the handler wrote first (about
        0.1 ms sooner to the stream's clients with the live todo example, bench/RESULTS.md)."""
        self._write(message, late=True)

    def _write(self, message: WorkerMessage, *, late: bool) -> None:
        data = encode(message)
        if len(data) > MAX_MESSAGE_BYTES:
            raise PayloadTooLarge(len(data), MAX_MESSAGE_BYTES)
        conn = self._conn
        if conn is None:  # raced with a close; the client only sends while connected
            return
        conn.write(data, late)

    async def close(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None:
            conn.flush()  # what was sent goes out before the close frame
            with contextlib.suppress(Exception):
                await conn.ws.close(code=aiohttp.WSCloseCode.OK)
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ the reconnect loop

    async def _run(self) -> None:
        events = self._events
        assert events is not None
        delays: Iterator[float] | None = None
        first = True
        # ``connect`` bounds the handshake; an open socket has no overall deadline.
        timeout = aiohttp.ClientTimeout(total=None, connect=10.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._closing:
                events.state_changed("connecting" if first else "reconnecting")
                try:
                    ws = await session.ws_connect(
                        self._url,
                        headers=self._headers,
                        # Pings and pongs are handled here (_keepalive, _read_loop): aiohttp's
                        # heartbeat costs a loop callback and a timer reset for every frame received.
                        autoping=False,
                        max_msg_size=MAX_MESSAGE_BYTES,
                        decode_text=False,
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # refused, DNS, handshake 4xx/5xx, timeouts
                    log.log(
                        logging.WARNING if first else logging.DEBUG,
                        "cannot connect to %s: %s",
                        self._url,
                        exc,
                    )
                    first = False
                    if delays is None:
                        delays = backoff_delays(self._reconnection)
                    if not await self._wait_before_retry(delays):
                        return
                    continue
                first = False
                delays = None  # §10.5 rule 7: reset after a successful connect
                await self._serve(ws)
                if self._closing:
                    return
                delays = backoff_delays(self._reconnection)
                if not await self._wait_before_retry(delays):
                    return

    async def _wait_before_retry(self, delays: Iterator[float]) -> bool:
        events = self._events
        assert events is not None
        delay = next(delays, None)
        if delay is None:
            log.error("giving up on %s after %d retries", self._url, self._reconnection.max_retries)
            events.state_changed("failed")
            return False
        events.state_changed("reconnecting")
        log.debug("reconnecting to %s in %.0f ms", self._url, delay * 1000)
        await asyncio.sleep(delay)
        return not self._closing

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        """Run one connection until it closes; the client replays from ``connection_opened``."""
        events = self._events
        assert events is not None
        loop = asyncio.get_running_loop()
        conn = _Connection(ws, loop)
        conn.keepalive = loop.create_task(self._keepalive(conn))
        self._conn = conn
        self.connected = True
        log.info("connected to %s", self._url)
        try:
            events.connection_opened()
            await self._read_loop(ws, events)
        finally:
            self.connected = False
            self._conn = None
            conn.keepalive.cancel()
            if not ws.closed and not conn.dead:
                conn.flush()
                with contextlib.suppress(Exception):
                    await ws.close()
            log.info("disconnected from %s (close code %s)", self._url, ws.close_code)
            events.connection_lost()

    async def _keepalive(self, conn: _Connection) -> None:
        """Ping every ``HEARTBEAT_S``; without a pong within ``PONG_TIMEOUT_S`` close the socket, which
        ends the read loop, and the reconnect loop replaces the connection."""
        loop = asyncio.get_running_loop()
        ws = conn.ws
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            conn.pong = pong = loop.create_future()
            try:
                await ws.ping()
                await asyncio.wait_for(pong, PONG_TIMEOUT_S)
            except TimeoutError:
                log.warning("no pong from %s within %g s; reconnecting", self._url, PONG_TIMEOUT_S)
                conn.dead = True
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
                return
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                return  # the socket is gone; the read loop reports it
            finally:
                conn.pong = None

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse[Any], events: TransportEvents) -> None:
        received = events.message_received
        while True:
            frame = await ws.receive()
            kind = frame.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                message: Any = decode_engine_frame(frame.data)
                if type(message) is Ignored:
                    log.debug("frame ignored: %s", message.reason)
                    continue
                try:
                    received(message)
                except Exception:  # a client bug must not kill the connection
                    log.exception("failed to handle %s", type(message).__name__)
            elif kind is WSMsgType.PING:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                    await ws.pong(frame.data)
            elif kind is WSMsgType.PONG:
                conn = self._conn
                pong = conn.pong if conn is not None else None
                if pong is not None and not pong.done():
                    pong.set_result(None)
            elif kind is WSMsgType.ERROR:
                log.warning("socket error on %s: %s", self._url, ws.exception())
                return
            elif kind in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
