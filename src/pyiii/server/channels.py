"""``GET /ws/channels/{channel_id}?key=…&dir=read|write`` (spec/protocol.md §9)."""

from __future__ import annotations

from typing import Any

from aiohttp import WSMsgType, web

from pyiii.engine.channels import Channel, ChannelRegistry
from pyiii.engine.peer import MAX_MESSAGE_BYTES


def make_channel_handler(registry: ChannelRegistry) -> Any:
    async def channel_socket(request: web.Request) -> web.StreamResponse:
        direction = request.query.get("dir")
        channel = registry.lookup(request.match_info["channel_id"], request.query.get("key"), direction)
        if channel is None:
            raise web.HTTPNotFound(text="unknown channel or wrong key")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, decode_text=False)
        await ws.prepare(request)
        attr = "writer_attached" if direction == "write" else "reader_attached"
        if getattr(channel, attr):
            await ws.close(code=1008, message=b"already attached")  # §9 rule 3
            return ws
        setattr(channel, attr, True)
        if direction == "write":
            await _pump_writer(registry, channel, ws)
        else:
            await _pump_reader(registry, channel, ws)
        return ws

    return channel_socket


async def _pump_writer(registry: ChannelRegistry, channel: Channel, ws: web.WebSocketResponse) -> None:
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                # A full buffer blocks here, so the writer socket stops being read (§9 rule 6).
                await channel.put((msg.type is WSMsgType.TEXT, msg.data))
    finally:
        await channel.put(None)
        channel.writer_done = True
        registry.finished(channel)


async def _pump_reader(registry: ChannelRegistry, channel: Channel, ws: web.WebSocketResponse) -> None:
    try:
        while True:
            item = await channel.queue.get()
            if item is None:
                break
            is_text, payload = item
            await ws.send_frame(payload, WSMsgType.TEXT if is_text else WSMsgType.BINARY)
        await ws.close(code=1000)
    finally:
        channel.reader_done = True
        registry.finished(channel)
