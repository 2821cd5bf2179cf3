"""Remote workers over real sockets against the pyiii engine (``engine_url`` fixture)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from sdk_fakes import wait_state

from pyiii import III, InitOptions, Logger, ReconnectionConfig, TriggerAction, register_worker
from pyiii.engine.core import Engine
from pyiii.errors import InvocationError
from pyiii.protocol import errors as codes

FAST = ReconnectionConfig(initial_delay_ms=10, max_delay_ms=100, jitter_factor=0.0)


@pytest_asyncio.fixture
async def connect(engine_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(name)``: a worker on the engine's socket (register_worker blocks: run in a thread)."""
    made: list[III] = []

    async def make(name: str, url: str | None = None, **options: Any) -> III:
        options.setdefault("reconnection_config", FAST)
        client = await asyncio.to_thread(
            register_worker, url or engine_url, InitOptions(worker_name=name, **options)
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await asyncio.to_thread(client.shutdown)


async def registered(engine: Engine, function_id: str, namespace: str = "default") -> None:
    """Wait until the engine serves ``function_id`` (its functions_changed event, no polling)."""
    changed = asyncio.Event()
    remove = engine.add_listener(
        lambda event, _payload: changed.set() if event == "functions_changed" else None
    )
    try:
        while engine.functions.get(namespace, function_id) is None:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 10)
    finally:
        remove()


async def test_two_workers_over_sockets(engine: Engine, connect: Callable[..., Any]) -> None:
    """A remote worker calls another's sync and async functions; errors keep their codes."""
    a, b = await connect("a"), await connect("b")

    def double(data: Any) -> Any:
        return data * 2

    async def boom(data: Any) -> None:
        raise ValueError("nope")

    b.register_function("b::double", double)
    b.register_function("b::boom", boom)
    await registered(engine, "b::boom")
    assert await a.trigger_async({"function_id": "b::double", "payload": 21}) == 42
    assert await asyncio.to_thread(a.trigger, {"function_id": "b::double", "payload": "ab"}) == "abab"
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::boom"})
    assert (info.value.code, info.value.message) == (codes.INVOCATION_FAILED, "nope")
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "missing::fn", "payload": {}, "timeout_ms": 2000})
    assert info.value.message == "Function missing::fn not found in namespace default."
    assert (
        await a.trigger_async({"function_id": "b::double", "payload": 1, "action": TriggerAction.Void()})
        is None
    )


async def test_metadata_crosses_sockets(engine: Engine, connect: Callable[..., Any]) -> None:
    """Per-call metadata reaches the handler's metadata parameter unchanged."""
    a, b = await connect("a"), await connect("b")

    async def meta(data: Any, metadata: Any = None) -> Any:
        return metadata

    b.register_function("b::meta", meta, metadata={"team": "lab"})
    await registered(engine, "b::meta")
    assert await a.trigger_async({"function_id": "b::meta", "metadata": {"sess": "s1"}}) == {"sess": "s1"}


async def test_blocking_trigger_inside_handlers(engine: Engine, connect: Callable[..., Any]) -> None:
    """trigger() inside a sync handler works; inside an async handler it raises RuntimeError (item 36)."""
    a, b = await connect("a"), await connect("b")

    async def echo(data: Any) -> Any:
        return data

    def sync_caller(data: Any) -> Any:
        return b.trigger({"function_id": "a::echo", "payload": data})

    async def async_caller(data: Any) -> Any:
        return b.trigger({"function_id": "a::echo", "payload": data})

    a.register_function("a::echo", echo)
    b.register_function("b::sync", sync_caller)
    b.register_function("b::async", async_caller)
    for function_id in ("a::echo", "b::sync", "b::async"):
        await registered(engine, function_id)
    assert await a.trigger_async({"function_id": "b::sync", "payload": 7}) == 7
    with pytest.raises(InvocationError) as info:
        await a.trigger_async({"function_id": "b::async", "payload": 7})
    assert "trigger_async" in info.value.message


async def test_shutdown_fails_pending_calls(engine: Engine, connect: Callable[..., Any]) -> None:
    """shutdown() fails the caller's pending calls with SHUTDOWN and stops its thread."""
    a, b = await connect("a"), await connect("b")
    entered = threading.Event()

    async def hang(data: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    b.register_function("b::hang", hang)
    await registered(engine, "b::hang")
    call = asyncio.ensure_future(a.trigger_async({"function_id": "b::hang"}))
    await asyncio.to_thread(entered.wait, 10)
    await asyncio.to_thread(a.shutdown)
    with pytest.raises(InvocationError) as info:
        await call
    assert info.value.code == codes.SHUTDOWN


async def test_logger_over_the_socket(engine: Engine, connect: Callable[..., Any]) -> None:
    """Logger().warn from a remote worker lands in engine::logs::list with severity 13 (item 33)."""
    a = await connect("logger")
    Logger(service_name="remote").warn("remote warning", {"n": 1})
    for _ in range(100):
        listing = await a.trigger_async({"function_id": "engine::logs::list", "payload": {}})
        records = [r for r in listing["logs"] if r.get("body") == "remote warning"]
        if records:
            break
    assert records[0]["severity_number"] == 13


async def test_reconnect_after_engine_restart_on_the_same_port() -> None:
    """After the engine restarts on its port the worker reconnects, replays and serves again (item 37)."""
    from pyiii.config import WorkerManagerSettings
    from pyiii.testing import start_server

    first = await start_server()
    port = first.worker_addresses[0][1]
    options = InitOptions(worker_name="survivor", reconnection_config=FAST)
    worker = await asyncio.to_thread(register_worker, first.url, options)
    try:

        async def ping(data: Any) -> str:
            return "pong"

        worker.register_function("survivor::ping", ping)
        await registered(first.engine, "survivor::ping")
        old_id = worker.worker_id
        await first.stop()
        await wait_state(worker, "reconnecting", "disconnected")
        second = await start_server(worker_managers=(WorkerManagerSettings(host="127.0.0.1", port=port),))
        try:
            await registered(second.engine, "survivor::ping")
            await wait_state(worker, "connected")
            caller = await asyncio.to_thread(register_worker, second.url, InitOptions(worker_name="caller"))
            try:
                assert await caller.trigger_async({"function_id": "survivor::ping"}) == "pong"
            finally:
                await asyncio.to_thread(caller.shutdown)
            assert worker.worker_id != old_id
        finally:
            await second.stop()
    finally:
        await asyncio.to_thread(worker.shutdown)


async def test_channels_stream_between_workers(engine: Engine, connect: Callable[..., Any]) -> None:
    """create_channel_async gives a pair; a reader ref in a payload becomes a ChannelReader (item 28)."""
    from pyiii.sdk.channels import ChannelReader, create_channel_async

    a, b = await connect("a"), await connect("b")

    async def consume(data: Any) -> Any:
        reader = data["reader"]
        assert isinstance(reader, ChannelReader)
        items = [item async for item in reader.items()]
        binary = b"".join(item for item in items if isinstance(item, bytes))
        return {
            "size": len(binary),
            "head": binary[:4].hex(),
            "texts": [i for i in items if isinstance(i, str)],
        }

    b.register_function("b::consume", consume)
    await registered(engine, "b::consume")
    channel = await create_channel_async(a)
    call = asyncio.ensure_future(
        a.trigger_async({"function_id": "b::consume", "payload": {"reader": channel.reader_ref}})
    )
    blob = bytes(range(256)) * 4096  # 1 MiB
    await channel.writer.write(blob)
    await channel.writer.send_message_async('{"type":"set_status","status_code":201}')
    await channel.writer.close_async()
    assert await call == {
        "size": len(blob),
        "head": "00010203",
        "texts": ['{"type":"set_status","status_code":201}'],
    }


async def test_frames_without_batching_keep_their_order(
    engine: Engine, connect: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no socket transport to batch on (another aiohttp version), frames go through aiohttp's
    send_frame one by one and still arrive complete and in order."""
    import pyiii.sdk.remote as remote

    monkeypatch.setattr(remote, "_socket_transport", lambda ws: None)
    seen: list[int] = []

    async def record(data: Any) -> Any:
        seen.append(data["n"])
        return data["n"]

    callee = await connect("fallback-callee")
    callee.register_function("fb::record", record)
    await registered(engine, "fb::record")
    caller = await connect("fallback-caller")
    for n in range(100):
        caller.trigger({"function_id": "fb::record", "payload": {"n": n}, "action": TriggerAction.Void()})
    assert (
        await asyncio.to_thread(caller.trigger, {"function_id": "fb::record", "payload": {"n": 100}}) == 100
    )
    assert seen == list(range(101))
