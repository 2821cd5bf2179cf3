"""Concurrency on every adapter (spec/state.md §10; checklist J, M140): no lost updates, atomic deletes,
commit failures never observed. Workers are pyiii SDK clients over real WebSockets where it matters.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from state_harness import NO_RESULT, StateHarness, watch

from pyiii import III, InitOptions, ReconnectionConfig, register_worker
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.sqlite import SqliteAdapter

INCREMENT = [{"type": "increment", "path": "n", "by": 1}]


async def remote_workers(url: str, count: int, prefix: str) -> list[III]:
    """``count`` SDK workers connected over WebSocket (register_worker blocks: run in threads)."""
    options = [
        InitOptions(worker_name=f"{prefix}-{i}", reconnection_config=ReconnectionConfig(max_retries=0))
        for i in range(count)
    ]
    return list(await asyncio.gather(*(asyncio.to_thread(register_worker, url, o) for o in options)))


async def shutdown(clients: list[III]) -> None:
    await asyncio.gather(*(asyncio.to_thread(client.shutdown) for client in clients))


async def hammer(client: III, calls: int, ops: list[dict[str, Any]]) -> None:
    """``calls`` concurrent state::update calls from one worker."""
    request = {"function_id": "state::update", "payload": {"scope": "c", "key": "n", "ops": ops}}
    await asyncio.gather(*(client.trigger_async(request) for _ in range(calls)))


async def test_ten_workers_times_one_hundred(state: StateHarness) -> None:
    """Issue 3: 10 WebSocket workers × 100 concurrent increments on one key end at exactly 1,000."""
    clients = await remote_workers(state.url, 10, "inc")
    try:
        await asyncio.gather(*(hammer(client, 100, INCREMENT) for client in clients))
    finally:
        await shutdown(clients)
    assert await state.get("c", "n") == {"n": 1000}


async def test_five_hundred_increments(state: StateHarness) -> None:
    """J99: 500 concurrent `increment n 2` on one key → exactly 1000."""
    ops = [{"type": "increment", "path": "n", "by": 2}]
    await asyncio.gather(*(state.update("c", "k", ops) for _ in range(500)))
    assert await state.get("c", "k") == {"n": 1000}


async def test_updates_on_different_keys(state: StateHarness) -> None:
    """J100: concurrent updates on different keys all succeed; none is lost."""
    await asyncio.gather(*(state.update("c", f"k{i % 50}", INCREMENT) for i in range(500)))
    values = await state.call("state::list", {"scope": "c"})
    assert values == [{"n": 10}] * 50


async def test_mixed_writes_keep_every_increment(state: StateHarness) -> None:
    """§10: sets and updates racing on one key are linearizable: each update sees the write before it."""
    results = await asyncio.gather(
        *(state.update("c", "k", INCREMENT) if i % 10 else state.set("c", "k", {"n": 0}) for i in range(200))
    )
    counts = [r["new_value"]["n"] for r in results]
    for previous, current in itertools.pairwise(counts):
        assert current in (0, previous + 1)


@pytest.mark.redis
async def test_two_engines_share_one_redis(make_state: Callable[..., StateHarness]) -> None:
    """Issue 3, M140 [2E]: 10 workers on two engines sharing one Redis, 100 increments each → 1,000;
    then 250 `increment 2` through each engine → +1,000."""
    a = await make_state("redis").start()
    b = await make_state("redis", prefix=a.prefix).start()
    clients = await remote_workers(a.url, 5, "a") + await remote_workers(b.url, 5, "b")
    try:
        await asyncio.gather(*(hammer(client, 100, INCREMENT) for client in clients))
    finally:
        await shutdown(clients)
    assert await a.get("c", "n") == await b.get("c", "n") == {"n": 1000}
    ops = [{"type": "increment", "path": "n", "by": 2}]
    await asyncio.gather(*(h.update("c", "n", ops) for _ in range(250) for h in (a, b)))
    assert await b.get("c", "n") == {"n": 2000}


@pytest.mark.redis
async def test_two_engines_atomic_deletes(make_state: Callable[..., StateHarness]) -> None:
    """D3 [2E]: concurrent deletes of one key through two engines: exactly one gets the value."""
    a = await make_state("redis").start()
    b = await make_state("redis", prefix=a.prefix).start()
    for round_ in range(10):
        await a.set("c", "k", round_)
        results = await asyncio.gather(*(h.delete("c", "k") for _ in range(10) for h in (a, b)))
        assert [r for r in results if r is not NO_RESULT] == [round_]


async def test_commit_failure_is_never_observed(make_state: Callable[..., StateHarness]) -> None:
    """J101 (file_based): a write whose commit fails is never visible, fails with SET_ERROR, fires nothing."""
    state = await make_state("file_based").start()
    adapter = state.state.adapter
    assert isinstance(adapter, SqliteAdapter)
    client = register_worker(state.engine, InitOptions(worker_name="w"))
    recorder, _ = watch(client, {})
    await state.set("c", "k", 1)
    await recorder.wait(1)

    real_commit = adapter._commit_batch
    entered = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def failing_commit(batch: Any, clock: int) -> None:
        loop.call_soon_threadsafe(entered.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        raise sqlite3.OperationalError("disk I/O error (injected)")

    adapter._commit_batch = failing_commit  # type: ignore[method-assign]
    doomed = asyncio.ensure_future(state.set("c", "k", 2))
    follower = asyncio.ensure_future(state.update("c", "k", INCREMENT))  # queued on top of the doomed write
    bystander = asyncio.ensure_future(state.set("c", "other", 1))
    await entered.wait()
    assert await state.get("c", "k") == 1  # while the commit is in progress
    adapter._commit_batch = real_commit  # type: ignore[method-assign]
    release.set()
    with pytest.raises(InvocationError) as info:
        await doomed
    assert info.value.code == "SET_ERROR"
    assert "disk I/O error (injected)" in info.value.message
    with pytest.raises(InvocationError) as info:
        await follower
    assert info.value.code == "UPDATE_ERROR"
    assert await bystander == {"old_value": None, "new_value": 1}
    assert await state.get("c", "k") == 1
    await state.idle()
    assert sorted((e["key"], e["new_value"]) for e in recorder.events) == [("k", 1), ("other", 1)]
    await client.shutdown_async()
    await state.restart()
    assert await state.get("c", "k") == 1 and await state.get("c", "other") == 1
