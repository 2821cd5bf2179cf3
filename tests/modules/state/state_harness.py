"""Helpers of the state module's tests: an engine harness on one adapter, a trigger recorder.

(The fixtures using them are in ``conftest.py``.)
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
from msgspec import UNSET

from helpers import TIME_FACTOR
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
        """Wait until the events of every write so far have been delivered."""
        await self.state.idle()


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


# ------------------------------------------------------------------------------ engine subprocesses

#: §3.1: the line the engine logs once its worker listener is bound.
LISTENING = re.compile(r"\] Engine listening on address: (\S+):(\d+)$")
STARTUP_WAIT_S = 20.0 * TIME_FACTOR


def state_config(directory: Path, adapter: str) -> Path:
    """A config file with one worker listener on a free port and the state module on ``adapter``
    (a YAML flow mapping, e.g. ``{name: kv, config: {store_method: file_based, file_path: ./data}}``)."""
    path = directory / "config.yaml"
    path.write_text(
        "workers:\n"
        "  - name: iii-worker-manager\n"
        "    config: {port: 0}\n"
        "  - name: iii-state\n"
        f"    config: {{adapter: {adapter}}}\n"
    )
    return path


class EngineProcess:
    """``python -m pyiii.cli -c CONFIG`` in a directory; stderr is collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._eof = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.url = ""

    @classmethod
    async def start(cls, config: Path, cwd: Path, *, wait: bool = True) -> EngineProcess:
        env = {name: value for name, value in os.environ.items() if not name.startswith("III_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pyiii.cli", "-c", str(config),
            cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        engine = cls(proc)
        if wait:
            match = await engine.wait_for(LISTENING)
            engine.url = f"ws://{match[1]}:{match[2]}"
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

    async def exit_code(self, timeout_s: float = STARTUP_WAIT_S) -> int:
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            await self._eof.wait()
        return code

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM (a graceful stop); the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await self.exit_code()

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
