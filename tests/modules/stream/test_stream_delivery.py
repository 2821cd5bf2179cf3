"""Join, leave and the delivery filter (spec/stream.md §3.7-§3.9; checklist items 11-14, 18)."""

from __future__ import annotations

import asyncio

from stream_harness import StreamHarness, frame_of, join, leave

from pyiii.config import StreamSettings
from pyiii.testing import start_server


async def test_group_item_and_other_group_on_one_socket(stream: StreamHarness) -> None:
    """Checklist 12: group + item (``item-1``) + other-group subscriptions: a change to ``item-1`` gives
    exactly two identical frames, none for the other group."""
    client = await stream.client()
    await client.send(join("grp", "s", "g"))
    await client.send(join("itm", "s", "g", "item-1"))
    await client.send(join("other", "s", "g2"))
    for _ in range(3):
        await client.expect(frame_of("sync"))
    await stream.set("s", "g", "item-1", {"v": 1})
    await client.barrier()
    frames = client.received(frame_of("create"))
    assert len(frames) == 2
    assert frames[0].raw == frames[1].raw
    assert frames[0]["groupId"] == "g"


async def test_send_reaches_item_subscriptions_only_with_id(stream: StreamHarness) -> None:
    """Checklist 13: ``send`` without ``id`` reaches group subscriptions only; with ``id`` item ones too."""
    group = await stream.client()
    item = await stream.client()
    await group.send(join("g", "s", "g"))
    await item.send(join("i", "s", "g", "x"))
    await group.expect(frame_of("sync"))
    await item.expect(frame_of("sync"))
    await stream.send("s", "g", "no-id", 1)
    await stream.send("s", "g", "with-id", 2, item="x")
    await stream.send("s", "g", "other-id", 3, item="y")
    await group.barrier()
    await item.barrier()
    assert [f["event"]["event"]["type"] for f in group.received(frame_of("event"))] == [
        "no-id",
        "with-id",
        "other-id",
    ]
    assert [f["event"]["event"]["type"] for f in item.received(frame_of("event"))] == ["with-id"]


async def test_leave_stops_events(stream: StreamHarness) -> None:
    """Checklist 11: after ``leave``, events stop; other subscriptions continue."""
    client = await stream.client()
    await client.send(join("a", "s", "g"))
    await client.send(join("b", "s", "h"))
    await client.expect(frame_of("sync"))
    await client.expect(frame_of("sync"))
    await client.send(leave("a", "ignored-stream", "ignored-group"))  # only the id selects (§3.8 step 3)
    await client.barrier()
    await stream.set("s", "g", "x", 1)
    await stream.set("s", "h", "x", 1)
    await client.barrier()
    assert [f["groupId"] for f in client.received(frame_of("create"))] == ["h"]


async def test_rejoin_replaces_the_subscription(stream: StreamHarness) -> None:
    """Checklist 14: re-joining with an existing ``subscriptionId`` replaces it (no old events)."""
    client = await stream.client()
    await client.send(join("same", "s", "old"))
    await client.send(join("same", "s", "new"))
    await client.expect(frame_of("sync"))
    await client.expect(frame_of("sync"))
    await stream.set("s", "old", "x", 1)
    await stream.set("s", "new", "x", 2)
    await client.barrier()
    assert [f["groupId"] for f in client.received(frame_of("create"))] == ["new"]


async def test_sync_precedes_changes_under_a_write_loop(stream: StreamHarness) -> None:
    """Checklist 18 (S8): with a tight ``stream::set`` loop on a group, each join's ``sync`` precedes that
    subscription's change frames, and the change frames after it are in write order."""
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await stream.set("s", "g", f"k{n % 7}", n)
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    clients = []
    try:
        for _ in range(20):
            client = await stream.client()
            await client.send(join("sub", "s", "g"))
            await client.expect(frame_of("sync"))
            clients.append(client)
    finally:
        stop.set()
        await task
    for client in clients:
        await client.barrier()
        frames = [f for f in client.history if f["type"] == "stream"]
        assert frames[0]["event"]["type"] == "sync"
        assert all(f["event"]["type"] != "sync" for f in frames[1:])
        values = [f["event"]["data"] for f in frames[1:]]
        assert values == sorted(values) and len(set(values)) == len(values)


async def test_engine_server_wiring() -> None:
    """§1: an engine configured with ``iii-stream`` runs the module on its listener (port 0 here)."""
    server = await start_server(stream=StreamSettings(port=0))
    try:
        assert server.stream is not None and server.stream.port
        result = await server.engine.invoke(
            "stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i", "data": 1}
        )
        assert result == {"new_value": 1, "old_value": None}
    finally:
        await server.stop()
