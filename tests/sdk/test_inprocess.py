"""In-process workers: ``register_worker(engine)`` against a real engine on the test's loop (§10)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from pyiii import III, InitOptions, Logger, TriggerAction, TriggerConfig, TriggerHandler, register_worker
from pyiii.engine.core import Engine
from pyiii.errors import InvocationError
from pyiii.protocol import errors as codes


@pytest_asyncio.fixture
async def workers(engine: Engine) -> AsyncIterator[Callable[..., III]]:
    """Factory of in-process workers (distinct names), all shut down at the end."""
    made: list[III] = []

    def make(name: str, **options: Any) -> III:
        client = register_worker(engine, InitOptions(worker_name=name, **options))
        made.append(client)
        return client

    yield make
    for client in made:
        await client.shutdown_async()


async def echo(data: Any, metadata: Any = None) -> Any:
    return {"data": data, "metadata": metadata}


async def test_two_workers_call_each_other(workers: Callable[..., III]) -> None:
    """A call from one in-process worker reaches another's async handler with data and metadata."""
    a, b = workers("a"), workers("b")
    b.register_function("b::echo", echo)
    result = await a.trigger_async({"function_id": "b::echo", "payload": {"x": 1}, "metadata": {"m": 2}})
    assert result == {"data": {"x": 1}, "metadata": {"m": 2}}


async def test_payload_objects_cross_without_json(workers: Callable[..., III]) -> None:
    """In-process, the payload object itself reaches the handler and the result object comes back."""
    a, b = workers("a"), workers("b")
    seen: list[Any] = []

    async def identity(data: Any) -> Any:
        seen.append(data)
        return data

    b.register_function("b::id", identity)
    payload = {"nested": [1, 2, 3]}
    assert await a.trigger_async({"function_id": "b::id", "payload": payload}) is payload
    assert seen[0] is payload


async def test_sync_handler_runs_in_the_pool(workers: Callable[..., III]) -> None:
    """A sync handler runs off the engine's loop thread and its result comes back."""
    a, b = workers("a"), workers("b")
    loop_thread = threading.get_ident()

    def where(data: Any) -> bool:
        return threading.get_ident() != loop_thread

    b.register_function("b::where", where)
    assert await a.trigger_async({"function_id": "b::where"}) is True


async def test_unknown_function(workers: Callable[..., III]) -> None:
    """A call to an unknown function raises function_not_found with the engine's message."""
    a = workers("a")
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "missing::fn", "payload": {}})
    assert info.value.code == codes.FUNCTION_NOT_FOUND
    assert info.value.message == "Function missing::fn not found in namespace default."


async def test_raising_handler(workers: Callable[..., III]) -> None:
    """A raising handler surfaces as invocation_failed with message and stacktrace."""
    a, b = workers("a"), workers("b")

    async def boom(data: Any) -> None:
        raise RuntimeError("kaput")

    b.register_function("b::boom", boom)
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::boom"})
    assert (info.value.code, info.value.message) == (codes.INVOCATION_FAILED, "kaput")
    assert "RuntimeError: kaput" in (info.value.stacktrace or "")


async def test_void_runs_the_handler_and_returns_none(workers: Callable[..., III]) -> None:
    """Void returns None at once; the target still runs."""
    a, b = workers("a"), workers("b")
    ran = asyncio.Event()

    async def mark(data: Any) -> str:
        ran.set()
        return "discarded"

    b.register_function("b::mark", mark)
    assert await a.trigger_async({"function_id": "b::mark", "action": TriggerAction.Void()}) is None
    await ran.wait()


async def test_client_timeout(workers: Callable[..., III]) -> None:
    """A handler slower than timeout_ms gives TIMEOUT to the caller."""
    a, b = workers("a"), workers("b")
    never = asyncio.Event()

    async def hang(data: Any) -> None:
        await never.wait()

    b.register_function("b::hang", hang)
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::hang", "timeout_ms": 50})
    assert info.value.code == codes.TIMEOUT


async def test_enqueue_without_the_queue_module(workers: Callable[..., III]) -> None:
    """Enqueue with the queue module off raises enqueue_error (§4.3 rule 4)."""
    a = workers("a")
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::x", "action": TriggerAction.Enqueue(queue="jobs")})
    assert info.value.code == codes.ENQUEUE_ERROR


async def test_blocking_trigger_on_the_engine_loop_raises(workers: Callable[..., III]) -> None:
    """trigger() on the engine's loop thread raises RuntimeError pointing to trigger_async()."""
    a = workers("a")
    with pytest.raises(RuntimeError, match="trigger_async"):
        a.trigger({"function_id": "b::x"})


async def test_blocking_trigger_inside_handlers(workers: Callable[..., III]) -> None:
    """Inside a sync handler trigger() works; inside an async handler it raises RuntimeError."""
    a, b = workers("a"), workers("b")
    a.register_function("a::echo", echo)

    def sync_caller(data: Any) -> Any:
        return b.trigger({"function_id": "a::echo", "payload": data})

    async def async_caller(data: Any) -> Any:
        return b.trigger({"function_id": "a::echo", "payload": data})

    b.register_function("b::sync", sync_caller)
    b.register_function("b::async", async_caller)
    assert await a.trigger_async({"function_id": "b::sync", "payload": 7}) == {"data": 7, "metadata": None}
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::async", "payload": 7})
    assert info.value.code == codes.INVOCATION_FAILED
    assert "trigger_async" in info.value.message


async def test_registration_is_applied_at_once(engine: Engine, workers: Callable[..., III]) -> None:
    """On the engine's loop, a registration is live as soon as register_function returns."""
    b = workers("b")
    b.register_function("b::now", echo)
    entry = engine.functions.get("default", "b::now")
    assert entry is not None and entry.owners


async def test_unregister_removes_the_function(workers: Callable[..., III]) -> None:
    """FunctionRef.unregister makes later calls fail with function_not_found."""
    a, b = workers("a"), workers("b")
    ref = b.register_function("b::temp", echo)
    await a.trigger_async({"function_id": "b::temp"})
    ref.unregister()
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::temp"})
    assert info.value.code == codes.FUNCTION_NOT_FOUND


async def test_worker_namespace(workers: Callable[..., III]) -> None:
    """A namespaced worker registers into its namespace; others reach it only by naming it (§6.4)."""
    a, orders = workers("a"), workers("orders", namespace="orders")
    orders.register_function("orders::create", echo)
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "orders::create"})
    assert "orders" in info.value.message
    result = await a.trigger_async({"function_id": "orders::create", "payload": 1, "namespace": "orders"})
    assert result["data"] == 1
    # The namespaced worker's own calls are stamped with its namespace.
    assert (await orders.trigger_async({"function_id": "orders::create", "payload": 2}))["data"] == 2


async def test_engine_functions_are_reachable(workers: Callable[..., III]) -> None:
    """engine::functions::list sees the worker's function under its worker name."""
    a, b = workers("a"), workers("b")
    b.register_function("b::listed", echo, description="listed")
    listing = await a.trigger_async({"function_id": "engine::functions::list", "payload": {"prefix": "b::"}})
    assert listing["functions"] == [
        {"function_id": "b::listed", "namespace": "default", "worker_name": "b", "description": "listed"}
    ]


class Recorder(TriggerHandler[Any]):
    def __init__(self) -> None:
        self.registered: asyncio.Queue[TriggerConfig[Any]] = asyncio.Queue()
        self.unregistered: asyncio.Queue[TriggerConfig[Any]] = asyncio.Queue()

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        if config.config == {"bad": True}:
            raise ValueError("bad config")
        await self.registered.put(config)

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        await self.unregistered.put(config)


async def test_custom_trigger_type(workers: Callable[..., III]) -> None:
    """A binding reaches its provider's handler; unregistering it reaches the handler too."""
    provider, user = workers("provider"), workers("user")
    recorder = Recorder()
    provider.register_trigger_type({"id": "webhook", "description": "hooks"}, recorder)
    user.register_function("user::on_hook", echo)
    trigger = user.register_trigger(
        {"type": "webhook", "function_id": "user::on_hook", "config": {"url": "/h"}, "metadata": {"m": 1}}
    )
    config = await asyncio.wait_for(recorder.registered.get(), 5)
    assert (config.id, config.function_id, config.config, config.metadata) == (
        trigger.id,
        "user::on_hook",
        {"url": "/h"},
        {"m": 1},
    )
    trigger.unregister()
    gone = await asyncio.wait_for(recorder.unregistered.get(), 5)
    assert gone.id == trigger.id


async def test_unregister_trigger_type(engine: Engine, workers: Callable[..., III]) -> None:
    """unregister_trigger_type removes the type from the engine (D3)."""
    provider = workers("provider")
    webhook = provider.register_trigger_type({"id": "webhook"}, Recorder())
    assert ("default", "webhook") in engine.triggers.types
    webhook.unregister()
    assert ("default", "webhook") not in engine.triggers.types


async def test_refused_binding_is_reported_to_its_owner(workers: Callable[..., III]) -> None:
    """A provider refusing a binding makes Trigger.registration_error show the failure."""
    provider, user = workers("provider"), workers("user")
    provider.register_trigger_type({"id": "webhook"}, Recorder())
    trigger = user.register_trigger({"type": "webhook", "function_id": "user::f", "config": {"bad": True}})
    for _ in range(100):
        if trigger.registration_error is not None:
            break
        await asyncio.sleep(0)
    assert trigger.registration_error == {"code": codes.TRIGGER_REGISTRATION_FAILED, "message": "bad config"}


async def test_target_shutting_down_mid_call_stops_the_call(workers: Callable[..., III]) -> None:
    """When the target worker goes away mid-call, the caller gets invocation_stopped."""
    a, b = workers("a"), workers("b")
    started = asyncio.Event()

    async def hang(data: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    b.register_function("b::hang", hang)
    call = asyncio.ensure_future(a.trigger_async({"function_id": "b::hang"}))
    await started.wait()
    await b.shutdown_async()
    with pytest.raises(InvocationError) as info:
        await call
    assert info.value.code == codes.INVOCATION_STOPPED


async def test_shutdown_fails_pending_calls(workers: Callable[..., III]) -> None:
    """shutdown fails the caller's pending calls with SHUTDOWN."""
    a, b = workers("a"), workers("b")
    started = asyncio.Event()

    async def hang(data: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    b.register_function("b::hang", hang)
    call = asyncio.ensure_future(a.trigger_async({"function_id": "b::hang"}))
    await started.wait()
    a.shutdown()  # on the loop thread: does not block
    with pytest.raises(InvocationError) as info:
        await call
    assert info.value.code == codes.SHUTDOWN


async def test_register_worker_from_another_thread(engine: Engine, workers: Callable[..., III]) -> None:
    """From another thread, register_worker and the sync methods marshal onto the engine's loop."""
    b = workers("b")
    b.register_function("b::echo", echo)

    def elsewhere() -> Any:
        a = register_worker(engine, InitOptions(worker_name="threaded"))
        try:
            a.register_function("threaded::f", echo)
            return a.trigger({"function_id": "b::echo", "payload": "hi"}), a.worker_id
        finally:
            a.shutdown()

    (result, worker_id) = await asyncio.get_running_loop().run_in_executor(None, elsewhere)
    assert result == {"data": "hi", "metadata": None}
    assert worker_id is not None and worker_id not in engine.peers


async def test_worker_id_and_state(engine: Engine, workers: Callable[..., III]) -> None:
    """The client knows its worker_id and is connected; get_address names the in-process engine."""
    a = workers("a")
    assert a.worker_id in engine.peers
    assert a.get_connection_state() == "connected"
    assert a.get_address().startswith("inprocess://")


async def test_engine_must_be_started() -> None:
    """register_worker(engine) on an engine that was not started raises RuntimeError."""
    with pytest.raises(RuntimeError, match="started"):
        register_worker(Engine())


async def test_logger_records_reach_the_engine_log(workers: Callable[..., III]) -> None:
    """Logger().warn shows up in engine::logs::list with severity 13 (conformance item 33)."""
    a = workers("a")
    Logger(service_name="svc").warn("careful now", {"k": 1})
    listing = await a.trigger_async({"function_id": "engine::logs::list", "payload": {}})
    records = [r for r in listing["logs"] if r.get("body") == "careful now"]
    assert records and records[0]["severity_number"] == 13


async def test_logger_record_in_process_matches_the_log_call(workers: Callable[..., III]) -> None:
    """An in-process Logger's record goes straight into the log store (no engine::log call around it)
    and is the record the engine::log::<level> call stores: same body, severity, attributes,
    service and trace ids; a `log` trigger receives it."""
    a = workers("a")
    seen: list[Any] = []

    async def on_log(record: Any) -> None:
        seen.append(record)

    a.register_function("a::on-log", on_log)
    a.register_trigger({"type": "log", "function_id": "a::on-log", "config": {"level": "warn"}})
    await asyncio.sleep(0.05)
    trace = {"trace_id": "ab" * 16, "span_id": "cd" * 8}
    Logger(service_name="svc", **trace).warn("direct", {"k": 1})
    await a.trigger_async(
        {
            "function_id": "engine::log::warn",
            "payload": {"message": "called", "data": {"k": 1}, "service_name": "svc", **trace},
        }
    )
    listing = await a.trigger_async({"function_id": "engine::logs::list", "payload": {}})
    by_body = {r["body"]: r for r in listing["logs"] if r.get("body") in ("direct", "called")}
    assert set(by_body) == {"direct", "called"}
    direct, called = (
        {k: v for k, v in by_body[b].items() if "timestamp" not in k and k != "body"}
        for b in ("direct", "called")
    )
    assert direct == called
    assert direct["severity_number"] == 13 and direct["attributes"] == {"k": 1}
    assert direct["service_name"] == "svc" and direct["trace_id"] == "ab" * 16
    for _ in range(100):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(r.get("body") for r in seen) == ["called", "direct"]
