"""Fixtures of the stream module's tests: one engine per test with the stream module on a chosen adapter.

``stream`` runs on the in-memory store; ``any_stream`` is parametrized over the three adapters
(``memory``, ``file_based`` in ``tmp_path``, ``redis`` on ``$REDIS_URL`` or 127.0.0.1:6379 under a key
prefix and an events channel of its own, removed afterwards). Redis cases carry the ``redis`` mark
and need the server running: they fail, never skip, when it is not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from stream_harness import ADAPTERS, StreamHarness, adapter_factory, bus_factory, new_prefix

from module_helpers import delete_redis_prefix
from pyiii import III, InitOptions, register_worker


@pytest_asyncio.fixture
async def make_stream(tmp_path: Path) -> AsyncIterator[Callable[..., StreamHarness]]:
    """``make_stream(kind, prefix=None, channel=None, **fields)`` builds (does not start) harnesses."""
    made: list[StreamHarness] = []
    prefixes: set[str] = set()

    def make(
        kind: str = "memory", *, prefix: str | None = None, channel: str | None = None, **fields: Any
    ) -> StreamHarness:
        prefix = prefix or new_prefix()
        channel = channel or f"pyiii-test:stream-events:{uuid.uuid4().hex}"
        prefixes.add(prefix)
        harness = StreamHarness(
            kind, adapter_factory(kind, tmp_path, prefix), bus_factory(kind, channel), prefix=prefix, **fields
        )
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            for client in harness.clients:
                await client.close()
            for server in list(harness.servers):
                await server.stop()
        if any(h.kind == "redis" for h in made):
            for prefix in prefixes:
                await delete_redis_prefix(prefix)


@pytest_asyncio.fixture
async def stream(make_stream: Callable[..., StreamHarness]) -> StreamHarness:
    """A started engine with the stream module on the in-memory store, listener on a free port."""
    return await make_stream("memory").start()


@pytest_asyncio.fixture(params=ADAPTERS)
async def any_stream(
    request: pytest.FixtureRequest, make_stream: Callable[..., StreamHarness]
) -> StreamHarness:
    """A started engine with the stream module on each adapter in turn."""
    return await make_stream(request.param).start()


@pytest_asyncio.fixture
async def worker(stream: StreamHarness) -> AsyncIterator[III]:
    """An in-process SDK worker on the ``stream`` engine."""
    client = register_worker(stream.engine, InitOptions(worker_name="stream-tests"))
    try:
        yield client
    finally:
        await client.shutdown_async()
