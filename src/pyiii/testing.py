"""pytest plugin shipped with pyiii (entry point ``pyiii``): fixtures that start a real engine.

* ``engine``: a started :class:`~pyiii.engine.core.Engine` with the built-in ``engine::`` functions, on
  the test's event loop: attach in-process workers with ``register_worker(engine)``.
* ``engine_server``: the same engine behind a real WebSocket listener on ``127.0.0.1:<free port>``.
* ``engine_url``: ``ws://127.0.0.1:<port>`` of ``engine_server``.

Both stop the engine (closing every worker with 1012) when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is a test dependency
    pytest_asyncio = None  # type: ignore[assignment]


def make_settings(**overrides: Any) -> Any:
    """Engine settings for tests: one worker listener on a free loopback port, no other module."""
    from pyiii.config import Settings, WorkerManagerSettings

    values: dict[str, Any] = {"worker_managers": (WorkerManagerSettings(host="127.0.0.1", port=0),)}
    values.update(overrides)
    return Settings(**values)


async def start_server(**overrides: Any) -> Any:
    from pyiii.server.app import EngineServer

    server = EngineServer(make_settings(**overrides))
    await server.start()
    return server


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def engine_server() -> AsyncIterator[Any]:
        server = await start_server()
        try:
            yield server
        finally:
            await server.stop()

    @pytest_asyncio.fixture
    async def engine(engine_server: Any) -> AsyncIterator[Any]:
        yield engine_server.engine

    @pytest_asyncio.fixture
    async def engine_url(engine_server: Any) -> AsyncIterator[str]:
        yield engine_server.url


__all__ = ["make_settings", "start_server"]
