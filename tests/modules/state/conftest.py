"""Fixtures of the state module's tests: one engine per test with the state module on a chosen adapter.

``state`` is parametrized over the three adapters (``memory``, ``file_based`` in ``tmp_path``,
``redis`` on ``$REDIS_URL`` or 127.0.0.1:6379 under a key prefix of its own, deleted afterwards), so
every conformance test runs against each of them. Redis cases carry the ``redis`` mark and need the
server running: they fail, never skip, when it is not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from state_harness import ADAPTERS, PERSISTENT, StateHarness, adapter_factory

from module_helpers import delete_redis_prefix
from pyiii import III, InitOptions, register_worker


@pytest_asyncio.fixture
async def make_state(tmp_path: Path) -> AsyncIterator[Callable[..., StateHarness]]:
    """``make_state(kind, prefix=None)`` builds (does not start) harnesses; all stopped and cleaned up."""
    made: list[StateHarness] = []
    prefixes: set[str] = set()

    def make(kind: str, *, prefix: str | None = None) -> StateHarness:
        prefix = prefix or f"pyiii-test:{uuid.uuid4().hex}:"
        prefixes.add(prefix)
        harness = StateHarness(kind, adapter_factory(kind, tmp_path, prefix), prefix=prefix)
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            for server in harness.servers:
                await server.stop()
        if any(h.kind == "redis" for h in made):
            for prefix in prefixes:
                await delete_redis_prefix(prefix)


@pytest_asyncio.fixture(params=ADAPTERS)
async def state(request: pytest.FixtureRequest, make_state: Callable[..., StateHarness]) -> StateHarness:
    """A started engine with the state module on each adapter in turn."""
    return await make_state(request.param).start()


@pytest_asyncio.fixture(params=PERSISTENT)
async def persistent(request: pytest.FixtureRequest, make_state: Callable[..., StateHarness]) -> StateHarness:
    """A started engine on each persistent adapter (file_based, redis)."""
    return await make_state(request.param).start()


@pytest_asyncio.fixture
async def worker(state: StateHarness) -> AsyncIterator[III]:
    """An in-process SDK worker on the ``state`` engine."""
    client = register_worker(state.engine, InitOptions(worker_name="state-tests"))
    try:
        yield client
    finally:
        await client.shutdown_async()


@pytest_asyncio.fixture
async def redis_state(make_state: Callable[..., StateHarness]) -> StateHarness:
    """A started engine on the shared Redis (own key prefix)."""
    return await make_state("redis").start()
