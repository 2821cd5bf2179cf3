"""Several engines sharing one Redis (spec/state.md §7.7, D10; checklist O): a write through any
engine fires every matching trigger on every engine exactly once, in commit order per key, without
delaying the writer's reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from state_harness import REDIS_URL, Recorder, StateHarness, watch

from pyiii import III, InitOptions, register_worker
from pyiii.modules.state.adapters.redis import RedisAdapter

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def pair(make_state: Callable[..., StateHarness]) -> AsyncIterator[tuple[StateHarness, StateHarness]]:
    """Engines A and B on one Redis (same key prefix)."""
    a = await make_state("redis").start()
    b = await make_state("redis", prefix=a.prefix).start()
    yield a, b


@pytest_asyncio.fixture
async def workers(pair: tuple[StateHarness, StateHarness]) -> AsyncIterator[tuple[III, III]]:
    """An in-process SDK worker on each engine."""
    a, b = pair
    clients = (
        register_worker(a.engine, InitOptions(worker_name="on-a")),
        register_worker(b.engine, InitOptions(worker_name="on-b")),
    )
    yield clients
    for client in clients:
        await client.shutdown_async()


async def idle(*engines: StateHarness) -> None:
    for engine in engines:
        await engine.idle()


async def test_a_write_fires_triggers_on_every_engine(
    pair: tuple[StateHarness, StateHarness], workers: tuple[III, III]
) -> None:
    """O147 [2E]: a write through A fires a trigger registered on B once, and one on A once."""
    a, b = pair
    on_a, _ = watch(workers[0], {"scope": "s"})
    on_b, trigger_b = watch(workers[1], {"scope": "s"})
    await a.set("s", "k", {"v": 1})
    await b.delete("s", "k")
    await idle(a, b)
    for recorder in (on_a, on_b):
        assert [(e["event_type"], e["old_value"], e["new_value"]) for e in recorder.events] == [
            ("state:created", None, {"v": 1}),
            ("state:deleted", {"v": 1}, None),
        ]
    listed = await b.call("engine::registered-triggers::list", {"type": "state"})
    (row,) = [r for r in listed["triggers"] if r["id"] == trigger_b.id]
    assert row["delivery_stats"]["delivered"] == 2


async def test_commit_order_across_engines(
    pair: tuple[StateHarness, StateHarness], workers: tuple[III, III]
) -> None:
    """O148 [2E]: writes to one key through A and B, even concurrent, reach a trigger in commit order."""
    a, b = pair
    recorder, _ = watch(workers[1], {"key": "n"})
    ops = [{"type": "increment", "path": "", "by": 1}]
    for i in range(20):
        await (a if i % 2 else b).update("s", "n", ops)
    await asyncio.gather(*(engine.update("s", "n", ops) for _ in range(40) for engine in (a, b)))
    events = await recorder.wait(100)
    assert [e["new_value"] for e in events] == list(range(1, 101))
    assert all(e["old_value"] == (e["new_value"] - 1 or None) for e in events)


async def test_slow_handler_on_b_does_not_delay_a(
    pair: tuple[StateHarness, StateHarness], workers: tuple[III, III]
) -> None:
    """O149 [2E]: a handler stuck on B delays neither A's replies nor A's own triggers."""
    a, _ = pair
    release = asyncio.Event()

    async def stuck(data: Any) -> Any:
        await release.wait()

    on_b, _ = watch(workers[1], {}, Recorder(stuck))
    on_a, _ = watch(workers[0], {})
    for i in range(3):
        assert (await a.set("s", "k", i))["new_value"] == i
    await on_a.wait(3)
    await on_b.wait(1)
    assert len(on_b.events) == 1
    release.set()
    await on_b.wait(3)


async def test_registration_after_a_write_does_not_fire_for_it(
    pair: tuple[StateHarness, StateHarness], workers: tuple[III, III]
) -> None:
    """§7.1 rule 4: a write acknowledged before a trigger is registered never fires it."""
    a, b = pair
    await a.set("s", "before", 1)
    await b.set("s", "before-b", 1)
    await idle(b)
    recorder, _ = watch(workers[0], {})
    await a.set("s", "after", 1)
    await idle(a, b)
    assert [e["key"] for e in recorder.events] == ["after"]


async def test_events_resume_after_a_lost_connection(
    pair: tuple[StateHarness, StateHarness], workers: tuple[III, III]
) -> None:
    """§7.7 M5: when B's event connection drops, B resumes where it stopped: nothing lost or doubled."""
    a, b = pair
    recorder, _ = watch(workers[1], {})
    await a.set("s", "k", 0)
    await recorder.wait(1)
    adapter = b.state.adapter
    assert isinstance(adapter, RedisAdapter)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        name = f"pyiii-state-events:{b.prefix}"
        readers = [c for c in await client.client_list() if c.get("name") == name]
        assert len(readers) == 2  # A's and B's; drop B's (the one opened last)
        reader = max(readers, key=lambda c: int(c["id"]))
        assert await client.client_kill_filter(_id=reader["id"]) == 1
        for i in range(1, 50):
            await a.set("s", "k", i)
        await recorder.wait(50)
        await idle(a, b)
        assert [e["new_value"] for e in recorder.events] == list(range(50))
        assert adapter.events_missed == 0
    finally:
        await client.aclose()


async def test_a_gap_is_counted(redis_state: StateHarness) -> None:
    """§7.7 M5: events this engine could not read (trimmed from the stream) are logged and counted."""
    adapter = redis_state.state.adapter
    assert isinstance(adapter, RedisAdapter)
    seen: list[Any] = []
    adapter._sink = lambda *event: seen.append(event)
    base = {b"t": b"c", b"s": b"s", b"k": b"k", b"n": b"1"}
    adapter._event((1, 0), {**base, b"q": b"10"})
    adapter._event((2, 0), {**base, b"q": b"11"})
    adapter._event((3, 0), {**base, b"q": b"15"})
    assert adapter.events_missed == 3 and len(seen) == 3
