"""Streaming responses through the ``response`` channel (spec/http.md §12, checklist 25-27)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from http_harness import HttpHarness

from pyiii import III
from pyiii.modules.http.response import StreamHead


def control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


async def test_status_headers_and_chunks(http: HttpHarness, worker: III) -> None:
    """set_status 206 + set_headers text/plain + binary `hello` give 206, text/plain, hello (item 25)."""

    async def handler(data: Any) -> Any:
        out = data["response"]
        await out.send_message_async(control("set_status", status_code=206))
        await out.send_message_async(
            control("set_headers", headers={"content-type": "text/plain", "bad name": "x"})
        )
        await out.write(b"hel")
        await out.write(b"lo")
        await out.close_async()
        return None

    await http.route(worker, "s::h", handler, "/s")
    status, headers, body = await http.request("GET", "/s")
    assert (status, headers["content-type"], body) == (206, "text/plain", b"hello")
    assert headers["access-control-allow-origin"] == "*"
    assert not http.server.channels.channels


async def test_controls_then_close_without_body(http: HttpHarness, worker: III) -> None:
    """Controls followed by a close with no chunk give the set status and an empty body (item 25)."""

    async def handler(data: Any) -> Any:
        out = data["response"]
        await out.send_message_async(control("set_status", status_code=202))
        await out.send_message_async(control("set_headers", headers={"x-done": "yes"}))
        await out.close_async()
        return None

    await http.route(worker, "s::c", handler, "/c")
    status, headers, body = await http.request("GET", "/c")
    assert (status, headers["x-done"], body) == (202, "yes", b"")


async def test_large_download_arrives_intact(http: HttpHarness, worker: III) -> None:
    """A multi-megabyte binary (a PDF download) streams through in order (item 25)."""
    blob = b"%PDF-1.7\n" + bytes(range(256)) * 12_000

    async def handler(data: Any) -> Any:
        out = data["response"]
        await out.send_message_async(control("set_headers", headers={"content-type": "application/pdf"}))
        await out.write(blob)
        await out.close_async()
        return None

    await http.route(worker, "s::pdf", handler, "/doc.pdf")
    status, headers, body = await http.request("GET", "/doc.pdf")
    assert (status, headers["content-type"], body) == (200, "application/pdf", blob)


async def test_server_sent_events(http: HttpHarness, worker: III) -> None:
    """SSE: events reach the client one by one, while the handler is still producing (item 25)."""
    acked = asyncio.Event()

    async def handler(data: Any) -> Any:
        out = data["response"]
        await out.send_message_async(
            control("set_headers", headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        )
        await out.write(b"data: one\n\n")
        await acked.wait()  # the client saw the first event before the next is written
        for name in ("two", "three"):
            await out.write(f"data: {name}\n\n".encode())
        await out.close_async()
        return None

    await http.route(worker, "s::sse", handler, "/events")
    async with http.session.get(http.url + "/events") as response:
        assert response.headers["content-type"] == "text/event-stream"
        first = await response.content.readuntil(b"\n\n")
        assert first == b"data: one\n\n"
        acked.set()
        rest = await response.read()
    assert rest == b"data: two\n\ndata: three\n\n"


async def test_envelope_before_any_chunk_wins(http: HttpHarness, worker: III) -> None:
    """A handler that returns an envelope before writing a binary chunk decides the response (item 27)."""

    async def handler(data: Any) -> Any:
        await data["response"].send_message_async(control("set_status", status_code=299))
        return {"status_code": 201, "body": {"won": "envelope"}}

    await http.route(worker, "s::env", handler, "/env")
    assert await http.json("GET", "/env") == (201, {"won": "envelope"})


async def test_writer_after_return_is_awaited(http: HttpHarness, worker: III) -> None:
    """A null result followed by a late writer still streams (the §11.1 settle window)."""

    async def handler(data: Any) -> Any:
        out = data["response"]

        async def later() -> None:
            await out.write(b"late")
            await out.close_async()

        asyncio.get_running_loop().create_task(later())
        return None

    await http.route(worker, "s::late", handler, "/late")
    status, _, body = await http.request("GET", "/late")
    assert (status, body) == (200, b"late")


async def test_head_stream_has_no_body(http: HttpHarness, worker: III) -> None:
    """HEAD on a streaming GET route: the status and headers, chunks discarded (§12)."""

    async def handler(data: Any) -> Any:
        out = data["response"]
        await out.send_message_async(control("set_status", status_code=203))
        await out.write(b"body")
        await out.close_async()
        return None

    await http.route(worker, "s::head", handler, "/hs")
    status, _, body = await http.request("HEAD", "/hs")
    assert (status, body) == (203, b"")


async def test_remote_worker_streams(http: HttpHarness) -> None:
    """A remote SDK worker streams its response over the channel endpoint (§8.5)."""
    from pyiii import register_worker

    remote = await asyncio.to_thread(register_worker, http.server.url)
    try:

        async def handler(data: Any) -> Any:
            raw = await data["request_body"].read_all()
            out = data["response"]
            await out.send_message_async(control("set_headers", headers={"content-type": "text/plain"}))
            await out.write(raw.upper())
            await out.close_async()
            return None

        await http.route(remote, "s::remote", handler, "/upper", "POST")
        status, headers, body = await http.request(
            "POST", "/upper", data=b"shout", headers={"Content-Type": "text/plain"}
        )
        assert (status, headers["content-type"], body) == (200, "text/plain", b"SHOUT")
    finally:
        await remote.shutdown_async()


def test_control_message_edge_cases() -> None:
    """Statuses 100/599 taken, 99/600/"x" ignored, later headers overwrite, junk ignored (item 26)."""
    head = StreamHead()
    for status in (100, 599):
        head.apply(control("set_status", status_code=status).encode())
        assert head.status == status
    for bad in (99, 600, "201", 201.0, None):
        head.apply(json.dumps({"type": "set_status", "status_code": bad}).encode())
        assert head.status == 599
    head.apply(control("set_headers", headers={"x-a": "1", "X-A": "2", "n": 3}).encode())
    head.apply(control("set_headers", headers={"x-a": "3"}).encode())
    for junk in (b"", b"{", b"[]", b'{"type":"nope"}', b'{"type":"set_headers","headers":[1]}'):
        head.apply(junk)
    assert head.headers == {"x-a": "3", "X-A": "2"}
    assert head.header_lines() == [("x-a", "3"), ("X-A", "2")]
