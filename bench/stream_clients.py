"""Subscriber processes of ``bench/stream_fanout.py``: many lean WebSocket clients per process.

Each process holds up to several thousand stream-listener connections per variant (the floor and
pyiii), subscribed with the reference protocol's ``join`` (spec/stream.md §3.5), and notes when
each event frame arrives. It answers the orchestrator's JSON commands on stdin (one result line each,
see ``_common``): ``connect``, ``disconnect``, ``arm`` / ``collect`` (one event to every connection:
first and last receipt), ``record`` / ``collect`` (a paced run: send->receipt latency of every frame),
``slow_connect`` / ``slow_check`` (a subscriber that never reads).

Why not aiohttp's client here: the subscribers share 2 CPUs with the server under test, and an
aiohttp ``ClientWebSocketResponse`` costs several times the server's per-frame work to receive a
frame, so the clients' receive path, not the server, would set the time to last delivery and squeeze
every ratio towards 1. These clients are an ``asyncio.Protocol`` that does the RFC 6455 handshake
itself, sends masked text frames and parses unmasked server frames (no fragments, no extensions:
neither server sends them); a frame costs a regex search for its ``"seq"`` and ``"t0"``. Receipt time
is ``time.monotonic_ns()`` taken once per ``data_received`` (one system-wide clock: the publisher's
``t0`` is comparable).

Connections of process ``i`` bind the source address ``127.0.0.<2+i>``, so each process has its own
ephemeral port range (20,000 sockets on 127.0.0.1 alone would exhaust it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import commands, emit, pin_cpu_from_env

_EVENT = re.compile(rb'"seq":(\d+),"t0":(\d+)')
_EMIT_LOCK = threading.Lock()
CONNECT_CONCURRENCY = 200


def say(event: str, **fields: Any) -> None:
    with _EMIT_LOCK:
        emit(event, **fields)


def raise_nofile() -> int:
    """Lift the soft open-files limit to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def masked_text_frame(payload: bytes) -> bytes:
    """A client->server text frame (FIN, opcode 1, masked as RFC 6455 §5.3 requires)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    body = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return header + mask + body


def masked_control_frame(opcode: int, payload: bytes = b"") -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


class Recorder:
    """What one variant's connections are waiting for: one event (``arm``) or a paced run (``record``)."""

    def __init__(self, seq_from: int, seq_to: int, expected: int, keep_latency: bool) -> None:
        self.seq_from = seq_from
        self.seq_to = seq_to
        self.expected = expected
        self.keep_latency = keep_latency
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.samples_ns: list[int] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if expected == 0:
            self.done.set_result(None)

    def on_event(self, seq: int, t0: int, now: int) -> None:
        if not (self.seq_from <= seq < self.seq_to):
            return
        self.count += 1
        if self.first_ns == 0:
            self.first_ns = now
        self.last_ns = now
        if self.keep_latency:
            self.samples_ns.append(now - t0)
        if self.count >= self.expected and not self.done.done():
            self.done.set_result(None)


class Conn(asyncio.Protocol):
    """One subscriber: handshake, join, then every event frame goes to its variant's recorder."""

    def __init__(self, owner: Variant, host: str, port: int, path: str, join: bytes) -> None:
        self.owner = owner
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.join = join
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.frames = 0
        self.live = False  # subscribed and reading: the fast path applies
        self.counted = True  # its events go to the recorder (not the slow-phase extras)
        self.never_reads = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport: not a subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self.buf
        # Fast path (nearly every read): exactly one text frame (< 64 KiB) of a live subscription.
        if (
            self.live
            and not buf
            and data[0] == 0x81
            and (data[1] == len(data) - 2 or (data[1] == 126 and data[2] << 8 | data[3] == len(data) - 4))
        ):
            recorder = self.owner.recorder
            if recorder is not None:
                m = _EVENT.search(data)
                if m is not None:
                    recorder.on_event(int(m.group(1)), int(m.group(2)), now)
            return
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self._fail(f"no upgrade: {status.decode(errors='replace')}")
                return
            del buf[: end + 4]
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(self.join)
        self._frames(now)

    def _frames(self, now: int) -> None:
        buf = self.buf
        i, n = 0, len(buf)
        while n - i >= 2:
            b1 = buf[i + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - i < 4:
                    break
                length = int.from_bytes(buf[i + 2 : i + 4], "big")
                head = 4
            elif length == 127:
                if n - i < 10:
                    break
                length = int.from_bytes(buf[i + 2 : i + 10], "big")
                head = 10
            if n - i < head + length:
                break
            opcode = buf[i] & 0x0F
            payload = bytes(buf[i + head : i + head + length])
            i += head + length
            self._frame(opcode, payload, now)
        if i:
            del buf[:i]

    def _frame(self, opcode: int, payload: bytes, now: int) -> None:
        self.frames += 1
        if opcode == 1:
            if not self.subscribed.done():
                if b'"sync"' in payload:
                    self.subscribed.set_result(None)
                    self.live = True
                return
            m = _EVENT.search(payload) if self.counted else None
            if m is not None:
                recorder = self.owner.recorder
                if recorder is not None:
                    recorder.on_event(int(m.group(1)), int(m.group(2)), now)
        elif opcode == 9 and self.transport is not None:  # ping -> pong
            self.transport.write(masked_control_frame(0xA, payload))
        elif opcode == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.closed.done():
                self.closed.set_result(code)
            if self.transport is not None:
                self.transport.close()

    def _fail(self, message: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(message))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"lost before sync: {exc}"))
        if not self.closed.done():
            self.closed.set_result(1006)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_control_frame(0x8, (1000).to_bytes(2, "big")))
            self.transport.close()


class Variant:
    """The connections of one variant (``floor`` or ``pyiii``) in this process."""

    def __init__(self, url: str, stream: str, group: str, source_ip: str) -> None:
        rest = url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        self.host, _, port = hostport.partition(":")
        self.port = int(port)
        self.path = "/" + path
        self.source_ip = source_ip
        self.stream, self.group = stream, group
        self.join = self.joins(1)
        self.conns: list[Conn] = []
        self.slow: list[Conn] = []
        self.recorder: Recorder | None = None

    def joins(self, count: int) -> bytes:
        """``count`` join frames for the group, subscriptionIds ``bench-0``... (one frame per event each)."""
        return b"".join(
            masked_text_frame(
                json.dumps(
                    {
                        "type": "join",
                        "data": {
                            "subscriptionId": f"bench-{i}",
                            "streamName": self.stream,
                            "groupId": self.group,
                            "id": None,
                        },
                    },
                    separators=(",", ":"),
                ).encode()
            )
            for i in range(count)
        )

    async def open_one(self, rcvbuf: int | None = None, join: bytes | None = None) -> Conn:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((self.source_ip, 0))
        await loop.sock_connect(sock, (self.host, self.port))
        _, conn = await loop.create_connection(
            lambda: Conn(self, self.host, self.port, self.path, join or self.join), sock=sock
        )
        await asyncio.wait_for(conn.subscribed, 30)
        return conn

    async def connect(self, count: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> Conn:
            async with gate:
                return await self.open_one()

        self.conns.extend(await asyncio.gather(*(one() for _ in range(count))))
        return {"connected": len(self.conns), "seconds": time.perf_counter() - t0}

    async def disconnect(self) -> dict[str, Any]:
        conns, self.conns = self.conns, []
        for conn in conns + self.slow:
            conn.close()
        self.slow = []
        await asyncio.gather(*(asyncio.wait_for(c.closed, 10) for c in conns), return_exceptions=True)
        return {"closed": len(conns)}

    async def collect(self, timeout_s: float) -> dict[str, Any]:
        recorder = self.recorder
        assert recorder is not None
        try:
            await asyncio.wait_for(asyncio.shield(recorder.done), timeout_s)
        except TimeoutError:
            pass
        self.recorder = None
        out: dict[str, Any] = {
            "count": recorder.count,
            "expected": recorder.expected,
            "first_ns": recorder.first_ns,
            "last_ns": recorder.last_ns,
        }
        if recorder.keep_latency:
            out["samples_ns"] = recorder.samples_ns
        return out

    async def slow_connect(self, subscriptions: int, reading: bool = False) -> dict[str, Any]:
        """One subscriber that never reads after its first sync: a tiny receive buffer, reading paused.

        It joins the group ``subscriptions`` times, so it is sent that many frames per event (§3.9)
        and its queue fills within seconds at a rate the 1,000 normal subscribers can take.
        ``reading``: the control, the same joins on a client that reads everything (not recorded), to
        tell the cost of the extra deliveries from the cost of the slow socket."""
        if reading:
            conn = await self.open_one(join=self.joins(subscriptions))
        else:
            conn = await self.open_one(rcvbuf=4096, join=self.joins(subscriptions))
            conn.never_reads = True
        conn.live = False  # parse its frames one by one (several per read), never the fast path
        conn.counted = False
        assert conn.transport is not None
        if not reading:
            conn.transport.pause_reading()
        self.slow.append(conn)
        return {"slow": len(self.slow)}

    async def slow_check(self, timeout_s: float) -> dict[str, Any]:
        """Read again and report how each slow subscriber ended: the close code, or still open."""
        out = []
        for conn in self.slow:
            before = conn.frames
            assert conn.transport is not None
            if not conn.never_reads:  # the reading control: it stays open; close it
                out.append({"close_code": None, "frames_read_after": 0, "reading": True})
                conn.close()
                continue
            if not conn.transport.is_closing():
                conn.transport.resume_reading()
            try:
                code: int | None = await asyncio.wait_for(asyncio.shield(conn.closed), timeout_s)
            except TimeoutError:
                code = None
            out.append({"close_code": code, "frames_read_after": conn.frames - before})
            conn.close()
        self.slow = []
        return {"slow": out}


class Clients:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.variants = {
            name: Variant(url, plan["stream"], plan["group"], plan["source_ip"])
            for name, url in plan["targets"].items()
        }

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        v = self.variants[cmd["variant"]]
        kind = cmd["cmd"]
        if kind == "connect":
            return await v.connect(int(cmd["count"]))
        if kind == "disconnect":
            return await v.disconnect()
        if kind == "arm":  # one event, every connection: first/last receipt
            seq = int(cmd["seq"])
            v.recorder = Recorder(seq, seq + 1, len(v.conns), keep_latency=False)
            return {"armed": seq}
        if kind == "record":  # a paced run: latency of every frame with seq in [seq_from, seq_to)
            a, b = int(cmd["seq_from"]), int(cmd["seq_to"])
            v.recorder = Recorder(a, b, (b - a) * len(v.conns), keep_latency=True)
            return {"armed": a}
        if kind == "collect":
            return await v.collect(float(cmd.get("timeout_s", 10)))
        if kind == "slow_connect":
            return await v.slow_connect(int(cmd.get("subscriptions", 1)), bool(cmd.get("reading", False)))
        if kind == "slow_check":
            return await v.slow_check(float(cmd.get("timeout_s", 10)))
        raise ValueError(f"unknown command {kind!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--plan", required=True, help="JSON: targets {variant: url}, stream, group, source_ip"
    )
    args = parser.parse_args(argv)
    pin_cpu_from_env()
    raise_nofile()
    import uvloop

    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_forever, name="clients", daemon=True).start()
    clients = Clients(json.loads(args.plan))
    say("ready", pid=os.getpid())
    for cmd in commands():
        try:
            result = asyncio.run_coroutine_threadsafe(clients.handle(cmd), loop).result(600)
            say("result", **result)
        except Exception as exc:
            say("error", message=f"{type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
