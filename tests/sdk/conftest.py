"""Fixtures of the SDK tests: a scripted transport, and a client wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sdk_fakes import FakeTransport

from pyiii.sdk.client import III
from pyiii.sdk.types import InitOptions


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest_asyncio.fixture
async def client(fake: FakeTransport) -> AsyncIterator[III]:
    """A client on a fake transport, connected once (``worker-1``)."""
    iii = III(options=InitOptions(worker_name="test-worker"), transport=fake)
    fake.open()
    try:
        yield iii
    finally:
        await iii.shutdown_async()
