"""The pyiii SDK against a listener that refuses it (protocol.md §2.2 rule 4): calls fail with the
engine's AUTH_ERROR instead of waiting out their timeouts, and a worker with the token works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pyiii import InitOptions, register_worker
from pyiii.config import WorkerManagerSettings
from pyiii.errors import InvocationError
from pyiii.testing import start_server


@pytest_asyncio.fixture
async def token_server() -> AsyncIterator[Any]:
    server = await start_server(
        worker_managers=(WorkerManagerSettings(host="127.0.0.1", port=0, auth_token="s3cret"),)
    )
    yield server
    await server.stop()


async def test_refused_worker_calls_fail_with_auth_error(token_server: Any) -> None:
    """A worker with a wrong token: register_worker returns, and a call fails with AUTH_ERROR at once."""
    options = InitOptions(worker_name="intruder", headers={"Authorization": "Bearer wrong"})
    client = await asyncio.to_thread(register_worker, token_server.url, options)
    try:
        with pytest.raises(InvocationError) as info:
            await client.trigger_async(
                {"function_id": "engine::functions::list", "payload": {}, "timeout_ms": 60000}
            )
        assert info.value.code == "AUTH_ERROR"
        assert "bearer token" in info.value.message
    finally:
        await client.shutdown_async()


async def test_accepted_worker_calls_work(token_server: Any) -> None:
    """The same listener with the right token: calls succeed (no AUTH_ERROR is left over)."""
    options = InitOptions(worker_name="friend", headers={"Authorization": "Bearer s3cret"})
    client = await asyncio.to_thread(register_worker, token_server.url, options)
    try:
        result = await client.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        assert isinstance(result, dict) and "functions" in result
    finally:
        await client.shutdown_async()
