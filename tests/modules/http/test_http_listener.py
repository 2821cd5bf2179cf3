"""The HTTP/1.1 listener (``modules/http/h1.py``) on real sockets: keep-alive, pipelining, request
body framing and backpressure, ``Expect: 100-continue``, response framing, clients that leave, idle
connections and shutdown. Requests are raw bytes (:class:`RawHttp`), so nothing is normalised by a
client library; the assertions are on statuses, header values, bytes and their order."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import pytest_asyncio
from http_harness import HttpHarness, RawHttp, request

from helpers import TIME_FACTOR, TIMEOUT_S
from pyiii import III
from pyiii.modules.http.h1 import Connection, H1Listener, Request, encode_response

MIB = 1024 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JSON = "Content-Type: application/json"
NOT_FOUND = {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
#: How long an absence is watched for (the upload that must stall, the handler that must not run).
#: Only the detection of a regression depends on it, never the passing of a correct listener.
STALL_S = 1.0 * TIME_FACTOR

OpenRaw = Callable[[tuple[str, int] | None], Awaitable[RawHttp]]


@pytest_asyncio.fixture
async def open_raw() -> AsyncIterator[OpenRaw]:
    """``await open_raw(address)``: a :class:`RawHttp` client connection, closed at teardown."""
    opened: list[RawHttp] = []

    async def open_connection(address: tuple[str, int] | None) -> RawHttp:
        conn = await RawHttp.open(address)
        opened.append(conn)
        return conn

    try:
        yield open_connection
    finally:
        for conn in opened:
            conn.close()


async def echo(data: Any) -> Any:
    return {"n": data["query_params"].get("n"), "got": data["body"]}


async def raw_body(data: Any) -> Any:
    raw = await data["request_body"].read_all()
    return {"hex": raw.hex(), "got": data["body"]}


def streamer(*chunks: bytes, headers: dict[str, str] | None = None) -> Callable[[Any], Awaitable[Any]]:
    """A handler that streams ``chunks`` as binary items of the response channel (§12)."""

    async def handler(data: Any) -> Any:
        out = data["response"]
        if headers:
            await out.send_message_async(json.dumps({"type": "set_headers", "headers": headers}))
        for chunk in chunks:
            await out.write(chunk)
        await out.close_async()
        return None

    return handler


# ---------------------------------------------------------------------------------- keep-alive


async def test_keep_alive_serves_requests_in_turn(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """Two HTTP/1.1 requests on one connection are both answered; neither response closes it."""
    await http.route(worker, "f::echo", echo, "/echo")
    conn = await open_raw(http.module.address)
    for n in ("1", "2"):
        await conn.send(request("GET", f"/echo?n={n}"))
        response = await conn.response()
        assert (response.status, response.json()) == (200, {"n": n, "got": None})
        assert response.header("connection") is None


async def test_connection_close_is_honoured(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """A request with ``Connection: close`` gets ``Connection: close`` and the server closes."""
    await http.route(worker, "f::echo", echo, "/echo")
    conn = await open_raw(http.module.address)
    await conn.send(request("GET", "/echo?n=1", "Connection: close"))
    response = await conn.response()
    assert (response.status, response.header("connection")) == (200, "close")
    assert await conn.closed_by_server()


async def test_http10_closes_unless_keep_alive(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """HTTP/1.0 closes after its response; with ``Connection: keep-alive`` the response says
    ``Connection: keep-alive`` and the connection serves the next request."""
    await http.route(worker, "f::echo", echo, "/echo")
    conn = await open_raw(http.module.address)
    await conn.send(request("GET", "/echo?n=1", version="1.0"))
    response = await conn.response()
    assert (response.status, response.header("connection")) == (200, "close")
    assert await conn.closed_by_server()

    conn = await open_raw(http.module.address)
    for n in ("2", "3"):
        await conn.send(request("GET", f"/echo?n={n}", "Connection: keep-alive", version="1.0"))
        response = await conn.response()
        assert (response.status, response.header("connection")) == (200, "keep-alive")
        assert response.json()["n"] == n


async def test_pipelined_requests_are_answered_in_order(
    http: HttpHarness, worker: III, open_raw: OpenRaw
) -> None:
    """Three requests in one write, the first to a slower handler, are answered in request order."""

    async def slow(data: Any) -> Any:
        await asyncio.sleep(0.05)
        return await echo(data)

    await http.route(worker, "f::slow", slow, "/slow")
    await http.route(worker, "f::echo", echo, "/echo")
    conn = await open_raw(http.module.address)
    await conn.send(request("GET", "/slow?n=1") + request("GET", "/echo?n=2") + request("GET", "/slow?n=3"))
    answers = [(await conn.response()).json()["n"] for _ in range(3)]
    assert answers == ["1", "2", "3"]


# ---------------------------------------------------------------------------------- request bodies


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)


async def test_chunked_json_body_is_parsed(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """A JSON body sent with ``Transfer-Encoding: chunked`` reaches the handler parsed (§8.4)."""
    await http.route(worker, "f::echo", echo, "/echo", "POST")
    conn = await open_raw(http.module.address)
    body = chunked(b'{"name":', b' "x", "list": [1,', b" 2]}") + b"0\r\n\r\n"
    await conn.send(request("POST", "/echo?n=1", JSON, "Transfer-Encoding: chunked", body=body))
    response = await conn.response()
    assert (response.status, response.json()["got"]) == (200, {"name": "x", "list": [1, 2]})


async def test_chunked_binary_body_streams_intact(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """A non-JSON chunked body (a chunk extension included) arrives byte for byte on request_body."""
    await http.route(worker, "f::raw", raw_body, "/raw", "POST")
    payload = bytes(range(256)) * 40
    body = chunked(payload[:1000]) + b"%x;name=value\r\n%s\r\n" % (9000, payload[1000:10000])
    body += chunked(payload[10000:]) + b"0\r\n\r\n"
    conn = await open_raw(http.module.address)
    binary = "Content-Type: application/octet-stream"
    await conn.send(request("POST", "/raw", binary, "Transfer-Encoding: chunked", body=body))
    response = await conn.response()
    assert (response.status, bytes.fromhex(response.json()["hex"])) == (200, payload)


async def test_malformed_chunked_json_body(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """A JSON body whose chunked encoding breaks half-way gets one 400 envelope (not a 500 and a
    second, unrequested 400); the handler never runs and the connection closes."""
    calls: list[Any] = []

    async def recording(data: Any) -> Any:
        calls.append(data)
        return {}

    await http.route(worker, "f::rec", recording, "/rec", "POST")
    conn = await open_raw(http.module.address)
    broken = chunked(b'{"a":') + b"zz\r\nnot hex\r\n"
    await conn.send(request("POST", "/rec", JSON, "Transfer-Encoding: chunked", body=broken))
    response = await conn.response()
    assert (response.status, response.header("connection")) == (400, "close")
    assert response.json() == {"error": {"code": "BAD_REQUEST", "message": "Bad Request"}}
    assert await conn.closed_by_server()
    assert calls == []


async def test_chunked_json_over_the_limit(make_http: Any, open_raw: OpenRaw) -> None:
    """A chunked JSON body over body_limit gets 413 as soon as the limit is passed, before the body
    ends; the connection, whose body was not read to its end, closes (§8.4 rule 2)."""
    http = await make_http(body_limit_bytes=100)
    worker = http.worker()
    await http.route(worker, "f::echo", echo, "/echo", "POST")
    conn = await open_raw(http.module.address)
    unfinished = chunked(b'"' + b"x" * 60, b"y" * 60 + b'"')  # no last chunk: the body never ends
    await conn.send(request("POST", "/echo", JSON, "Transfer-Encoding: chunked", body=unfinished))
    response = await conn.response()
    assert (response.status, response.header("connection")) == (413, "close")
    assert response.json() == {
        "error": {"code": "PAYLOAD_TOO_LARGE", "message": "Request body exceeds the limit of 100 bytes"}
    }
    assert await conn.closed_by_server()


# ---------------------------------------------------------------------------------- Expect: 100-continue


async def test_expect_continue_invites_the_body(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """``Expect: 100-continue``: the head alone is answered ``100 Continue``; then the body is sent
    and the final response follows on the same connection."""
    await http.route(worker, "f::echo", echo, "/echo", "POST")
    conn = await open_raw(http.module.address)
    body = b'{"after": "continue"}'
    await conn.send(request("POST", "/echo", JSON, "Expect: 100-continue", f"Content-Length: {len(body)}"))
    assert await conn.read_exactly(len(CONTINUE)) == CONTINUE
    await conn.send(body)
    response = await conn.response()
    assert (response.status, response.json()["got"]) == (200, {"after": "continue"})
    await conn.send(request("GET", "/nowhere"))
    assert (await conn.response()).status == 404  # still usable


async def test_expect_continue_not_sent_for_refused_requests(make_http: Any, open_raw: OpenRaw) -> None:
    """A 404, and a 413 by ``Content-Length``, are sent without a ``100 Continue`` and without waiting
    for the body, and the connection (its body unread) closes."""
    http = await make_http(body_limit_bytes=100)
    worker = http.worker()
    await http.route(worker, "f::echo", echo, "/echo", "POST")
    for path, length, status in (("/nowhere", 10, 404), ("/echo", 101, 413)):
        conn = await open_raw(http.module.address)
        await conn.send(request("POST", path, JSON, "Expect: 100-continue", f"Content-Length: {length}"))
        response = await conn.response()  # its status line comes first: no 100 before it
        assert (response.status, response.header("connection")) == (status, "close")
        assert response.json()["error"]["code"] == {404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE"}[status]
        assert await conn.closed_by_server()


# ---------------------------------------------------------------------------------- response framing


async def test_handler_framing_headers_are_replaced(
    http: HttpHarness, worker: III, open_raw: OpenRaw
) -> None:
    """A handler's own Content-Length, Transfer-Encoding and Connection are dropped: the listener's
    Content-Length is sent and the connection serves the next request."""

    async def lying(data: Any) -> Any:
        headers = {"Content-Length": "999", "Transfer-Encoding": "chunked", "Connection": "close"}
        return {"status_code": 201, "headers": {**headers, "X-Kept": "yes"}, "body": {"ok": True}}

    await http.route(worker, "f::lying", lying, "/lying")
    conn = await open_raw(http.module.address)
    for _ in range(2):
        await conn.send(request("GET", "/lying"))
        response = await conn.response()
        assert (response.status, response.body) == (201, b'{"ok":true}')
        names = [name for name, _ in response.headers]
        assert (names.count("content-length"), response.header("content-length")) == (1, "11")
        assert response.header("transfer-encoding") is None and response.header("connection") is None
        assert response.header("x-kept") == "yes"


async def test_streamed_response_is_chunked(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """HTTP/1.1: a streamed response is chunked, one chunk per binary item, ended by the last chunk
    (a handler's framing headers dropped), and the connection is reusable afterwards (§12)."""
    await http.route(worker, "s::plain", streamer(b"hello", b"world!"), "/stream")
    framing = {"content-length": "1", "Connection": "close"}
    labelled = streamer(b"<p>", headers={"content-type": "text/html", **framing})
    await http.route(worker, "s::labelled", labelled, "/labelled")
    conn = await open_raw(http.module.address)
    await conn.send(request("GET", "/stream"))
    response = await conn.response()
    assert (response.status, response.header("transfer-encoding")) == (200, "chunked")
    assert response.wire == b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"
    # no content type set: none is sent (§12: no default content-type on a streamed response)
    assert response.header("content-type") is None
    assert response.header("content-length") is None and response.header("connection") is None

    await conn.send(request("GET", "/labelled"))
    response = await conn.response()
    assert [v for k, v in response.headers if k == "content-type"] == ["text/html"]
    assert (response.header("transfer-encoding"), response.wire) == ("chunked", b"3\r\n<p>\r\n0\r\n\r\n")
    assert response.header("content-length") is None and response.header("connection") is None
    await conn.send(request("GET", "/stream"))
    assert (await conn.response()).body == b"helloworld!"


async def test_streamed_response_to_http10_is_close_delimited(
    http: HttpHarness, worker: III, open_raw: OpenRaw
) -> None:
    """HTTP/1.0 (even asking for keep-alive): no chunked encoding; the body ends with the connection."""
    await http.route(worker, "s::plain", streamer(b"hello", b"world!"), "/stream")
    for keep_alive in ((), ("Connection: keep-alive",)):
        conn = await open_raw(http.module.address)
        await conn.send(request("GET", "/stream", *keep_alive, version="1.0"))
        response = await conn.response()  # read up to the end of the connection
        assert (response.status, response.header("connection")) == (200, "close")
        assert response.body == b"helloworld!"
        assert response.header("transfer-encoding") is None and response.header("content-length") is None
        assert await conn.closed_by_server()


async def test_head_on_streamed_route(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """HEAD on a streamed GET route: status and headers, not a byte of body (the next response on
    the connection parses right after the head)."""
    await http.route(worker, "s::plain", streamer(b"hello", b"world!"), "/stream")
    conn = await open_raw(http.module.address)
    await conn.send(request("HEAD", "/stream"))
    response = await conn.response(head=True)
    assert (response.status, response.header("content-type")) == (200, None)
    assert response.header("transfer-encoding") is None and response.header("connection") is None
    await conn.send(request("GET", "/stream"))
    assert (await conn.response()).body == b"helloworld!"


async def test_head_and_204_have_no_body(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """HEAD on a complete-response route carries the GET body's Content-Length and no body; a 204
    (null result) carries neither Content-Length nor body; the connection stays usable."""

    async def hello(data: Any) -> Any:
        return {"message": "hello"}

    async def nothing(data: Any) -> Any:
        return None

    await http.route(worker, "f::hello", hello, "/hello")
    await http.route(worker, "f::nothing", nothing, "/nothing")
    conn = await open_raw(http.module.address)
    await conn.send(request("HEAD", "/hello"))
    response = await conn.response(head=True)
    assert (response.status, response.header("content-length")) == (200, str(len(b'{"message":"hello"}')))
    assert response.header("content-type") == "application/json"
    await conn.send(request("GET", "/nothing"))
    response = await conn.response()
    assert response.status == 204
    assert response.header("content-length") is None and response.header("content-type") is None
    await conn.send(request("GET", "/hello"))
    assert (await conn.response()).body == b'{"message":"hello"}'


# ---------------------------------------------------------------------------------- odd clients


async def test_upgrade_request_is_answered_then_closed(
    http: HttpHarness, worker: III, open_raw: OpenRaw
) -> None:
    """A WebSocket upgrade to the HTTP port gets an ordinary answer (404 JSON) saying
    ``Connection: close``; the bytes after it (a frame) are not parsed, and the connection closes."""
    conn = await open_raw(http.module.address)
    upgrade = request(
        "GET",
        "/chat",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    await conn.send(upgrade + b"\x81\x85\x00\x00\x00\x00hello")
    response = await conn.response()
    assert (response.status, response.json(), response.header("connection")) == (404, NOT_FOUND, "close")
    assert await conn.closed_by_server()


@pytest.mark.parametrize("leaving", ["close", "reset"])
async def test_client_leaving_mid_request_ends_it(make_http: Any, open_raw: OpenRaw, leaving: str) -> None:
    """A client that closes (FIN) or resets (RST) its connection while its handler runs ends its
    request at once: its concurrency slot and channels are freed (§8.5 rule 3), so with a limit of 1
    the next client is served while the abandoned handler is still running."""
    http = await make_http(concurrency_request_limit=1)
    worker = http.worker()
    started, release = asyncio.Event(), asyncio.Event()

    async def hang(data: Any) -> Any:
        started.set()
        await release.wait()
        return "late"

    await http.route(worker, "f::hang", hang, "/hang")
    await http.route(worker, "f::echo", echo, "/echo")
    try:
        gone = await open_raw(http.module.address)
        await gone.send(request("GET", "/hang"))
        await started.wait()
        assert len(http.server.channels.channels) == 2
        if leaving == "reset":
            sock = gone.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
        conn = await open_raw(http.module.address)
        await conn.send(request("GET", "/echo?n=next"))
        response = await conn.response()
        assert (response.status, response.json()["n"]) == (200, "next")
        assert not http.server.channels.channels
        assert not release.is_set()  # the abandoned handler is still running
    finally:
        release.set()


async def test_responses_carry_a_date(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """Complete and streamed responses carry an RFC 9110 ``Date`` (IMF-fixdate, GMT)."""
    await http.route(worker, "f::echo", echo, "/echo")
    await http.route(worker, "s::plain", streamer(b"x"), "/stream")
    conn = await open_raw(http.module.address)
    for path in ("/echo", "/stream", "/nowhere"):
        await conn.send(request("GET", path))
        date = (await conn.response()).header("date")
        assert date is not None and date.endswith(" GMT"), path
        assert parsedate_to_datetime(date).utcoffset() is not None


async def test_garbage_after_a_valid_request(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """Garbage pipelined after a valid request: the valid one is answered first, then the 400
    envelope with CORS headers and ``Connection: close``, then the connection closes."""
    await http.route(worker, "f::echo", echo, "/echo")
    conn = await open_raw(http.module.address)
    await conn.send(request("GET", "/echo?n=1") + b"\x16\x03\x01\x02\x00 not http\r\n\r\n")
    first = await conn.response()
    assert (first.status, first.json()["n"], first.header("connection")) == (200, "1", None)
    refused = await conn.response()
    assert (refused.status, refused.header("connection")) == (400, "close")
    assert (refused.header("content-type"), refused.header("access-control-allow-origin")) == (
        "application/json",
        "*",
    )
    assert refused.json() == {"error": {"code": "BAD_REQUEST", "message": "Bad Request"}}
    assert await conn.closed_by_server()


# ---------------------------------------------------------------------------------- backpressure


async def test_unread_upload_stalls(http: HttpHarness, worker: III, open_raw: OpenRaw) -> None:
    """A non-JSON upload whose handler does not read request_body is not buffered whole: the server
    holds at most the channel's 64 items, one body buffer and the kernel's socket buffers, so a
    64 MiB upload stalls while the handler idles (§8.4 rule 3)."""
    release = asyncio.Event()

    async def idle(data: Any) -> Any:
        await release.wait()
        return {"ok": True}

    await http.route(worker, "f::idle", idle, "/upload", "POST")
    await http.route(worker, "f::echo", echo, "/echo")
    size = 64 * MIB
    conn = await open_raw(http.module.address)
    try:
        head = request("POST", "/upload", "Content-Type: application/octet-stream", f"Content-Length: {size}")
        await conn.send(head)
        conn.writer.write(bytes(size))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.writer.drain(), STALL_S)
    finally:
        release.set()
        conn.writer.transport.abort()
    other = await open_raw(http.module.address)
    await other.send(request("GET", "/echo?n=1"))
    assert (await other.response()).status == 200


async def test_unread_responses_stall_the_connection(
    http: HttpHarness, worker: III, open_raw: OpenRaw
) -> None:
    """A client that pipelines requests but reads no responses is not served without bound: once the
    socket stops taking the answers, no further request is handled (the last handler does not run)
    until the client reads, and then every answer arrives, in order."""
    body = "x" * (512 * 1024)
    last_ran = asyncio.Event()

    async def big(data: Any) -> Any:
        return {"headers": {"content-type": "text/plain"}, "body": body}

    async def last(data: Any) -> Any:
        last_ran.set()
        return "last"

    await http.route(worker, "f::big", big, "/big")
    await http.route(worker, "f::last", last, "/last")
    conn = await open_raw(http.module.address)
    count = 64  # 32 MiB of answers
    await conn.send(request("GET", "/big") * count + request("GET", "/last"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(last_ran.wait(), STALL_S)
    for _ in range(count):
        response = await conn.response()
        assert (response.status, len(response.body)) == (200, len(body))
    assert (await conn.response()).json() == "last"


# ---------------------------------------------------------------------------------- the listener alone


Handler = Callable[[Request, Connection], Awaitable[None]]
MakeListener = Callable[..., Awaitable[tuple[H1Listener, tuple[str, int]]]]


@pytest_asyncio.fixture
async def make_listener() -> AsyncIterator[MakeListener]:
    """``await make_listener(handler, **options)``: a started :class:`H1Listener` on a free port and
    its address; shut down at teardown."""
    made: list[H1Listener] = []

    async def make(handler: Handler, **options: Any) -> tuple[H1Listener, tuple[str, int]]:
        listener = H1Listener(handler, lambda: encode_response(400, [], b""), **options)
        port = await listener.start("127.0.0.1", 0)
        made.append(listener)
        return listener, ("127.0.0.1", port)

    try:
        yield make
    finally:
        for listener in made:
            await listener.shutdown(0)


def path_handler(started: asyncio.Event, release: asyncio.Event) -> Handler:
    """Answers each request with its path; ``/slow`` sets ``started`` and waits for ``release``."""

    async def handler(request: Request, conn: Connection) -> None:
        if request.raw_path == "/slow":
            started.set()
            await release.wait()
        conn.send_reply(request, 200, [("Content-Type", "text/plain")], request.raw_path.encode())

    return handler


async def test_idle_connections_time_out(make_listener: MakeListener, open_raw: OpenRaw) -> None:
    """Idle connections (new, or after their response) are closed after ``keepalive_timeout_s``; one
    whose request is in progress is not, and idles out in turn after its response."""
    started, release = asyncio.Event(), asyncio.Event()
    _, address = await make_listener(path_handler(started, release), keepalive_timeout_s=0.2)
    busy = await open_raw(address)
    await busy.send(request("GET", "/slow"))
    await started.wait()
    fresh = await open_raw(address)
    served = await open_raw(address)
    await served.send(request("GET", "/a"))
    assert (await served.response()).body == b"/a"
    assert await fresh.closed_by_server()
    assert await served.closed_by_server()  # idle since after `busy` started: swept after it
    release.set()
    response = await busy.response()
    assert (response.status, response.body, response.header("connection")) == (200, b"/slow", None)
    assert await busy.closed_by_server()


async def test_shutdown_closes_idle_and_finishes_in_flight(
    make_listener: MakeListener, open_raw: OpenRaw
) -> None:
    """``shutdown(timeout)`` stops accepting, closes idle connections at once and lets a request in
    progress finish (``Connection: close``) before closing its connection."""
    started, release = asyncio.Event(), asyncio.Event()
    listener, address = await make_listener(path_handler(started, release))
    idle = await open_raw(address)
    await idle.send(request("GET", "/a"))
    assert (await idle.response()).body == b"/a"
    busy = await open_raw(address)
    await busy.send(request("GET", "/slow"))
    await started.wait()
    stopping = asyncio.ensure_future(listener.shutdown(60.0))
    try:
        assert await idle.closed_by_server()  # while `busy` is still in progress
        with pytest.raises(OSError):
            await asyncio.open_connection(*address)
        assert not stopping.done()
        release.set()
        response = await busy.response()
        assert (response.status, response.body, response.header("connection")) == (200, b"/slow", "close")
        assert await busy.closed_by_server()
        await asyncio.wait_for(stopping, TIMEOUT_S * TIME_FACTOR)
    finally:
        stopping.cancel()


async def test_shutdown_aborts_what_is_left(make_listener: MakeListener, open_raw: OpenRaw) -> None:
    """A request still in progress when ``shutdown``'s timeout passes is abandoned: its connection
    closes without an answer and ``shutdown`` returns."""
    started, release = asyncio.Event(), asyncio.Event()
    listener, address = await make_listener(path_handler(started, release))
    stuck = await open_raw(address)
    await stuck.send(request("GET", "/slow"))
    await started.wait()
    await asyncio.wait_for(listener.shutdown(0.1), TIMEOUT_S * TIME_FACTOR)
    assert await stuck.closed_by_server()
    assert not listener.connections


@pytest.mark.parametrize("mid_request", [False, True])
async def test_closed_connections_are_freed_without_a_garbage_collection(
    http: HttpHarness, worker: III, open_raw: OpenRaw, mid_request: bool
) -> None:
    """A connection the client closed, after its answers or while its handler runs, leaves no
    reference cycle behind (the parser's callbacks, request bodies, the cancelled task and its
    traceback): it and what its requests held (channels, payloads) are freed by reference counting
    at once, not whenever the cyclic garbage collector next runs."""
    import gc
    import weakref

    release = asyncio.Event()

    async def hang(data: Any) -> Any:
        await release.wait()
        return "late"

    await http.route(worker, "f::echo", echo, "/echo")
    await http.route(worker, "f::hang", hang, "/hang")
    listener = http.module._listener
    assert listener is not None
    gc.disable()
    try:
        conn = await open_raw(http.module.address)
        for n in range(3):
            await conn.send(request("GET", f"/echo?n={n}"))
            assert (await conn.response()).status == 200
        (server_side,) = listener.connections
        freed = weakref.ref(server_side)
        del server_side
        if mid_request:
            await conn.send(request("GET", "/hang"))
            for _ in range(200):
                if http.server.channels.channels:
                    break
                await asyncio.sleep(0.01)
            assert http.server.channels.channels  # the handler is running
        conn.close()
        for _ in range(200):
            if not listener.connections and freed() is None:
                break
            await asyncio.sleep(0.01)
        assert freed() is None
        assert not http.server.channels.channels
    finally:
        gc.enable()
        release.set()
