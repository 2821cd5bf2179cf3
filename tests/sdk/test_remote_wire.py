"""The WebSocket transport on the wire, against a scripted endpoint (spec/protocol.md §10.2, §10.5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import WSMsgType
from sdk_fakes import FakeEngineServer, wait_state

from pyiii import III, InitOptions, ReconnectionConfig, TriggerAction, register_worker
from pyiii.errors import InvocationError
from pyiii.protocol import errors as codes
from pyiii.sdk import client as client_module

FAST = ReconnectionConfig(initial_delay_ms=10, max_delay_ms=50, jitter_factor=0.0)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeEngineServer]:
    fake = FakeEngineServer()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest_asyncio.fixture
async def connect(server: FakeEngineServer) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(**options)``: register_worker (in a thread: it blocks) against the fake server."""
    made: list[III] = []

    async def make(url: str | None = None, **options: Any) -> III:
        options.setdefault("reconnection_config", FAST)
        options.setdefault("worker_name", "wire")
        client = await asyncio.to_thread(register_worker, url or server.url, InitOptions(**options))
        made.append(client)
        return client

    yield make
    for client in made:
        await asyncio.to_thread(client.shutdown)


async def test_first_frames_register_the_worker_then_the_registrations(
    server: FakeEngineServer, connect: Callable[..., Any]
) -> None:
    """engine::workers::register (Void, namespace default) comes first; frames are text (§10.5 rule 2)."""
    client = await connect(worker_description="wire test")
    assert client.worker_id == "w1"
    assert client.get_connection_state() == "connected"
    client.register_function("wire::f", lambda data: data, description="f")
    client.register_trigger({"type": "http", "function_id": "wire::f"})
    await server.wait_for(lambda: server.frames_of("registertrigger"))
    register, function, trigger = server.frames
    assert register["function_id"] == "engine::workers::register"
    assert register["action"] == {"type": "void"} and "invocation_id" not in register
    assert register["namespace"] == "default"
    assert register["data"]["runtime"] == "python" and register["data"]["name"] == "wire"
    assert register["data"]["description"] == "wire test"
    assert function == {"type": "registerfunction", "id": "wire::f", "description": "f", "_conn": 1}
    assert trigger["config"] is None and "config" in trigger
    assert set(server.frame_kinds) == {WSMsgType.TEXT}


async def test_calls_write_data_null_and_get_their_result(
    server: FakeEngineServer, connect: Callable[..., Any]
) -> None:
    """A call without payload writes "data": null (rule 1) and resolves with the engine's reply."""
    client = await connect()
    call = asyncio.ensure_future(client.trigger_async({"function_id": "x::y"}))
    (frame,) = await server.wait_for(lambda: server.calls_to("x::y"))
    assert "data" in frame and frame["data"] is None
    await server.send({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                       "function_id": "x::y", "result": [1, 2]})  # fmt: skip
    assert await call == [1, 2]


async def test_upgrade_headers(
    server: FakeEngineServer, connect: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """InitOptions.headers are sent, plus Authorization: Bearer $III_TOKEN unless one is given (§10.2)."""
    monkeypatch.setenv("III_TOKEN", "s3cret")
    await connect(headers={"X-Team": "lab"})
    await connect(headers={"authorization": "Bearer mine"})
    first, second = server.headers
    assert first["X-Team"] == "lab" and first["Authorization"] == "Bearer s3cret"
    assert second.getall("Authorization") == ["Bearer mine"]


async def test_reconnect_replays_after_reattach(
    server: FakeEngineServer, connect: Callable[..., Any]
) -> None:
    """When the engine closes the socket the worker reconnects, reattaches and replays (§10.5 rule 2)."""
    client = await connect()
    client.register_function("wire::f", lambda data: data)
    call = asyncio.ensure_future(client.trigger_async({"function_id": "x::y"}))
    await server.wait_for(lambda: server.calls_to("x::y"))
    await server.sockets[0].close(code=1012)
    with pytest.raises(InvocationError) as info:
        await call  # written on the socket that closed (§10.5 rule 6)
    assert info.value.code == codes.INVOCATION_STOPPED
    await server.wait_for(lambda: server.frames_of("registerfunction", connection=2))
    second = [f for f in server.frames if f["_conn"] == 2]
    assert second[0] == {"type": "reattach", "previous_worker_id": "w1", "reattach_token": "t1", "_conn": 2}
    assert second[1]["function_id"] == "engine::workers::register"
    assert second[2]["type"] == "registerfunction"
    # A round trip on the new socket: by then its workerregistered (sent first) was handled.
    again = asyncio.ensure_future(client.trigger_async({"function_id": "x::again"}))
    (frame,) = await server.wait_for(lambda: server.calls_to("x::again"))
    await server.send(
        {"type": "invocationresult", "invocation_id": frame["invocation_id"], "function_id": "a"}
    )
    await again
    assert client.worker_id == "w2"
    assert client.get_connection_state() == "connected"


async def test_frames_queue_while_the_engine_is_down(connect: Callable[..., Any]) -> None:
    """While the engine is down calls are queued; after it returns they follow the replay (rule 6)."""
    server = FakeEngineServer()
    url = await server.start()
    client = await connect(url)
    port = server.port
    await server.stop()
    await wait_state(client, "reconnecting")
    await client.trigger_async({"function_id": "x::void", "action": TriggerAction.Void()})
    call = asyncio.ensure_future(client.trigger_async({"function_id": "x::call", "payload": 5}))
    restarted = FakeEngineServer()
    await restarted.start(port)
    try:
        frame = (await restarted.wait_for(lambda: restarted.calls_to("x::call")))[0]
        kinds = [f.get("function_id", f["type"]) for f in restarted.frames]
        assert kinds == ["reattach", "engine::workers::register", "x::void", "x::call"]
        await restarted.send({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                              "function_id": "x::call", "result": 6})  # fmt: skip
        assert await call == 6
    finally:
        await restarted.stop()


async def test_incoming_invocations_are_answered(
    server: FakeEngineServer, connect: Callable[..., Any]
) -> None:
    """The worker answers invokefunction with result or error, and sends nothing without an id (rule 8)."""
    client = await connect()

    def double(data: Any) -> Any:
        if data is None:
            raise ValueError("no data")
        return data * 2

    client.register_function("wire::double", double)
    await server.wait_for(lambda: server.frames_of("registerfunction"))
    await server.send({"type": "invokefunction", "function_id": "wire::double", "data": None})
    await server.send(
        {"type": "invokefunction", "invocation_id": "i1", "function_id": "wire::double", "data": 21}
    )
    await server.send(
        {"type": "invokefunction", "invocation_id": "i2", "function_id": "wire::double", "data": None}
    )
    await server.send(
        {"type": "invokefunction", "invocation_id": "i3", "function_id": "wire::nope", "data": 1}
    )
    await server.wait_for(lambda: len(server.frames_of("invocationresult")) == 3)
    by_id = {f["invocation_id"]: f for f in server.frames_of("invocationresult")}
    assert by_id["i1"]["result"] == 42
    assert by_id["i2"]["error"]["code"] == codes.INVOCATION_FAILED
    assert by_id["i2"]["error"]["message"] == "no data"
    assert by_id["i3"]["error"] == {
        "code": codes.FUNCTION_NOT_FOUND,
        "message": "Function wire::nope not found",
    }


async def test_log_calls_follow_the_other_messages_of_their_iteration(
    server: FakeEngineServer, connect: Callable[..., Any]
) -> None:
    """A handler that logs and then calls a function: the call reaches the engine before the log
    record (the engine serves what someone may wait on first), the answer follows the call, and log
    records keep their own order."""
    from pyiii import Logger

    client = await connect()
    logger = Logger()

    async def handler(data: Any) -> Any:
        logger.info("first")
        await client.trigger_async(
            {"function_id": "wire::push", "payload": data, "action": TriggerAction.Void()}
        )
        logger.info("second")
        return "ok"

    client.register_function("wire::logs", handler)
    await server.wait_for(lambda: server.frames_of("registerfunction"))
    start = len(server.frames)
    await server.send(
        {"type": "invokefunction", "invocation_id": "i1", "function_id": "wire::logs", "data": 7}
    )
    await server.wait_for(
        lambda: len(server.frames_of("invocationresult")) == 1 and len(server.frames) >= start + 4
    )
    order = [
        (
            f["type"],
            f.get("function_id"),
            f["data"]["message"] if f.get("function_id", "").startswith("engine::log::") else None,
        )
        for f in server.frames[start:]
    ]
    assert order == [
        ("invokefunction", "wire::push", None),
        ("invocationresult", "wire::logs", None),
        ("invokefunction", "engine::log::info", "first"),
        ("invokefunction", "engine::log::info", "second"),
    ]


async def test_undecodable_frames_are_ignored(server: FakeEngineServer, connect: Callable[..., Any]) -> None:
    """Invalid JSON and unknown types from the engine are skipped; the socket stays usable."""
    client = await connect()
    await server.sockets[-1].send_str("{not json")
    await server.send({"type": "functionregistered", "function_id": "x", "local_dispatch": True})
    call = asyncio.ensure_future(client.trigger_async({"function_id": "x::y"}))
    (frame,) = await server.wait_for(lambda: server.calls_to("x::y"))
    await server.send(
        {"type": "invocationresult", "invocation_id": frame["invocation_id"], "function_id": "x::y"}
    )
    assert await call is None


async def test_oversized_call_is_not_sent(server: FakeEngineServer, connect: Callable[..., Any]) -> None:
    """A call over 64 MiB raises payload_too_large and nothing is written (§10.5 rule 11)."""
    client = await connect()
    with pytest.raises(InvocationError) as info:
        await client.trigger_async({"function_id": "x::big", "payload": "x" * (64 * 1024 * 1024)})
    assert info.value.code == codes.PAYLOAD_TOO_LARGE
    assert server.calls_to("x::big") == []


async def test_shutdown_fails_pending_calls_and_closes(
    server: FakeEngineServer, connect: Callable[..., Any]
) -> None:
    """shutdown fails pending calls with SHUTDOWN, closes the socket and stops the loop thread."""
    client = await connect()
    call = asyncio.ensure_future(client.trigger_async({"function_id": "x::y"}))
    await server.wait_for(lambda: server.calls_to("x::y"))
    await asyncio.to_thread(client.shutdown)
    with pytest.raises(InvocationError) as info:
        await call
    assert info.value.code == codes.SHUTDOWN
    await server.wait_for(lambda: not server.sockets)
    assert client.get_connection_state() == "disconnected"
    assert client._background is not None and not client._background._thread.is_alive()


async def test_gives_up_after_max_retries() -> None:
    """With max_retries the worker stops reconnecting: state failed, calls raise (§10.3)."""
    server = FakeEngineServer()
    await server.start()
    port = server.port
    await server.stop()  # nothing listens on the port any more
    options = InitOptions(reconnection_config=ReconnectionConfig(initial_delay_ms=1, max_retries=2))
    client = await asyncio.to_thread(register_worker, f"ws://127.0.0.1:{port}", options)
    try:
        assert client.get_connection_state() == "failed"
        with pytest.raises(InvocationError):
            await client.trigger_async({"function_id": "x::y"})
    finally:
        await asyncio.to_thread(client.shutdown)


async def test_register_worker_stops_waiting_and_keeps_retrying(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Unreachable engine: register_worker logs a warning after its wait and retries in the background."""
    server = FakeEngineServer()
    await server.start()
    port = server.port
    await server.stop()
    monkeypatch.setattr(client_module, "CONNECT_WAIT_S", 0.2)
    options = InitOptions(reconnection_config=FAST)
    with caplog.at_level(logging.WARNING, logger="pyiii.sdk"):
        client = await asyncio.to_thread(register_worker, f"ws://127.0.0.1:{port}", options)
    try:
        assert any("retrying in the background" in r.getMessage() for r in caplog.records)
        assert client.get_connection_state() in ("connecting", "reconnecting")
        restarted = FakeEngineServer()
        await restarted.start(port)
        try:
            await restarted.wait_for(lambda: restarted.frames_of("invokefunction"))
            assert restarted.frames[0]["function_id"] == "engine::workers::register"
        finally:
            await restarted.stop()
    finally:
        await asyncio.to_thread(client.shutdown)


async def test_default_address_comes_from_iii_url(
    server: FakeEngineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an address register_worker uses $III_URL (§10.2 rule 1)."""
    monkeypatch.setenv("III_URL", server.url)
    client = await asyncio.to_thread(register_worker)
    try:
        assert client.get_address() == server.url
        assert client.worker_id == "w1"
    finally:
        await asyncio.to_thread(client.shutdown)


async def test_calls_after_shutdown_raise_shutdown(server: FakeEngineServer) -> None:
    """After shutdown() (its loop thread gone) trigger and trigger_async raise SHUTDOWN."""
    client = await asyncio.to_thread(register_worker, server.url, InitOptions(reconnection_config=FAST))
    await asyncio.to_thread(client.shutdown)
    with pytest.raises(InvocationError) as info:
        await asyncio.to_thread(client.trigger, {"function_id": "x::y"})
    assert info.value.code == codes.SHUTDOWN
    with pytest.raises(InvocationError):
        await client.trigger_async({"function_id": "x::y"})
    client.register_function("late::f", lambda data: data)  # recorded, never sent: no error
