"""The HTTP/1.1 listener of the HTTP module: an ``asyncio.Protocol`` around httptools (llhttp).

Why not aiohttp's server: its per-request machinery (request and response objects, multidicts,
header serialisation, access-log hooks) was about a sixth of the engine's CPU per request in the
todo benchmark (bench/RESULTS.md). This listener does only what the pipeline of spec/http.md §3
needs, and the pipeline itself stays in :mod:`.server`.

What it does:

* **Parsing** with httptools (the llhttp parser that aiohttp and uvicorn use), with aiohttp's limits
  (:class:`ParserLimits`): a request line over ``max_line_size``, a header line over
  ``max_field_size``, more than ``max_headers`` headers or any request llhttp refuses (bad request
  line, unknown method token, malformed header) is answered **400** with the JSON envelope and the
  CORS headers (§3 step 10, §14), and the connection closes after it.
* **Keep-alive and pipelining**: requests of one connection are answered in order by one task per
  connection (the task the deadline cancels, §13.1). A connection closes after a response when the
  client asked for it (``Connection: close``, HTTP/1.0 without keep-alive), when the request's body
  was not read to its end (a 413, say), after an ``Upgrade`` request (not served here) and when the
  listener shuts down. Idle keep-alive connections close after ``keepalive_timeout_s`` (75 s, as
  aiohttp).
* **Bodies** (§8.4): :class:`Body` buffers what arrived; past ``BODY_HIGH_WATER`` bytes unread, or
  with more than ``PIPELINE_DEPTH`` requests queued, the connection stops reading (backpressure). An
  ``Expect: 100-continue`` is answered when the body is first read, so a refused request (404, 413
  by ``Content-Length``) never invites the body.
* **Responses**: a complete response is one write (status line, headers with ``Content-Length``
  and ``Date``, body), and the next request waits while the socket is not draining (a client that
  pipelines without reading is not answered without bound); a streamed one (§12) uses chunked
  transfer encoding (close-delimited for HTTP/1.0) and waits for the socket to drain. Framing
  headers of handlers (``Content-Length``, ``Transfer-Encoding``, ``Connection``) are replaced by
  the listener's own, so a handler cannot desynchronise the connection. ``HEAD``, 1xx, 204 and 304
  carry no body.
* **A client that goes away** (closes or resets its connection) cancels its connection's task, which
  ends its request and removes its channels (§8.5 rule 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from time import time
from typing import Final

import httptools

from .request import headers_of

log = logging.getLogger("pyiii.http")

#: Unread body bytes of one request past which the connection stops reading.
BODY_HIGH_WATER: Final = 256 * 1024
#: Requests queued on one connection (pipelining) past which it stops reading.
PIPELINE_DEPTH: Final = 16
KEEPALIVE_TIMEOUT_S: Final = 75.0

_NO_BODY_STATUS: Final = frozenset({204, 304})
#: Response headers the listener sets itself (framing); a handler's own are dropped.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Limits of the request parser (aiohttp's defaults). A request over them is refused with **400**
    and the JSON envelope ``{"error":{"code":"BAD_REQUEST","message":"Bad Request"}}`` plus the CORS
    headers, like any other malformed request (unknown method token, bad request line)."""

    #: Bytes in the request line's target.
    max_line_size: int = 8190
    #: Bytes in one header line (name and value).
    max_field_size: int = 8190
    #: Number of header lines.
    max_headers: int = 128

    @property
    def max_head(self) -> int:
        """Bytes of a whole request head, checked while it arrives (before llhttp buffers more)."""
        return self.max_line_size + self.max_headers * (self.max_field_size + 2) + 64


PARSER_LIMITS: Final = ParserLimits()

_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}
_date_second = -1
_date_line = b""


def _date() -> bytes:
    """The ``Date`` header line, formatted once per second."""
    global _date_second, _date_line
    now = time()
    second = int(now)
    if second != _date_second:
        _date_second = second
        _date_line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_line


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "").encode())


def _has_content_type(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "content-type" for name, _ in headers)


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{name}: {value}\r\n" for name, value in headers if name.lower() not in _FRAMING]
    return "".join(lines).encode("utf-8", "surrogateescape")


def encode_response(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    keep_alive: bool = False,
    version: str = "1.1",
    head: bool = False,
) -> bytes:
    """A complete response: status line, headers, ``Date``, ``Content-Length`` (a default
    ``Content-Type`` for a body without one), ``Connection`` and the body (not for ``head``)."""
    parts = [status_line(status), _header_block(headers), _date()]
    no_body = status in _NO_BODY_STATUS or status < 200
    if not no_body:
        if body and not _has_content_type(headers):
            parts.append(b"Content-Type: application/octet-stream\r\n")
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    elif version == "1.0":
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if body and not no_body and not head:
        parts.append(body)
    return b"".join(parts)


class _Refused(Exception):
    """A request over the parser limits."""


class BadBody(Exception):
    """The request body was malformed (bad chunked encoding, say): the request is answered 400."""


class Body:
    """The request body as it arrives: read with :meth:`readany` or ``async for``."""

    __slots__ = ("_chunks", "_conn", "_continue", "_size", "_waiter", "done", "error")

    def __init__(self, conn: Connection, expect_continue: bool) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._continue = expect_continue
        #: The whole body arrived (the parser completed the message).
        self.done = False
        self.error: BaseException | None = None

    @property
    def buffered(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > BODY_HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        if not self.done:
            self.done = True
            self.error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def readany(self) -> bytes:
        """The next bytes; ``b""`` at the end. Raises ``ConnectionResetError`` if the client left,
        :class:`BadBody` if the parser refused the rest of the body."""
        if self._continue:
            self._continue = False
            self._conn.write(_CONTINUE)
        while not self._chunks:
            if self.done:
                if isinstance(self.error, BadBody):
                    raise BadBody("malformed request body")
                if self.error is not None:
                    raise ConnectionResetError("the client closed the connection during the body")
                return b""
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._size -= len(data)
        if self._size <= BODY_HIGH_WATER // 4:
            self._conn.maybe_resume()
        return data

    async def iter_any(self) -> AsyncIterator[bytes]:
        while True:
            data = await self.readany()
            if not data:
                return
            yield data


class Request:
    """One parsed request head; ``headers`` are §8.3's (lower-case names, the last value wins,
    a value that is not printable ASCII or tab is ``""``)."""

    __slots__ = ("body", "content_length", "headers", "keep_alive", "method", "raw_path", "version")

    def __init__(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        version: str,
        keep_alive: bool,
        content_length: int | None,
        body: Body | None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.content_length = content_length
        #: ``None`` when the request has no body.
        self.body = body


class Refusal:
    """A queued answer to a request the parser refused (sent in order, then the connection closes)."""

    __slots__ = ()


_REFUSAL: Final = Refusal()


class _NoCallbacks:
    """The callback target of the parser a closed connection is left with (it is never fed)."""


_CLOSED_PARSER: Final = httptools.HttpRequestParser(_NoCallbacks())


class Connection(asyncio.Protocol):
    """One client connection: parses requests and answers them in order."""

    def __init__(self, listener: H1Listener) -> None:
        self.listener = listener
        self.loop = listener.loop
        self.limits = listener.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        #: Loop time since which the connection has had nothing to do (keep-alive sweep).
        self.idle_since: float | None = None
        self._queue: deque[Request | Refusal] = deque()
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._reading = True
        self._stop_parsing = False
        self._writable: asyncio.Future[None] | None = None
        self._write_paused = False
        # the message being parsed
        self._url: list[bytes] = []
        self._url_size = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_size = 0
        self._current: Body | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.idle_since = self.loop.time()
        self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.gone(self)
        if self._current is not None:
            self._current.finish(ConnectionResetError())
            self._current = None
        for item in self._queue:
            if isinstance(item, Request) and item.body is not None:
                item.body.finish(ConnectionResetError())
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # the client went away: end its request (§8.5 rule 3)
        else:
            self._queue.clear()
        self._wake()
        # The parser refers back to this connection: without the cycle, a closed connection and
        # what it holds are freed at once instead of waiting for a garbage collection.
        self._stop_parsing = True
        self.parser = _CLOSED_PARSER
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._stop_parsing:
            return
        if self._in_head or not self._current:
            self._head_size += len(data)
            if self._head_size > self.limits.max_head:
                self._refuse()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade request (a WebSocket to the HTTP port, say) is answered like any other,
            # then the connection closes: nothing after it is parsed.
            self._stop_parsing = True
        except (httptools.HttpParserError, _Refused):
            self._refuse()

    def eof_received(self) -> bool | None:
        # The client closed its end: a closed tab, an ended process and a client's own timeout all
        # look like this, so it is taken as the client going away (as with aiohttp before): the
        # transport closes and connection_lost ends the request in progress and its channels (§8.5
        # rule 3) instead of leaving it to run to its deadline. A client that half-closes and still
        # waits for its answers gets none.
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = []
        self._url_size = 0
        self._raw_headers = []

    def on_url(self, url: bytes) -> None:
        self._url_size += len(url)
        if self._url_size > self.limits.max_line_size:
            raise _Refused()
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._raw_headers
        if len(headers) >= self.limits.max_headers or len(name) + len(value) > self.limits.max_field_size:
            raise _Refused()
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_size = 0
        parser = self.parser
        headers = headers_of(self._raw_headers)
        length: int | None = None
        text = headers.get("content-length")
        if text is not None:
            length = int(text) if text.isdigit() else None  # llhttp already refused a bad one
        has_body = bool(length) or "chunked" in headers.get("transfer-encoding", "").lower()
        body = None
        if has_body:
            expect = headers.get("expect", "").lower() == "100-continue"
            body = self._current = Body(self, expect and parser.get_http_version() == "1.1")
        request = Request(
            parser.get_method().decode("ascii"),
            b"".join(self._url).decode("utf-8", "surrogateescape"),
            headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
            length,
            body,
        )
        self._enqueue(request)

    def on_body(self, data: bytes) -> None:
        body = self._current
        if body is not None:
            body.feed(data)

    def on_message_complete(self) -> None:
        body = self._current
        if body is not None:
            body.finish()
            self._current = None

    # ------------------------------------------------------------------ flow control

    def pause_reading(self) -> None:
        if self._reading and self.transport is not None and not self.closed:
            self._reading = False
            self.transport.pause_reading()

    def maybe_resume(self) -> None:
        """Read again once the queue is short and the body arriving has been read down."""
        if self._reading or self.transport is None or self.closed or len(self._queue) > PIPELINE_DEPTH:
            return
        body = self._current
        if body is not None and body.buffered > BODY_HIGH_WATER // 4:
            return
        self._reading = True
        self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        if self._write_paused:
            self._writable = self.loop.create_future()
            try:
                await self._writable
            finally:
                self._writable = None
            if self.closed:
                raise ConnectionResetError("the client closed the connection")

    # ------------------------------------------------------------------ requests, in order

    def _refuse(self) -> None:
        """The parser refused what arrived: nothing more is parsed, and the connection closes once
        what is queued is answered. A refused body belongs to a request already queued, which is
        answered 400 when the body is read (:class:`BadBody`); else a 400 is queued."""
        self._stop_parsing = True
        if self._current is not None:
            self._current.finish(BadBody())
            self._current = None
            self._wake()
            return
        self._enqueue(_REFUSAL)

    def _enqueue(self, item: Request | Refusal) -> None:
        self._queue.append(item)
        self.idle_since = None
        if len(self._queue) > PIPELINE_DEPTH:
            self.pause_reading()
        if self._task is None:
            self._task = self.loop.create_task(self._serve())
        else:
            self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _serve(self) -> None:
        queue = self._queue
        handler = self.listener.handler
        try:
            while not self.closed:
                if not queue:
                    if self._stop_parsing or self.listener.closing:
                        break
                    self.idle_since = self.loop.time()
                    self._wakeup = self.loop.create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                    continue
                item = queue[0]
                if isinstance(item, Refusal):
                    self.write(self.listener.refusal())
                    break
                try:
                    await handler(item, self)
                    if self._write_paused:  # a client that reads no answers gets no more of them
                        await self.drain()
                except ConnectionError:
                    break
                except Exception:
                    log.exception("HTTP connection failed while answering %s %s", item.method, item.raw_path)
                    break
                queue.popleft()
                self.maybe_resume()
                if not item.keep_alive:  # the response said Connection: close (keep_alive_for)
                    break
        finally:
            self.close()
            # No cycles back to this connection (requests through their bodies; the task through the
            # traceback of its cancellation), so it is freed as soon as nothing else holds it.
            self._queue.clear()
            self._task = None

    def keep_alive_for(self, request: Request) -> bool:
        """Decided when a response starts: its ``Connection`` header follows this, and a response
        that closes sets ``request.keep_alive`` to False, which ends the connection after it."""
        body = request.body
        return (
            request.keep_alive
            and (body is None or body.done)
            and not self.listener.closing
            and not (self._stop_parsing and len(self._queue) <= 1)  # nothing parsed after it (Upgrade)
        )

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    # ------------------------------------------------------------------ responses

    def send_reply(
        self,
        request: Request,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        """A complete response in one write."""
        keep_alive = self.keep_alive_for(request)
        if not keep_alive:
            request.keep_alive = False
        head_only = request.method == "HEAD"
        self.write(encode_response(status, headers, body, keep_alive, request.version, head_only))

    async def send_stream(
        self,
        request: Request,
        status: int,
        headers: list[tuple[str, str]],
        chunks: Callable[[], Awaitable[bytes | None]],
    ) -> None:
        """A streamed response: ``chunks()`` gives the body piece by piece, ``None`` at the end.
        Chunked for HTTP/1.1, close-delimited for HTTP/1.0; ``HEAD`` reads and drops the chunks."""
        send = request.method != "HEAD" and status not in _NO_BODY_STATUS and status >= 200
        chunked = request.version != "1.0"
        keep_alive = self.keep_alive_for(request) and (chunked or not send)
        head = [status_line(status), _header_block(headers), _date()]
        if send and chunked:
            head.append(b"Transfer-Encoding: chunked\r\n")
        if not keep_alive:
            head.append(b"Connection: close\r\n")
            request.keep_alive = False
        elif request.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        self.write(b"".join(head))
        while True:
            data = await chunks()
            if data is None:
                break
            if send and data:
                self.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                await self.drain()
        if send and chunked:
            self.write(b"0\r\n\r\n")


class H1Listener:
    """The listening socket and its connections. ``handler(request, connection)`` answers one
    request (it calls :meth:`Connection.send_reply` or :meth:`Connection.send_stream`);
    ``refusal()`` is the response bytes for a request the parser refused."""

    def __init__(
        self,
        handler: Callable[[Request, Connection], Awaitable[None]],
        refusal: Callable[[], bytes],
        limits: ParserLimits = PARSER_LIMITS,
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.refusal = refusal
        self.limits = limits
        self.keepalive_timeout_s = keepalive_timeout_s
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._emptied: asyncio.Event | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; the bound port. ``OSError`` when the address cannot be bound."""
        self._server = await self.loop.create_server(
            lambda: Connection(self), host, port, backlog=1024, reuse_address=True
        )
        self._schedule_sweep()
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    def gone(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self._emptied is not None and not self.connections:
            self._emptied.set()

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(min(10.0, self.keepalive_timeout_s), self._sweep)

    def _sweep(self) -> None:
        """Close keep-alive connections idle for longer than the timeout."""
        limit = self.loop.time() - self.keepalive_timeout_s
        for conn in list(self.connections):
            if conn.idle_since is not None and conn.idle_since <= limit:
                conn.close()
        if not self.closing:
            self._schedule_sweep()

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting; close idle connections at once, the others after their current response,
        and abort whatever is left after ``timeout_s``."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            if conn.idle_since is not None:
                conn.close()
            else:
                conn._wake()
        if self.connections:
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
            task = conn._task
            if task is not None and not task.done():
                task.cancel()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)


__all__ = [
    "PARSER_LIMITS",
    "BadBody",
    "Body",
    "Connection",
    "H1Listener",
    "ParserLimits",
    "Request",
    "encode_response",
    "status_line",
]
