"""Streaming channels on the wire (spec/protocol.md §7.5, §9): raw WebSocket writer and reader sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import WSMsgType

from helpers import MIB, TIME_FACTOR, RawWorker

Connect = Any


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def create(engine_url: str, connect: Connect, **args: Any) -> dict[str, Any]:
    worker: RawWorker = await connect(engine_url)
    return await worker.result("engine::channels::create", args)  # type: ignore[no-any-return]


def channel_url(
    engine_url: str, ref: dict[str, Any], *, key: str | None = None, direction: str | None = None
) -> str:
    access_key = quote(ref["access_key"] if key is None else key, safe="")
    return (
        f"{engine_url}/ws/channels/{ref['channel_id']}?key={access_key}&dir={direction or ref['direction']}"
    )


async def read_all(ws: aiohttp.ClientWebSocketResponse) -> list[tuple[WSMsgType, Any]]:
    """Every data frame until the close; returns them with their kind."""
    items = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10 * TIME_FACTOR)
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            items.append((msg.type, msg.data))
        else:
            return items


async def test_binary_megabyte_is_read_back_byte_exact(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession
) -> None:
    """§9 (item 28): 1 MiB of random binary written in chunks is read back byte for byte, then Close 1000."""
    refs = await create(engine_url, connect)
    blob = os.urandom(MIB)
    reader = await session.ws_connect(channel_url(engine_url, refs["reader"]), max_msg_size=0)
    writer = await session.ws_connect(channel_url(engine_url, refs["writer"]), max_msg_size=0)
    for offset in range(0, MIB, 64 * 1024):
        await writer.send_bytes(blob[offset : offset + 64 * 1024])
    await writer.close()
    items = await read_all(reader)
    assert {kind for kind, _ in items} == {WSMsgType.BINARY}
    assert b"".join(data for _, data in items) == blob
    assert reader.close_code == 1000


async def test_single_megabyte_frame_passes_whole(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession
) -> None:
    """§9 rule 4: each frame is one item: a 1 MiB binary frame arrives as one 1 MiB frame."""
    refs = await create(engine_url, connect)
    blob = os.urandom(MIB)
    writer = await session.ws_connect(channel_url(engine_url, refs["writer"]))
    reader = await session.ws_connect(channel_url(engine_url, refs["reader"]), max_msg_size=0)
    await writer.send_bytes(blob)
    await writer.close()
    assert await read_all(reader) == [(WSMsgType.BINARY, blob)]


async def test_text_stays_text_and_order_is_kept(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession
) -> None:
    """§9 rules 4-5, 7 (item 28): text stays text, binary stays binary, in order; control JSON passes."""
    refs = await create(engine_url, connect)
    writer = await session.ws_connect(channel_url(engine_url, refs["writer"]))
    await writer.send_str('{"type":"set_status","status_code":201}')
    await writer.send_bytes(b"\x00\x01")
    await writer.send_str("héllo")
    await writer.send_str("")
    await writer.close()
    reader = await session.ws_connect(
        channel_url(engine_url, refs["reader"])
    )  # attached after the writer left
    assert await read_all(reader) == [
        (WSMsgType.TEXT, '{"type":"set_status","status_code":201}'),
        (WSMsgType.BINARY, b"\x00\x01"),
        (WSMsgType.TEXT, "héllo"),
        (WSMsgType.TEXT, ""),
    ]
    assert reader.close_code == 1000


@pytest.mark.parametrize(
    "variant", ["wrong-key", "other-direction-key", "unknown-channel", "bad-direction", "no-key"]
)
async def test_wrong_key_or_channel_gets_404(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession, variant: str
) -> None:
    """§9 rule 2 (item 28): an unknown channel or a wrong key gets HTTP 404 before the upgrade."""
    refs = await create(engine_url, connect)
    writer = refs["writer"]
    if variant == "wrong-key":
        url = channel_url(engine_url, writer, key="00000000-0000-4000-8000-000000000000")
    elif variant == "other-direction-key":
        url = channel_url(engine_url, writer, key=refs["reader"]["access_key"])
    elif variant == "unknown-channel":
        url = channel_url(engine_url, {**writer, "channel_id": "00000000-0000-4000-8000-000000000000"})
    elif variant == "bad-direction":
        url = channel_url(engine_url, writer, direction="sideways")
    else:
        url = f"{engine_url}/ws/channels/{writer['channel_id']}?dir=write"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url)
    assert info.value.status == 404


@pytest.mark.parametrize("side", ["writer", "reader"])
async def test_second_attach_is_closed_at_once(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession, side: str
) -> None:
    """§9 rule 3 (item 28): a second attach of one direction is closed at once; the first keeps working."""
    refs = await create(engine_url, connect)
    first = await session.ws_connect(channel_url(engine_url, refs[side]))
    second = await session.ws_connect(channel_url(engine_url, refs[side]))
    closing = await asyncio.wait_for(second.receive(), 5 * TIME_FACTOR)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert second.closed or closing.type is WSMsgType.CLOSE
    other = "reader" if side == "writer" else "writer"
    peer = await session.ws_connect(channel_url(engine_url, refs[other]))
    writer, reader = (first, peer) if side == "writer" else (peer, first)
    await writer.send_str("after the refused attach")
    await writer.close()
    assert await read_all(reader) == [(WSMsgType.TEXT, "after the refused attach")]


async def test_full_buffer_holds_the_writer_back(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession
) -> None:
    """§9 rule 6: with ``buffer_size`` items waiting the writer is not read, and nothing is lost."""
    refs = await create(engine_url, connect, buffer_size=2)
    writer = await session.ws_connect(channel_url(engine_url, refs["writer"]))
    for index in range(50):
        await writer.send_str(str(index))
    closing = asyncio.create_task(writer.close())  # its close frame waits behind the unread items
    reader = await session.ws_connect(channel_url(engine_url, refs["reader"]))
    assert [data for _, data in await read_all(reader)] == [str(i) for i in range(50)]
    await closing


async def test_keys_are_url_encoded_by_clients(
    engine_url: str, connect: Connect, session: aiohttp.ClientSession
) -> None:
    """§9 rule 2: the key arrives URL-encoded; a percent-encoded UUID key still opens the channel."""
    refs = await create(engine_url, connect)
    ref = refs["writer"]
    encoded = "".join(f"%{ord(c):02X}" for c in ref["access_key"])
    ws = await session.ws_connect(f"{engine_url}/ws/channels/{ref['channel_id']}?key={encoded}&dir=write")
    await ws.close()
