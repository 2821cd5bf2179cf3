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

from pyiii._deadlines import Deadlines
from pyiii.config import HttpSettings
from pyiii.engine.channels import Channel, ChannelRegistry
from pyiii.engine.core import Engine
from pyiii.protocol.codec import may_hold_channel_ref
from pyiii.protocol.errors import InvocationError

from . import response as resp
from .cors import Cors
from .h1 import BadBody, Body, Connection, Request, encode_response
from .request import build_request, is_json, middleware_input, parse_json_body, query_params
from .routing import Match, Route, Router

log = logging.getLogger("pyiii.http")

CHANNEL_BUFFER = 64
#: §11.1: how long a null result waits for a writer to attach to the response channel.
SETTLE_S = 0.2


#: The keys of a handler's payload that hold its channel refs (§8.5).
_CHANNEL_KEYS = ("request_body", "response")


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
    #: The JSON body's text could spell a channel ref (then an in-process handler's SDK walks it all).
    body_may_hold_refs: bool = False
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
        # Created on the engine's loop; kept because asking for the running loop (or the current
        # task without a loop) costs a getpid system call per call on Python 3.11.
        self.loop = asyncio.get_running_loop()
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

    async def handle(self, request: Request, conn: Connection) -> None:
        """Answer one request on its connection (the listener calls this, in order per connection)."""
        headers = request.headers
        preflight = request.method == "OPTIONS" and "access-control-request-method" in headers
        origin = headers.get("origin")
        if preflight:
            cors = self.cors.preflight_headers(origin, headers.get("access-control-request-headers"))
        else:
            cors = self.cors.response_headers(origin)
        state = _Request()
        try:
            try:
                outcome = await self._limited(request, preflight, state)
            except Exception:
                outcome = resp.internal_error()
            if isinstance(outcome, Streamed):
                await self._write_stream(request, conn, outcome, cors)
            else:
                conn.send_reply(request, outcome.status, [*outcome.headers, *cors], outcome.body)
        finally:
            self._release(state)

    def refusal(self) -> bytes:
        """The response to a request the parser refused: 400 with the envelope and the CORS headers
        of a request without an origin (its headers were never delivered); the connection closes."""
        reply = resp.protocol_error(400)
        return encode_response(reply.status, [*reply.headers, *self.cors.response_headers(None)], reply.body)

    def _release(self, state: _Request) -> None:
        for task in state.tasks:
            if not task.done():
                task.cancel()
        for channel_id in state.channel_ids:
            self.channels.remove(channel_id)

    async def _write_stream(
        self, request: Request, conn: Connection, s: Streamed, cors: resp.Headers
    ) -> None:
        queue = s.channel.queue
        first: list[bytes] = [s.first]

        async def chunks() -> bytes | None:
            if first:
                return first.pop()
            while True:
                item = await queue.get()
                if item is None:
                    return None
                if not item[0]:
                    return item[1]

        await conn.send_stream(request, s.status, [*s.headers, *cors], chunks)

    # ------------------------------------------------------------------ layer 3: slot and deadline

    async def _limited(self, request: Request, preflight: bool, state: _Request) -> resp.Reply | Streamed:
        await self.slots.acquire()
        try:
            if preflight:  # §14: answered here, never routed
                return resp.Reply(200)
            slot = self.deadlines.add(state, self.timeout_s, asyncio.current_task(self.loop))
            try:
                return await self._pipeline(request, state)
            except asyncio.CancelledError:
                # The deadline cancels the task at the await it is suspended in, which is inside
                # the pipeline; any other cancellation (the client went away) propagates. (The task
                # is not kept in a local: the propagating error's traceback holds this frame, and
                # the task holds the error, a cycle that kept the request alive after the client left.)
                if state.expired:
                    task = asyncio.current_task(self.loop)
                    if task is not None:
                        task.uncancel()
                        return resp.timeout(state.middleware_pending)
                raise
            finally:
                self.deadlines.remove(slot, state)
        finally:
            self.slots.release()

    # ------------------------------------------------------------------ layer 4: route to response

    async def _pipeline(self, request: Request, state: _Request) -> resp.Reply | Streamed:
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
        headers = request.headers
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
        self, request: Request, channel: Channel, state: _Request
    ) -> tuple[Any, resp.Reply | None]:
        """§8.4: JSON bodies are buffered under ``body_limit``; others stream to the channel."""
        body = request.body
        if not is_json(request.headers.get("content-type")):
            if body is not None:
                task = asyncio.ensure_future(_pump_body(body, channel))
                state.tasks.append(task)
            else:
                channel.preload([None])
            return None, None
        limit = self.body_limit
        length = request.content_length
        if length is not None and length > limit:
            return None, resp.payload_too_large(limit)
        try:
            raw = b"" if body is None else await _read_limited(body, limit)
        except BadBody:
            return None, resp.protocol_error(400)
        if raw is None:
            return None, resp.payload_too_large(limit)
        channel.preload([(False, raw), None] if raw else [None])
        if raw:
            state.body_may_hold_refs = may_hold_channel_ref(raw)
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
        # Headers, query and path parameters are strings: the refs are the two channels, and the
        # body's if its text could spell one (then nothing is said: an in-process SDK walks it all).
        call = self.engine.invoke_future(
            binding.function_id,
            payload,
            namespace=binding.namespace,
            metadata=binding.metadata,
            ref_keys=None if state.body_may_hold_refs else _CHANNEL_KEYS,
        )
        state.tasks.append(call)
        loop = self.loop
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


async def _read_limited(body: Body, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as more than ``limit`` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await body.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def _pump_body(body: Body, channel: Channel) -> None:
    """Forward a non-JSON body as binary items; a full channel pauses reading (backpressure). If the
    client goes away mid-body, or the rest of the body is malformed, the channel is never closed:
    a truncated body must not look complete (the request ends with the connection, or its handler
    answers, or its deadline passes)."""
    try:
        async for chunk in body.iter_any():
            await channel.put((False, chunk))
    except (ConnectionError, BadBody):
        return
    await channel.put(None)
