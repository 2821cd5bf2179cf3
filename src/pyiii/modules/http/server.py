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
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

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


@dataclass(slots=True)
class _Request:
    """Per-request resources, released by the outermost layer whatever the outcome."""

    middleware_pending: bool = False
    channel_ids: list[str] = field(default_factory=list)
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)


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
        self.slots = asyncio.Semaphore(max(1, settings.concurrency_request_limit))
        self.timeout_s = settings.default_timeout_ms / 1000
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
        async with self.slots:
            try:
                async with asyncio.timeout(self.timeout_s) as deadline:
                    if preflight:  # §14: answered here, never routed
                        return resp.Reply(200)
                    return await self._pipeline(request, state)
            except TimeoutError:
                if deadline.expired():
                    return resp.timeout(state.middleware_pending)
                raise

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
        """§8.5: ``request_body`` (engine writes) and ``response`` (engine reads); the worker's ends."""
        registry = self.channels
        body_refs = registry.create(CHANNEL_BUFFER)
        response_refs = registry.create(CHANNEL_BUFFER)
        body_channel = registry.channels[body_refs["reader"]["channel_id"]]
        response_channel = registry.channels[response_refs["writer"]["channel_id"]]
        body_channel.writer_attached = True  # the engine is the writer
        response_channel.reader_attached = True  # the engine is the reader
        state.channel_ids += (body_channel.id, response_channel.id)
        return body_channel, response_channel, (body_refs["reader"], response_refs["writer"])

    async def _read_body(
        self, request: web.BaseRequest, channel: Channel, state: _Request
    ) -> tuple[Any, resp.Reply | None]:
        """§8.4: JSON bodies are buffered under ``body_limit``; others stream to the channel."""
        queue = channel.queue
        if not is_json(request.headers.get(hdrs.CONTENT_TYPE)):
            if request.body_exists:
                task = asyncio.ensure_future(_pump_body(request, channel))
                state.tasks.append(task)
            else:
                queue.put_nowait(None)
            return None, None
        limit = self.body_limit
        length = request.content_length
        if length is not None and length > limit:
            return None, resp.payload_too_large(limit)
        raw = await _read_limited(request, limit)
        if raw is None:
            return None, resp.payload_too_large(limit)
        if raw:
            queue.put_nowait((False, raw))
        queue.put_nowait(None)
        return parse_json_body(raw), None

    async def _run_handler(
        self, route: Route, payload: dict[str, Any], channel: Channel, state: _Request
    ) -> resp.Reply | Streamed:
        """§11-§12: the handler result and the response channel, whichever decides first."""
        binding = route.binding
        call = asyncio.ensure_future(
            self.engine.invoke(
                binding.function_id, payload, namespace=binding.namespace, metadata=binding.metadata
            )
        )
        state.tasks.append(call)
        queue = channel.queue
        head = resp.StreamHead()
        item_seen = False
        get: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
        state.tasks.append(get)
        waiting: set[asyncio.Future[Any]] = {call, get}
        settle: float | None = None
        while True:
            done, _ = await asyncio.wait(waiting, timeout=settle, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                item = get.result()
                if item is None:  # rule 3: closed before any binary chunk
                    return resp.Reply(head.status, head.header_lines())
                item_seen = True
                is_text, data = item
                if not is_text:  # rule 2: the first binary chunk commits the stream
                    state.tasks.remove(call)
                    call.add_done_callback(_log_late_failure)
                    return Streamed(head.status, head.header_lines(), data, channel)
                head.apply(data)
                waiting.discard(get)
                get = asyncio.ensure_future(queue.get())
                state.tasks.append(get)
                waiting.add(get)
                if settle is not None:
                    settle = None  # a writer is there: wait for the stream (rule 6)
                continue
            if call in done:
                waiting.discard(call)
                try:
                    result = call.result()
                except InvocationError as exc:
                    return resp.failure(exc.code, exc.message)
                if result is not None:
                    return resp.from_result(result)
                if not (item_seen or channel.writer_attached):
                    settle = SETTLE_S  # §11.1: a writer may attach just after the handler returned
                continue
            # the settle window passed without an item
            if channel.writer_attached:
                settle = None
                continue
            return resp.Reply(204)


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
    queue = channel.queue
    async for chunk in request.content.iter_any():
        await queue.put((False, chunk))
    await queue.put(None)
