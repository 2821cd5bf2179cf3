"""Helpers of the stream module's tests: an engine harness on one adapter and raw stream clients.

(The fixtures using them are in ``conftest.py``.) Clients are :class:`helpers.RawWorker` connections
opened with ``hello=False``: JSON frames in, JSON frames out. Their ``barrier()`` sends a JSON
``ping`` and waits for the ``pong``: the listener handles one connection's messages in order and
writes its frames in order, so once the pong is in, every frame caused by earlier messages is in too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from helpers import TIME_FACTOR, Frame, RawWorker
from pyiii import III, Trigger
from pyiii.config import AdapterSettings, StreamSettings
from pyiii.engine.core import Engine
from pyiii.engine.invocations import CallContext
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.base import StateAdapter
from pyiii.modules.state.adapters.memory import MemoryAdapter
from pyiii.modules.state.adapters.sqlite import SqliteAdapter
from pyiii.modules.stream import StreamModule
from pyiii.modules.stream.bus import EventBus, LocalBus
from pyiii.modules.stream.limits import DEFAULT_LIMITS, StreamLimits
from pyiii.modules.stream.store import DB_FILE_NAME
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")

ADAPTERS: list[Any] = ["memory", "file_based", pytest.param("redis", marks=pytest.mark.redis)]

__all__ = ["ADAPTERS", "DB_FILE_NAME", "REDIS_URL", "StreamHarness", "frame_of", "join", "leave"]


def join(sub: str, stream: str, group: str, item: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"subscriptionId": sub, "streamName": stream, "groupId": group, "id": item}
    data.update(extra)
    return {"type": "join", "data": data}


def leave(sub: str, stream: str, group: str, item: str | None = None) -> dict[str, Any]:
    return {
        "type": "leave",
        "data": {"subscriptionId": sub, "streamName": stream, "groupId": group, "id": item},
    }


def frame_of(event_type: str, stream: str | None = None) -> Callable[[Frame], bool]:
    """Matches a stream frame whose ``event.type`` is ``event_type`` (and stream, when given)."""

    def match(frame: Frame) -> bool:
        return (
            frame.get("type") == "stream"
            and frame.get("event", {}).get("type") == event_type
            and (stream is None or frame.get("streamName") == stream)
        )

    return match


@dataclass
class StreamHarness:
    """An engine server running the stream module on one adapter, restartable on the same store."""

    kind: str
    make_adapter: Callable[[], StateAdapter]
    make_bus: Callable[[], EventBus] = LocalBus
    prefix: str = ""
    settings: StreamSettings = field(default_factory=lambda: StreamSettings(port=0))
    limits: StreamLimits = DEFAULT_LIMITS
    server: EngineServer | None = None
    module: StreamModule | None = None
    servers: list[EngineServer] = field(default_factory=list)
    clients: list[RawWorker] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        assert self.server is not None
        return self.server.engine

    @property
    def stream(self) -> StreamModule:
        assert self.module is not None
        return self.module

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` of the stream listener."""
        return self.stream.url

    async def start(self, **settings: Any) -> StreamHarness:
        """Start an engine (``settings`` override fields of ``StreamSettings``)."""
        if settings:
            self.settings = replace(self.settings, **settings)
        server = EngineServer(make_settings())
        module = StreamModule(
            self.settings, adapter=self.make_adapter(), bus=self.make_bus(), limits=self.limits
        )
        server.engine.add_module(module)
        await server.start()
        self.server, self.module = server, module
        self.servers.append(server)
        return self

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()
        if self.server is not None:
            server, self.server = self.server, None
            self.servers.remove(server)
            await server.stop()

    async def restart(self, **settings: Any) -> None:
        await self.stop()
        await self.start(**settings)

    async def client(self, path: str = "/", **options: Any) -> RawWorker:
        """A raw WebSocket client on the stream listener (closed at teardown)."""
        client = await RawWorker.connect(self.url, path=path, hello=False, **options)
        self.clients.append(client)
        return client

    async def call(self, function_id: str, payload: Any = None) -> Any:
        """Call a function the way an engine-side caller does (``None`` for no result)."""
        return await self.engine.invoke(function_id, payload)

    async def raw(self, function_id: str, payload: Any = None) -> Any:
        """Run a built-in handler directly: ``msgspec.UNSET`` when it sends no result."""
        entry = self.engine.functions.resolve("default", function_id)
        assert entry is not None and entry.builtin is not None
        return await entry.builtin(payload, CallContext(function_id, "default"))

    async def error(self, function_id: str, payload: Any = None) -> InvocationError:
        with pytest.raises(InvocationError) as info:
            await self.call(function_id, payload)
        return info.value

    async def set(self, stream: str, group: str, item: str, data: Any) -> Any:
        return await self.call(
            "stream::set", {"stream_name": stream, "group_id": group, "item_id": item, "data": data}
        )

    async def delete(self, stream: str, group: str, item: str) -> Any:
        return await self.call("stream::delete", {"stream_name": stream, "group_id": group, "item_id": item})

    async def send(self, stream: str, group: str, event_type: str, data: Any, item: str | None = None) -> Any:
        payload: dict[str, Any] = {"stream_name": stream, "group_id": group, "type": event_type, "data": data}
        if item is not None:
            payload["id"] = item
        return await self.call("stream::send", payload)

    async def update(self, stream: str, group: str, item: str, ops: list[dict[str, Any]]) -> Any:
        return await self.call(
            "stream::update", {"stream_name": stream, "group_id": group, "item_id": item, "ops": ops}
        )

    async def idle(self) -> None:
        await self.stream.idle()


def adapter_factory(kind: str, tmp_path: Path, prefix: str) -> Callable[[], StateAdapter]:
    if kind == "memory":
        return lambda: MemoryAdapter(label="stream")
    if kind == "file_based":
        return lambda: SqliteAdapter(str(tmp_path / "stream"), db_file_name=DB_FILE_NAME, label="stream")
    if kind == "redis":
        from pyiii.modules.state.adapters.redis import RedisAdapter

        return lambda: RedisAdapter(REDIS_URL, prefix=prefix, events_maxlen=1)
    raise ValueError(kind)


def bus_factory(kind: str, channel: str) -> Callable[[], EventBus]:
    if kind == "redis":
        from pyiii.modules.stream.redis_bus import RedisBus

        return lambda: RedisBus(REDIS_URL, channel=channel)
    return LocalBus


def adapter_settings(kind: str, tmp_path: Path) -> AdapterSettings:
    """The ``adapter`` block a config file would give for ``kind``."""
    if kind == "memory":
        return AdapterSettings(name="kv", store_method="in_memory")
    if kind == "file_based":
        return AdapterSettings(name="kv", store_method="file_based", file_path=str(tmp_path / "stream"))
    return AdapterSettings(name="redis", redis_url=REDIS_URL)


async def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Remove every key under ``prefix`` (test cleanup)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def new_prefix() -> str:
    return f"pyiii-test:stream:{uuid.uuid4().hex}:"


class Recorder:
    """A handler that records every call (payload and metadata); ``wait(n)`` waits for ``n`` of them."""

    def __init__(self, behaviour: Callable[[Any], Any] | None = None) -> None:
        self.events: list[Any] = []
        self.metadata: list[Any] = []
        self._behaviour = behaviour
        self._arrived = asyncio.Event()

    async def __call__(self, data: Any, metadata: Any = None) -> Any:
        self.events.append(data)
        self.metadata.append(metadata)
        self._arrived.set()
        if self._behaviour is not None:
            result = self._behaviour(data)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        return None

    async def wait(self, count: int, timeout_s: float = 10.0) -> list[Any]:
        async with asyncio.timeout(timeout_s * TIME_FACTOR):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events


def watch(
    client: III,
    trigger_type: str,
    config: Any,
    recorder: Recorder | None = None,
    *,
    metadata: Any = None,
    function_id: str | None = None,
) -> tuple[Recorder, Trigger]:
    """Serve a new function with ``recorder`` and bind it to a trigger of ``trigger_type``."""
    recorder = recorder or Recorder()
    function_id = function_id or f"test::on-{uuid.uuid4().hex[:8]}"
    client.register_function(function_id, recorder)
    spec: dict[str, Any] = {"type": trigger_type, "function_id": function_id, "config": config}
    if metadata is not None:
        spec["metadata"] = metadata
    return recorder, client.register_trigger(spec)


# ------------------------------------------------------------------------------ engine subprocesses

#: config-cli-modules.md §3.1 and the stream module's start: the lines logged once listeners are bound.
ENGINE_LISTENING = re.compile(r"\] Engine listening on address: (\S+):(\d+)$")
STREAM_LISTENING = re.compile(r"\] Stream API listening on address: (\S+):(\d+)$")
STARTUP_WAIT_S = 20.0 * TIME_FACTOR


def engine_config(directory: Path, adapter: str) -> Path:
    """A config file: a worker listener and the stream listener on free ports, the stream module on
    ``adapter`` (a YAML flow mapping such as ``{name: kv, config: {store_method: file_based}}``)."""
    path = directory / "config.yaml"
    path.write_text(
        "workers:\n"
        "  - name: iii-worker-manager\n"
        "    config: {port: 0}\n"
        "  - name: iii-stream\n"
        f"    config: {{port: 0, adapter: {adapter}}}\n"
    )
    return path


class EngineProcess:
    """``python -m pyiii.cli -c CONFIG`` in a directory; stderr is collected line by line.

    ``url`` is the worker listener, ``stream_url`` the stream listener, both read from the log.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._eof = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.url = ""
        self.stream_url = ""

    @classmethod
    async def start(cls, config: Path, cwd: Path) -> EngineProcess:
        env = {name: value for name, value in os.environ.items() if not name.startswith("III_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pyiii.cli", "-c", str(config),
            cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        engine = cls(proc)
        stream = await engine.wait_for(STREAM_LISTENING)
        worker = await engine.wait_for(ENGINE_LISTENING)
        engine.stream_url = f"ws://{stream[1]}:{stream[2]}"
        engine.url = f"ws://{worker[1]}:{worker[2]}"
        return engine

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            async for raw in self.proc.stderr:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.set()
        finally:
            self._eof.set()
            self._changed.set()

    async def wait_for(self, pattern: re.Pattern[str], timeout_s: float = STARTUP_WAIT_S) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (fails if the process exits first)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines:
                    match = pattern.search(line)
                    if match is not None:
                        return match
                if self._eof.is_set():
                    raise AssertionError(f"engine exited without {pattern.pattern!r}: {self.lines}")
                self._changed.clear()
                await self._changed.wait()

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)

    async def exit_code(self, timeout_s: float = STARTUP_WAIT_S) -> int:
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            await self._eof.wait()
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
