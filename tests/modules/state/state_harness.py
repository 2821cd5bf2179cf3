"""Helpers of the state module's tests: an engine harness on one adapter, a trigger recorder.

(The fixtures using them are in ``conftest.py``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from msgspec import UNSET

import module_helpers
from module_helpers import REDIS_URL, Recorder
from pyiii import III, Trigger
from pyiii.config import AdapterSettings, StateSettings
from pyiii.modules.state.adapters.base import StateAdapter
from pyiii.modules.state.adapters.memory import MemoryAdapter
from pyiii.modules.state.adapters.sqlite import SqliteAdapter
from pyiii.modules.state.module import StateModule
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

ADAPTERS = ["memory", "file_based", pytest.param("redis", marks=pytest.mark.redis)]
PERSISTENT = ["file_based", pytest.param("redis", marks=pytest.mark.redis)]

#: What ``StateHarness.raw`` returns when a function sent no result (distinct from JSON null).
NO_RESULT = UNSET


@dataclass
class StateHarness(module_helpers.ModuleCalls):
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


def watch(
    client: III,
    config: Any,
    recorder: Recorder | None = None,
    *,
    metadata: Any = None,
    function_id: str | None = None,
) -> tuple[Recorder, Trigger]:
    """Serve a new function with ``recorder`` and bind it to a ``state`` trigger with ``config``."""
    return module_helpers.watch(client, "state", config, recorder, metadata=metadata, function_id=function_id)


# ------------------------------------------------------------------------------ engine subprocesses


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


class EngineProcess(module_helpers.EngineProcess):
    """An engine subprocess (see :class:`module_helpers.EngineProcess`)."""

    @classmethod
    async def start(cls, config: Path, cwd: Path, *, wait: bool = True) -> EngineProcess:
        engine = await cls.spawn(config, cwd)
        if wait:
            await engine.wait_listening()
        return engine
