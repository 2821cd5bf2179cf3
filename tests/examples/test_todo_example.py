"""The todo example end to end (issue 6): HTTP in, `todo_changed` events and exact counters out.

Each test runs against three workers with the same behaviour: the Python app attached in-process (the
machinery of `pyiii run`), the same file as a separate `python` process, and the Node app on the
official iii-sdk 0.11.6. The engine runs the default module set with the durable store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from todo_harness import Stack

WORKERS = ["embedded", "python", "node"]

MakeStack = Callable[[str], Awaitable[Stack]]


@pytest.fixture(params=WORKERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_crud_routes_events_and_metrics(make_stack: MakeStack, kind: str) -> None:
    """Create, list, toggle and delete answer as specified, each change is one todo_changed event, and the
    counters follow; unknown ids answer 404 and push nothing."""
    stack = await make_stack(kind)
    live = await stack.connect_live()

    todo = await stack.create("  buy milk ")
    assert todo["title"] == "buy milk" and todo["completed"] is False
    assert set(todo) == {"id", "title", "completed", "created_at"}
    assert await stack.request("GET", "/todos") == (200, [todo])
    [created] = await live.wait_events(1)
    assert created == {"action": "created", "key": todo["id"], "todo": todo}
    await stack.metrics.wait(total=1, completed=0)

    status, toggled = await stack.request("POST", "/todos/toggle", {"id": todo["id"]})
    assert status == 200 and toggled["completed"] is True and "updated_at" in toggled
    updated = (await live.wait_events(2))[1]
    assert updated == {"action": "updated", "key": todo["id"], "todo": toggled}
    await stack.metrics.wait(total=1, completed=1)
    assert await stack.request("GET", "/todos/metrics") == (200, {"total": 1, "completed": 1})

    for path in ("/todos/toggle", "/todos/delete"):
        status, body = await stack.request("POST", path, {"id": "todo-missing"})
        assert status == 404 and "error" in body, (path, status, body)
    for bad in ({}, {"title": ""}, {"title": "   "}, {"title": 7}):
        status, body = await stack.request("POST", "/todos", bad)
        assert status == 400 and body == {"error": "title is required"}, (bad, status, body)

    status, body = await stack.request("POST", "/todos/delete", {"id": todo["id"]})
    assert (status, body) == (200, {"id": todo["id"], "deleted": True})
    deleted = (await live.wait_events(3))[2]
    assert deleted == {"action": "deleted", "key": todo["id"], "todo": toggled}
    await stack.metrics.wait(total=0, completed=0)
    assert await stack.request("GET", "/todos/metrics") == (200, {"total": 0, "completed": 0})
    assert await stack.request("GET", "/todos") == (200, [])

    # Nothing was pushed for the 404s and 400s: the next event is the next real change.
    marker = await stack.create("marker")
    assert (await live.wait_events(4))[3] == {"action": "created", "key": marker["id"], "todo": marker}
    assert len(live.events) == 4


async def test_200_concurrent_creates_toggles_and_deletes_keep_exact_counters(
    make_stack: MakeStack, kind: str
) -> None:
    """200 concurrent creates, then 200 concurrent toggles, then 100 concurrent deletes: every change is
    pushed exactly once to every live client and the counters end exact."""
    stack = await make_stack(kind)
    clients = [await stack.connect_live() for _ in range(3)]

    todos = await asyncio.gather(*(stack.create(f"todo {n}") for n in range(200)))
    ids = {todo["id"] for todo in todos}
    assert len(ids) == 200
    for client in clients:
        events = await client.wait_events(200)
        assert {e["key"] for e in events} == ids and {e["action"] for e in events} == {"created"}
    await stack.metrics.wait(total=200, completed=0)

    toggles = await asyncio.gather(
        *(stack.request("POST", "/todos/toggle", {"id": todo_id}) for todo_id in ids)
    )
    assert all(status == 200 and body["completed"] is True for status, body in toggles)
    for client in clients:
        events = (await client.wait_events(400))[200:]
        assert {e["key"] for e in events} == ids
        assert all(e["action"] == "updated" and e["todo"]["completed"] is True for e in events)
    await stack.metrics.wait(total=200, completed=200)

    doomed = sorted(ids)[:100]
    deletes = await asyncio.gather(
        *(stack.request("POST", "/todos/delete", {"id": todo_id}) for todo_id in doomed)
    )
    assert all(status == 200 for status, _ in deletes)
    for client in clients:
        events = (await client.wait_events(500))[400:]
        assert sorted(e["key"] for e in events) == doomed
        assert {e["action"] for e in events} == {"deleted"}
    await stack.metrics.wait(total=100, completed=100)
    assert await stack.request("GET", "/todos/metrics") == (200, {"total": 100, "completed": 100})
    status, remaining = await stack.request("GET", "/todos")
    assert status == 200 and {t["id"] for t in remaining} == ids - set(doomed)
    assert all(len(client.events) == 500 for client in clients)


async def test_concurrent_toggles_of_one_todo_count_each_flip(make_stack: MakeStack, kind: str) -> None:
    """50 concurrent toggles of one todo: each flips it exactly once (none is lost to a concurrent
    one that read the same value), so it ends where it started, and the counters agree."""
    stack = await make_stack(kind)
    todo = await stack.create("flip me")
    results = await asyncio.gather(
        *(stack.request("POST", "/todos/toggle", {"id": todo["id"]}) for _ in range(50))
    )
    assert all(status == 200 for status, _ in results)
    status, [final] = await stack.request("GET", "/todos")
    assert status == 200 and final["completed"] is False
    await stack.metrics.wait(total=1, completed=0)


async def test_page_is_served_at_the_root(make_stack: MakeStack, kind: str) -> None:
    """GET / answers the page as HTML; it needs nothing from outside this machine."""
    stack = await make_stack(kind)
    async with stack.session.get(stack.http_url + "/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page: Any = await resp.text()
    assert "/stream/todos-live/all" in page and "todo_changed" in page
    assert "http://" not in page and "https://" not in page  # no CDN
