"""The ``stream::*`` functions and the frames they push, on every adapter
(spec/stream.md §4; checklist items 10, 20-26, 28)."""

from __future__ import annotations

from typing import Any

import pytest
from msgspec import UNSET
from stream_harness import StreamHarness, frame_of, join

from helpers import RawWorker


async def subscribed(h: StreamHarness, stream: str, group: str, item: str | None = None) -> RawWorker:
    client = await h.client()
    await client.send(join("sub", stream, group, item))
    await client.expect(frame_of("sync"))
    return client


async def test_set_create_update_and_stored_null(any_stream: StreamHarness) -> None:
    """Checklist 21: set new -> old_value null + ``create``; overwrite -> old value + ``update``;
    overwriting a stored ``null`` -> ``update``."""
    h = any_stream
    client = await subscribed(h, "s", "g")
    assert await h.set("s", "g", "a", {"v": 1}) == {"new_value": {"v": 1}, "old_value": None}
    assert await h.set("s", "g", "a", {"v": 2}) == {"new_value": {"v": 2}, "old_value": {"v": 1}}
    assert await h.set("s", "g", "n", None) == {"new_value": None, "old_value": None}
    assert await h.set("s", "g", "n", 5) == {"new_value": 5, "old_value": None}
    await h.idle()  # (with the Redis bus, a frame comes back through Redis: the ping alone may pass it)
    await client.barrier()
    events = [
        (f["id"], f["event"]["type"], f["event"]["data"]) for f in client.inbox if f["type"] == "stream"
    ]
    assert events == [
        ("a", "create", {"v": 1}),
        ("a", "update", {"v": 2}),
        ("n", "create", None),
        ("n", "update", 5),
    ]


async def test_get_missing_has_no_result_and_stored_null_is_null(any_stream: StreamHarness) -> None:
    """Checklist 22 / §4.3.2: get of a missing item has no result; a stored null is ``null``."""
    h = any_stream
    ref = {"stream_name": "s", "group_id": "g", "item_id": "x"}
    assert await h.raw("stream::get", ref) is UNSET
    await h.set("s", "g", "x", None)
    assert await h.raw("stream::get", ref) is None
    await h.set("s", "g", "x", {"b": 1, "a": [1, 2]})
    assert await h.raw("stream::get", ref) == {"a": [1, 2], "b": 1}


async def test_delete_missing_and_existing(any_stream: StreamHarness) -> None:
    """Checklist 22: delete missing -> ``{"old_value":null}`` and no frame; delete existing -> ``delete``
    frame with the removed value; removing a stored null emits ``delete`` with ``data: null``."""
    h = any_stream
    client = await subscribed(h, "s", "g")
    assert await h.delete("s", "g", "nope") == {"old_value": None}
    await h.set("s", "g", "a", {"v": 1})
    await h.set("s", "g", "n", None)
    assert await h.delete("s", "g", "a") == {"old_value": {"v": 1}}
    assert await h.delete("s", "g", "n") == {"old_value": None}
    await h.idle()
    await client.barrier()
    events = [
        (f["id"], f["event"]["type"], f["event"]["data"]) for f in client.inbox if f["type"] == "stream"
    ]
    assert events == [
        ("a", "create", {"v": 1}),
        ("n", "create", None),
        ("a", "delete", {"v": 1}),
        ("n", "delete", None),
    ]


async def test_list_order_groups_and_list_all(any_stream: StreamHarness) -> None:
    """Checklist 23: ``list`` keeps insertion order (overwrite keeps the place, kv); ``list_groups`` is a
    sorted bare array; ``list_all`` is sorted with sorted groups and the right count."""
    h = any_stream
    for item, value in (("b", 1), ("a", 2), ("c", 3)):
        await h.set("s", "g1", item, value)
    await h.set("s", "g1", "b", 10)
    await h.set("s", "g0", "x", 0)
    await h.set("chat", "room-2", "m", "hi")
    await h.set("chat", "room-1", "m", "hi")
    values = await h.call("stream::list", {"stream_name": "s", "group_id": "g1"})
    if h.kind == "redis":
        assert sorted(values) == [2, 3, 10]
    else:
        assert values == [10, 2, 3]
    assert await h.call("stream::list", {"stream_name": "s", "group_id": "none"}) == []
    assert await h.call("stream::list_groups", {"stream_name": "s"}) == ["g0", "g1"]
    assert await h.call("stream::list_groups", {"stream_name": "missing"}) == []
    assert await h.call("stream::list_all", {}) == {
        "count": 2,
        "stream": [{"groups": ["room-1", "room-2"], "id": "chat"}, {"groups": ["g0", "g1"], "id": "s"}],
    }


async def test_exact_names_with_colons(any_stream: StreamHarness) -> None:
    """Checklist 24 (S12): stream ``a:b`` is listed as ``a:b``; ``list_groups("a")`` excludes it; deleting a
    group's last item removes it from both lists; empty names are legal."""
    h = any_stream
    await h.set("a:b", "g", "i", 1)
    await h.set("a", "b:g", "i", 2)
    await h.set("", "", "", 3)
    assert await h.call("stream::list_groups", {"stream_name": "a"}) == ["b:g"]
    assert await h.call("stream::list_groups", {"stream_name": "a:b"}) == ["g"]
    listed = await h.call("stream::list_all", {})
    assert [(s["id"], s["groups"]) for s in listed["stream"]] == [("", [""]), ("a", ["b:g"]), ("a:b", ["g"])]
    await h.delete("a:b", "g", "i")
    assert await h.call("stream::list_groups", {"stream_name": "a:b"}) == []
    assert [s["id"] for s in (await h.call("stream::list_all", {}))["stream"]] == ["", "a"]


async def test_send_type_and_event_type_alias(any_stream: StreamHarness) -> None:
    """Checklist 25 (S2): ``send`` with ``type`` or ``event_type`` pushes an ``event`` frame; neither ->
    ``deserialization_error``."""
    h = any_stream
    client = await subscribed(h, "chat", "room")
    assert await h.send("chat", "room", "typing", {"user": "a"}) is None
    await h.call(
        "stream::send", {"stream_name": "chat", "group_id": "room", "event_type": "left", "data": None}
    )
    first = await client.expect(frame_of("event"))
    second = await client.expect(frame_of("event"))
    assert first["event"] == {"type": "event", "event": {"type": "typing", "data": {"user": "a"}}}
    assert first["id"] is None
    assert second["event"]["event"] == {"type": "left", "data": None}
    error = await h.error("stream::send", {"stream_name": "chat", "group_id": "room", "data": 1})
    assert error.code == "deserialization_error"
    assert error.message == "Failed to deserialize input for stream::send: missing field `type`"


async def test_update_existing_missing_and_errors(any_stream: StreamHarness) -> None:
    """Checklist 26: update existing -> ``update``; missing -> written and ``create`` even if every op
    failed; ``errors`` omitted when empty."""
    h = any_stream
    client = await subscribed(h, "s", "g")
    await h.set("s", "g", "n", {"count": 1})
    result = await h.update("s", "g", "n", [{"type": "increment", "path": "count", "by": 2}])
    assert result == {"new_value": {"count": 3}, "old_value": {"count": 1}}
    failed = await h.update("s", "g", "fresh", [{"type": "set", "path": "__proto__", "value": 1}])
    assert failed["old_value"] is None
    assert failed["new_value"] == {}
    assert [(e["op_index"], e["code"]) for e in failed["errors"]] == [(0, "set.path.proto_polluted")]
    await h.idle()
    await client.barrier()
    kinds = [(f["id"], f["event"]["type"], f["event"]["data"]) for f in client.inbox if f["type"] == "stream"]
    assert kinds == [("n", "create", {"count": 1}), ("n", "update", {"count": 3}), ("fresh", "create", {})]


@pytest.mark.parametrize(
    ("function_id", "payload", "detail"),
    [
        ("stream::set", {"group_id": "g", "item_id": "i", "data": 1}, "missing field `stream_name`"),
        ("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i"}, "missing field `data`"),
        ("stream::set", {"stream_name": 1, "group_id": "g", "item_id": "i", "data": 1}, None),
        ("stream::set", None, None),
        ("stream::get", {"stream_name": "s", "group_id": "g"}, "missing field `item_id`"),
        ("stream::delete", [], None),
        ("stream::list", {"stream_name": "s"}, "missing field `group_id`"),
        ("stream::list_groups", {}, "missing field `stream_name`"),
        ("stream::list_all", None, None),
        ("stream::send", {"stream_name": "s", "group_id": "g", "type": 1, "data": 1}, None),
        ("stream::send", {"stream_name": "s", "group_id": "g", "type": "t"}, "missing field `data`"),
        ("stream::send", {"stream_name": "s", "group_id": "g", "type": "t", "data": 1, "id": 3}, None),
        ("stream::update", {"stream_name": "s", "group_id": "g", "item_id": "i"}, "missing field `ops`"),
        (
            "stream::update",
            {"stream_name": "s", "group_id": "g", "item_id": "i", "ops": [{"type": "nope"}]},
            None,
        ),
    ],
)
async def test_bad_input_is_a_deserialization_error(
    stream: StreamHarness, function_id: str, payload: Any, detail: str | None
) -> None:
    """Checklist 28: undecodable input -> ``deserialization_error`` with the function's prefix."""
    error = await stream.error(function_id, payload)
    assert error.code == "deserialization_error"
    prefix = f"Failed to deserialize input for {function_id}: "
    assert error.message.startswith(prefix)
    if detail is not None:
        assert error.message == prefix + detail


async def test_frames_keep_write_order_and_key_order(stream: StreamHarness) -> None:
    """Checklist 20: frames of consecutive writes arrive in write order; keys follow §3.6; ``id`` is present
    when null; values keep sorted keys and unescaped non-ASCII."""
    client = await subscribed(stream, "s", "g")
    for i in range(50):
        await stream.set("s", "g", f"i{i % 5}", {"n": i, "é": "✓"})
    await stream.send("s", "g", "t", None)
    await client.barrier()
    frames = [f for f in client.inbox if f["type"] == "stream"]
    assert [f["event"]["data"]["n"] for f in frames[:50]] == list(range(50))
    assert frames[0].raw.startswith('{"type":"stream","timestamp":')
    assert (
        '"streamName":"s","groupId":"g","id":"i0","event":{"type":"create","data":{"n":0,"é":"✓"}}}'
        in frames[0].raw
    )
    assert '"id":null,"event":{"type":"event","event":{"type":"t","data":null}}}' in frames[-1].raw
    assert isinstance(frames[0]["timestamp"], int)


async def test_join_sync_for_group_and_item(stream: StreamHarness) -> None:
    """Checklist 10: group join -> ``sync`` with an array of values; item join -> the value or null."""
    await stream.set("s", "g", "a", {"x": 1})
    await stream.set("s", "g", "b", [1])
    client = await stream.client()
    await client.send(join("g1", "s", "g"))
    await client.send(join("i1", "s", "g", "a"))
    await client.send(join("i2", "s", "g", "missing"))
    group = await client.expect(frame_of("sync"))
    item = await client.expect(frame_of("sync"))
    missing = await client.expect(frame_of("sync"))
    assert (group["id"], group["event"]["data"]) == (None, [{"x": 1}, [1]])
    assert (item["id"], item["event"]["data"]) == ("a", {"x": 1})
    assert (missing["id"], missing["event"]["data"]) == ("missing", None)
