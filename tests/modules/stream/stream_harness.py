"""Helpers of the stream module's tests: an engine harness on one adapter and raw stream clients.

(The fixtures using them are in ``conftest.py``.) Clients are :class:`helpers.RawWorker` connections
opened with ``hello=False``: JSON frames in, JSON frames out. Their ``barrier()`` sends a JSON
``ping`` and waits for the ``pong``: the listener handles one connection's messages in order and
writes its frames in order, so once the pong is in, every frame caused by earlier messages is in too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import module_helpers
from helpers import Frame, RawWorker
from module_helpers import REDIS_URL
from pyiii.config import AdapterSettings, StreamSettings
from pyiii.modules.state.adapters.base import StateAdapter
from pyiii.modules.state.adapters.memory import MemoryAdapter
from pyiii.modules.state.adapters.sqlite import SqliteAdapter
from pyiii.modules.stream import StreamModule
from pyiii.modules.stream.bus import EventBus, LocalBus
from pyiii.modules.stream.limits import DEFAULT_LIMITS, StreamLimits
from pyiii.modules.stream.store import DB_FILE_NAME
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

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
class StreamHarness(module_helpers.ModuleCalls):
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


def new_prefix() -> str:
    return f"pyiii-test:stream:{uuid.uuid4().hex}:"


# ------------------------------------------------------------------------------ engine subprocesses

#: config-cli-modules.md §3.1 and the stream module's start: the lines logged once listeners are bound.
STREAM_LISTENING = re.compile(r"\] Stream API listening on address: (\S+):(\d+)$")


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


class EngineProcess(module_helpers.EngineProcess):
    """An engine subprocess (see :class:`module_helpers.EngineProcess`); ``stream_url`` is the stream
    listener, read from the log."""

    stream_url = ""

    @classmethod
    async def start(cls, config: Path, cwd: Path) -> EngineProcess:
        engine = await cls.spawn(config, cwd)
        stream = await engine.wait_for(STREAM_LISTENING)
        await engine.wait_listening()
        engine.stream_url = f"ws://{stream[1]}:{stream[2]}"
        return engine
