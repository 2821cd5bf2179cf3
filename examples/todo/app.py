"""A live todo backend with pyiii's Python SDK: REST on state, reactive side effects, live push.

    pyiii run examples/todo/app.py     # engine + this worker in one process; open http://127.0.0.1:3111/
    python examples/todo/app.py        # this worker alone, against a running engine ($III_URL or
                                       # ws://127.0.0.1:49134)

Routes (HTTP on 3111), each a function that reads or writes the state scope `todos`:
  POST /todos {title}   todos::create   state::set; 201 with the todo, 400 without a title
  GET  /todos           todos::list     state::list
  POST /todos/toggle    todos::toggle   state::update (set ops; again if a concurrent toggle won); 404
  POST /todos/delete    todos::delete   state::delete; 404 for an unknown id
  GET  /todos/metrics   todos::metrics  {total, completed} from state todo-metrics/global
  GET  /                the page (index.html), live from ws://<host>:3112/stream/todos-live/all

Reactions (state triggers on the scope `todos`):
  todos::on-change       stream::send of {action, key, todo} as event `todo_changed` (fire and forget)
  todos::update-metrics  state::update increments on todo-metrics/global

The counters stay exact under concurrent writes because every change is counted from the state
event's own `old_value`/`new_value` (captured atomically with the write) and applied with atomic
`increment` ops, never with a read-modify-write.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyiii import InitOptions, Logger, TriggerAction, register_worker

# No address: the engine of `pyiii run` when run under it, else $III_URL, else ws://127.0.0.1:49134.
iii = register_worker(options=InitOptions(worker_name="todo-app"))
logger = Logger()

PAGE = (Path(__file__).parent / "index.html").read_text(encoding="utf-8")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def state(op: str, **payload: Any) -> Any:
    return await iii.trigger_async({"function_id": f"state::{op}", "payload": payload})


def reply(status: int, body: Any) -> dict[str, Any]:
    return {"status_code": status, "body": body}


def todo_id_of(req: dict[str, Any]) -> str | None:
    body = req.get("body")
    todo_id = body.get("id") if isinstance(body, dict) else None
    return todo_id if isinstance(todo_id, str) and todo_id else None


# ---------------------------------------------------------------------------------------------------
# CRUD: HTTP endpoints whose handlers write to state (the database)


async def create_todo(req: dict[str, Any]) -> dict[str, Any]:
    body = req.get("body")
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str) or not title.strip():
        return reply(400, {"error": "title is required"})
    todo = {"id": f"todo-{uuid.uuid4().hex}", "title": title.strip(), "completed": False, "created_at": now()}
    await state("set", scope="todos", key=todo["id"], value=todo)
    return reply(201, todo)


async def list_todos(req: dict[str, Any]) -> list[Any]:
    return await state("list", scope="todos")  # type: ignore[no-any-return]


async def toggle_todo(req: dict[str, Any]) -> dict[str, Any]:
    todo_id = todo_id_of(req)
    if todo_id is None:
        return reply(400, {"error": "id is required"})
    todo = await state("get", scope="todos", key=todo_id)
    if todo is None:
        return reply(404, {"error": f"todo {todo_id} not found"})
    seen = bool(todo.get("completed"))
    while True:
        ops = [
            {"type": "set", "path": "completed", "value": not seen},
            {"type": "set", "path": "updated_at", "value": now()},
        ]
        result = await state("update", scope="todos", key=todo_id, ops=ops)
        old = result["old_value"]
        if old is None:
            # Deleted between the get and the update, which then created it again: undo that.
            await state("delete", scope="todos", key=todo_id)
            return reply(404, {"error": f"todo {todo_id} not found"})
        if bool(old.get("completed")) == seen:
            return reply(200, result["new_value"])
        # Another toggle landed between our read and our write, so ours flipped nothing: the update
        # returns the value it replaced, so flip again from that (every toggle counts exactly once).
        seen = not seen


async def delete_todo(req: dict[str, Any]) -> dict[str, Any]:
    todo_id = todo_id_of(req)
    if todo_id is None:
        return reply(400, {"error": "id is required"})
    removed = await state("delete", scope="todos", key=todo_id)  # the removed value, or None
    if removed is None:
        return reply(404, {"error": f"todo {todo_id} not found"})
    return reply(200, {"id": todo_id, "deleted": True})


async def get_metrics(req: dict[str, Any]) -> dict[str, int]:
    metrics = await state("get", scope="todo-metrics", key="global") or {}
    return {"total": metrics.get("total", 0), "completed": metrics.get("completed", 0)}


async def page(req: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": 200, "headers": {"content-type": "text/html; charset=utf-8"}, "body": PAGE}


for function_id, handler, method, path in [
    ("todos::create", create_todo, "POST", "/todos"),
    ("todos::list", list_todos, "GET", "/todos"),
    ("todos::toggle", toggle_todo, "POST", "/todos/toggle"),
    ("todos::delete", delete_todo, "POST", "/todos/delete"),
    ("todos::metrics", get_metrics, "GET", "/todos/metrics"),
    ("todos::page", page, "GET", "/"),
]:
    iii.register_function(function_id, handler)
    iii.register_trigger(
        {"type": "http", "function_id": function_id, "config": {"api_path": path, "http_method": method}}
    )


# ---------------------------------------------------------------------------------------------------
# Reactive side effects: state triggers on the `todos` scope


async def on_change(event: dict[str, Any]) -> dict[str, Any] | None:
    """Push every change to the browsers on ws://<host>:3112/stream/todos-live/all."""
    key, old, new = event["key"], event.get("old_value"), event.get("new_value")
    if event["event_type"] == "state:deleted":
        if old is None:
            return None  # a delete of a missing id changed nothing
        action, todo = "deleted", old
    else:
        action, todo = ("created" if old is None else "updated"), new
    logger.info("todo changed", {"action": action, "key": key})
    await iii.trigger_async(
        {
            "function_id": "stream::send",
            "payload": {
                "stream_name": "todos-live",
                "group_id": "all",
                "type": "todo_changed",
                "data": {"action": action, "key": key, "todo": todo},
            },
            "action": TriggerAction.Void(),  # fire and forget
        }
    )
    return {"action": action, "key": key}


def completed(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("completed"))


async def update_metrics(event: dict[str, Any]) -> None:
    """Keep `todo-metrics/global` = {total, completed} with atomic increments."""
    old, new = event.get("old_value"), event.get("new_value")
    if event["event_type"] == "state:deleted":
        if old is None:
            return
        total, done = -1, -completed(old)
    elif old is None:
        total, done = 1, int(completed(new))
    else:
        total, done = 0, int(completed(new)) - int(completed(old))
    ops = [
        {"type": "increment", "path": path, "by": by}
        for path, by in (("total", total), ("completed", done))
        if by
    ]
    if ops:
        await state("update", scope="todo-metrics", key="global", ops=ops)


iii.register_function("todos::on-change", on_change)
iii.register_trigger({"type": "state", "function_id": "todos::on-change", "config": {"scope": "todos"}})
iii.register_function("todos::update-metrics", update_metrics)
iii.register_trigger({"type": "state", "function_id": "todos::update-metrics", "config": {"scope": "todos"}})


if __name__ == "__main__":
    # A standalone worker: the SDK runs in a background thread, so keep the process alive.
    # (`pyiii run` does not run this block: the engine keeps its process alive.)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        iii.shutdown()
