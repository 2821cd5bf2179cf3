"""Fixtures for the compat tests: official-SDK worker processes and engine subprocesses.

`engine_url` (an in-process engine on a free port) comes from the `pyiii.testing` pytest plugin.
Workers skip the test, naming the fix, when `scripts/setup-compat` has not been run.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import EngineProcess, WorkerPool


@pytest_asyncio.fixture
async def sdk_worker() -> AsyncIterator[WorkerPool]:
    """``await sdk_worker(sdk_id, url, **plan)`` starts a ready worker; all are stopped at teardown."""
    pool = WorkerPool()
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def engine_proc(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[EngineProcess]]]:
    """``await engine_proc(**options)`` starts a pyiii engine subprocess (see EngineProcess);
    every engine is stopped at teardown."""
    engines: list[EngineProcess] = []

    async def start(**options: Any) -> EngineProcess:
        workdir = tmp_path / f"engine{len(engines) + 1}"
        workdir.mkdir()
        engine = EngineProcess(workdir, **options)
        engines.append(engine)
        return await engine.start()

    try:
        yield start
    finally:
        for engine in engines:
            engine.kill()
            await engine.stop()
