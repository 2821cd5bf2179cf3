"""Shared fixtures of the engine tests: raw WebSocket workers and engines with custom settings.

(``engine_server``, ``engine`` and ``engine_url`` come from the ``pyiii.testing`` plugin.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from helpers import RawWorker
from pyiii.testing import start_server


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[RawWorker]]]:
    """``await connect(url, **options)`` opens a :class:`RawWorker`; all are closed at teardown."""
    workers: list[RawWorker] = []

    async def open_worker(url: str, **options: Any) -> RawWorker:
        worker = await RawWorker.connect(url, **options)
        workers.append(worker)
        return worker

    try:
        yield open_worker
    finally:
        for worker in workers:
            await worker.close()


@pytest_asyncio.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await make_server(**settings_overrides)`` starts an engine server; all are stopped at teardown."""
    servers: list[Any] = []

    async def make(**overrides: Any) -> Any:
        server = await start_server(**overrides)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            await server.stop()
