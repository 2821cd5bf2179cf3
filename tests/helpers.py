"""Raw WebSocket workers for the engine's own tests: JSON frames in, JSON frames out, nothing hidden.

A :class:`RawWorker` is one connection on ``/`` driven by hand, so a test can assert exactly what goes
on the wire. A background task reads every frame into an inbox; :meth:`RawWorker.expect` takes the
first matching frame out of it (waiting for it if needed). Each received text frame is a
:class:`Frame`: the parsed JSON object, with the exact text in ``.raw``.

Absence is checked without sleeping: :meth:`RawWorker.barrier` sends a JSON ``ping`` and waits for
its ``pong``. The engine processes one connection's messages in order and writes one connection's
frames in order, so once the pong is in, every frame caused by earlier messages of that connection
is in too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import struct
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType

#: Multiplies every wait: set it above 1 on slow machines.
TIME_FACTOR = float(os.environ.get("PYIII_TEST_TIME_FACTOR", "1"))
#: Default wait for one frame.
TIMEOUT_S = 5.0
MIB = 1024 * 1024

#: Pass as ``data`` to leave the field out of an ``invokefunction``.
ABSENT: Any = object()
#: Return it from a :meth:`RawWorker.serve` handler to never answer the invocation.
NO_REPLY: Any = object()

_pids = itertools.count(40_000)

Predicate = str | dict[str, Any] | Callable[["Frame"], bool]


class Frame(dict[str, Any]):
    """A received JSON frame; ``raw`` is the text exactly as it came off the socket."""

    raw: str = ""


class HandlerError(Exception):
    """Raise from a :meth:`RawWorker.serve` handler to answer with this error body."""

    def __init__(self, code: str, message: str, stacktrace: str | None = None) -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {"code": code, "message": message}
        if stacktrace is not None:
            self.body["stacktrace"] = stacktrace


def compact(obj: Any) -> str:
    """JSON as the SDKs and the engine write it: no spaces."""
    return json.dumps(obj, separators=(",", ":"))


def _matcher(pred: Predicate) -> Callable[[Frame], bool]:
    if isinstance(pred, str):
        return lambda f: f.get("type") == pred
    if isinstance(pred, dict):
        wanted = pred
        return lambda f: all(k in f and f[k] == v for k, v in wanted.items())
    return pred


def ws_url(url: str, path: str = "/") -> str:
    return url.rstrip("/") + path


class RawWorker:
    """One hand-driven connection on ``/`` (or any other path)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        #: Frames received and not taken by :meth:`expect` yet.
        self.inbox: list[Frame] = []
        #: Every text frame received, in order.
        self.history: list[Frame] = []
        #: Binary frames received (the engine never sends any).
        self.binary: list[bytes] = []
        #: WebSocket pings received while ``autoping`` is off (they are never answered).
        self.pings = 0
        #: Payloads of WebSocket pongs received while ``autoping`` is off.
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self.worker_id = ""
        self.reattach_token = ""
        self._arrived = asyncio.Event()
        self._handlers: dict[str, Callable[[Frame], Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader = asyncio.create_task(self._read())

    # -- connecting ------------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        path: str = "/",
        headers: dict[str, str] | None = None,
        autoping: bool = True,
        compress: int = 0,
        hello: bool = True,
    ) -> RawWorker:
        """Open ``url + path``; with ``hello`` read the ``workerregistered`` frame first.

        ``autoping=False`` makes a peer that never answers WebSocket pings.
        """
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                ws_url(url, path), headers=headers, autoping=autoping, compress=compress, max_msg_size=0
            )
        except BaseException:
            await session.close()
            raise
        worker = cls(session, ws)
        if hello:
            first = await worker.expect("workerregistered")
            worker.worker_id = first["worker_id"]
            worker.reattach_token = first["reattach_token"]
        return worker

    async def close(self) -> None:
        """Close the socket (close code 1000) and stop the background tasks."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self.session.close()

    async def freeze(self) -> None:
        """Stop reading the socket for good: no pong, no close reply (a half-open peer)."""
        for task in list(self._tasks):
            task.cancel()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader

    async def wait_closed(self, timeout_s: float = TIMEOUT_S) -> int | None:
        """Wait until the engine closed the socket; returns the close code."""
        await asyncio.wait_for(self.closed.wait(), timeout_s * TIME_FACTOR)
        return self.close_code

    # -- sending ---------------------------------------------------------------------------------
    async def send(self, obj: Any) -> None:
        """Send one frame: a str or bytes as is (text / binary), anything else as compact JSON text."""
        if isinstance(obj, bytes):
            await self.ws.send_bytes(obj)
        elif isinstance(obj, str):
            await self.ws.send_str(obj)
        else:
            await self.ws.send_str(compact(obj))

    async def send_fragmented(self, payload: bytes, *, text: bool = True, chunk: int = MIB) -> None:
        """Send one message as several frames of ``chunk`` bytes (as the Python SDK does over 16 MiB).

        aiohttp has no API for continuation frames, so the frames are written to the transport
        directly (with a zero mask, which leaves the payload as is). Needs ``compress=0``.
        """
        transport = self.ws._writer.transport  # no public API for fragments
        pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)] or [b""]
        for index, piece in enumerate(pieces):
            opcode = (0x1 if text else 0x2) if index == 0 else 0x0
            fin = 0x80 if index == len(pieces) - 1 else 0
            transport.write(_frame_header(fin | opcode, len(piece)) + piece)
            await asyncio.sleep(0)

    async def invoke(self, function_id: str, data: Any = None, **fields: Any) -> str:
        """Send a request/response ``invokefunction`` (``data`` left out when ``ABSENT``); returns its id."""
        invocation_id = fields.pop("invocation_id", None) or str(uuid.uuid4())
        frame: dict[str, Any] = {
            "type": "invokefunction",
            "function_id": function_id,
            "invocation_id": invocation_id,
        }
        if data is not ABSENT:
            frame["data"] = data
        frame.update(fields)
        await self.send(frame)
        return invocation_id

    async def call(
        self, function_id: str, data: Any = None, *, timeout_s: float = TIMEOUT_S, **fields: Any
    ) -> Frame:
        """A request/response call; returns the ``invocationresult`` frame."""
        invocation_id = await self.invoke(function_id, data, **fields)
        return await self.expect(
            lambda f: f.get("type") == "invocationresult" and f.get("invocation_id") == invocation_id,
            timeout_s,
        )

    async def result(self, function_id: str, data: Any = None, **fields: Any) -> Any:
        """A call's ``result``; fails the test if the call answered an error."""
        reply = await self.call(function_id, data, **fields)
        assert "error" not in reply, reply
        return reply.get("result")

    async def void(self, function_id: str, data: Any = None, **fields: Any) -> None:
        """A fire-and-forget call (``action: void``, no ``invocation_id``)."""
        await self.send(
            {
                "type": "invokefunction",
                "function_id": function_id,
                "data": data,
                "action": {"type": "void"},
                **fields,
            }
        )

    async def register(
        self,
        name: str,
        namespace: str | None = None,
        runtime: str = "python",
        features: list[str] | None = ["large-messages.v1"],  # noqa: B006 - never mutated
        *,
        pid: int | None = None,
        os_name: str = "Linux 6.8.0 (x86_64)",
        wait: bool = True,
        **extra: Any,
    ) -> None:
        """Send ``engine::workers::register`` like the Python SDK does (features left out when None).

        With ``wait`` the call carries an ``invocation_id`` and returns once the engine applied it;
        otherwise it is a Void call, as the SDKs send it. ``pid`` defaults to a value unique to this
        connection, so two raw workers never look like one reconnecting process (§6.2).
        """
        data: dict[str, Any] = {
            "runtime": runtime,
            "version": "0.0-test",
            "name": name,
            "os": os_name,
            "pid": next(_pids) if pid is None else pid,
            "isolation": None,
            "namespace": namespace,
            "telemetry": {"language": "en", "project_name": "tests", "framework": "raw"},
        }
        if features is not None:
            data["features"] = features
        data.update(extra)
        if wait:
            reply = await self.call("engine::workers::register", data)
            assert reply.get("result") == {"success": True}, reply
        else:
            await self.void("engine::workers::register", data)

    async def register_function(self, function_id: str, **fields: Any) -> None:
        """Send ``registerfunction`` and wait until the engine processed it."""
        await self.send({"type": "registerfunction", "id": function_id, **fields})
        await self.barrier()

    async def serve(
        self,
        function_id: str,
        handler: Callable[[Frame], Any] | None = None,
        *,
        register: bool = True,
        **fields: Any,
    ) -> None:
        """Answer every ``invokefunction`` of ``function_id`` with ``handler(frame)`` (sync or async).

        The default handler echoes ``data``. A :class:`HandlerError` answers with its error body, any
        other exception with ``invocation_failed``; ``NO_REPLY`` answers nothing. The invocation
        frames stay in the inbox for the test to inspect.
        """
        self._handlers[function_id] = handler or (lambda frame: frame.get("data"))
        if register:
            await self.register_function(function_id, **fields)

    async def barrier(self, timeout_s: float = TIMEOUT_S) -> None:
        """JSON ping/pong round trip: every frame caused by earlier messages has arrived."""
        await self.send({"type": "ping"})
        await self.expect("pong", timeout_s)

    # -- receiving -------------------------------------------------------------------------------
    async def expect(self, pred: Predicate, timeout_s: float = TIMEOUT_S) -> Frame:
        """Take the first inbox frame matching ``pred`` (a type, a dict of fields or a predicate)."""
        match = _matcher(pred)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s * TIME_FACTOR
        while True:
            for index, frame in enumerate(self.inbox):
                if match(frame):
                    del self.inbox[index]
                    return frame
            left = deadline - loop.time()
            if left <= 0 or self.closed.is_set():  # closed: every frame is in the inbox already
                state = f"closed with {self.close_code}" if self.closed.is_set() else "open"
                raise AssertionError(
                    f"no frame matching {pred!r} (socket {state}); inbox: {self.inbox[-10:]!r}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def received(self, pred: Predicate) -> list[Frame]:
        """Inbox frames matching ``pred``, left in the inbox."""
        match = _matcher(pred)
        return [f for f in self.inbox if match(f)]

    async def _read(self) -> None:
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    frame = Frame(json.loads(msg.data))
                    frame.raw = msg.data
                    self.history.append(frame)
                    self.inbox.append(frame)
                    self._arrived.set()
                    if frame.get("type") == "invokefunction" and frame.get("function_id") in self._handlers:
                        task = asyncio.create_task(self._answer(frame))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                elif msg.type is WSMsgType.BINARY:
                    self.binary.append(msg.data)
                    self._arrived.set()
                elif msg.type is WSMsgType.PING:
                    self.pings += 1
                elif msg.type is WSMsgType.PONG:
                    self.pongs.put_nowait(msg.data)
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    break
        finally:
            self.close_code = ws.close_code
            self.closed.set()
            self._arrived.set()

    async def _answer(self, frame: Frame) -> None:
        handler = self._handlers[frame["function_id"]]
        reply: dict[str, Any] = {
            "type": "invocationresult",
            "invocation_id": frame.get("invocation_id"),
            "function_id": frame["function_id"],
        }
        try:
            value = handler(frame)
            if inspect.isawaitable(value):
                value = await value
        except HandlerError as exc:
            reply["error"] = exc.body
        except Exception as exc:
            reply["error"] = {
                "code": "invocation_failed",
                "message": str(exc),
                "stacktrace": traceback.format_exc(),
            }
        else:
            if value is NO_REPLY:
                return
            reply["result"] = value
        if "invocation_id" in frame and not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send(reply)


def _frame_header(first_byte: int, length: int) -> bytes:
    """A masked client frame header with a zero masking key (RFC 6455 §5.2)."""
    if length < 126:
        head = struct.pack("!BB", first_byte, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first_byte, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first_byte, 0x80 | 127, length)
    return head + b"\x00\x00\x00\x00"


Connect = Callable[..., Awaitable[RawWorker]]


async def detached(engine: Any, worker_id: str, timeout_s: float = TIMEOUT_S) -> None:
    """Wait until the engine ran the disconnect cleanup of ``worker_id`` (§6.3)."""
    peer = engine.peers.get(worker_id)
    if peer is not None:
        await asyncio.wait_for(peer.cleanup_done.wait(), timeout_s * TIME_FACTOR)
