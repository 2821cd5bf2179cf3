"""Drive the todo example (examples/todo, examples/todo-node) end to end, as a browser would.

A :class:`Stack` is an engine on the default module set (every listener on a free port, the durable
store in a temporary directory) with one todo worker attached: the Python app in-process (the machinery
of `pyiii run`), the Python app as a separate process (`python examples/todo/app.py`), or the Node app
(`node examples/todo-node/app.mjs`, the official iii-sdk 0.11.6). Requests go through a real aiohttp
client; :class:`LiveClient` is a WebSocket client on `/stream/todos-live/all` that records every
`todo_changed` event.

Nothing sleeps to wait for an event: stream frames and state changes are awaited. The only polls wait
for a separate process to finish registering (there is no event for "the worker is ready"), as the
compat harness does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from pyiii import III, register_worker
from pyiii.config import Settings, load_settings
from pyiii.run import start_app
from pyiii.sdk.client import set_default_engine

ROOT = Path(__file__).resolve().parents[2]
TODO_APP = ROOT / "examples" / "todo" / "app.py"
NODE_APP = ROOT / "examples" / "todo-node" / "app.mjs"
PRODUCTS_APP = ROOT / "examples" / "products" / "app.py"

TIME_FACTOR = float(os.environ.get("PYIII_TEST_TIME_FACTOR", "1"))
WAIT_S = 30.0 * TIME_FACTOR
POLL_S = 0.02
#: Every trigger the todo app registers, by function id (the last one is registered last).
TODO_TRIGGERS = (
    "todos::create",
    "todos::list",
    "todos::toggle",
    "todos::delete",
    "todos::metrics",
    "todos::page",
    "todos::on-change",
    "todos::update-metrics",
)
#: The environment of worker subprocesses: the test runner's, without III_* variables.
CLEAN_ENV = {name: value for name, value in os.environ.items() if not name.startswith("III_")}


def default_settings(data_dir: Path, *, in_memory: bool = False) -> Settings:
    """The default module set (config-cli-modules.md §2.7) under `data_dir`, every port 0."""
    settings = load_settings(None, in_memory=in_memory, data_dir=str(data_dir), env={})
    assert settings.source_file is None, "a ./config.yaml in the test's directory would change the stack"
    return replace(
        settings,
        worker_managers=tuple(replace(wm, port=0) for wm in settings.worker_managers),
        http=replace(settings.http, port=0) if settings.http else None,
        stream=replace(settings.stream, port=0) if settings.stream else None,
    )


def stream_module(server: Any) -> Any:
    for module in server.engine.modules:
        if getattr(module, "name", None) == "iii-stream":
            return module
    raise AssertionError("the engine runs no stream module")


async def wait_until(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `check` (sync or async) until truthy; for states no event announces."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_S)


class LiveClient:
    """A WebSocket client on `ws://…/stream/todos-live/all`: every `todo_changed` payload, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, stream_url: str) -> LiveClient:
        """Connect and wait for the `sync` of the URL join: from then on no event is missed."""
        ws = await session.ws_connect(f"{stream_url}/stream/todos-live/all")
        client = cls(ws)
        await client.wait_for(lambda c: any(f["event"]["type"] == "sync" for f in c.frames), "the sync frame")
        return client

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            async with self._changed:
                self.frames.append(frame)
                event = frame.get("event", {})
                if event.get("type") == "event" and event["event"]["type"] == "todo_changed":
                    assert frame["streamName"] == "todos-live" and frame["groupId"] == "all", frame
                    self.events.append(event["event"]["data"])
                self._changed.notify_all()

    async def wait_for(self, check: Callable[[LiveClient], bool], what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: check(self)), WAIT_S)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events[-5:]}") from None

    async def wait_events(self, count: int) -> list[dict[str, Any]]:
        """Wait until `count` events have arrived in total; return them all."""
        await self.wait_for(lambda c: len(c.events) >= count, f"{count} todo_changed events")
        return list(self.events)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class MetricsWatch:
    """An in-process worker with a state trigger on `todo-metrics/global`: awaits counter values."""

    def __init__(self, engine: Any) -> None:
        self.latest: Any = None
        self._changed = asyncio.Condition()
        self.client: III = register_worker(engine)
        self.client.register_function("test::metrics-changed", self._on_change)
        self.client.register_trigger(
            {
                "type": "state",
                "function_id": "test::metrics-changed",
                "config": {"scope": "todo-metrics", "key": "global"},
            }
        )

    async def _on_change(self, event: dict[str, Any]) -> None:
        async with self._changed:
            self.latest = event["new_value"]
            self._changed.notify_all()

    async def wait(self, total: int, completed: int) -> None:
        def reached() -> bool:
            value = self.latest or {}
            return bool(value.get("total", 0) == total and value.get("completed", 0) == completed)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(reached), WAIT_S)
            except TimeoutError:
                raise AssertionError(f"metrics never reached {total}/{completed}: {self.latest}") from None


class Stack:
    """An engine with the default modules and one todo worker; `kind` is embedded, python or node."""

    def __init__(self, server: Any, kind: str) -> None:
        self.server = server
        self.kind = kind
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        self.http_url = server.http.url
        self.stream_url = stream_module(server).url
        self.app_globals: dict[str, Any] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.live: list[LiveClient] = []
        self.metrics = MetricsWatch(server.engine)

    async def attach(self) -> None:
        """Start the worker of `kind` and wait until every route and trigger is registered."""
        if self.kind == "embedded":
            self.app_globals = await start_app(self.server, TODO_APP)
        else:
            if self.kind == "python":
                command = [sys.executable, str(TODO_APP)]
            else:
                command = ["node", str(NODE_APP)]
            self.process = await asyncio.create_subprocess_exec(
                *command,
                env={**CLEAN_ENV, "III_URL": self.server.url},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        await wait_until(self._registered, f"the {self.kind} todo worker's registrations")

    def _registered(self) -> bool:
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError(f"the {self.kind} worker exited with {self.process.returncode}")
        bound = {binding.function_id for binding in self.server.engine.triggers.bindings.values()}
        return all(function_id in bound for function_id in TODO_TRIGGERS)

    async def connect_live(self) -> LiveClient:
        client = await LiveClient.connect(self.session, self.stream_url)
        self.live.append(client)
        return client

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        async with self.session.request(method, self.http_url + path, **kwargs) as resp:
            text = await resp.text()
            is_json = text and resp.content_type == "application/json"
            return resp.status, (json.loads(text) if is_json else text)

    async def create(self, title: str) -> dict[str, Any]:
        status, todo = await self.request("POST", "/todos", {"title": title})
        assert status == 201, (status, todo)
        return todo  # type: ignore[no-any-return]

    async def stop(self) -> None:
        for client in self.live:
            await client.close()
        await self.session.close()
        if self.app_globals is not None:
            await self.app_globals["iii"].shutdown_async()
            set_default_engine(None)  # start_app bound register_worker() to this engine
        await self.metrics.client.shutdown_async()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self.server.stop()
