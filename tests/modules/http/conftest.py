"""Fixtures of the HTTP module's tests: an engine with ``iii-http`` on a free port, SDK workers, a client.

``http`` is the started :class:`HttpHarness`; ``make_http(**http_settings)`` starts others with custom
``HttpSettings``. Requests go through a real aiohttp client to the real listener.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest_asyncio
from http_harness import HttpHarness

from pyiii import III
from pyiii.config import HttpSettings
from pyiii.testing import start_server


@pytest_asyncio.fixture
async def make_http() -> AsyncIterator[Callable[..., Awaitable[HttpHarness]]]:
    """``await make_http(**http_settings)``: engines stopped at teardown."""
    made: list[HttpHarness] = []

    async def make(**settings: Any) -> HttpHarness:
        settings.setdefault("port", 0)
        server = await start_server(http=HttpSettings(**settings))
        harness = HttpHarness(server, aiohttp.ClientSession())
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            await harness.stop()


@pytest_asyncio.fixture
async def http(make_http: Callable[..., Awaitable[HttpHarness]]) -> HttpHarness:
    """An engine with the HTTP module on its defaults (port 0)."""
    return await make_http()


@pytest_asyncio.fixture
async def worker(http: HttpHarness) -> III:
    """An in-process SDK worker on ``http``'s engine."""
    return http.worker()
