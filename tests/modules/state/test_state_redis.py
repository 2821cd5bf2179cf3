"""The Redis adapter when Redis misbehaves, and its data layout (spec/state.md §8.4; checklist M).

Outages use a private ``redis-server --port <free> --save ""`` subprocess that the test kills, pauses
and restarts; the shared Redis is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from state_harness import REDIS_URL, StateHarness

from pyiii.config import AdapterSettings, StateSettings
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.redis import RedisAdapter, RedisKeys
from pyiii.modules.state.errors import StateStartupError
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throwaway redis-server on its own port, without persistence."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert REDIS_SERVER is not None, "redis-server is not installed"
        self.proc = await asyncio.create_subprocess_exec(
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        async with asyncio.timeout(10):
            async for line in self.proc.stdout:
                if b"Ready to accept connections" in line:
                    break
            else:
                raise AssertionError("redis-server exited before accepting connections")

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest_asyncio.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.resume()
        await server.kill()


@pytest_asyncio.fixture
async def on_private(private_redis: PrivateRedis) -> AsyncIterator[StateHarness]:
    """An engine on the private Redis, with short socket timeouts."""
    harness = StateHarness("redis", lambda: RedisAdapter(private_redis.url, socket_timeout_s=0.5))
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def fails_fast(harness: StateHarness, function_id: str, payload: Any, code: str) -> InvocationError:
    """The call fails with ``code`` within 3 s (no hang)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(InvocationError) as info:
        async with asyncio.timeout(10):
            await harness.call(function_id, payload)
    assert info.value.code == code, info.value
    assert loop.time() - started < 3
    return info.value


CALLS = [
    ("state::set", {"scope": "s", "key": "k", "value": 1}, "SET_ERROR"),
    ("state::get", {"scope": "s", "key": "k"}, "GET_ERROR"),
    ("state::delete", {"scope": "s", "key": "k"}, "DELETE_ERROR"),
    ("state::update", {"scope": "s", "key": "k", "ops": []}, "UPDATE_ERROR"),
    ("state::list", {"scope": "s"}, "LIST_ERROR"),
    ("state::list_keys", {"scope": "s"}, "LIST_KEYS_ERROR"),
    ("state::list_entries", {"scope": "s"}, "LIST_ENTRIES_ERROR"),
    ("state::list_groups", {}, "LIST_GROUPS_ERROR"),
]


async def test_redis_down_then_back(on_private: StateHarness, private_redis: PrivateRedis) -> None:
    """Issue 3: with Redis stopped every call fails fast with its code; once Redis is back calls work."""
    await on_private.set("s", "k", 1)
    await private_redis.kill()
    for function_id, payload, code in CALLS:
        error = await fails_fast(on_private, function_id, payload, code)
        assert f"Redis unavailable at {private_redis.url}" in error.message
    await private_redis.start()
    assert await on_private.set("s", "k", 2) == {"old_value": None, "new_value": 2}  # --save "": data is gone
    assert await on_private.update("s", "k", [{"type": "increment", "path": "", "by": 1}]) == {
        "old_value": 2,
        "new_value": 3,
    }
    assert await on_private.groups() == ["s"]


async def test_redis_hanging(on_private: StateHarness, private_redis: PrivateRedis) -> None:
    """§8.4: a Redis that stops answering (SIGSTOP) fails calls on the socket timeout, then recovers."""
    await on_private.set("s", "k", 1)
    private_redis.pause()
    error = await fails_fast(on_private, "state::get", {"scope": "s", "key": "k"}, "GET_ERROR")
    assert "Redis unavailable" in error.message
    await fails_fast(on_private, "state::set", {"scope": "s", "key": "k", "value": 2}, "SET_ERROR")
    private_redis.resume()
    await on_private.set("s", "k", 3)
    assert await on_private.get("s", "k") == 3


async def test_reads_survive_dropped_connections(
    on_private: StateHarness, private_redis: PrivateRedis
) -> None:
    """§8.4: when Redis drops every connection (as on a restart) reads reconnect at once; a write whose
    connection died fails with its code (never re-sent blindly) and the next one works."""
    await on_private.set("s", "k", 1)
    client = aioredis.Redis.from_url(private_redis.url)
    try:
        await client.client_kill_filter(_type="normal", skipme=True)
    finally:
        await client.aclose()
    assert await on_private.get("s", "k") == 1
    assert await on_private.keys("s") == ["k"]
    await on_private.set("s", "k", 2)
    assert await on_private.get("s", "k") == 2


async def test_unreachable_at_startup() -> None:
    """§8.4, §9.2 rule 7: no Redis within the budget → startup fails with the reference message."""
    url = f"redis://127.0.0.1:{free_port()}"
    adapter = RedisAdapter(url, connect_budget_s=0.3)
    with pytest.raises(StateStartupError) as info:
        await adapter.open()
    assert (
        str(info.value) == f"Redis connection timed out after 0.3s. Please ensure Redis is running at: {url}"
    )
    await adapter.close()


@pytest.mark.slow
async def test_unreachable_at_startup_through_the_config() -> None:
    """§8.4: the configured adapter gives up after 5 s with `Redis connection timed out after 5s. ...`."""
    url = f"redis://127.0.0.1:{free_port()}"
    server = EngineServer(
        make_settings(state=StateSettings(adapter=AdapterSettings(name="redis", redis_url=url)))
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StateStartupError) as info:
        await server.start()
    await server.stop()
    assert 4.5 < loop.time() - started < 8
    assert str(info.value) == f"Redis connection timed out after 5s. Please ensure Redis is running at: {url}"


async def test_engine_starts_when_redis_comes_up_in_time(private_redis: PrivateRedis) -> None:
    """§8.4: startup keeps trying for the whole budget, so a Redis starting late is fine."""
    await private_redis.kill()
    adapter = RedisAdapter(private_redis.url, connect_budget_s=10)
    opening = asyncio.ensure_future(adapter.open())
    await private_redis.start()
    await opening
    assert adapter.epoch
    await adapter.close()


async def test_list_groups_ignores_unrelated_keys(redis_state: StateHarness) -> None:
    """M139: list_groups lists only pyiii scopes, never other keys of the database."""
    state = redis_state
    client = aioredis.Redis.from_url(REDIS_URL)
    # A key of the reference engine's layout (`state:<scope>`), made unique for this run.
    unrelated = [f"{state.prefix}unrelated", f"state:{state.prefix}users", f"{state.prefix}v:ghost"]
    try:
        await client.set(unrelated[0], "x")
        await client.hset(unrelated[1], "u1", "{}")
        await client.hset(unrelated[2], "k", "1")
        await state.set("real", "k", 1)
        assert await state.groups() == ["real"]
    finally:
        await client.delete(*unrelated)
        await client.aclose()


async def test_layout(redis_state: StateHarness) -> None:
    """§8.4: values are pyiii's canonical JSON text under the documented keys; versions only grow."""
    state = redis_state
    keys = RedisKeys(state.prefix)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await state.set("s", "k", {"b": [], "a": 2**64 - 1})
        assert await client.hget(keys.values("s"), "k") == b'{"a":18446744073709551615,"b":[]}'
        first = int(await client.hget(keys.versions("s"), "k"))
        await state.delete("s", "k")
        await state.set("s", "k", 1)
        assert int(await client.hget(keys.versions("s"), "k")) > first
        assert await client.smembers(keys.scopes) == {b"s"}
        assert await client.zrange(keys.order("s"), 0, -1) == [b"k"]
    finally:
        await client.aclose()


async def test_engine_initiated_writes_outside_a_task(redis_state: StateHarness) -> None:
    """A write the engine starts from a loop callback (a trigger firing outside any task) reaches
    Redis: the state functions on Redis run as their own task, because redis-py enters
    ``asyncio.timeout`` before its first suspension, which fails where no task is current."""
    state = redis_state
    loop = asyncio.get_running_loop()
    for n in range(3):
        loop.call_soon(state.engine.invoke_void, "state::set", {"scope": "cb", "key": f"k{n}", "value": n})
    for _ in range(200):
        if len(await state.keys("cb")) == 3:
            break
        await asyncio.sleep(0.01)
    assert [await state.get("cb", f"k{n}") for n in range(3)] == [0, 1, 2]
