"""The todo backend hand-built the way a Python developer would: FastAPI on uvicorn, Redis for data.

The comparison stack of bench/todo_e2e.py (issue 6). Same HTTP surface as examples/todo, same WebSocket
path and frame shape as the iii stream listener, so one load script drives both:

    POST /todos {title}      201 todo | 400          HSET todos, HINCRBY metrics, PUBLISH (one MULTI)
    GET  /todos              HVALS todos
    POST /todos/toggle {id}  200 todo | 404          a Lua script: flip, HINCRBY completed, PUBLISH
    POST /todos/delete {id}  200 | 404               a Lua script: HDEL, HINCRBY, PUBLISH
    GET  /todos/metrics      {total, completed}      HMGET metrics
    WS   /stream/todos-live/all                      a `sync` frame, then every `todo_changed` frame

One Redis pub/sub subscription per process fans every message out to the connected WebSockets, in the
ConnectionManager style of the FastAPI documentation. Writes that change a counter do it in the same
Redis transaction or script as the data, so the counters are exact under concurrency.

    REDIS_URL=redis://127.0.0.1:6379/0 DIY_TODO_PREFIX=diy: python bench/baselines/diy_todo/app.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from fastapi import Body, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("DIY_TODO_PREFIX", "diy-todo:")
# Every Redis key in one place.
TODOS = f"{PREFIX}todos"
METRICS = f"{PREFIX}todo-metrics"
CHANNEL = f"{PREFIX}todos-live"

# KEYS: todos, metrics, channel. ARGV: id, updated_at, frame prefix, frame suffix.
TOGGLE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return nil end
local todo = cjson.decode(raw)
todo.completed = not todo.completed
todo.updated_at = ARGV[2]
raw = cjson.encode(todo)
redis.call('HSET', KEYS[1], ARGV[1], raw)
redis.call('HINCRBY', KEYS[2], 'completed', todo.completed and 1 or -1)
local data = '{"action":"updated","key":' .. cjson.encode(ARGV[1]) .. ',"todo":' .. raw .. '}'
redis.call('PUBLISH', KEYS[3], ARGV[3] .. data .. ARGV[4])
return raw
"""
DELETE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return nil end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'total', -1)
if cjson.decode(raw).completed then redis.call('HINCRBY', KEYS[2], 'completed', -1) end
local data = '{"action":"deleted","key":' .. cjson.encode(ARGV[1]) .. ',"todo":' .. raw .. '}'
redis.call('PUBLISH', KEYS[3], ARGV[3] .. data .. ARGV[4])
return raw
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame(data: str) -> str:
    """The stream frame of a `todo_changed` event, as the iii stream listener writes it."""
    head, tail = frame_parts()
    return head + data + tail


def frame_parts() -> tuple[str, str]:
    head = (
        f'{{"type":"stream","timestamp":{int(time.time() * 1000)},"streamName":"todos-live",'
        '"groupId":"all","id":null,"event":{"type":"event","event":{"type":"todo_changed","data":'
    )
    return head, "}}}"


class ConnectionManager:
    def __init__(self) -> None:
        self.active: set[WebSocket] = set()

    async def connect(self, ws: WebSocket) -> None:
        await ws.accept()
        sync = {
            "type": "stream",
            "timestamp": int(time.time() * 1000),
            "streamName": "todos-live",
            "groupId": "all",
            "id": None,
            "event": {"type": "sync", "data": []},
        }
        await ws.send_text(json.dumps(sync, separators=(",", ":")))
        self.active.add(ws)

    def disconnect(self, ws: WebSocket) -> None:
        self.active.discard(ws)

    async def broadcast(self, message: str) -> None:
        for ws in list(self.active):
            try:
                await ws.send_text(message)
            except Exception:
                self.active.discard(ws)


manager = ConnectionManager()
db: aioredis.Redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True, max_connections=256)


async def relay_pubsub() -> None:
    """Fan every message of the channel out to the WebSockets of this process."""
    pubsub = db.pubsub()
    await pubsub.subscribe(CHANNEL)
    try:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await manager.broadcast(message["data"])
    finally:
        await pubsub.aclose()


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    toggle, delete = db.register_script(TOGGLE), db.register_script(DELETE)
    app.state.toggle, app.state.delete = toggle, delete
    task = asyncio.create_task(relay_pubsub())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.aclose()


app = FastAPI(lifespan=lifespan)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@app.post("/todos", status_code=201, response_model=None)
async def create_todo(body: dict[str, Any] = Body(default_factory=dict)) -> Any:
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        return error(400, "title is required")
    todo = {"id": f"todo-{uuid.uuid4().hex}", "title": title.strip(), "completed": False, "created_at": now()}
    raw = json.dumps(todo, separators=(",", ":"))
    data = f'{{"action":"created","key":"{todo["id"]}","todo":{raw}}}'
    async with db.pipeline(transaction=True) as pipe:
        pipe.hset(TODOS, todo["id"], raw).hincrby(METRICS, "total", 1).publish(CHANNEL, frame(data))
        await pipe.execute()
    return todo


@app.get("/todos")
async def list_todos() -> list[Any]:
    return [json.loads(raw) for raw in await db.hvals(TODOS)]


def todo_id(body: dict[str, Any]) -> str | None:
    value = body.get("id")
    return value if isinstance(value, str) and value else None


@app.post("/todos/toggle", response_model=None)
async def toggle_todo(body: dict[str, Any] = Body(default_factory=dict)) -> Any:
    key = todo_id(body)
    if key is None:
        return error(400, "id is required")
    head, tail = frame_parts()
    raw = await app.state.toggle(keys=[TODOS, METRICS, CHANNEL], args=[key, now(), head, tail])
    if raw is None:
        return error(404, f"todo {key} not found")
    return json.loads(raw)


@app.post("/todos/delete", response_model=None)
async def delete_todo(body: dict[str, Any] = Body(default_factory=dict)) -> Any:
    key = todo_id(body)
    if key is None:
        return error(400, "id is required")
    head, tail = frame_parts()
    if await app.state.delete(keys=[TODOS, METRICS, CHANNEL], args=[key, "", head, tail]) is None:
        return error(404, f"todo {key} not found")
    return {"id": key, "deleted": True}


@app.get("/todos/metrics")
async def get_metrics() -> dict[str, int]:
    total, completed = await db.hmget(METRICS, ["total", "completed"])
    return {"total": int(total or 0), "completed": int(completed or 0)}


@app.websocket("/stream/todos-live/all")
async def todos_live(ws: WebSocket) -> None:
    await manager.connect(ws)
    try:
        while True:
            await ws.receive_text()  # clients may ping; nothing else is expected
    except WebSocketDisconnect:
        manager.disconnect(ws)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
