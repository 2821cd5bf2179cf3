"""WebSocket text frames built by hand and written in batches (pyiii/protocol/wsframes.py).

Frame bytes are checked against RFC 6455 §5.2 (lengths) and §5.3 (masking), including the RFC's own
§5.7 examples. :class:`FrameBatch` is driven over real aiohttp connections (a real server and a real
client on loopback), in both directions, with and without permessage-deflate agreed; the batching
itself is observed through a thin proxy that forwards to the real transport and records its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from pyiii.protocol import wsframes
from pyiii.protocol.wsframes import (
    FrameBatch,
    mask_payload,
    masked_text_frame,
    text_frame_header,
    ws_close_frame,
    ws_text_frame,
)

TIMEOUT_S = 5.0
#: Payload sizes on both sides of each length form: 7-bit (<126), 16-bit (<65536), 64-bit.
BOUNDARY_SIZES = [0, 1, 125, 126, 127, 65535, 65536]
#: The exact header of a final, unmasked text frame of each boundary size (RFC 6455 §5.2).
EXPECTED_HEADERS = {
    0: b"\x81\x00",
    1: b"\x81\x01",
    125: b"\x81\x7d",
    126: b"\x81\x7e\x00\x7e",
    127: b"\x81\x7e\x00\x7f",
    65535: b"\x81\x7e\xff\xff",
    65536: b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00",
}
_END = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


# --------------------------------------------------------------------------------------------
# Helpers: an independent RFC 6455 frame parser, payloads, a real server and client


def xor_unmask(key: bytes, data: bytes) -> bytes:
    """RFC 6455 §5.3 written out byte by byte (independent of the module under test)."""
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(data))


def parse_frame(frame: bytes) -> tuple[int, bool, int, bytes | None, bytes]:
    """One whole frame: (first byte, mask bit, payload length, masking key, raw payload bytes).

    Checks that the length uses the shortest form (RFC 6455 §5.2: "the minimal number of bytes MUST
    be used") and that the frame holds exactly that many payload bytes.
    """
    first, second = frame[0], frame[1]
    masked = bool(second & 0x80)
    length = second & 0x7F
    pos = 2
    if length == 126:
        (length,) = struct.unpack_from("!H", frame, pos)
        pos += 2
        assert length >= 126, "16-bit form used for a length that fits in 7 bits"
    elif length == 127:
        (length,) = struct.unpack_from("!Q", frame, pos)
        pos += 8
        assert length >= 65536, "64-bit form used for a length that fits in 16 bits"
        assert not length >> 63, "the most significant bit of a 64-bit length must be 0"
    key = None
    if masked:
        key = frame[pos : pos + 4]
        pos += 4
    data = frame[pos:]
    assert len(data) == length
    return first, masked, length, key, data


_CHARS = ["a", "Z", "0", " ", '"', "\n", "é", "€", "😀"]  # 1 to 4 UTF-8 bytes


def text_payload(index: int, size: int) -> bytes:
    """Valid UTF-8 of exactly ``size`` bytes, different for each ``index``."""
    rng = random.Random(index)
    out = bytearray(f"{index}:".encode()[:size])
    while len(out) < size:
        char = rng.choice(_CHARS).encode()
        out += char if len(out) + len(char) <= size else b"a"
    return bytes(out)


def burst_payloads(count: int = 200) -> list[bytes]:
    """``count`` payloads of varying sizes: the length boundaries, one over 64 KiB, and small ones."""
    sizes = [*BOUNDARY_SIZES, 70_000]
    sizes += [(i * 977) % 3000 for i in range(count - len(sizes))]
    return [text_payload(i, size) for i, size in enumerate(sizes)]


class RecordingTransport(asyncio.Transport):
    """Forwards to a real transport and records each ``write``/``writelines`` (with its chunk count)."""

    def __init__(self, real: asyncio.Transport) -> None:
        super().__init__()
        self.real = real
        self.calls: list[tuple[str, int]] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", 1))
        self.real.write(data)

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        chunks = list(list_of_data)
        self.calls.append(("writelines", len(chunks)))
        self.real.writelines(chunks)

    def is_closing(self) -> bool:
        return self.real.is_closing()

    def close(self) -> None:
        self.real.close()

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def ws_server(handler: Handler) -> AsyncIterator[str]:
    """A real aiohttp server on a free loopback port, routing ``/`` to ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def receiving_handler(received: asyncio.Queue[aiohttp.WSMessage], **options: Any) -> Handler:
    """A server handler that queues every message it receives, the closing one included."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, **options)
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            received.put_nowait(msg)
            if msg.type in _END:
                return ws

    return handler


def client_transport(ws: aiohttp.ClientWebSocketResponse) -> asyncio.Transport:
    """The socket's transport, where aiohttp keeps it (as pyiii/sdk/remote.py reads it)."""
    transport = ws._writer.transport
    assert transport is not None
    return transport


async def take_texts(queue: asyncio.Queue[aiohttp.WSMessage], count: int) -> list[bytes]:
    """The next ``count`` messages of ``queue``, each asserted to be a TEXT message, as UTF-8 bytes."""
    texts = []
    for _ in range(count):
        msg = await asyncio.wait_for(queue.get(), TIMEOUT_S)
        assert msg.type is WSMsgType.TEXT, msg
        texts.append(msg.data.encode())
    return texts


async def receive_texts(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[bytes]:
    texts = []
    for _ in range(count):
        msg = await ws.receive(timeout=TIMEOUT_S)
        assert msg.type is WSMsgType.TEXT, msg
        texts.append(msg.data.encode())
    return texts


# --------------------------------------------------------------------------------------------
# Frame headers and unmasked frames (RFC 6455 §5.2)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_text_frame_header_exact_bytes(size: int) -> None:
    """FIN + text opcode, no mask bit, the shortest of the three length forms."""
    assert text_frame_header(size) == EXPECTED_HEADERS[size]


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_text_frame_header_with_mask_bit(size: int) -> None:
    """The mask bit is the top bit of the second byte; the extended length is unchanged."""
    expected = bytearray(EXPECTED_HEADERS[size])
    expected[1] |= 0x80
    assert text_frame_header(size, 0x80) == bytes(expected)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_ws_text_frame_exact_bytes(size: int) -> None:
    payload = text_payload(size, size)
    frame = ws_text_frame(payload)
    assert frame == EXPECTED_HEADERS[size] + payload
    first, masked, length, key, data = parse_frame(frame)
    assert (first, masked, length, key, data) == (0x81, False, size, None, payload)


def test_rfc6455_unmasked_example() -> None:
    """RFC 6455 §5.7: a single-frame unmasked text message "Hello"."""
    assert ws_text_frame(b"Hello") == bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])


def test_ws_close_frame() -> None:
    """RFC 6455 §5.5.1: FIN + close opcode, unmasked, the status code in network order, then the reason."""
    assert ws_close_frame(1000) == b"\x88\x02\x03\xe8"
    assert ws_close_frame(1001, b"bye") == b"\x88\x05\x03\xe9bye"
    # A control frame's payload is at most 125 bytes: the reason is cut to 123.
    long = ws_close_frame(1011, b"r" * 200)
    assert long == b"\x88\x7d\x03\xf3" + b"r" * 123
    # ... at a character boundary: the reason must stay valid UTF-8 (a client fails the connection
    # otherwise). 61 two-byte characters and one more: byte 123 would split the 62nd.
    cut = ws_close_frame(1011, ("é" * 62).encode())
    assert cut == b"\x88\x7c\x03\xf3" + ("é" * 61).encode()
    assert cut[4:].decode("utf-8") == "é" * 61


# --------------------------------------------------------------------------------------------
# Masked frames (RFC 6455 §5.3)


@pytest.mark.parametrize("size", [*BOUNDARY_SIZES, 70_000])
def test_masked_text_frame_parses_and_unmasks(size: int) -> None:
    payload = text_payload(size, size)
    frame = masked_text_frame(payload)
    first, masked, length, key, data = parse_frame(frame)
    assert first == 0x81
    assert masked
    assert length == size
    assert key is not None and len(key) == 4
    if size in EXPECTED_HEADERS:  # the unmasked header with the mask bit set, then the key
        header = bytearray(EXPECTED_HEADERS[size])
        header[1] |= 0x80
        assert frame[: len(header) + 4] == bytes(header) + key
    assert xor_unmask(key, data) == payload


@pytest.mark.parametrize("size", [0, 5, 126, 65536])
def test_masked_text_frame_with_python_fallback(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsframes, "_c_mask", None)
    payload = text_payload(size, size)
    _, masked, length, key, data = parse_frame(masked_text_frame(payload))
    assert masked and length == size and key is not None
    assert xor_unmask(key, data) == payload


def test_masked_frames_use_fresh_keys() -> None:
    """A fresh random key per frame: the same payload masked twice gives two different keys."""
    payload = b"the same payload"
    first = parse_frame(masked_text_frame(payload))
    second = parse_frame(masked_text_frame(payload))
    assert first[3] != second[3]
    assert first[4] != second[4]  # so the bytes on the wire differ too
    keys = {parse_frame(masked_text_frame(payload))[3] for _ in range(20)}
    assert len(keys) == 20


# --------------------------------------------------------------------------------------------
# mask_payload: the C path and the pure-Python fallback


MASK_SIZES = [*range(10), 15, 16, 17, 63, 64, 65, 1000, 4099, 65536, 70_001]


def test_mask_payload_rfc6455_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d, on both paths."""
    key, expected = b"\x37\xfa\x21\x3d", b"\x7f\x9f\x4d\x51\x58"
    assert mask_payload(key, b"Hello") == expected
    monkeypatch.setattr(wsframes, "_c_mask", None)
    assert mask_payload(key, b"Hello") == expected


@pytest.mark.skipif(wsframes._c_mask is None, reason="aiohttp's C masking helper is not available")
@pytest.mark.parametrize("size", MASK_SIZES)
def test_mask_payload_c_and_python_agree(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(size)
    for key in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", rng.randbytes(4), os.urandom(4)):
        payload = rng.randbytes(size)
        with_c = mask_payload(key, payload)
        with monkeypatch.context() as patch:
            patch.setattr(wsframes, "_c_mask", None)
            with_python = mask_payload(key, payload)
        assert type(with_c) is bytes and type(with_python) is bytes
        assert with_c == with_python
        assert len(with_c) == size
        if size < 5000:
            assert with_c == xor_unmask(key, payload)


@pytest.mark.parametrize("use_c", [True, False])
@pytest.mark.parametrize("size", MASK_SIZES)
def test_mask_payload_twice_is_identity(size: int, use_c: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if use_c and wsframes._c_mask is None:
        pytest.skip("aiohttp's C masking helper is not available")
    if not use_c:
        monkeypatch.setattr(wsframes, "_c_mask", None)
    key = os.urandom(4)
    payload = os.urandom(size)
    assert mask_payload(key, mask_payload(key, payload)) == payload


def test_mask_payload_leading_zero_bytes_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback goes through an int: leading zero bytes of the result must not be lost."""
    monkeypatch.setattr(wsframes, "_c_mask", None)
    key = b"\x01\x02\x03\x04"
    assert mask_payload(key, key * 3) == bytes(12)
    assert mask_payload(key, b"\x01\x02") == b"\x00\x00"


# --------------------------------------------------------------------------------------------
# FrameBatch over a real connection


async def client_to_server(compress: int) -> None:
    """A client FrameBatch (masked) writes a burst; the aiohttp server gets every message, in order."""
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    payloads = burst_payloads()
    async with ws_server(receiving_handler(received)) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, compress=compress, max_msg_size=1 << 20)
        assert ws.compress == compress  # RSV1-clear frames are valid under permessage-deflate too
        batch = FrameBatch(client_transport(ws), asyncio.get_running_loop(), mask=True)
        for payload in payloads:  # one synchronous burst
            assert batch.write(payload)
        assert await take_texts(received, len(payloads)) == payloads
        await ws.close()
        closing = await asyncio.wait_for(received.get(), TIMEOUT_S)
        assert closing.type is WSMsgType.CLOSE  # aiohttp's close frame came after every batched frame


async def server_to_client(compress: int) -> None:
    """A server FrameBatch (unmasked) writes a burst; the aiohttp client gets every message, in order."""
    payloads = burst_payloads()
    burst_written = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        batch = FrameBatch(request.transport, asyncio.get_running_loop(), mask=False)
        for payload in payloads:
            assert batch.write(payload)
        burst_written.set()
        async for _ in ws:  # until the client closes
            pass
        return ws

    async with ws_server(handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, compress=compress, max_msg_size=1 << 20)
        assert ws.compress == compress
        assert await receive_texts(ws, len(payloads)) == payloads
        assert burst_written.is_set()
        await ws.close()


@pytest.mark.parametrize("compress", [0, 15])
async def test_client_batch_reaches_aiohttp_server(compress: int) -> None:
    await client_to_server(compress)


@pytest.mark.parametrize("compress", [0, 15])
async def test_server_batch_reaches_aiohttp_client(compress: int) -> None:
    await server_to_client(compress)


def test_both_directions_on_uvloop() -> None:
    """The same round trips on uvloop (the engine's loop), whose ``writelines`` is one ``writev``."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(client_to_server(15))
        runner.run(server_to_client(15))


# --------------------------------------------------------------------------------------------
# Batching: one writelines per loop iteration, flush() at once


async def test_one_writelines_per_loop_iteration() -> None:
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    payloads = burst_payloads(60)
    async with ws_server(receiving_handler(received)) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, max_msg_size=1 << 20)
        recorder = RecordingTransport(client_transport(ws))
        batch = FrameBatch(recorder, asyncio.get_running_loop(), mask=True)

        for payload in payloads[:40]:
            assert batch.write(payload)
        assert recorder.calls == []  # nothing written before the loop gets control
        await asyncio.sleep(0)  # the loop runs its callbacks once: the call_soon flush among them
        assert recorder.calls == [("writelines", 40)]  # one masked frame per chunk
        assert await take_texts(received, 40) == payloads[:40]
        assert recorder.calls == [("writelines", 40)]

        # The next iteration's writes form the next batch.
        for payload in payloads[40:]:
            assert batch.write(payload)
        assert recorder.calls == [("writelines", 40)]
        await asyncio.sleep(0)
        assert recorder.calls == [("writelines", 40), ("writelines", 20)]
        assert await take_texts(received, 20) == payloads[40:]
        await ws.close()


@pytest.mark.parametrize("mask", [True, False])
async def test_late_frames_follow_the_iterations_other_frames(mask: bool) -> None:
    """``write_late`` frames go out in the iteration's one ``writelines``, after every frame written
    with ``write`` in that iteration (whenever written), in their own order; a batch of late frames
    alone is written too, and late frames of one iteration never wait for the next."""
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    parts = 1 if mask else 2
    if mask:
        server = ws_server(receiving_handler(received))
    else:

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            assert request.transport is not None
            served.set_result((ws, request.transport))
            async for _ in ws:
                pass
            return ws

        served: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        server = ws_server(handler)
    async with server as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        if mask:
            transport = client_transport(ws)
        else:
            _, transport = await asyncio.wait_for(served, TIMEOUT_S)
        recorder = RecordingTransport(transport)
        batch = FrameBatch(recorder, asyncio.get_running_loop(), mask=mask)

        async def texts(count: int) -> list[bytes]:
            return await (take_texts(received, count) if mask else receive_texts(ws, count))

        assert batch.write_late(b"log 1")
        assert batch.write(b"call 1")
        assert batch.write_late(b"log 2")
        assert batch.write(b"call 2")
        assert recorder.calls == []
        await asyncio.sleep(0)
        assert recorder.calls == [("writelines", 4 * parts)]
        assert await texts(4) == [b"call 1", b"call 2", b"log 1", b"log 2"]

        assert batch.write_late(b"log 3")  # alone in its iteration
        await asyncio.sleep(0)
        assert recorder.calls == [("writelines", 4 * parts), ("writelines", parts)]
        assert batch.write(b"call 3")
        batch.flush()  # a flush (before a close frame) writes both lanes too
        assert batch.write_late(b"log 4")
        batch.flush()
        assert recorder.calls[2:] == [("writelines", parts), ("writelines", parts)]
        assert await texts(3) == [b"log 3", b"call 3", b"log 4"]
        await ws.close()


async def test_unmasked_batch_is_one_writelines_of_headers_and_payloads() -> None:
    """Server side: each frame is two chunks (header, payload), still one writelines per iteration."""
    payloads = burst_payloads(30)
    calls: list[list[tuple[str, int]]] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        recorder = RecordingTransport(request.transport)
        calls.append(recorder.calls)
        batch = FrameBatch(recorder, asyncio.get_running_loop(), mask=False)
        for payload in payloads:
            assert batch.write(payload)
        assert recorder.calls == []
        async for _ in ws:
            pass
        return ws

    async with ws_server(handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, max_msg_size=1 << 20)
        assert await receive_texts(ws, len(payloads)) == payloads
        assert calls == [[("writelines", 2 * len(payloads))]]
        await ws.close()


async def test_flush_writes_at_once() -> None:
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    payloads = [b"first", "second: é€😀".encode(), b""]
    async with ws_server(receiving_handler(received)) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        real = client_transport(ws)
        recorder = RecordingTransport(real)
        batch = FrameBatch(recorder, asyncio.get_running_loop(), mask=True)

        for payload in payloads:
            assert batch.write(payload)
        batch.flush()
        # Handed to the real transport synchronously, and (small frames, loopback) already in the
        # kernel: nothing is left in the transport's buffer for a later callback to send.
        assert recorder.calls == [("writelines", 3)]
        assert real.get_write_buffer_size() == 0
        batch.flush()  # nothing pending: no empty write
        assert recorder.calls == [("writelines", 3)]

        assert await take_texts(received, 3) == payloads
        # The flush that write() scheduled found nothing left to send.
        assert recorder.calls == [("writelines", 3)]

        # After a flush, the next write in the same iteration starts a new batch.
        assert batch.write(b"again")
        assert recorder.calls == [("writelines", 3)]
        assert await take_texts(received, 1) == [b"again"]
        assert recorder.calls == [("writelines", 3), ("writelines", 1)]
        await ws.close()


# --------------------------------------------------------------------------------------------
# A closed transport


async def _capture_loop_errors() -> list[dict[str, Any]]:
    """What reaches this test's loop exception handler (an exception in the call_soon flush would)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
    return errors


async def test_write_after_transport_close_returns_false() -> None:
    errors = await _capture_loop_errors()
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    async with ws_server(receiving_handler(received)) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        recorder = RecordingTransport(client_transport(ws))
        batch = FrameBatch(recorder, asyncio.get_running_loop(), mask=True)
        recorder.close()
        assert batch.write(b"lost") is False
        batch.flush()
        await asyncio.sleep(0)
        assert recorder.calls == []
        # The server sees the connection go, and never a text message.
        msg = await asyncio.wait_for(received.get(), TIMEOUT_S)
        assert msg.type in _END
    assert errors == []


async def test_frames_pending_when_transport_closes_are_dropped_quietly() -> None:
    """write() queued frames, then the transport closed before the loop ran: the flush is a no-op."""
    errors = await _capture_loop_errors()
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    async with ws_server(receiving_handler(received)) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        recorder = RecordingTransport(client_transport(ws))
        batch = FrameBatch(recorder, asyncio.get_running_loop(), mask=True)
        assert batch.write(b"queued")
        recorder.close()
        assert batch.write(b"queued too") is True  # the batch of this iteration is already open
        await asyncio.sleep(0)  # the scheduled flush runs against a closing transport
        batch.flush()
        assert recorder.calls == []
        assert batch.write(b"next iteration") is False
        msg = await asyncio.wait_for(received.get(), TIMEOUT_S)
        assert msg.type in _END
    assert errors == []


async def test_write_after_server_closed_the_connection() -> None:
    errors = await _capture_loop_errors()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=1001, message=b"going away")
        return ws

    async with ws_server(handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        transport = client_transport(ws)
        batch = FrameBatch(transport, asyncio.get_running_loop(), mask=True)
        msg = await ws.receive(timeout=TIMEOUT_S)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1001
        assert ws.closed
        assert transport.is_closing()
        assert batch.write(b"too late") is False
        batch.flush()
        await asyncio.sleep(0)
    assert errors == []


async def test_write_after_server_dropped_the_socket() -> None:
    """The server end goes away without a close frame: once the client has seen it, write is False."""
    errors = await _capture_loop_errors()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        request.transport.close()
        return ws

    async with ws_server(handler) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        transport = client_transport(ws)
        batch = FrameBatch(transport, asyncio.get_running_loop(), mask=True)
        msg = await ws.receive(timeout=TIMEOUT_S)
        assert msg.type in _END
        assert transport.is_closing()
        assert batch.write(b"too late") is False
        batch.flush()
        await asyncio.sleep(0)
    assert errors == []


class DyingTransport(RecordingTransport):
    """A real transport whose socket dies between the ``is_closing`` check and the write (the one
    case here no real transport produces on demand)."""

    def __init__(self, real: asyncio.Transport, error: Exception) -> None:
        super().__init__(real)
        self.error = error

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        self.calls.append(("writelines", len(list(list_of_data))))
        raise self.error


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), RuntimeError("closed")])
async def test_flush_swallows_a_socket_that_died(error: Exception) -> None:
    errors = await _capture_loop_errors()
    received: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
    async with ws_server(receiving_handler(received)) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        dying = DyingTransport(client_transport(ws), error)
        batch = FrameBatch(dying, asyncio.get_running_loop(), mask=True)
        assert batch.write(b"a") and batch.write(b"b")
        batch.flush()
        assert dying.calls == [("writelines", 2)]
        assert batch.write(b"c")  # the transport still says it is open: a new batch
        await asyncio.sleep(0)  # the scheduled flush hits the error too, inside the loop
        assert dying.calls == [("writelines", 2), ("writelines", 1)]
        await ws.close()
    assert errors == []
