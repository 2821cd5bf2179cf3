"""The client listener: upgrade on any path, URL joins, subprotocol echo, ping/pong, ignored input
(spec/stream.md §3.1, §3.2, §3.4, §3.5; checklist items 1, 2, 4, 5, 6)."""

from __future__ import annotations

import aiohttp
import pytest
from stream_harness import StreamHarness, frame_of, join, leave

from helpers import RawWorker


async def test_upgrade_on_root_and_any_path(stream: StreamHarness) -> None:
    """Checklist 1: upgrades on ``/`` and ``/anything`` succeed; nothing is sent before the first message."""
    for path in ("/", "/anything", "/stream", "/stream/a", "/stream/a/b/c/d", "/foo?x=1"):
        client = await stream.client(path)
        await client.barrier()
        assert [f["type"] for f in client.history] == ["pong"], path


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 426),
        ({"Upgrade": "h2c", "Connection": "Upgrade"}, 426),
        ({"Upgrade": "websocket", "Connection": "Upgrade"}, 400),  # no key, no version
        (
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "not-base64-16",
            },
            400,
        ),
    ],
)
async def test_plain_requests_are_refused(
    stream: StreamHarness, headers: dict[str, str], status: int
) -> None:
    """Checklist 1: a plain GET gets 426 (no ``Upgrade: websocket``) or 400 (invalid upgrade)."""
    url = stream.url.replace("ws://", "http://") + "/stream/s/g"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == status


async def test_url_group_join_syncs_at_once(stream: StreamHarness) -> None:
    """Checklist 2: ``/stream/orders/group-a`` yields a group sync with ``id: null`` without any message."""
    await stream.set("orders", "group-a", "i1", {"status": "open"})
    await stream.set("orders", "group-a", "i2", 2)
    client = await stream.client("/stream/orders/group-a")
    sync = await client.expect(frame_of("sync"))
    assert sync["id"] is None
    assert (sync["streamName"], sync["groupId"]) == ("orders", "group-a")
    assert sync["event"] == {"type": "sync", "data": [{"status": "open"}, 2]}
    assert sync.raw.startswith('{"type":"stream","timestamp":')


async def test_url_item_join_trailing_slash_and_percent_decoding(stream: StreamHarness) -> None:
    """Checklist 2: an item URL yields an item sync; a trailing ``/`` works; ``%20`` decodes, ``+`` stays."""
    await stream.set("my orders", "g+1", "item 1", {"v": 1})
    client = await stream.client("/stream/my%20orders/g+1/item%201/")
    sync = await client.expect(frame_of("sync"))
    assert (sync["streamName"], sync["groupId"], sync["id"]) == ("my orders", "g+1", "item 1")
    assert sync["event"]["data"] == {"v": 1}
    missing = await stream.client("/stream/my%20orders/g+1/none")
    assert (await missing.expect(frame_of("sync")))["event"] == {"type": "sync", "data": None}


async def test_url_join_with_undecodable_segment_is_a_plain_connection(stream: StreamHarness) -> None:
    """§3.1 rule 3: a segment that is not UTF-8 after percent-decoding makes the path a plain one."""
    client = await stream.client("/stream/%ff/g")
    await client.barrier()
    assert [f["type"] for f in client.history] == ["pong"]


async def test_url_subscription_receives_changes_and_stops_after_leave(stream: StreamHarness) -> None:
    """Checklist 3: the URL join is subscription ``url``; a ``leave`` for ``url`` stops its events."""
    client = await stream.client("/stream/s/g")
    await client.expect(frame_of("sync"))
    await stream.set("s", "g", "a", 1)
    created = await client.expect(frame_of("create"))
    assert created["event"] == {"type": "create", "data": 1}
    await client.send(leave("url", "s", "g"))
    await client.barrier()
    await stream.set("s", "g", "a", 2)
    await client.barrier()
    assert client.received(frame_of("update")) == []


async def test_subprotocol_first_offer_is_echoed(stream: StreamHarness) -> None:
    """Checklist 4 (S4): offering ``Authorization, tok123`` gets ``Authorization`` echoed."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(stream.url + "/", protocols=("Authorization", "tok123"))
        assert ws.protocol == "Authorization"
        await ws.close()
        plain = await session.ws_connect(stream.url + "/")
        assert plain.protocol is None
        await plain.close()


async def test_ignored_input_then_a_valid_join(stream: StreamHarness) -> None:
    """Checklist 5: blank text, ``not-json``, invalid binary, ``JOIN`` and a join without ``groupId``
    are ignored; the connection stays open and a following join gets its sync."""
    client = await stream.client()
    bad_join = join("s1", "s", "g")
    del bad_join["data"]["groupId"]
    for message in (
        "",
        "   ",
        "not-json",
        b"\xff\xfe",
        b"[1,2]",
        {"type": "JOIN", "data": join("s1", "s", "g")["data"]},
        {"type": "subscribe"},
        bad_join,
        {"type": "join", "data": {"subscriptionId": 1, "streamName": "s", "groupId": "g"}},
        {"type": "join", "data": {"subscriptionId": "x", "streamName": "s", "groupId": "g", "id": 5}},
        {"type": "join"},
        "[]",
        "null",
    ):
        await client.send(message)
    await client.send(join("s1", "s", "g"))
    sync = await client.expect(frame_of("sync"))
    assert sync["event"]["data"] == []
    assert [f["type"] for f in client.history] == ["stream"]


async def test_binary_join_is_handled_like_text(stream: StreamHarness) -> None:
    """§3.4 step 5: a binary message decoded as UTF-8 is handled like text."""
    client = await stream.client()
    await client.send(b'{"type":"join","data":{"subscriptionId":"b","streamName":"s","groupId":"g"}}')
    assert (await client.expect(frame_of("sync")))["event"]["data"] == []


async def test_ws_ping_and_json_ping(stream: StreamHarness) -> None:
    """Checklist 6: WS Ping ``[1,2,3]`` gets Pong ``[1,2,3]``; JSON ``ping`` gets ``{"type":"pong"}``."""
    client = await RawWorker.connect(stream.url, hello=False, autoping=False)
    stream.clients.append(client)
    await client.ws.ping(bytes([1, 2, 3]))
    assert await client.pongs.get() == bytes([1, 2, 3])
    await client.send({"type": "ping", "extra": True})
    pong = await client.expect("pong")
    assert pong.raw == '{"type":"pong"}'


async def test_listener_port_zero_is_exposed(stream: StreamHarness) -> None:
    """§3.1: the module binds a free port when given 0 and exposes the bound one."""
    assert stream.stream.port not in (None, 0)
    assert stream.url == f"ws://127.0.0.1:{stream.stream.port}"
