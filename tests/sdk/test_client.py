"""The client against a scripted transport: wire behaviour of spec/protocol.md §10.4-§10.5."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from msgspec import UNSET
from sdk_fakes import FakeTransport

from pyiii import InitOptions, TriggerAction, TriggerConfig, TriggerHandler, TriggerRequest
from pyiii.errors import InvocationError, RegistrationRejectedError
from pyiii.protocol import errors as codes
from pyiii.protocol.codec import encode
from pyiii.protocol.messages import (
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
)
from pyiii.sdk.channels import ChannelReader, ChannelWriter
from pyiii.sdk.client import III
from pyiii.sdk.logger import Logger, current_traceparent
from pyiii.sdk.types import MAX_QUEUE_SIZE

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def calls(fake: FakeTransport, function_id: str | None = None) -> list[InvokeFunction]:
    return [m for m in fake.of_type(InvokeFunction) if function_id is None or m.function_id == function_id]


def results(fake: FakeTransport) -> list[InvocationResult]:
    return fake.of_type(InvocationResult)


async def started(client: III, request: dict[str, Any] | TriggerRequest) -> asyncio.Task[Any]:
    """Start a call as a task and let it write its frame."""
    task = asyncio.ensure_future(client.trigger_async(request))
    await asyncio.sleep(0)
    return task


# ------------------------------------------------------------------------------ outbound calls


async def test_call_returns_the_result(client: III, fake: FakeTransport) -> None:
    """A call writes invokefunction with a fresh invocation_id and returns the result it gets back."""
    task = await started(client, {"function_id": "b::echo", "payload": {"a": 1}, "metadata": {"m": 1}})
    (sent,) = calls(fake, "b::echo")
    assert isinstance(sent.invocation_id, str) and len(sent.invocation_id) == 36
    assert sent.data == {"a": 1} and sent.metadata == {"m": 1}
    fake.deliver(
        InvocationResult(invocation_id=sent.invocation_id, function_id="b::echo", result={"ok": True})
    )
    assert await task == {"ok": True}


async def test_result_without_result_field_is_none(client: III, fake: FakeTransport) -> None:
    """An invocationresult with neither result nor error is a success with None."""
    task = await started(client, TriggerRequest("b::echo"))
    (sent,) = calls(fake, "b::echo")
    fake.deliver(InvocationResult(invocation_id=sent.invocation_id, function_id="b::echo"))  # type: ignore[arg-type]
    assert await task is None


async def test_error_result_raises_invocation_error(client: III, fake: FakeTransport) -> None:
    """An error result raises InvocationError with code, message, stacktrace, function and invocation ids."""
    task = await started(client, {"function_id": "b::boom"})
    (sent,) = calls(fake, "b::boom")
    body = ErrorBody(code="invocation_failed", message="boom", stacktrace="Traceback...")
    fake.deliver(InvocationResult(invocation_id=sent.invocation_id, function_id="b::boom", error=body))  # type: ignore[arg-type]
    with pytest.raises(InvocationError) as info:
        await task
    err = info.value
    assert (err.code, err.message, err.stacktrace) == ("invocation_failed", "boom", "Traceback...")
    assert (err.function_id, err.invocation_id) == ("b::boom", sent.invocation_id)


async def test_payload_none_writes_data_null(client: III, fake: FakeTransport) -> None:
    """A call without payload still writes "data": null on the wire (§10.5 rule 1)."""
    await started(client, {"function_id": "b::echo"})
    (sent,) = calls(fake, "b::echo")
    assert json.loads(encode(sent))["data"] is None


async def test_void_returns_none_at_once_without_invocation_id(client: III, fake: FakeTransport) -> None:
    """Void sends no invocation_id and returns None without waiting (§10.5 rule 5)."""
    assert (
        await client.trigger_async({"function_id": "b::f", "payload": 1, "action": TriggerAction.Void()})
        is None
    )
    (sent,) = calls(fake, "b::f")
    assert sent.invocation_id is UNSET
    assert sent.action == {"type": "void"}


async def test_enqueue_returns_the_receipt(client: III, fake: FakeTransport) -> None:
    """Enqueue sends the action and returns the engine's {"messageReceiptId": ...} dict."""
    task = await started(client, {"function_id": "b::f", "action": TriggerAction.Enqueue(queue="jobs")})
    (sent,) = calls(fake, "b::f")
    assert sent.action == {"type": "enqueue", "queue": "jobs"}
    receipt = {"messageReceiptId": "5aeca3e5-c4b2-466c-b20c-7e0cb7032af5"}
    fake.deliver(InvocationResult(invocation_id=sent.invocation_id, function_id="b::f", result=receipt))  # type: ignore[arg-type]
    assert await task == receipt


async def test_client_timeout_raises_timeout(client: III, fake: FakeTransport) -> None:
    """No reply within timeout_ms raises InvocationError TIMEOUT with the spec's message."""
    with pytest.raises(InvocationError) as info:
        await client.trigger_async({"function_id": "b::slow", "timeout_ms": 30})
    assert info.value.code == codes.TIMEOUT
    assert info.value.message == "invocation timed out after 30ms"
    assert client._pending == {}


async def test_default_timeout_comes_from_init_options(fake: FakeTransport) -> None:
    """InitOptions.invocation_timeout_ms is the default client timeout."""
    iii = III(options=InitOptions(invocation_timeout_ms=20), transport=fake)
    fake.open()
    with pytest.raises(InvocationError) as info:
        await iii.trigger_async({"function_id": "b::slow"})
    assert info.value.message == "invocation timed out after 20ms"
    await iii.shutdown_async()


async def test_late_result_after_timeout_is_dropped(client: III, fake: FakeTransport) -> None:
    """A result arriving after the client timeout is ignored."""
    with pytest.raises(InvocationError):
        await client.trigger_async({"function_id": "b::slow", "timeout_ms": 10})
    (sent,) = calls(fake, "b::slow")
    fake.deliver(InvocationResult(invocation_id=sent.invocation_id, function_id="b::slow", result=1))  # type: ignore[arg-type]


async def test_namespace_stamping(fake: FakeTransport) -> None:
    """A namespaced worker stamps its namespace, except default on engine:: calls; explicit wins."""
    iii = III(options=InitOptions(namespace="orders"), transport=fake)
    fake.open()
    for request in (
        {"function_id": "orders::x", "action": TriggerAction.Void()},
        {"function_id": "engine::functions::list", "action": TriggerAction.Void()},
        {"function_id": "orders::x", "namespace": "other", "action": TriggerAction.Void()},
    ):
        await iii.trigger_async(request)
    stamped = [m.namespace for m in calls(fake) if m.function_id != "engine::workers::register"]
    assert stamped == ["orders", "default", "other"]
    await iii.shutdown_async()


async def test_calls_inside_a_handler_carry_its_traceparent(client: III, fake: FakeTransport) -> None:
    """A call made while a handler runs propagates the invocation's traceparent."""
    token = current_traceparent.set(TRACEPARENT)
    try:
        await client.trigger_async({"function_id": "b::f", "action": TriggerAction.Void()})
    finally:
        current_traceparent.reset(token)
    (sent,) = calls(fake, "b::f")
    assert sent.traceparent == TRACEPARENT


async def test_bad_requests_are_rejected(client: III) -> None:
    """A request without function_id raises ValueError; a non-mapping raises TypeError."""
    with pytest.raises(ValueError):
        await client.trigger_async({"payload": 1})
    with pytest.raises(TypeError):
        await client.trigger_async("b::f")  # type: ignore[arg-type]


async def test_oversized_call_raises_payload_too_large(fake: FakeTransport) -> None:
    """A call whose message exceeds the limit is not sent and raises payload_too_large (§10.5 rule 11)."""
    fake.limit = 1000
    iii = III(transport=fake)
    fake.open()
    with pytest.raises(InvocationError) as info:
        await iii.trigger_async({"function_id": "b::f", "payload": "x" * 2000})
    assert info.value.code == codes.PAYLOAD_TOO_LARGE
    assert calls(fake, "b::f") == [] and iii._pending == {}
    with pytest.raises(InvocationError):
        await iii.trigger_async(
            {"function_id": "b::f", "payload": "x" * 2000, "action": TriggerAction.Void()}
        )
    await iii.shutdown_async()


async def test_blocking_trigger_on_the_loop_raises(client: III) -> None:
    """trigger() on the client's own loop raises RuntimeError pointing to trigger_async."""
    with pytest.raises(RuntimeError, match="trigger_async"):
        client.trigger({"function_id": "b::f"})


async def test_blocking_trigger_from_another_thread_works(client: III, fake: FakeTransport) -> None:
    """trigger() from another thread marshals onto the loop and blocks for the result."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(client.trigger({"function_id": "b::echo"})))
    thread.start()
    sent = await fake.wait_for(lambda: calls(fake, "b::echo"))
    fake.deliver(InvocationResult(invocation_id=sent[0].invocation_id, function_id="b::echo", result=42))  # type: ignore[arg-type]
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert outcome == [42]


async def test_trigger_async_from_another_loop_works(client: III, fake: FakeTransport) -> None:
    """trigger_async awaited on a different event loop is relayed to the client's loop."""

    def other_loop() -> Any:
        return asyncio.run(client.trigger_async({"function_id": "b::echo"}))

    future = asyncio.get_running_loop().run_in_executor(None, other_loop)
    sent = await fake.wait_for(lambda: calls(fake, "b::echo"))
    fake.deliver(InvocationResult(invocation_id=sent[0].invocation_id, function_id="b::echo", result="hi"))  # type: ignore[arg-type]
    assert await future == "hi"


# ------------------------------------------------------------------------------ connection loss and replay


async def test_calls_queue_while_disconnected_and_flush_after_replay(fake: FakeTransport) -> None:
    """Calls made while disconnected are queued and sent after the replay (§10.5 rules 2 and 6)."""
    iii = III(transport=fake)
    iii.register_function("a::f", lambda data: data)
    task = await started(iii, {"function_id": "b::echo", "payload": 1})
    assert fake.sent == []
    fake.open()
    kinds = [type(m).__name__ for m in fake.sent]
    assert kinds == ["InvokeFunction", "RegisterFunction", "InvokeFunction"]
    queued = fake.sent[-1]
    assert queued.function_id == "b::echo"
    fake.deliver(InvocationResult(invocation_id=queued.invocation_id, function_id="b::echo", result=2))
    assert await task == 2
    await iii.shutdown_async()


async def test_offline_queue_drops_the_oldest_beyond_its_limit(fake: FakeTransport) -> None:
    """At most 1000 frames wait; the oldest is dropped and its call fails."""
    iii = III(transport=fake)
    tasks = [
        asyncio.ensure_future(iii.trigger_async({"function_id": "b::f", "payload": i})) for i in range(1001)
    ]
    await asyncio.sleep(0)
    assert len(iii._queue) == MAX_QUEUE_SIZE
    with pytest.raises(InvocationError) as info:
        await tasks[0]
    assert info.value.code == codes.INVOCATION_STOPPED
    fake.open()
    flushed = calls(fake, "b::f")
    assert [m.data for m in flushed] == list(range(1, 1001))
    await iii.shutdown_async()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_call_that_timed_out_is_not_flushed(fake: FakeTransport) -> None:
    """A queued call whose client timeout expired is dropped from the queue."""
    iii = III(transport=fake)
    with pytest.raises(InvocationError):
        await iii.trigger_async({"function_id": "b::f", "timeout_ms": 10})
    fake.open()
    assert calls(fake, "b::f") == []
    await iii.shutdown_async()


async def test_calls_sent_on_a_lost_connection_fail_with_invocation_stopped(
    client: III, fake: FakeTransport
) -> None:
    """Calls written on a socket that closes fail with invocation_stopped; queued ones survive (rule 6)."""
    sent_task = await started(client, {"function_id": "b::sent"})
    fake.drop()
    with pytest.raises(InvocationError) as info:
        await sent_task
    assert info.value.code == codes.INVOCATION_STOPPED
    queued_task = await started(client, {"function_id": "b::queued"})
    fake.open()
    (queued,) = calls(fake, "b::queued")
    fake.deliver(InvocationResult(invocation_id=queued.invocation_id, function_id="b::queued", result="ok"))  # type: ignore[arg-type]
    assert await queued_task == "ok"


async def test_reconnect_replays_everything_with_reattach(client: III, fake: FakeTransport) -> None:
    """After a reconnect: reattach(previous id, token), register, types, functions, triggers (rule 2)."""

    class Handler(TriggerHandler[Any]):
        async def register_trigger(self, config: TriggerConfig[Any]) -> None: ...

        async def unregister_trigger(self, config: TriggerConfig[Any]) -> None: ...

    client.register_function("a::f", lambda data: data)
    client.register_trigger_type({"id": "tt", "description": "d"}, Handler())
    trigger = client.register_trigger({"type": "tt", "function_id": "a::f", "config": {"x": 1}})
    fake.drop()
    fake.sent.clear()
    fake.open()
    kinds = [type(m) for m in fake.sent]
    assert kinds == [Reattach, InvokeFunction, RegisterTriggerType, RegisterFunction, RegisterTrigger]
    assert fake.sent[0] == Reattach(previous_worker_id="worker-1", reattach_token="token-1")
    assert fake.sent[4].id == trigger.id  # the binding id is generated once and replayed unchanged
    assert client.worker_id == "worker-2"


async def test_replay_does_not_resend_removed_registrations(client: III, fake: FakeTransport) -> None:
    """Unregistered functions, triggers and trigger types are not replayed."""

    class Handler(TriggerHandler[Any]):
        async def register_trigger(self, config: TriggerConfig[Any]) -> None: ...

        async def unregister_trigger(self, config: TriggerConfig[Any]) -> None: ...

    client.register_function("a::f", lambda data: data).unregister()
    client.register_trigger({"type": "cron", "function_id": "a::f"}).unregister()
    client.unregister_trigger_type(client.register_trigger_type({"id": "tt"}, Handler()))
    fake.drop()
    fake.sent.clear()
    fake.open()
    assert [type(m) for m in fake.sent] == [Reattach, InvokeFunction]


async def test_connection_states_are_reported(fake: FakeTransport) -> None:
    """Listeners see connecting, connected, reconnecting, connected, disconnected; unsubscribe works."""
    seen: list[str] = []
    iii = III(transport=fake)
    unsubscribe = iii.add_connection_state_listener(seen.append)
    fake.open()
    fake.drop()
    fake.open()
    assert iii.get_connection_state() == "connected"
    await iii.shutdown_async()
    assert seen == ["connected", "disconnected", "reconnecting", "connected", "disconnected"]
    unsubscribe()
    unsubscribe()


async def test_failed_connection_fails_calls(fake: FakeTransport) -> None:
    """When the transport gives up (state failed) pending and later calls fail."""
    iii = III(transport=fake)
    task = await started(iii, {"function_id": "b::f"})
    assert fake.events is not None
    fake.events.state_changed("failed")
    with pytest.raises(InvocationError):
        await task
    with pytest.raises(InvocationError):
        await iii.trigger_async({"function_id": "b::f"})
    assert iii.get_connection_state() == "failed"
    await iii.shutdown_async()


# ------------------------------------------------------------------------------ shutdown


async def test_shutdown_fails_pending_calls_with_shutdown(client: III, fake: FakeTransport) -> None:
    """shutdown_async fails pending calls with SHUTDOWN and closes the transport; later calls fail too."""
    task = await started(client, {"function_id": "b::f"})
    await client.shutdown_async()
    with pytest.raises(InvocationError) as info:
        await task
    assert info.value.code == codes.SHUTDOWN
    assert fake.closed
    assert client.get_connection_state() == "disconnected"
    with pytest.raises(InvocationError) as info:
        await client.trigger_async({"function_id": "b::f"})
    assert info.value.code == codes.SHUTDOWN
    await client.shutdown_async()  # idempotent


async def test_sync_shutdown_on_the_loop_thread_does_not_block(client: III, fake: FakeTransport) -> None:
    """shutdown() on the loop thread fails pending calls at once and closes in the background."""
    task = await started(client, {"function_id": "b::f"})
    client.shutdown()
    with pytest.raises(InvocationError) as info:
        await task
    assert info.value.code == codes.SHUTDOWN
    await asyncio.sleep(0)  # the close runs as a task on the next loop iteration
    assert fake.closed


# ------------------------------------------------------------------------------ registrations


async def test_register_function_message(client: III, fake: FakeTransport) -> None:
    """register_function sends id, description, metadata and formats; FunctionRef.unregister removes it."""
    ref = client.register_function(
        "a::f",
        lambda data: data,
        description="does f",
        metadata={"team": "lab"},
        request_format={"type": "object"},
    )
    (message,) = fake.of_type(RegisterFunction)
    assert json.loads(encode(message)) == {
        "type": "registerfunction",
        "id": "a::f",
        "description": "does f",
        "request_format": {"type": "object"},
        "metadata": {"team": "lab"},
    }
    assert ref.id == "a::f"
    ref.unregister()
    ref.unregister()
    assert fake.of_type(UnregisterFunction) == [UnregisterFunction(id="a::f")]


async def test_duplicate_function_id_raises(client: III) -> None:
    """Registering the same id twice in one client raises ValueError; after unregister it is free."""
    ref = client.register_function("a::f", lambda data: data)
    with pytest.raises(ValueError):
        client.register_function("a::f", lambda data: data)
    ref.unregister()
    client.register_function("a::f", lambda data: data)


async def test_register_trigger_message(fake: FakeTransport) -> None:
    """register_trigger generates a UUID id, writes config null when absent, stamps the worker namespace."""
    iii = III(options=InitOptions(namespace="orders"), transport=fake)
    fake.open()
    trigger = iii.register_trigger({"type": "http", "function_id": "a::f", "metadata": {"m": 1}})
    (message,) = fake.of_type(RegisterTrigger)
    assert json.loads(encode(message)) == {
        "type": "registertrigger",
        "id": trigger.id,
        "trigger_type": "http",
        "function_id": "a::f",
        "config": None,
        "metadata": {"m": 1},
        "namespace": "orders",
    }
    assert len(trigger.id) == 36
    trigger.unregister()
    assert fake.of_type(UnregisterTrigger) == [UnregisterTrigger(id=trigger.id, trigger_type="http")]
    await iii.shutdown_async()


async def test_registration_error_is_recorded_on_the_trigger(client: III, fake: FakeTransport) -> None:
    """A triggerregistrationresult error from the engine shows up as Trigger.registration_error."""
    trigger = client.register_trigger(
        {"type": "cron", "function_id": "a::f", "config": {"expression": "bad"}}
    )
    assert trigger.registration_error is None
    error = ErrorBody(code="trigger_registration_failed", message="bad cron")
    fake.deliver(
        TriggerRegistrationResult(id=trigger.id, trigger_type="cron", function_id="a::f", error=error)
    )
    assert trigger.registration_error == {"code": "trigger_registration_failed", "message": "bad cron"}


async def test_invalid_trigger_specs_raise(client: III) -> None:
    """A trigger without type or function_id raises ValueError."""
    with pytest.raises(ValueError):
        client.register_trigger({"function_id": "a::f"})
    with pytest.raises(ValueError):
        client.register_trigger({"type": "http"})


# ------------------------------------------------------------------------------ incoming invocations


async def test_incoming_call_runs_an_async_handler_and_replies(client: III, fake: FakeTransport) -> None:
    """An invokefunction runs the handler and replies result (written even when None)."""

    async def echo(data: Any, metadata: Any = None) -> Any:
        return {"got": data, "meta": metadata}

    client.register_function("a::echo", echo)
    fake.deliver(InvokeFunction(function_id="a::echo", invocation_id="i1", data={"a": 1}, metadata={"s": 1}))
    (reply,) = await fake.wait_for(lambda: results(fake))
    assert reply == InvocationResult(
        invocation_id="i1", function_id="a::echo", result={"got": {"a": 1}, "meta": {"s": 1}}
    )


async def test_incoming_call_runs_a_sync_handler_in_the_pool(client: III, fake: FakeTransport) -> None:
    """Sync handlers run off the loop thread; a None result is written as "result": null."""
    threads: list[int] = []

    def record(data: Any) -> None:
        threads.append(threading.get_ident())

    client.register_function("a::record", record)
    fake.deliver(InvokeFunction(function_id="a::record", invocation_id="i1", data=None))
    (reply,) = await fake.wait_for(lambda: results(fake))
    assert threads and threads[0] != threading.get_ident()
    assert json.loads(encode(reply)) == {"type": "invocationresult", "invocation_id": "i1",
                                         "function_id": "a::record", "result": None}  # fmt: skip


@pytest.mark.parametrize("is_async", [True, False])
async def test_raising_handler_replies_invocation_failed(
    client: III, fake: FakeTransport, is_async: bool
) -> None:
    """A raising handler replies invocation_failed with the exception text and a traceback."""

    def boom(data: Any) -> Any:
        raise KeyError("missing item")

    async def aboom(data: Any) -> Any:
        raise KeyError("missing item")

    client.register_function("a::boom", aboom if is_async else boom)
    fake.deliver(InvokeFunction(function_id="a::boom", invocation_id="i1"))
    (reply,) = await fake.wait_for(lambda: results(fake))
    assert reply.error.code == codes.INVOCATION_FAILED
    assert reply.error.message == "'missing item'"
    assert "KeyError" in reply.error.stacktrace and "Traceback" in reply.error.stacktrace


async def test_unknown_function_replies_function_not_found(client: III, fake: FakeTransport) -> None:
    """A call for a function this worker does not serve gets function_not_found."""
    fake.deliver(InvokeFunction(function_id="a::nope", invocation_id="i1"))
    (reply,) = results(fake)
    assert (reply.error.code, reply.error.message) == (codes.FUNCTION_NOT_FOUND, "Function a::nope not found")


async def test_call_without_invocation_id_runs_and_sends_nothing(client: III, fake: FakeTransport) -> None:
    """No invocation_id: the handler runs and nothing is sent back (§4.2 rule 4)."""
    ran = asyncio.Event()

    async def handler(data: Any) -> str:
        ran.set()
        return "ignored"

    client.register_function("a::f", handler)
    fake.deliver(InvokeFunction(function_id="a::f", data=1))
    await ran.wait()
    await asyncio.sleep(0)
    assert results(fake) == []


async def test_oversized_result_is_replaced_by_payload_too_large(fake: FakeTransport) -> None:
    """A handler result over the limit is replaced by a payload_too_large error (§10.5 rule 11)."""
    fake.limit = 1000
    iii = III(transport=fake)
    fake.open()

    async def big(data: Any) -> str:
        return "x" * 5000

    iii.register_function("a::big", big)
    fake.deliver(InvokeFunction(function_id="a::big", invocation_id="i1"))
    (reply,) = await fake.wait_for(lambda: results(fake))
    assert reply.error.code == codes.PAYLOAD_TOO_LARGE
    await iii.shutdown_async()


async def test_result_of_a_call_from_a_lost_connection_is_dropped(client: III, fake: FakeTransport) -> None:
    """A handler finishing after its connection was replaced sends nothing on the new one."""
    release = asyncio.Event()

    async def slow(data: Any) -> str:
        await release.wait()
        return "late"

    client.register_function("a::slow", slow)
    fake.deliver(InvokeFunction(function_id="a::slow", invocation_id="i1"))
    await asyncio.sleep(0)
    fake.drop()
    fake.open()
    release.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert results(fake) == []


async def test_handlers_see_the_invocation_traceparent(client: III, fake: FakeTransport) -> None:
    """Inside a handler the current traceparent is the invocation's; Logger picks its trace/span ids."""
    seen: list[Any] = []

    async def handler(data: Any) -> None:
        seen.append(current_traceparent.get())

    client.register_function("a::f", handler)
    fake.deliver(InvokeFunction(function_id="a::f", invocation_id="i1", traceparent=TRACEPARENT))
    await fake.wait_for(lambda: results(fake))
    assert seen == [TRACEPARENT]
    assert current_traceparent.get() is None


async def test_channel_refs_in_data_become_readers_and_writers() -> None:
    """{channel_id, access_key, direction} objects in data become ChannelReader / ChannelWriter (rule 8)."""
    fake = FakeTransport(channel_base="ws://127.0.0.1:1")
    iii = III(transport=fake)
    fake.open()
    got: list[Any] = []

    async def handler(data: Any) -> None:
        got.append(data)

    iii.register_function("a::f", handler)
    reader = {"channel_id": "c", "access_key": "k/1", "direction": "read"}
    writer = {"channel_id": "c", "access_key": "k2", "direction": "write"}
    fake.deliver(InvokeFunction(function_id="a::f", invocation_id="i1",
                                data={"body": {"stream": reader}, "out": [writer], "n": 1}))  # fmt: skip
    await fake.wait_for(lambda: results(fake))
    data = got[0]
    assert isinstance(data["body"]["stream"], ChannelReader)
    assert isinstance(data["out"][0], ChannelWriter)
    assert data["n"] == 1
    assert data["body"]["stream"]._socket.url == "ws://127.0.0.1:1/ws/channels/c?key=k%2F1&dir=read"
    await iii.shutdown_async()


# ------------------------------------------------------------------------------ trigger providers


class RecordingHandler(TriggerHandler[Any]):
    def __init__(self, fail: bool = False) -> None:
        self.registered: list[TriggerConfig[Any]] = []
        self.unregistered: list[TriggerConfig[Any]] = []
        self.fail = fail

    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        if self.fail:
            raise ValueError("bad config")
        self.registered.append(config)

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        self.unregistered.append(config)


async def test_provider_gets_bindings_and_replies_success(client: III, fake: FakeTransport) -> None:
    """registertrigger for a provided type calls the handler and replies triggerregistrationresult."""
    handler = RecordingHandler()
    ref = client.register_trigger_type({"id": "webhook", "description": "hooks"}, handler)
    assert fake.of_type(RegisterTriggerType) == [RegisterTriggerType(id="webhook", description="hooks")]
    fake.deliver(RegisterTrigger(id="t1", trigger_type="webhook", function_id="a::f", config={"url": "/h"},
                                 metadata={"m": 1}, namespace="orders"))  # fmt: skip
    (verdict,) = await fake.wait_for(lambda: fake.of_type(TriggerRegistrationResult))
    assert verdict == TriggerRegistrationResult(id="t1", trigger_type="webhook", function_id="a::f")
    assert handler.registered == [TriggerConfig("t1", "a::f", {"url": "/h"}, {"m": 1}, "orders")]
    fake.deliver(UnregisterTrigger(id="t1", trigger_type="webhook"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert handler.unregistered == handler.registered
    client.unregister_trigger_type(ref)
    assert fake.of_type(UnregisterTriggerType) == [UnregisterTriggerType(id="webhook")]


async def test_provider_refusal_replies_trigger_registration_failed(client: III, fake: FakeTransport) -> None:
    """A raising register_trigger replies trigger_registration_failed with the exception text."""
    client.register_trigger_type({"id": "webhook"}, RecordingHandler(fail=True))
    fake.deliver(RegisterTrigger(id="t1", trigger_type="webhook", function_id="a::f"))
    (verdict,) = await fake.wait_for(lambda: fake.of_type(TriggerRegistrationResult))
    assert (verdict.error.code, verdict.error.message) == (codes.TRIGGER_REGISTRATION_FAILED, "bad config")


async def test_binding_of_a_type_not_provided_replies_trigger_type_not_found(
    client: III, fake: FakeTransport
) -> None:
    """registertrigger for a type this worker does not provide replies trigger_type_not_found."""
    fake.deliver(RegisterTrigger(id="t1", trigger_type="nope", function_id="a::f"))
    (verdict,) = fake.of_type(TriggerRegistrationResult)
    assert verdict.error.code == codes.TRIGGER_TYPE_NOT_FOUND


# ------------------------------------------------------------------------------ registrationrejected


async def test_namespace_conflict_is_only_logged(client: III, fake: FakeTransport) -> None:
    """FUNCTION_NAMESPACE_CONFLICT: a warning, the worker keeps running (§10.5 rule 10)."""
    fake.deliver(RegistrationRejected(code="FUNCTION_NAMESPACE_CONFLICT", namespace="default",
                                      function_id="state::set"))  # fmt: skip
    assert client.get_connection_state() == "connected" and client.is_live


async def test_other_rejection_codes_are_fatal(client: III, fake: FakeTransport) -> None:
    """Any other code: state failed, pending calls and later calls raise RegistrationRejectedError."""
    task = await started(client, {"function_id": "b::f"})
    fake.deliver(RegistrationRejected(code="WORKER_NAMESPACE_CONFLICT", namespace="default", function_id="x"))
    with pytest.raises(RegistrationRejectedError):
        await task
    assert client.get_connection_state() == "failed"
    with pytest.raises(RegistrationRejectedError):
        await client.trigger_async({"function_id": "b::f"})


# ------------------------------------------------------------------------------ logger


async def test_logger_sends_void_calls_through_the_latest_live_client(
    client: III, fake: FakeTransport
) -> None:
    """Logger().warn sends a Void call to engine::log::warn with message, data and service name."""
    Logger(service_name="svc").warn("careful", {"k": 1})
    (sent,) = calls(fake, "engine::log::warn")
    assert sent.action == {"type": "void"} and sent.namespace == "default"
    assert sent.data == {"message": "careful", "data": {"k": 1}, "service_name": "svc"}


async def test_logger_inside_a_handler_uses_the_trace_context(client: III, fake: FakeTransport) -> None:
    """trace_id and span_id default to the current invocation's traceparent (§10.6 rule 2)."""

    async def handler(data: Any) -> None:
        Logger().info("inside")

    client.register_function("a::f", handler)
    fake.deliver(InvokeFunction(function_id="a::f", invocation_id="i1", traceparent=TRACEPARENT))
    (sent,) = await fake.wait_for(lambda: calls(fake, "engine::log::info"))
    assert sent.data == {
        "message": "inside",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "service_name": "test-worker",  # no service_name given: the worker's name
    }


async def test_logger_falls_back_to_logging_while_disconnected(
    client: III, fake: FakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """While disconnected the record goes to the logging logger "pyiii" instead."""
    fake.drop()
    with caplog.at_level("INFO", logger="pyiii"):
        Logger().error("offline", {"k": 1})
    assert calls(fake, "engine::log::error") == []
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("pyiii", "ERROR", "offline {'k': 1}")
    ]
