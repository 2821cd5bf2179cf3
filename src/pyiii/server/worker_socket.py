"""The worker manager's front door: ``/`` (worker protocol), ``/otel`` (telemetry) on aiohttp.

Each accepted socket becomes a :class:`RemotePeer`. Its read loop decodes frames in arrival order and
hands them to the engine (spec/protocol.md §3.1 rule 6); every outbound frame goes through
:meth:`RemotePeer.send`, which batches the frames of one loop iteration into one socket write
(:class:`~pyiii.protocol.wsframes.FrameBatch`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from pyiii.engine.peer import MAX_MESSAGE_BYTES, FrameTooLarge, Peer
from pyiii.engine.rbac import Authorizer, AuthRefused
from pyiii.protocol.codec import decode_worker_frame, encode
from pyiii.protocol.messages import TELEMETRY_PREFIXES, ErrorBody, ErrorMessage
from pyiii.protocol.wsframes import FrameBatch

if TYPE_CHECKING:
    from pyiii.engine.core import Engine

log = logging.getLogger("pyiii.server")

CLOSE_SERVICE_RESTART = 1012  # D19: every SDK generation reconnects after it
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
#: aiohttp refuses a message whose size is >= max_msg_size; §2.4 rule 5 accepts up to 64 MiB inclusive.
_MAX_MSG_SIZE = MAX_MESSAGE_BYTES + 1


def _ping_interval_s() -> float:
    # §2.4 rule 6: every 20 s. Tests shorten it with PYIII_PING_INTERVAL_MS.
    return int(os.environ.get("PYIII_PING_INTERVAL_MS", "20000")) / 1000


@dataclass(frozen=True)
class ListenerAuth:
    """Auth of one worker-manager listener (§2.2, §2.3). ``rbac`` marks an RBAC listener: every
    connection gets an :class:`Authorizer` built from the auth function's result and ``expose``."""

    auth_token: str | None = None
    auth_function_id: str | None = None
    rbac: bool = False
    expose: tuple[Any, ...] = ()


#: Bytes the engine holds for a worker beyond one maximal message (its ``send_limit``) before it
#: treats the worker as stuck: a worker that stops reading its socket (a blocked event loop, say)
#: while calls keep being routed to it would otherwise grow the engine's memory without bound.
SEND_BUFFER_SLACK = 64 * 1024 * 1024


class RemotePeer(Peer):
    """A worker connected over WebSocket. One that leaves more than ``send_limit`` +
    :data:`SEND_BUFFER_SLACK` bytes unread in the engine's send buffer is disconnected (the
    connection is aborted: its calls fail with ``invocation_stopped`` and an SDK reconnects)."""

    kind = "remote"

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, ip_address: str | None
    ) -> None:
        super().__init__(ip_address=ip_address)
        self._ws = ws
        loop = asyncio.get_running_loop()
        #: Data frames go out in one write per loop iteration (pyiii/protocol/wsframes.py); control
        #: frames (ping, pong, close) through aiohttp.
        self._frames = FrameBatch(transport, loop, mask=False)
        self._transport = transport
        self._closing = False
        self._pong_waiters: list[asyncio.Future[None]] = []
        self.last_pong = loop.time()

    # the one write path
    def send(self, message: Any) -> None:
        if self._closing:
            return
        data = encode(message)
        if len(data) > self.send_limit:
            raise FrameTooLarge(len(data), self.send_limit)
        if self._transport.get_write_buffer_size() > self.send_limit + SEND_BUFFER_SLACK:
            self._stuck()
            return
        if not self._frames.write(data):
            self._closing = True  # the socket is gone; the read loop runs the cleanup

    def _stuck(self) -> None:
        log.warning(
            "worker %s reads nothing: %d bytes wait in its send buffer; disconnecting it",
            self.display_name,
            self._transport.get_write_buffer_size(),
        )
        self._closing = True
        self._transport.abort()  # the read loop sees the connection lost and runs the cleanup

    def flush(self) -> None:
        """Put the frames sent so far on the socket now (before a close frame)."""
        self._frames.flush()

    async def close(self, code: int, reason: str = "") -> None:
        if self._closing:
            return
        self._frames.flush()  # queued frames (e.g. results) go out before the close frame
        self._closing = True
        await self._ws.close(code=code, message=reason.encode()[:120])

    async def probe(self, timeout_s: float) -> bool:
        if self._closing or self._ws.closed:
            return False
        fut = asyncio.get_running_loop().create_future()
        self._pong_waiters.append(fut)
        try:
            await self._ws.ping()
            await asyncio.wait_for(fut, timeout_s)
            return True
        except (TimeoutError, ConnectionError, RuntimeError):
            return False
        finally:
            if fut in self._pong_waiters:
                self._pong_waiters.remove(fut)

    def got_pong(self, now: float) -> None:
        self.last_pong = now
        waiters, self._pong_waiters = self._pong_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def keepalive(self, interval_s: float) -> None:
        """Ping every ``interval_s``; close with 1012 after two intervals without a pong (D18)."""
        loop = asyncio.get_running_loop()
        ws = self._ws
        while not self._closing:
            await asyncio.sleep(interval_s)
            if loop.time() - self.last_pong > 2 * interval_s:
                log.info("worker %s missed its pongs; closing", self.display_name)
                self._closing = True
                self._frames.flush()
                await ws.close(code=CLOSE_SERVICE_RESTART, message=b"ping timeout")
                return
            try:
                await ws.ping()
            except (ConnectionError, RuntimeError):
                return


def _peer_ip(request: web.Request) -> str | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return peer[0] if peer else None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _token_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _authorize(
    engine: Engine, auth: ListenerAuth, request: web.Request, allow_query_token: bool
) -> tuple[str | None, Authorizer | None]:
    """Run §2.2 auth: (error message or None when accepted, the connection's authorizer)."""
    if auth.auth_token is not None:
        given = _bearer(request)
        if given is None and allow_query_token:
            given = request.query.get("token")
        if not _token_ok(auth.auth_token, given):
            return "missing or invalid bearer token", None
    result: dict[str, Any] = {}
    if auth.auth_function_id is not None:
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        payload = {"headers": dict(request.headers), "query_params": query, "ip_address": _peer_ip(request)}
        try:
            answer = await engine.invoke(auth.auth_function_id, payload)
        except Exception as exc:
            return f"auth function failed: {exc}", None
        if not isinstance(answer, dict):
            return "auth function refused the connection", None
        result = answer
    if not auth.rbac:
        return None, None
    try:
        return None, Authorizer(result, auth.expose)
    except AuthRefused as exc:
        return str(exc), None


async def _refuse(ws: web.WebSocketResponse, message: str) -> None:
    frame = encode(ErrorMessage(error=ErrorBody(code="AUTH_ERROR", message=message)))
    await ws.send_frame(frame, WSMsgType.TEXT)
    await ws.close(code=CLOSE_POLICY, message=b"unauthorized")


def make_worker_handler(engine: Engine, auth: ListenerAuth) -> Any:
    """The aiohttp handler of ``GET /``."""

    async def worker_socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=_MAX_MSG_SIZE, autoping=False, decode_text=False)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="Upgrade Required: this is the iii worker socket")
        await ws.prepare(request)
        refusal, authorizer = await _authorize(engine, auth, request, allow_query_token=True)
        if refusal is not None:
            await _refuse(ws, refusal)
            return ws
        transport = request.transport
        if transport is None:  # the client left during the handshake
            return ws
        peer = RemotePeer(ws, transport, _peer_ip(request))
        peer.authorizer = authorizer
        peer.send(engine.attach(peer))
        pinger = asyncio.create_task(peer.keepalive(_ping_interval_s()))
        loop = asyncio.get_running_loop()
        try:
            await _read_loop(engine, peer, ws, loop)
        finally:
            engine.detach(peer)
            peer._closing = True
            pinger.cancel()
            if not ws.closed:
                peer.flush()
                await ws.close(code=CLOSE_SERVICE_RESTART)
        return ws

    return worker_socket


async def _read_loop(
    engine: Engine, peer: RemotePeer, ws: web.WebSocketResponse, loop: asyncio.AbstractEventLoop
) -> None:
    handle = engine.handle
    while True:
        msg = await ws.receive()
        kind = msg.type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            data = msg.data
            if kind is WSMsgType.BINARY and data[:4] in TELEMETRY_PREFIXES:
                engine.telemetry(data)
                continue
            decoded = decode_worker_frame(data)
            try:
                pending = handle(peer, decoded)
                if pending is not None:
                    await pending
            except Exception:
                # A bug in handling one message must not take the connection down.
                log.exception("error handling a message from %s", peer.display_name)
            peer.last_pong = loop.time()  # any inbound traffic proves liveness
        elif kind is WSMsgType.PING:
            await ws.pong(msg.data)
            peer.last_pong = loop.time()
        elif kind is WSMsgType.PONG:
            peer.got_pong(loop.time())
        else:  # CLOSE, CLOSING, CLOSED, ERROR (including 1009 for an oversized message)
            if kind is WSMsgType.ERROR:
                log.info("worker %s socket error: %s", peer.display_name, ws.exception())
            return


def make_otel_handler(engine: Engine, auth: ListenerAuth) -> Any:
    """The aiohttp handler of ``GET /otel`` (§8): telemetry only, never a worker."""

    async def otel_socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=_MAX_MSG_SIZE, decode_text=False)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="Upgrade Required")
        await ws.prepare(request)
        refusal, _ = await _authorize(engine, auth, request, allow_query_token=False)
        if refusal is not None:
            await _refuse(ws, refusal)
            return ws
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                engine.telemetry(msg.data)
        return ws

    return otel_socket


def worker_manager_app(engine: Engine, auth: ListenerAuth, channels_handler: Any = None) -> web.Application:
    """One listener's aiohttp application; several listeners share one engine (§2.1)."""
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    app.router.add_get("/", make_worker_handler(engine, auth))
    app.router.add_get("/otel", make_otel_handler(engine, auth))
    if channels_handler is not None:
        app.router.add_get("/ws/channels/{channel_id}", channels_handler)
    return app
