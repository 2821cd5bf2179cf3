"""Custom per-stream implementations ``stream::<op>(<name>)`` (spec/stream.md §6; checklist items 17, 35,
and the adapter fallback of 36)."""

from __future__ import annotations

from typing import Any

import pytest
from stream_harness import StreamHarness, frame_of, join

from module_helpers import Recorder, watch
from pyiii import III, InitOptions, register_worker
from pyiii.errors import InvocationError


class Failure(Exception):
    pass


def raise_(message: str) -> Any:
    raise Failure(message)


async def test_custom_set_gets_input_and_engine_still_pushes(stream: StreamHarness, worker: III) -> None:
    """Checklist 35: a custom ``stream::set(name)`` receives the snake_case input; the engine still pushes
    ``create``/``update`` frames and fires ``stream`` triggers; the adapter is not touched."""
    calls = Recorder(
        lambda data: {"old_value": None if data["item_id"] == "new" else {"v": 0}, "new_value": 7}
    )
    worker.register_function("stream::set(orders)", calls)
    triggered, _ = watch(worker, "stream", {"stream_name": "orders"})
    client = await stream.client("/stream/orders/g")
    await client.expect(frame_of("sync"))
    payload = {"stream_name": "orders", "group_id": "g", "item_id": "new", "data": {"x": 1}, "extra": True}
    assert await stream.call("stream::set", payload) == {"new_value": 7, "old_value": None}
    assert await stream.set("orders", "g", "old", 1) == {"new_value": 7, "old_value": {"v": 0}}
    assert calls.events[0] == payload
    created = await client.expect(frame_of("create"))
    updated = await client.expect(frame_of("update"))
    assert (created["id"], created["event"]["data"]) == ("new", 7)
    assert (updated["id"], updated["event"]["data"]) == ("old", 7)
    await triggered.wait(2)
    assert await stream.call("stream::list", {"stream_name": "orders", "group_id": "g"}) == []


async def test_custom_reads_are_verbatim_and_errors_pass_through(stream: StreamHarness, worker: III) -> None:
    """Checklist 35: custom ``get``/``list``/``list_groups`` results are returned verbatim; their errors
    pass through unchanged."""
    worker.register_function("stream::get(c)", lambda data: {"custom": data["item_id"]})
    worker.register_function("stream::list(c)", lambda data: ["a", 1])
    worker.register_function("stream::list_groups(c)", lambda data: {"not": "an array"})
    worker.register_function("stream::get(bad)", lambda data: raise_("no get"))
    ref = {"stream_name": "c", "group_id": "g", "item_id": "i"}
    assert await stream.call("stream::get", ref) == {"custom": "i"}
    assert await stream.call("stream::list", {"stream_name": "c", "group_id": "g"}) == ["a", 1]
    assert await stream.call("stream::list_groups", {"stream_name": "c"}) == {"not": "an array"}
    error = await stream.error("stream::get", {**ref, "stream_name": "bad"})
    assert "no get" in error.message
    assert error.code not in ("STREAM_GET_ERROR", "deserialization_error")


@pytest.mark.parametrize(
    ("function_id", "behaviour", "code", "message"),
    [
        ("stream::set", lambda data: None, "STREAM_SET_ERROR", "Function returned no result"),
        ("stream::set", lambda data: [1], "JSON_ERROR", "Failed to convert result to value: "),
        ("stream::set", lambda data: {"old_value": 1}, "JSON_ERROR", "missing field `new_value`"),
        ("stream::set", lambda data: raise_("set broke"), "STREAM_SET_ERROR", "Failed to invoke function: "),
        ("stream::update", lambda data: None, "STREAM_UPDATE_ERROR", "Function returned no result"),
        ("stream::update", lambda data: "x", "JSON_ERROR", "Failed to convert result to value: "),
        ("stream::delete", lambda data: None, "STREAM_DELETE_ERROR", "Function returned no result"),
        ("stream::delete", lambda data: 3, "JSON_ERROR", "Failed to convert result to value: "),
        ("stream::delete", lambda data: raise_("del"), "STREAM_DELETE_ERROR", "Failed to invoke function: "),
    ],
)
async def test_custom_write_failures(
    stream: StreamHarness, worker: III, function_id: str, behaviour: Any, code: str, message: str
) -> None:
    """Checklist 35, §6 rule 4: no result -> ``STREAM_*_ERROR`` ending in ``Function returned no result``; a
    malformed result -> ``JSON_ERROR``; a failure -> ``Failed to invoke function: <message>``. No frame."""
    worker.register_function(f"{function_id}(c)", behaviour)
    client = await stream.client("/stream/c/g")
    await client.expect(frame_of("sync"))
    payload = {"stream_name": "c", "group_id": "g", "item_id": "i", "data": 1, "ops": []}
    with pytest.raises(InvocationError) as info:
        await stream.call(function_id, payload)
    assert info.value.code == code
    assert message in info.value.message
    if message == "Function returned no result":
        assert info.value.message.endswith(message)
    await client.barrier()
    assert [f for f in client.inbox if f["type"] == "stream"] == []


async def test_custom_delete_and_update_frames(stream: StreamHarness, worker: III) -> None:
    """§6 rule 5: a custom delete pushes ``delete`` only when ``old_value`` is present and not null; a custom
    update's ``errors`` pass through."""
    worker.register_function("stream::delete(c)", lambda data: {"old_value": {"gone": data["item_id"]}})
    worker.register_function("stream::delete(n)", lambda data: {"old_value": None})
    errors = [{"op_index": 0, "code": "x", "message": "m", "doc_url": "u"}]
    worker.register_function("stream::update(c)", lambda data: {"new_value": 2, "errors": errors})
    client = await stream.client()
    await client.send(join("c", "c", "g"))
    await client.send(join("n", "n", "g"))
    await client.expect(frame_of("sync"))
    await client.expect(frame_of("sync"))
    assert await stream.delete("c", "g", "i") == {"old_value": {"gone": "i"}}
    assert await stream.delete("n", "g", "i") == {"old_value": None}
    result = await stream.update("c", "g", "i", [{"type": "set", "path": "a", "value": 1}])
    assert result == {"errors": errors, "new_value": 2, "old_value": None}
    await client.barrier()
    kinds = [(f["streamName"], f["event"]["type"]) for f in client.inbox if f["type"] == "stream"]
    assert kinds == [("c", "delete"), ("c", "create")]


async def test_failing_custom_snapshot_keeps_the_subscription(stream: StreamHarness, worker: III) -> None:
    """Checklist 17: a failing custom ``get``/``list`` keeps the subscription, sends no ``sync``, and later
    events arrive."""
    worker.register_function("stream::list(c)", lambda data: raise_("list broke"))
    worker.register_function("stream::get(c)", lambda data: raise_("get broke"))
    client = await stream.client()
    await client.send(join("group", "c", "g"))
    await client.send(join("item", "c", "g", "i"))
    await client.barrier()
    assert client.received(frame_of("sync")) == []
    await stream.send("c", "g", "hello", 1, item="i")
    await client.barrier()
    assert len(client.received(frame_of("event"))) == 2


async def test_custom_snapshot_is_used_for_joins(stream: StreamHarness, worker: III) -> None:
    """§6 rule 6: join snapshots use the custom ``get`` and ``list``; no result gives ``data: null``."""
    worker.register_function("stream::list(c)", lambda data: [{"from": "custom"}])
    worker.register_function("stream::get(c)", lambda data: None)
    client = await stream.client()
    await client.send(join("group", "c", "g"))
    await client.send(join("item", "c", "g", "i"))
    group = await client.expect(frame_of("sync"))
    item = await client.expect(frame_of("sync"))
    assert group["event"]["data"] == [{"from": "custom"}]
    assert item["event"]["data"] is None


async def test_custom_only_in_default_namespace_and_update_falls_back(
    stream: StreamHarness, worker: III
) -> None:
    """§6 rules 1 and 7: a custom function outside ``default`` is not used; a stream with custom set/get but
    no custom update is updated through the adapter."""
    spaced = register_worker(stream.engine, InitOptions(worker_name="ns", namespace="other"))
    try:
        spaced.register_function("stream::set(s)", lambda data: {"new_value": "from-other-ns"})
        result = await stream.set("s", "g", "i", {"n": 1})
        assert result == {"new_value": {"n": 1}, "old_value": None}
    finally:
        await spaced.shutdown_async()
    worker.register_function("stream::get(s)", lambda data: "custom")
    updated = await stream.update("s", "g", "i", [{"type": "increment", "path": "n", "by": 1}])
    assert updated == {"new_value": {"n": 2}, "old_value": {"n": 1}}
