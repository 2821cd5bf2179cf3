"""Helpers shared by the built-in modules' tests (state, stream): trigger handlers that record what
they receive, engine subprocesses read from their console, Redis key cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import TIME_FACTOR
from pyiii import III, Trigger
from pyiii.engine.core import Engine
from pyiii.engine.invocations import CallContext
from pyiii.errors import InvocationError

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


class ModuleCalls:
    """Calls into the engine of a module harness (one with a started ``server``)."""

    server: Any

    @property
    def engine(self) -> Engine:
        assert self.server is not None
        engine: Engine = self.server.engine
        return engine

    async def call(self, function_id: str, payload: Any = None) -> Any:
        """Call a function the way an engine-side caller does (``None`` for no result)."""
        return await self.engine.invoke(function_id, payload)

    async def raw(self, function_id: str, payload: Any = None) -> Any:
        """Run a built-in handler directly: ``msgspec.UNSET`` when it sends no result."""
        entry = self.engine.functions.resolve("default", function_id)
        assert entry is not None and entry.builtin is not None
        return await entry.builtin(payload, CallContext(function_id, "default"))

    async def error(self, function_id: str, payload: Any = None) -> InvocationError:
        """Call a function that must fail; return its error."""
        with pytest.raises(InvocationError) as info:
            await self.call(function_id, payload)
        return info.value


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

#: config-cli-modules.md §3.1: the line the engine logs once its worker listener is bound.
ENGINE_LISTENING = re.compile(r"\] Engine listening on address: (\S+):(\d+)$")
STARTUP_WAIT_S = 20.0 * TIME_FACTOR


class EngineProcess:
    """``python -m pyiii.cli -c CONFIG`` in a directory; stderr is collected line by line.

    ``url`` is the worker listener's address, read from the log by :meth:`start`.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._eof = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.url = ""

    @classmethod
    async def spawn(cls, config: Path, cwd: Path) -> EngineProcess:
        """Start the process without waiting for anything (``III_*`` variables removed)."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("III_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pyiii.cli", "-c", str(config),
            cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            async for raw in self.proc.stderr:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.set()
        finally:
            self._eof.set()
            self._changed.set()

    async def wait_listening(self) -> None:
        """Wait for the worker listener's line and set :attr:`url`."""
        match = await self.wait_for(ENGINE_LISTENING)
        self.url = f"ws://{match[1]}:{match[2]}"

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
