"""The HTTP front door: the request pipeline of spec/http.md §3 as layers, outermost first.

1. CORS headers on every response (§14) — :meth:`HttpServer.handle`, and for requests the HTTP
   parser refuses, :class:`Listener` (JSON envelope as well);
2. the error envelope: an unexpected exception becomes ``500 INTERNAL_ERROR`` — ``handle``;
3. the concurrency slot and the deadline (§13) — :meth:`HttpServer._limited`;
4. the preflight, routing (404/405), global middleware, body, condition, per-route middleware and
   the handler with its response channel (§7-§12) — :meth:`HttpServer._pipeline`.

A layer returns a :class:`~.response.Reply` (complete response) or a :class:`Streamed` (status line
ready, body still flowing from the response channel). Streams are written after the concurrency slot
is released (§13.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from pyiii._deadlines import Deadlines
from pyiii.config import HttpSettings
from pyiii.engine.channels import Channel, ChannelRegistry
from pyiii.engine.core import Engine
from pyiii.protocol.errors import InvocationError

from . import response as resp
from .cors import Cors
from .request import build_request, headers_of, is_json, middleware_input, parse_json_body, query_params
from .routing import Match, Route, Router

log = logging.getLogger("pyiii.http")

CHANNEL_BUFFER = 64
#: §11.1: how long a null result waits for a writer to attach to the response channel.
SETTLE_S = 0.2


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Limits of aiohttp's HTTP/1 request parser (the C parser). A request over them is refused by the
    parser before the pipeline (§3) runs, with **400** and the JSON envelope
    ``{"error":{"code":"BAD_REQUEST","message":"Bad Request"}}`` plus the CORS headers
    (:class:`Listener`), like any other malformed request (unknown method token, bad request line).
    The defaults are aiohttp's.
    """

    #: Bytes in the request line (method, target, version).
    max_line_size: int = 8190
    #: Bytes in one header line (name and value).
    max_field_size: int = 8190
    #: Number of header lines.
    max_headers: int = 128


PARSER_LIMITS = ParserLimits()


class _ProtocolHandler(RequestHandler):
    """aiohttp's connection handler, whose errors (parser errors such as an unknown method token, a
    malformed request line or headers over :class:`ParserLimits`; uncaught failures) are sent with the
    §13.3 JSON envelope and the CORS headers (§3 step 10, §14) instead of aiohttp's plain text."""

    _manager: Listener

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: logs the error; raises ConnectionError if a response was already started.
        super().handle_error(request, status, exc, message)
        if status == 500:
            reply = resp.internal_error()
        elif status == 504:
            reply = resp.timeout(False)
        else:
            reply = resp.protocol_error(status)
        out = CIMultiDict(reply.headers)
        out.extend(self._manager.app.cors.response_headers(request.headers.get(hdrs.ORIGIN)))
        response = web.Response(status=reply.status, headers=out, body=reply.body)
        response.force_close()
        return response


class Listener(web.Server):
    """The low-level aiohttp server of :class:`HttpServer`: its connections use
    :class:`_ProtocolHandler`, and its parser the given :class:`ParserLimits`."""

    def __init__(self, app: HttpServer, limits: ParserLimits = PARSER_LIMITS, **kwargs: Any) -> None:
        super().__init__(
            app.handle,
            max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size,
            max_headers=limits.max_headers,
            **kwargs,
        )
        self.app = app

    def __call__(self) -> RequestHandler:
        return _ProtocolHandler(self, loop=self._loop, **self._kwargs)


@dataclass(slots=True)
class Streamed:
    """A committed streamed response (§12 rule 2): the first chunk is in hand."""

    status: int
    headers: resp.Headers
    first: bytes
    channel: Channel


@dataclass(slots=True, eq=False)
class _Request:
    """Per-request resources, released by the outermost layer whatever the outcome."""

    middleware_pending: bool = False
    #: When the §11.1 settle window ends (loop time), once it started.
    settle_until: float | None = None
    #: The deadline (§13.1) cancelled the request's task.
    expired: bool = False
    channel_ids: list[str] = field(default_factory=list)
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)


class _Slots:
    """``concurrency_request_limit`` (§13.2): a counter, and a FIFO of waiters only when it is full
    (an ``asyncio.Semaphore`` cost a generator per acquire on 3.11). A released slot is handed to
    the first waiter directly."""

    __slots__ = ("_waiters", "free")

    def __init__(self, limit: int) -> None:
        self.free = max(1, limit)
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


def _expire_request(state: _Request, task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        state.expired = True
        task.cancel()


def _log_late_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("ignored handler result of a streamed response: %s", task.exception())


class HttpServer:
    def __init__(self, engine: Engine, router: Router, channels: ChannelRegistry, settings: HttpSettings):
        self.engine = engine
        self.router = router
        self.channels = channels
        self.settings = settings
        self.cors = Cors(settings.cors)
        self.slots = _Slots(settings.concurrency_request_limit)
        self.timeout_s = settings.default_timeout_ms / 1000
        # Request deadlines on 10 ms slots (one loop timer per slot, not per request).
        self.deadlines = Deadlines(None, _expire_request)
        self.body_limit = settings.body_limit_bytes
        self.global_middleware = tuple(m.function_id for m in settings.middleware if m.phase == "preHandler")

    # ------------------------------------------------------------------ layers 1-2: CORS, error envelope

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = request.headers
        preflight = request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in headers
        origin = headers.get(hdrs.ORIGIN)
        if preflight:
            cors = self.cors.preflight_headers(origin, headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS))
        else:
            cors = self.cors.response_headers(origin)
        state = _Request()
        try:
            try:
                outcome = await self._limited(request, preflight, state)
            except Exception:
                outcome = resp.internal_error()
            if isinstance(outcome, Streamed):
                return await self._write_stream(request, outcome, cors)
            out = CIMultiDict(outcome.headers)
            out.extend(cors)
            return web.Response(status=outcome.status, headers=out, body=outcome.body)
        finally:
            self._release(state)

    def _release(self, state: _Request) -> None:
        for task in state.tasks:
            if not task.done():
                task.cancel()
        for channel_id in state.channel_ids:
            self.channels.remove(channel_id)

    async def _write_stream(
        self, request: web.BaseRequest, s: Streamed, cors: resp.Headers
    ) -> web.StreamResponse:
        out = CIMultiDict(s.headers)
        out.extend(cors)
        response = web.StreamResponse(status=s.status, headers=out)
        await response.prepare(request)
        send = request.method != "HEAD"  # HEAD: chunks are read and discarded (§12)
        try:
            if send:
                await response.write(s.first)
            queue = s.channel.queue
            while True:
                item = await queue.get()
                if item is None:
                    break
                if send and not item[0]:
                    await response.write(item[1])
            await response.write_eof()
        except ConnectionError:
            log.debug("client went away during a streamed response")
        return response

    # ------------------------------------------------------------------ layer 3: slot and deadline

    async def _limited(
        self, request: web.BaseRequest, preflight: bool, state: _Request
    ) -> resp.Reply | Streamed:
        await self.slots.acquire()
        try:
            if preflight:  # §14: answered here, never routed
                return resp.Reply(200)
            task = asyncio.current_task()
            slot = self.deadlines.add(state, self.timeout_s, task)
            try:
                return await self._pipeline(request, state)
            except asyncio.CancelledError:
                # The deadline cancels the task at the await it is suspended in, which is inside
                # the pipeline; any other cancellation (the client went away) propagates.
                if state.expired and task is not None:
                    task.uncancel()
                    return resp.timeout(state.middleware_pending)
                raise
            finally:
                self.deadlines.remove(slot, state)
        finally:
            self.slots.release()

    # ------------------------------------------------------------------ layer 4: route to response

    async def _pipeline(self, request: web.BaseRequest, state: _Request) -> resp.Reply | Streamed:
        path, _, query_string = request.raw_path.partition("?")
        found = self.router.resolve(request.method, path)
        if found is None:
            return resp.not_found()
        if isinstance(found, list):
            return resp.method_not_allowed(found)
        match: Match = found
        route = match.route
        namespace = route.binding.namespace
        method = request.method
        query = query_params(query_string)
        headers = headers_of(request.raw_headers)
        path_params = match.path_params()

        mw_input = None
        if self.global_middleware or route.middleware_function_ids:
            mw_input = middleware_input(method, query, path_params, headers)
        for function_id in self.global_middleware:
            early = await self._middleware(function_id, mw_input, namespace, state)
            if early is not None:
                return early

        body_channel, response_channel, refs = self._open_channels(state)
        body, early = await self._read_body(request, body_channel, state)
        if early is not None:
            return early
        payload = build_request(
            api_path=route.template.api_path,
            method=method,
            query=query,
            path_params=path_params,
            headers=headers,
            body=body,
        )
        if route.condition_function_id is not None:
            try:
                verdict = await self.engine.invoke(
                    route.condition_function_id, dict(payload), namespace=namespace
                )
            except InvocationError as exc:
                return resp.failure(exc.code, exc.message)
            if verdict is False:
                return resp.condition_not_met()
        for function_id in route.middleware_function_ids:
            early = await self._middleware(function_id, mw_input, namespace, state)
            if early is not None:
                return early
        payload["request_body"] = refs[0]
        payload["response"] = refs[1]
        return await self._run_handler(route, payload, response_channel, state)

    async def _middleware(
        self, function_id: str, data: Any, namespace: str, state: _Request
    ) -> resp.Reply | None:
        """One middleware call (§10.3): ``None`` to continue, or the response to send."""
        # Left set if the deadline cancels the call: the 504 then names the middleware (§13.1).
        state.middleware_pending = True
        try:
            result = await self.engine.invoke(function_id, data, namespace=namespace)
        except InvocationError as exc:
            state.middleware_pending = False
            return resp.failure(exc.code, exc.message)
        state.middleware_pending = False
        action = result.get("action") if isinstance(result, dict) else None
        if action == "respond":
            return resp.from_respond(result.get("response"))
        if action != "continue":
            log.warning("middleware %s returned no valid action; continuing", function_id)
        return None

    def _open_channels(
        self, state: _Request
    ) -> tuple[Channel, Channel, tuple[dict[str, Any], dict[str, Any]]]:
        """§8.5: ``request_body`` (engine writes) and ``response`` (engine reads); the worker's ends.
        Their queues exist only once used (a JSON request whose handler ignores both costs none)."""
        registry = self.channels
        # Removed when the request ends (_release), so outside the unattached-channel sweep.
        body_channel = registry.open(CHANNEL_BUFFER, engine_end="write", expires=False)
        response_channel = registry.open(CHANNEL_BUFFER, engine_end="read", expires=False)
        body_channel.writer_attached = True  # the engine is the writer
        response_channel.reader_attached = True  # the engine is the reader
        state.channel_ids += (body_channel.id, response_channel.id)
        refs = (registry.ref(body_channel, "read"), registry.ref(response_channel, "write"))
        return body_channel, response_channel, refs

    async def _read_body(
        self, request: web.BaseRequest, channel: Channel, state: _Request
    ) -> tuple[Any, resp.Reply | None]:
        """§8.4: JSON bodies are buffered under ``body_limit``; others stream to the channel."""
        if not is_json(request.headers.get(hdrs.CONTENT_TYPE)):
            if request.body_exists:
                task = asyncio.ensure_future(_pump_body(request, channel))
                state.tasks.append(task)
            else:
                channel.preload([None])
            return None, None
        limit = self.body_limit
        length = request.content_length
        if length is not None and length > limit:
            return None, resp.payload_too_large(limit)
        raw = await _read_limited(request, limit)
        if raw is None:
            return None, resp.payload_too_large(limit)
        channel.preload([(False, raw), None] if raw else [None])
        return parse_json_body(raw), None

    async def _run_handler(
        self, route: Route, payload: dict[str, Any], channel: Channel, state: _Request
    ) -> resp.Reply | Streamed:
        """§11-§12: the handler result and the response channel, whichever decides first.

        No task per request: the call is the engine's own future, and one wake-up future is
        resolved by whichever comes first of the result (its done-callback), an item on the response
        channel (:meth:`Channel.put`) or the end of the §11.1 settle window. When the result and
        channel items are both there at a wake-up, queued items are applied first (in order), then
        a non-null result decides unless a binary chunk already committed the stream."""
        binding = route.binding
        call = self.engine.invoke_future(
            binding.function_id, payload, namespace=binding.namespace, metadata=binding.metadata
        )
        state.tasks.append(call)
        loop = asyncio.get_running_loop()
        head = resp.StreamHead()
        closed = False
        item_seen = False
        # The current wake-up future; the call's done-callback resolves whichever is current.
        current: list[asyncio.Future[None] | None] = [None]
        call.add_done_callback(lambda _call: _wake(current[0]))
        while True:
            if channel.used:
                queue = channel.queue
                while not queue.empty():
                    item = queue.get_nowait()
                    if item is None:
                        closed = True
                        break
                    item_seen = True
                    is_text, data = item
                    if not is_text:  # rule 2: the first binary chunk commits the stream
                        state.tasks.remove(call)
                        call.add_done_callback(_log_late_failure)
                        return Streamed(head.status, head.header_lines(), data, channel)
                    head.apply(data)  # rule 1
            settle = False
            if call.done():
                try:
                    result = call.result()
                except InvocationError as exc:  # rule 5
                    return resp.failure(exc.code, exc.message)
                if result is not None:  # rule 4
                    return resp.from_result(result)
                if closed:  # rule 3
                    return resp.Reply(head.status, head.header_lines())
                if not (item_seen or channel.writer_attached):
                    # §11.1: nobody attached within the window. Only the window's end decides: a
                    # result that was already there when the loop began also wakes it once.
                    if state.settle_until is None:
                        state.settle_until = loop.time() + SETTLE_S
                    elif loop.time() >= state.settle_until:
                        return resp.Reply(204)
                    settle = True
                # rule 6: otherwise wait for the first binary chunk or the close
            elif closed:  # rule 3: closed before any binary chunk; a later result is ignored
                return resp.Reply(head.status, head.header_lines())
            wake: asyncio.Future[None] = loop.create_future()
            channel.waiter = current[0] = wake
            timer = loop.call_at(state.settle_until, _wake, wake) if settle and state.settle_until else None
            try:
                await wake
            finally:
                channel.waiter = current[0] = None
                if timer is not None:
                    timer.cancel()


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


async def _read_limited(request: web.BaseRequest, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as more than ``limit`` bytes arrived."""
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def _pump_body(request: web.BaseRequest, channel: Channel) -> None:
    """Forward a non-JSON body as binary items; a full channel pauses reading (backpressure)."""
    async for chunk in request.content.iter_any():
        await channel.put((False, chunk))
    await channel.put(None)
