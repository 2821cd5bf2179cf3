"""Bad input and failure at the listener: many joins, huge frames, slow and vanished clients
(spec/stream.md §3.2 rule 4, §3.4, §3.9, S5, S10; checklist item 19)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import aiohttp
from stream_harness import StreamHarness, frame_of, join

from helpers import TIME_FACTOR, compact
from pyiii.modules.stream.limits import StreamLimits

MIB = 1024 * 1024


async def test_ten_thousand_joins_on_one_socket(stream: StreamHarness) -> None:
    """10,000 joins on one socket each get their ``sync``; a change then reaches every subscription once."""
    client = await stream.client()
    for index in range(10_000):
        await client.send(join(f"sub-{index}", "s", f"g{index % 10}"))
    await client.barrier(timeout_s=60)
    assert len(client.received(frame_of("sync"))) == 10_000
    client.inbox.clear()
    await stream.set("s", "g3", "i", 1)
    await client.barrier()
    assert len(client.received(frame_of("create"))) == 1_000
    assert stream.stream.hub.subscription_count() == 10_000


async def test_subscription_cap_closes_with_1008(make_stream: Callable[..., StreamHarness]) -> None:
    """A join of a new id beyond ``max_subscriptions`` closes that connection with 1008; re-joins of held ids
    do not count; other clients are unaffected."""
    harness = await make_stream("memory", limits=StreamLimits(max_subscriptions=3)).start()
    client = await harness.client()
    other = await harness.client("/stream/s/g")
    await other.expect(frame_of("sync"))
    for index in range(3):
        await client.send(join(f"s{index}", "s", "g"))
    await client.send(join("s0", "s", "h"))  # a replacement, not a new one
    await client.barrier()
    await client.send(join("s3", "s", "g"))
    assert await client.wait_closed() == 1008
    await harness.set("s", "g", "i", 1)
    assert (await other.expect(frame_of("create")))["id"] == "i"


async def test_message_of_one_mib_is_accepted_larger_closes_1009(stream: StreamHarness) -> None:
    """§3.2 rule 4: a 1 MiB message is accepted; a larger one closes the connection with 1009; the engine and
    other clients are unaffected."""
    client = await stream.client()
    message = join("big", "s", "g", padding="")
    message["data"]["padding"] = "x" * (MIB - len(compact(message)))
    text = compact(message)
    assert len(text.encode()) == MIB
    await client.send(text)
    assert (await client.expect(frame_of("sync")))["event"]["data"] == []
    huge = await stream.client()
    await huge.send("x" * (MIB + 1))
    assert await huge.wait_closed() == 1009
    await client.barrier()


async def test_fragmented_message_over_the_limit_closes_1009(stream: StreamHarness) -> None:
    """§3.2 rule 4: the limit applies to the whole message, however it is fragmented."""
    client = await stream.client()
    await client.send_fragmented(b"y" * (2 * MIB), chunk=256 * 1024)
    assert await client.wait_closed() == 1009


class SilentClient:
    """A WebSocket client on a bare TCP socket that completes the handshake and then reads nothing until
    told to: the server sees a peer whose receive window is full (aiohttp's client would keep reading
    into its own buffers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, path: str) -> SilentClient:
        host, port = url.removeprefix("ws://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), limit=MIB)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        transport: Any = writer.transport
        transport.pause_reading()
        return cls(reader, writer)

    async def close_code(self) -> int | None:
        """Read everything the server sent until EOF; the code of its close frame (``None`` if none)."""
        transport: Any = self.writer.transport
        transport.resume_reading()
        data = await self.reader.read()
        offset = 0
        while offset + 2 <= len(data):
            opcode, size = data[offset] & 0x0F, data[offset + 1] & 0x7F
            offset += 2
            if size == 126:
                size = struct.unpack_from("!H", data, offset)[0]
                offset += 2
            elif size == 127:
                size = struct.unpack_from("!Q", data, offset)[0]
                offset += 8
            if opcode == 0x8:
                return int(struct.unpack_from("!H", data, offset)[0])
            offset += size
        return None

    def close(self) -> None:
        self.writer.close()


async def test_slow_consumer_is_closed_and_others_get_everything(
    make_stream: Callable[..., StreamHarness],
) -> None:
    """Checklist 19 (S5): a client that stops reading during a burst is closed with 1013 (or 1008) once its
    queue overflows; a reading client on the same group gets every event, in order."""
    harness = await make_stream("memory", limits=StreamLimits(queue_frames=16, close_timeout_s=30)).start()
    slow = await SilentClient.connect(harness.url, "/stream/s/g")
    fast = await harness.client("/stream/s/g")
    await fast.expect(frame_of("sync"))
    server = harness.stream.server
    blob = "z" * (64 * 1024)
    numbers = []
    sent = 0
    try:
        while server.slow_consumers == 0:
            assert sent < 5_000, "the client that stopped reading was never dropped"
            await harness.set("s", "g", f"i{sent % 4}", {"n": sent, "blob": blob})
            sent += 1
            # The reading client keeps up (it shares this loop with the writer, so it reads between writes).
            frame = await fast.expect(lambda f: f.get("type") == "stream")
            numbers.append(frame["event"]["data"]["n"])
        for _ in range(3):
            await harness.set("s", "g", "after", {"n": sent, "blob": ""})
            sent += 1
            numbers.append((await fast.expect(lambda f: f.get("type") == "stream"))["event"]["data"]["n"])
        assert numbers == list(range(sent))
        # Reading again, the silent client finds the close frame behind what its buffers already held.
        assert await slow.close_code() in (1013, 1008)
    finally:
        slow.close()
    await harness.idle()
    assert len(harness.stream.hub.connections) == 1


async def test_engine_keeps_serving_after_abrupt_disconnects(stream: StreamHarness) -> None:
    """S10: clients that vanish mid-join or mid-burst are torn down; the listener keeps serving."""
    for _ in range(20):
        client = await stream.client()
        await client.send(join("a", "s", "g"))
        client.ws._writer.transport.abort()  # no public API to drop a connection without a close frame
        await client.close()
    await stream.idle()
    fresh = await stream.client("/stream/s/g")
    await fresh.expect(frame_of("sync"))
    await stream.idle()
    assert len(stream.stream.hub.connections) == 1


async def test_http_garbage_on_the_stream_port(stream: StreamHarness) -> None:
    """§3.2 rule 1: non-upgrade requests of any method are answered and do not disturb the listener."""
    base = stream.url.replace("ws://", "http://")
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
            async with session.request(method, base + "/stream/s/g", data=b"x" * 100) as response:
                assert response.status == 426
    client = await stream.client("/stream/s/g")
    await client.expect(frame_of("sync"))


class SmallWindowClient(SilentClient):
    """A :class:`SilentClient` with a 4 KiB ``SO_RCVBUF``: what the server writes stays on its side."""

    @classmethod
    async def connect(cls, url: str, path: str) -> SilentClient:
        host, port = url.removeprefix("ws://").rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=MIB)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        transport: Any = writer.transport
        transport.pause_reading()
        return cls(reader, writer)


async def test_never_reading_client_is_dropped_after_bounded_bytes(
    make_stream: Callable[..., StreamHarness],
) -> None:
    """A client that never reads is closed with 1013 after a bounded number of bytes, not megabytes."""
    limits = StreamLimits(queue_frames=16, close_timeout_s=30, socket_unsent_bytes=64 * 1024)
    harness = await make_stream("memory", limits=limits).start()
    slow = await SmallWindowClient.connect(harness.url, "/stream/s/g")
    server = harness.stream.server
    blob = "z" * (16 * 1024)
    sent = 0
    try:
        while server.slow_consumers == 0:
            assert sent * len(blob) < 2 * MIB, "the client that never reads held megabytes before its drop"
            await harness.set("s", "g", f"i{sent % 4}", {"n": sent, "blob": blob})
            sent += 1
        assert await slow.close_code() in (1013, 1008)
    finally:
        slow.close()
    await harness.idle()
    assert not harness.stream.hub.connections


async def test_frame_larger_than_the_unsent_cap_reaches_a_reading_client(
    make_stream: Callable[..., StreamHarness],
) -> None:
    """The unsent-bytes cap is backpressure, not a frame limit: 2 MiB frames reach a reading client whole."""
    limits = StreamLimits(queue_frames=4, socket_unsent_bytes=16 * 1024)
    harness = await make_stream("memory", limits=limits).start()
    big = "b" * (2 * MIB)
    await harness.set("s", "g", "a", {"blob": big})
    client = await harness.client("/stream/s/g")
    sync = await client.expect(frame_of("sync"))
    assert sync["event"]["data"][0]["blob"] == big
    await harness.set("s", "g", "b", {"blob": big})
    assert (await client.expect(frame_of("create")))["event"]["data"]["blob"] == big
    assert harness.stream.server.slow_consumers == 0


async def test_joins_sent_at_once_never_overflow_the_queue(make_stream: Callable[..., StreamHarness]) -> None:
    """A client's own requests wait for it to read: 500 joins at once get 500 syncs, with a queue of 8."""
    limits = StreamLimits(queue_frames=8, socket_unsent_bytes=4096)
    harness = await make_stream("memory", limits=limits).start()
    await harness.set("s", "g", "i", {"blob": "x" * 4096})
    client = await harness.client()
    await asyncio.gather(*(client.send(join(f"sub-{index}", "s", "g")) for index in range(500)))
    await client.barrier(timeout_s=60)
    assert len(client.received(frame_of("sync"))) == 500
    assert harness.stream.server.slow_consumers == 0


async def test_slow_consumer_that_never_reads_is_aborted_after_close_timeout(
    make_stream: Callable[..., StreamHarness],
) -> None:
    """§3.9 rule 3: a slow consumer whose close frame is never read is aborted after ``close_timeout_s``."""
    limits = StreamLimits(queue_frames=4, close_timeout_s=0.2, socket_unsent_bytes=16 * 1024)
    harness = await make_stream("memory", limits=limits).start()
    slow = await SmallWindowClient.connect(harness.url, "/stream/s/g")
    server = harness.stream.server
    blob = "z" * (16 * 1024)
    try:
        for sent in range(1_000):
            if server.slow_consumers:
                break
            await harness.set("s", "g", "i", {"n": sent, "blob": blob})
        assert server.slow_consumers == 1
        (client,) = server._clients.values()  # its closer has not run yet: nothing awaited since the drop
        async with asyncio.timeout(10 * TIME_FACTOR):
            await client.wait_read_done()
        assert client.wire.lost()
        await harness.idle()
        assert not harness.stream.hub.connections
    finally:
        slow.close()
