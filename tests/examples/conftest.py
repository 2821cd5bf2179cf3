"""Fixtures of the example tests: `make_stack(kind)` starts an engine with a todo worker attached."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from todo_harness import Stack, default_settings

from pyiii.server.app import EngineServer


@pytest_asyncio.fixture
async def make_stack(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Stack]]]:
    """`await make_stack(kind)`: the default module set (durable store in tmp_path) and a todo worker."""
    stacks: list[Stack] = []

    async def make(kind: str) -> Stack:
        server = EngineServer(default_settings(tmp_path / f"data-{len(stacks)}"))
        await server.start()
        stack = Stack(server, kind)
        stacks.append(stack)
        await stack.attach()
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            await stack.stop()
