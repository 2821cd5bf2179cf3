"""Helpers of the state module's tests: an engine harness on one adapter, a trigger recorder.

(The fixtures using them are in ``conftest.py``.)
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from msgspec import UNSET

from pyiii import III, Trigger
from pyiii.config import AdapterSettings, StateSettings
from pyiii.engine.core import Engine
from pyiii.engine.invocations import CallContext
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.base import StateAdapter
from pyiii.modules.state.adapters.memory import MemoryAdapter
from pyiii.modules.state.adapters.sqlite import SqliteAdapter
from pyiii.modules.state.module import StateModule
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")

ADAPTERS = ["memory", "file_based", pytest.param("redis", marks=pytest.mark.redis)]
PERSISTENT = ["file_based", pytest.param("redis", marks=pytest.mark.redis)]

#: What ``StateHarness.raw`` returns when a function sent no result (distinct from JSON null).
NO_RESULT = UNSET


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


@dataclass
class StateHarness:
    """An engine server running the state module on one adapter, restartable on the same store."""

    kind: str
    make_adapter: Callable[[], StateAdapter]
    #: Redis key prefix of the store (pass it to ``make_state`` for a second engine on the same data).
    prefix: str = ""
    settings: StateSettings = field(default_factory=StateSettings)
    server: EngineServer | None = None
    module: StateModule | None = None
    servers: list[EngineServer] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        assert self.server is not None
        return self.server.engine

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def state(self) -> StateModule:
        assert self.module is not None
        return self.module

    async def start(self, **settings: Any) -> StateHarness:
        """Start an engine on the store (``settings`` override fields of ``StateSettings``)."""
        if settings:
            self.settings = replace(self.settings, **settings)
        server = EngineServer(make_settings())
        module = StateModule(self.settings, adapter=self.make_adapter())
        server.engine.add_module(module)
        await server.start()
        self.server, self.module = server, module
        self.servers.append(server)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            self.servers.remove(server)
            await server.stop()

    async def restart(self, **settings: Any) -> None:
        """Graceful stop, then a new engine and adapter on the same store."""
        await self.stop()
        await self.start(**settings)

    async def call(self, function_id: str, payload: Any = None) -> Any:
        """Call a function the way an engine-side caller does (``None`` for no result)."""
        return await self.engine.invoke(function_id, payload)

    async def raw(self, function_id: str, payload: Any = None) -> Any:
        """Run a state function's handler directly: :data:`NO_RESULT` when it sends no result."""
        entry = self.engine.functions.resolve("default", function_id)
        assert entry is not None and entry.builtin is not None
        return await entry.builtin(payload, CallContext(function_id, "default"))

    async def error(self, function_id: str, payload: Any = None) -> InvocationError:
        """Call a function that must fail; return its error."""
        with pytest.raises(InvocationError) as info:
            await self.call(function_id, payload)
        return info.value

    async def set(self, scope: str, key: str, value: Any) -> Any:
        return await self.call("state::set", {"scope": scope, "key": key, "value": value})

    async def get(self, scope: str, key: str) -> Any:
        return await self.raw("state::get", {"scope": scope, "key": key})

    async def update(self, scope: str, key: str, ops: list[dict[str, Any]]) -> Any:
        return await self.call("state::update", {"scope": scope, "key": key, "ops": ops})

    async def delete(self, scope: str, key: str) -> Any:
        return await self.raw("state::delete", {"scope": scope, "key": key})

    async def keys(self, scope: str) -> list[str]:
        return (await self.call("state::list_keys", {"scope": scope}))["keys"]

    async def groups(self) -> list[str]:
        return (await self.call("state::list_groups", {}))["groups"]

    async def idle(self) -> None:
        """Wait until every queued trigger delivery has finished."""
        assert self.state.triggers is not None
        await self.state.triggers.idle()


def adapter_factory(kind: str, tmp_path: Path, prefix: str) -> Callable[[], StateAdapter]:
    if kind == "memory":
        return MemoryAdapter
    if kind == "file_based":
        return lambda: SqliteAdapter(str(tmp_path / "state"))
    if kind == "redis":
        from pyiii.modules.state.adapters.redis import RedisAdapter

        return lambda: RedisAdapter(REDIS_URL, prefix=prefix)
    raise ValueError(kind)


def adapter_settings(kind: str, tmp_path: Path) -> AdapterSettings:
    """The ``adapter`` block a config file would give for ``kind``."""
    if kind == "memory":
        return AdapterSettings(name="kv", store_method="in_memory")
    if kind == "file_based":
        return AdapterSettings(name="kv", store_method="file_based", file_path=str(tmp_path / "state"))
    return AdapterSettings(name="redis", redis_url=REDIS_URL)


class Recorder:
    """A trigger handler that records every event it receives; ``wait(n)`` waits for ``n`` of them."""

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
        async with asyncio.timeout(timeout_s):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events


def watch(
    client: III,
    config: Any,
    recorder: Recorder | None = None,
    *,
    metadata: Any = None,
    function_id: str | None = None,
) -> tuple[Recorder, Trigger]:
    """Serve a new function with ``recorder`` and bind it to a ``state`` trigger with ``config``."""
    recorder = recorder or Recorder()
    function_id = function_id or f"test::on-change-{uuid.uuid4().hex[:8]}"
    client.register_function(function_id, recorder)
    spec: dict[str, Any] = {"type": "state", "function_id": function_id, "config": config}
    if metadata is not None:
        spec["metadata"] = metadata
    return recorder, client.register_trigger(spec)
