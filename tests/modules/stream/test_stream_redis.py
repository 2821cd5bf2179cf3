"""The ``redis`` adapter: storage in Redis and cross-engine fan-out over pub/sub (spec/stream.md §7.2;
checklist items 27 and 38)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from stream_harness import EngineProcess, StreamHarness, engine_config, frame_of, join

from helpers import RawWorker
from module_helpers import REDIS_URL
from pyiii.modules.state.errors import StateStartupError
from pyiii.modules.stream.redis_bus import RedisBus

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def pair(make_stream: Callable[..., StreamHarness]) -> tuple[StreamHarness, StreamHarness]:
    """Engines A and B (in-process) on one Redis: same key prefix, same events channel."""
    a = make_stream("redis")
    await a.start()
    channel = a.stream.bus.channel  # type: ignore[attr-defined]
    b = await make_stream("redis", prefix=a.prefix, channel=channel).start()
    return a, b


async def test_a_client_on_b_gets_writes_made_through_a(pair: tuple[StreamHarness, StreamHarness]) -> None:
    """Checklist 38: a client on engine B receives the frames of writes and sends made through engine A,
    in order; the publisher's own clients get them through Redis as well."""
    a, b = pair
    on_b = await b.client("/stream/s/g")
    on_a = await a.client("/stream/s/g")
    await on_b.expect(frame_of("sync"))
    await on_a.expect(frame_of("sync"))
    for n in range(20):
        await a.set("s", "g", f"i{n % 3}", n)
    await a.send("s", "g", "done", None)
    for client in (on_a, on_b):
        await client.expect(frame_of("event"))
        values = [f["event"]["data"] for f in client.history if f["event"]["type"] in ("create", "update")]
        assert values == list(range(20))
    assert await b.call("stream::list_groups", {"stream_name": "s"}) == ["g"]


async def test_two_engines_update_one_item_atomically(pair: tuple[StreamHarness, StreamHarness]) -> None:
    """Checklist 27 (redis, two engines): 500 concurrent ``increment`` updates split over two engines lose
    nothing."""
    a, b = pair
    ops = [{"type": "increment", "path": "n", "by": 1}]
    results = await asyncio.gather(*((a if i % 2 else b).update("s", "g", "c", ops) for i in range(500)))
    assert sorted(r["new_value"]["n"] for r in results) == list(range(1, 501))


async def test_subscription_reconnects_after_the_connection_is_killed(
    make_stream: Callable[..., StreamHarness],
) -> None:
    """§7.2.7: when the subscription connection is killed, the engine resubscribes with backoff, logs the gap,
    and its clients receive events published afterwards."""
    harness = await make_stream("redis").start()
    bus = harness.stream.bus
    assert isinstance(bus, RedisBus)
    client = await harness.client("/stream/s/g")
    await client.expect(frame_of("sync"))
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        listed = await admin.client_list()
        (target,) = [c for c in listed if c.get("name") == bus.subscriber_name]
        assert await admin.client_kill_filter(_id=target["id"]) == 1
    finally:
        await admin.aclose()
    await bus.wait_subscribed(2)
    assert bus.reconnects == 1
    await harness.set("s", "g", "after", 1)
    created = await client.expect(frame_of("create"))
    assert created["id"] == "after"


async def test_unreachable_redis_stops_startup(make_stream: Callable[..., StreamHarness]) -> None:
    """§7.2.1: no Redis within the connect budget -> the startup error naming the URL."""
    bus = RedisBus("redis://127.0.0.1:1", connect_budget_s=0.3)
    harness = make_stream("memory")
    harness.make_bus = lambda: bus
    with pytest.raises(
        StateStartupError, match=re.escape("Please ensure Redis is running at: redis://127.0.0.1:1")
    ):
        await harness.start()


# ------------------------------------------------------------------------------ two engine processes


@pytest_asyncio.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[EngineProcess, EngineProcess]]:
    """Two ``pyiii`` processes on one Redis (the default key prefix and channel)."""
    started: list[EngineProcess] = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            config = engine_config(directory, f'{{name: redis, config: {{redis_url: "{REDIS_URL}"}}}}')
            started.append(await EngineProcess.start(config, directory))
        yield started[0], started[1]
    finally:
        for engine in started:
            await engine.close()


async def test_two_engine_processes(engines: tuple[EngineProcess, EngineProcess]) -> None:
    """Checklist 38: with two real engine processes on one Redis, a client on B receives frames for writes on
    A, and ``stream`` triggers fire only on A."""
    a, b = engines
    name = f"orders-{uuid.uuid4().hex}"
    workers: list[RawWorker] = []
    try:
        for engine, label in ((a, "on-a"), (b, "on-b")):
            worker = await RawWorker.connect(engine.url)
            await worker.register(label)
            await worker.serve("test::changed", lambda frame: None)
            await worker.send(
                {
                    "type": "registertrigger",
                    "id": f"t-{label}",
                    "trigger_type": "stream",
                    "function_id": "test::changed",
                    "config": {"stream_name": name},
                }
            )
            await worker.barrier()
            workers.append(worker)
        on_a, on_b = workers
        client = await RawWorker.connect(b.stream_url, path=f"/stream/{name}/g", hello=False)
        try:
            await client.send(join("second", name, "g", "i"))
            await client.expect(frame_of("sync"))
            await client.expect(frame_of("sync"))
            await on_a.result(
                "stream::set", {"stream_name": name, "group_id": "g", "item_id": "i", "data": {"v": 1}}
            )
            frames = [await client.expect(frame_of("create")) for _ in range(2)]
            assert frames[0].raw == frames[1].raw and frames[0]["event"]["data"] == {"v": 1}
            fired = await on_a.expect({"type": "invokefunction", "function_id": "test::changed"})
            assert fired["data"] == dict(frames[0])
            await on_a.result("stream::delete", {"stream_name": name, "group_id": "g", "item_id": "i"})
            await client.expect(frame_of("delete"))
            await on_b.barrier()
            assert on_b.received({"type": "invokefunction"}) == []
        finally:
            await client.close()
    finally:
        for worker in workers:
            await worker.close()
        await _delete_stream_keys(name)


async def _delete_stream_keys(name: str) -> None:
    client: Any = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"pyiii:stream:*{name}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.srem("pyiii:stream:scopes", *[k async for k in _scopes(client, name)] or ["-"])
    finally:
        await client.aclose()


async def _scopes(client: Any, name: str) -> AsyncIterator[bytes]:
    for scope in await client.smembers("pyiii:stream:scopes"):
        if name.encode() in scope:
            yield scope


async def test_adapter_failures_map_to_stream_error_codes(make_stream: Callable[..., StreamHarness]) -> None:
    """Checklist 29: when the store fails (here: its Redis client is gone), each function answers its
    ``STREAM_*_ERROR`` code with the adapter's text; ``send`` does not touch the store and still works."""
    harness = await make_stream("redis").start()
    await harness.stream.store.adapter.close()
    ref = {"stream_name": "s", "group_id": "g", "item_id": "i"}
    expected = {
        "stream::set": ({**ref, "data": 1}, "STREAM_SET_ERROR"),
        "stream::get": (ref, "STREAM_GET_ERROR"),
        "stream::delete": (ref, "STREAM_DELETE_ERROR"),
        "stream::update": ({**ref, "ops": []}, "STREAM_UPDATE_ERROR"),
        "stream::list": ({"stream_name": "s", "group_id": "g"}, "STREAM_GET_GROUP_ERROR"),
        "stream::list_groups": ({"stream_name": "s"}, "STREAM_LIST_GROUPS_ERROR"),
        "stream::list_all": ({}, "STREAM_LIST_ALL_ERROR"),
    }
    for function_id, (payload, code) in expected.items():
        error = await harness.error(function_id, payload)
        assert error.code == code, function_id
        assert "the state store is closed" in error.message
    assert await harness.send("s", "g", "t", 1) is None
