"""The trigger types ``stream``, ``stream:join`` and ``stream:leave`` (spec/stream.md §5; checklist items
3, 11, 15, 16, 30-34)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from stream_harness import StreamHarness, frame_of, join, leave

from helpers import RawWorker
from module_helpers import Recorder, watch
from pyiii import III, InitOptions, register_worker


@pytest_asyncio.fixture
async def raw(stream: StreamHarness) -> AsyncIterator[RawWorker]:
    """A raw WebSocket worker on the engine's worker listener."""
    w = await RawWorker.connect(stream.server.url if stream.server else "")
    await w.register("raw-stream-tests")
    try:
        yield w
    finally:
        await w.close()


def registertrigger(
    trigger_type: str, config: Any, trigger_id: str = "t1", function_id: str = "f"
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "registertrigger",
        "id": trigger_id,
        "trigger_type": trigger_type,
        "function_id": function_id,
    }
    if config != "absent":
        frame["config"] = config
    return frame


# ------------------------------------------------------------------------------------- `stream` (§5.1)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            None,
            "Failed to deserialize stream trigger: invalid type: null, expected struct StreamTriggerConfig",
        ),
        ("absent", "Failed to deserialize stream trigger: "),
        ("text", "Failed to deserialize stream trigger: "),
        ({"stream_name": 5}, "Failed to deserialize stream trigger: stream_name: invalid type: integer `5`"),
        ({"stream_name": "s", "group_id": []}, "Failed to deserialize stream trigger: group_id: "),
        ({}, "stream_name is required for stream triggers"),
        ({"group_id": "g"}, "stream_name is required for stream triggers"),
    ],
)
async def test_stream_trigger_bad_config_is_rejected(raw: RawWorker, config: Any, message: str) -> None:
    """Checklist 30 (S11): a non-object config or no ``stream_name`` -> ``trigger_registration_failed``."""
    await raw.send(registertrigger("stream", config))
    reply = await raw.expect("triggerregistrationresult")
    assert reply["error"]["code"] == "trigger_registration_failed"
    assert reply["error"]["message"].startswith(message)


async def test_unregister_unknown_stream_trigger_is_a_noop(stream: StreamHarness, raw: RawWorker) -> None:
    """Checklist 30: unregistering an unknown trigger id is a no-op (the engine stays usable)."""
    await raw.send({"type": "unregistertrigger", "id": "never-registered", "trigger_type": "stream"})
    await raw.barrier()
    assert await stream.set("s", "g", "i", 1) == {"new_value": 1, "old_value": None}


async def test_several_triggers_per_stream_and_filters(stream: StreamHarness, worker: III) -> None:
    """Checklists 30-31: several triggers on one stream all fire; ``group_id``/``item_id`` absent or ``""``
    match anything, otherwise exact; a ``send`` without id compares as ``""``."""
    any1, _ = watch(worker, "stream", {"stream_name": "s"})
    any2, _ = watch(worker, "stream", {"stream_name": "s", "group_id": "", "item_id": None})
    group, _ = watch(worker, "stream", {"stream_name": "s", "group_id": "g"})
    item, _ = watch(worker, "stream", {"stream_name": "s", "item_id": "i"})
    both, _ = watch(worker, "stream", {"stream_name": "s", "group_id": "h", "item_id": "i"})
    other, _ = watch(worker, "stream", {"stream_name": "other"})
    await stream.set("s", "g", "i", 1)
    await stream.set("s", "h", "j", 2)
    await stream.set("s", "h", "i", 3)
    await stream.send("s", "g", "t", 4)
    await stream.idle()

    def seen(recorder: Recorder) -> list[tuple[str, str]]:
        # Operations fire in separate background tasks (§5.1 rule 2): their order is not specified.
        return sorted((e["groupId"], str(e["id"])) for e in recorder.events)

    everything = sorted([("g", "i"), ("h", "j"), ("h", "i"), ("g", "None")])
    assert seen(any1) == everything and seen(any2) == everything
    assert seen(group) == [("g", "None"), ("g", "i")]
    assert seen(item) == [("g", "i"), ("h", "i")]
    assert seen(both) == [("h", "i")]
    assert other.events == []


async def test_trigger_payload_equals_the_client_frame(stream: StreamHarness, worker: III) -> None:
    """Checklist 33: the ``stream`` trigger payload equals the client frame, ``event`` type included."""
    recorder, _ = watch(worker, "stream", {"stream_name": "chat"})
    client = await stream.client("/stream/chat/room")
    await client.expect(frame_of("sync"))
    await stream.set("chat", "room", "m1", {"text": "hello"})
    await stream.send("chat", "room", "typing", {"user": "a"})
    await stream.delete("chat", "room", "m1")
    events = await recorder.wait(3)
    frames = [await client.expect(frame_of(kind)) for kind in ("create", "event", "delete")]
    assert events == [dict(frame) for frame in frames]
    assert events[1]["event"] == {"type": "event", "event": {"type": "typing", "data": {"user": "a"}}}


async def test_stream_trigger_conditions_namespace_and_metadata(stream: StreamHarness) -> None:
    """Checklist 32: no condition -> called; ``false`` -> skipped; ``null`` -> called; an error -> skipped;
    handler errors are only logged; handler and condition resolve in the trigger's namespace, the handler
    gets the metadata and the condition none."""
    default = register_worker(stream.engine, InitOptions(worker_name="default-ns"))
    spaced = register_worker(stream.engine, InitOptions(worker_name="ns-worker", namespace="ns1"))
    try:
        condition_metadata: list[Any] = []

        def verdict(value: Any) -> Any:
            async def condition(data: Any, metadata: Any = None) -> Any:
                condition_metadata.append(metadata)
                return value

            return condition

        async def fails(data: Any) -> Any:
            raise RuntimeError("condition broke")

        spaced.register_function("cond::false", verdict(False))
        spaced.register_function("cond::null", verdict(None))
        spaced.register_function("cond::error", fails)
        default.register_function("cond::false", verdict(True))  # must not be used: wrong namespace
        plain, _ = watch(spaced, "stream", {"stream_name": "s"}, metadata={"team": "a"})
        skipped, _ = watch(spaced, "stream", {"stream_name": "s", "condition_function_id": "cond::false"})
        nulled, _ = watch(spaced, "stream", {"stream_name": "s", "condition_function_id": "cond::null"})
        errored, _ = watch(spaced, "stream", {"stream_name": "s", "condition_function_id": "cond::error"})
        failing = Recorder(lambda data: (_ for _ in ()).throw(RuntimeError("handler broke")))
        watch(spaced, "stream", {"stream_name": "s"}, failing)
        await stream.set("s", "g", "i", 1)
        await stream.set("s", "g", "i", 2)
        await stream.idle()
        assert len(plain.events) == 2 and plain.metadata == [{"team": "a"}, {"team": "a"}]
        assert len(nulled.events) == 2 and len(failing.events) == 2
        assert skipped.events == [] and errored.events == []
        assert set(map(str, condition_metadata)) == {"None"}
    finally:
        await default.shutdown_async()
        await spaced.shutdown_async()


async def test_reads_fire_no_triggers_and_delete_of_missing_fires_none(
    stream: StreamHarness, worker: III
) -> None:
    """§4.1 rule 6, §4.3.3: reads and a delete that removed nothing fire no ``stream`` trigger."""
    recorder, _ = watch(worker, "stream", {"stream_name": "s"})
    await stream.call("stream::get", {"stream_name": "s", "group_id": "g", "item_id": "i"})
    await stream.call("stream::list", {"stream_name": "s", "group_id": "g"})
    await stream.delete("s", "g", "i")
    await stream.set("s", "g", "marker", 1)
    events = await recorder.wait(1)
    await stream.idle()
    assert [e["id"] for e in events] == ["marker"]


# ------------------------------------------------------------------------------------- join / leave (§5.2)


async def test_join_and_leave_payloads_and_unknown_leave(stream: StreamHarness, worker: III) -> None:
    """Checklist 11: join/leave payloads carry the fields and ``context: null``; ``leave`` for an unknown id
    still fires ``stream:leave``; closing the socket fires one leave per held subscription."""
    joins, _ = watch(worker, "stream:join", {})
    leaves, _ = watch(worker, "stream:leave", None)
    client = await stream.client()
    await client.send(join("a", "s", "g"))
    await client.send(join("b", "s", "g", "item"))
    await client.barrier()
    assert joins.events == [
        {"subscription_id": "a", "stream_name": "s", "group_id": "g", "id": None, "context": None},
        {"subscription_id": "b", "stream_name": "s", "group_id": "g", "id": "item", "context": None},
    ]
    await client.send(leave("unknown", "x", "y"))
    await client.barrier()
    assert leaves.events == [
        {"subscription_id": "unknown", "stream_name": "x", "group_id": "y", "id": None, "context": None}
    ]
    await client.close()
    events = await leaves.wait(3)
    assert sorted(e["subscription_id"] for e in events[1:]) == ["a", "b"]
    assert {e["stream_name"] for e in events[1:]} == {"s"}


async def test_rejected_join(stream: StreamHarness, worker: III) -> None:
    """Checklist 15: a join trigger returning ``{"unauthorized":true}`` gives an ``unauthorized`` frame with
    the join's stream, group and id; nothing is delivered for it; disconnecting fires no leave for it."""

    def gate(data: Any) -> Any:
        return {"unauthorized": data["group_id"] == "secret"}

    watch(worker, "stream:join", {}, Recorder(gate))
    leaves, _ = watch(worker, "stream:leave", {})
    client = await stream.client()
    await client.send(join("no", "s", "secret", "item-1"))
    denied = await client.expect(frame_of("unauthorized"))
    assert (denied["streamName"], denied["groupId"], denied["id"]) == ("s", "secret", "item-1")
    assert denied.raw.endswith('"id":"item-1","event":{"type":"unauthorized"}}')
    await client.send(join("yes", "s", "open"))
    await client.expect(frame_of("sync"))
    await stream.set("s", "secret", "item-1", 1)
    await client.barrier()
    assert client.received(frame_of("create")) == []
    await client.close()
    events = await leaves.wait(1)
    await stream.idle()
    assert [e["subscription_id"] for e in events] == ["yes"]


async def test_rejected_join_keeps_an_existing_subscription(stream: StreamHarness, worker: III) -> None:
    """§3.7 step 3: a rejected re-join leaves the existing subscription with that id as it was."""
    watch(worker, "stream:join", {}, Recorder(lambda data: {"unauthorized": data["group_id"] == "no"}))
    client = await stream.client()
    await client.send(join("x", "s", "yes"))
    await client.expect(frame_of("sync"))
    await client.send(join("x", "s", "no"))
    await client.expect(frame_of("unauthorized"))
    await stream.set("s", "yes", "i", 1)
    assert (await client.expect(frame_of("create")))["groupId"] == "yes"


async def test_url_join_fires_join_trigger_and_can_be_rejected(stream: StreamHarness, worker: III) -> None:
    """Checklist 3: the URL join fires ``stream:join`` with ``subscription_id: "url"`` and can be rejected."""
    joins, _ = watch(
        worker, "stream:join", {}, Recorder(lambda data: {"unauthorized": data["group_id"] == "no"})
    )
    ok = await stream.client("/stream/s/yes/item")
    await ok.expect(frame_of("sync"))
    denied = await stream.client("/stream/s/no")
    frame = await denied.expect(frame_of("unauthorized"))
    assert (frame["groupId"], frame["id"]) == ("no", None)
    assert [(e["subscription_id"], e["group_id"], e["id"]) for e in joins.events] == [
        ("url", "yes", "item"),
        ("url", "no", None),
    ]


async def test_join_errors_missing_functions_and_non_boolean_allow(
    stream: StreamHarness, worker: III, raw: RawWorker
) -> None:
    """Checklist 16: a raising join trigger, one whose function is missing and ``{"unauthorized":"yes"}``
    all allow the join; every applicable trigger runs even after one rejected."""
    watch(worker, "stream:join", {}, Recorder(lambda data: (_ for _ in ()).throw(RuntimeError("boom"))))
    watch(worker, "stream:join", {}, Recorder(lambda data: {"unauthorized": "yes"}))
    await raw.send(registertrigger("stream:join", {}, "missing", "test::does-not-exist"))
    await raw.barrier()
    client = await stream.client()
    await client.send(join("a", "s", "g"))
    await client.expect(frame_of("sync"))
    after, _ = watch(worker, "stream:join", {}, Recorder(lambda data: {"unauthorized": True}))
    last, _ = watch(worker, "stream:join", {})
    await client.send(join("b", "s", "g"))
    await client.expect(frame_of("unauthorized"))
    assert len(after.events) == 1 and len(last.events) == 1


async def test_join_leave_filters_conditions_namespace_metadata(stream: StreamHarness) -> None:
    """Checklists 16 and 34: ``{"stream_name":"orders"}`` fires only for ``orders``; a ``false`` condition
    skips; a raising condition lets it run; handlers run in their namespace with their metadata."""
    spaced = register_worker(stream.engine, InitOptions(worker_name="ns-worker", namespace="ns1"))
    try:

        async def raises(data: Any) -> Any:
            raise RuntimeError("condition broke")

        spaced.register_function("cond::no", lambda data: False)
        spaced.register_function("cond::raise", raises)
        orders, _ = watch(spaced, "stream:join", {"stream_name": "orders"}, metadata={"m": 1})
        everything, _ = watch(spaced, "stream:join", {"stream_name": ""})
        skipped, _ = watch(spaced, "stream:join", {"condition_function_id": "cond::no"})
        raised, _ = watch(spaced, "stream:join", {"condition_function_id": "cond::raise"})
        leaves, _ = watch(spaced, "stream:leave", {"stream_name": "orders"}, metadata={"m": 2})
        client = await stream.client()
        for sub, name in (("1", "orders"), ("2", "chat")):
            await client.send(join(sub, name, "g"))
            await client.send(leave(sub, name, "g"))
        await client.barrier()
        assert [e["stream_name"] for e in orders.events] == ["orders"] and orders.metadata == [{"m": 1}]
        assert [e["stream_name"] for e in everything.events] == ["orders", "chat"]
        assert skipped.events == []
        assert len(raised.events) == 2
        assert [e["stream_name"] for e in leaves.events] == ["orders"] and leaves.metadata == [{"m": 2}]
    finally:
        await spaced.shutdown_async()


async def test_vanished_client_runs_teardown_and_leave_triggers(stream: StreamHarness, worker: III) -> None:
    """S10: a client that disappears without a close frame (transport aborted) still gets its teardown and
    one leave per subscription."""
    leaves, _ = watch(worker, "stream:leave", {})
    client = await stream.client()
    await client.send(join("a", "s", "g"))
    await client.send(join("b", "s", "g", "i"))
    await client.barrier()
    transport = client.ws._writer.transport  # no public API to drop a connection without a close frame
    transport.abort()
    events = await leaves.wait(2)
    assert sorted(e["subscription_id"] for e in events) == ["a", "b"]
    await stream.idle()
    assert stream.stream.hub.connections == {}
    assert stream.stream.hub.subscription_count() == 0
