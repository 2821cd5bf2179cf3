"""Streaming channels (spec/protocol.md §9): ``ChannelReader`` / ``ChannelWriter`` over
``/ws/channels/{channel_id}?key=<access_key>&dir=read|write``, and ``create_channel``.

A channel ref ``{channel_id, access_key, direction}`` found anywhere in an incoming payload is turned
into a live reader (``direction == "read"``) or writer (``"write"``) before the handler runs
(§10.5 rule 8). Sockets open lazily, on the event loop of the first use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from urllib.parse import quote

import aiohttp

if TYPE_CHECKING:
    from pyiii.sdk.client import III

__all__ = [
    "Channel",
    "ChannelReader",
    "ChannelWriter",
    "StreamChannelRef",
    "create_channel",
    "create_channel_async",
    "is_channel_ref",
    "materialize_channel_refs",
]

log = logging.getLogger("pyiii.sdk.channels")

CREATE_CHANNEL = "engine::channels::create"
#: Binary writes are split into frames of at most this size.
MAX_FRAME_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class StreamChannelRef(TypedDict):
    channel_id: str
    access_key: str
    direction: Literal["read", "write"]


def is_channel_ref(value: Any) -> bool:
    return (
        type(value) is dict
        and isinstance(value.get("channel_id"), str)
        and isinstance(value.get("access_key"), str)
        and value.get("direction") in ("read", "write")
    )


def channel_url(base: str, ref: StreamChannelRef, direction: str) -> str:
    key = quote(ref["access_key"], safe="")
    return f"{base.rstrip('/')}/ws/channels/{ref['channel_id']}?key={key}&dir={direction}"


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("III_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


class _ChannelSocket:
    """One lazily opened channel WebSocket (its own session, on the loop of first use). Its URL is
    built on first use too: most HTTP handlers never touch their request's two channels."""

    def __init__(self, base_url: str, ref: StreamChannelRef, direction: str) -> None:
        self._base_url = base_url
        self._ref = ref
        self._direction = direction
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def url(self) -> str:
        return channel_url(self._base_url, self._ref, self._direction)

    async def open(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            self._session = aiohttp.ClientSession()
            try:
                self._ws = await self._session.ws_connect(
                    self.url, headers=_auth_headers(), max_msg_size=MAX_MESSAGE_BYTES, autoclose=True
                )
            except BaseException:
                await self._session.close()
                self._session = None
                raise
        return self._ws

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class ChannelWriter:
    """Writing end of a channel: every ``write`` / ``send_message`` becomes one item (in order)."""

    def __init__(self, base_url: str, ref: StreamChannelRef) -> None:
        self.ref = ref
        self._socket = _ChannelSocket(base_url, ref, "write")

    async def write(self, data: bytes) -> None:
        """Send binary data (split into frames of at most 64 KiB)."""
        if not data:
            return
        ws = await self._socket.open()
        view = memoryview(data)
        for start in range(0, len(view), MAX_FRAME_BYTES):
            await ws.send_bytes(bytes(view[start : start + MAX_FRAME_BYTES]))

    async def send_message_async(self, message: str) -> None:
        """Send one text item (e.g. HTTP streaming control JSON)."""
        ws = await self._socket.open()
        await ws.send_str(message)

    async def close_async(self) -> None:
        """Finish the stream: the reader gets the remaining items, then the end."""
        await self._socket.close()

    async def __aenter__(self) -> ChannelWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()


class ChannelReader:
    """Reading end of a channel. ``async for chunk in reader`` yields binary items; text items go to
    the ``on_message`` callbacks. ``items()`` yields both kinds, as ``bytes`` and ``str``."""

    def __init__(self, base_url: str, ref: StreamChannelRef) -> None:
        self.ref = ref
        self._socket = _ChannelSocket(base_url, ref, "read")
        self._callbacks: list[Callable[[str], Any]] = []

    def on_message(self, callback: Callable[[str], Any]) -> None:
        self._callbacks.append(callback)

    async def items(self) -> AsyncIterator[bytes | str]:
        """Every item, in order, until the writer finishes."""
        ws = await self._socket.open()
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    yield msg.data
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    yield msg.data
                else:
                    break
        finally:
            await self._socket.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for item in self.items():
            if isinstance(item, bytes):
                yield item
                continue
            for callback in self._callbacks:
                try:
                    callback(item)
                except Exception:
                    log.exception("channel message callback failed")

    async def read_all(self) -> bytes:
        """All binary items concatenated."""
        return b"".join([chunk async for chunk in self])

    async def close_async(self) -> None:
        await self._socket.close()


@dataclass
class Channel:
    """A channel pair: pass ``reader_ref`` / ``writer_ref`` to another worker in a payload."""

    writer: ChannelWriter
    reader: ChannelReader
    writer_ref: StreamChannelRef
    reader_ref: StreamChannelRef


def _from_ref(ref: StreamChannelRef, base_url: str) -> ChannelReader | ChannelWriter:
    return ChannelReader(base_url, ref) if ref["direction"] == "read" else ChannelWriter(base_url, ref)


def materialize_channel_refs(data: Any, base_url: str) -> Any:
    """``data`` with every channel ref replaced by a reader or writer (containers copied only if needed)."""
    if type(data) is dict:
        if "channel_id" in data and is_channel_ref(data):
            return _from_ref(data, base_url)  # type: ignore[arg-type]
        out = None
        for key, value in data.items():
            if type(value) is dict or type(value) is list:
                new = materialize_channel_refs(value, base_url)
                if new is not value:
                    if out is None:
                        out = dict(data)
                    out[key] = new
        return data if out is None else out
    if type(data) is list:
        items = None
        for i, value in enumerate(data):
            if type(value) is dict or type(value) is list:
                new = materialize_channel_refs(value, base_url)
                if new is not value:
                    if items is None:
                        items = list(data)
                    items[i] = new
        return data if items is None else items
    return data


def materialize_keys(data: dict[str, Any], keys: tuple[str, ...], base_url: str) -> dict[str, Any]:
    """:func:`materialize_channel_refs` of a dict known to hold channel refs only at the top-level
    ``keys`` (``pyiii.engine.local.PayloadHint``): copied only if one of them holds one."""
    out = None
    for key in keys:
        value = data.get(key)
        if type(value) is dict and "channel_id" in value and is_channel_ref(value):
            if out is None:
                out = dict(data)
            out[key] = _from_ref(value, base_url)  # type: ignore[arg-type]
    return data if out is None else out


def _channel_from_refs(client: III, result: Any) -> Channel:
    base = client.channel_base_url()
    if base is None:
        raise RuntimeError("channels need the engine's WebSocket address; this client has none")
    writer_ref: StreamChannelRef = result["writer"]
    reader_ref: StreamChannelRef = result["reader"]
    return Channel(ChannelWriter(base, writer_ref), ChannelReader(base, reader_ref), writer_ref, reader_ref)


def create_channel(client: III, buffer_size: int | None = None) -> Channel:
    """Create a channel with ``engine::channels::create`` (blocking; not on the client's own loop)."""
    payload = {} if buffer_size is None else {"buffer_size": buffer_size}
    return _channel_from_refs(client, client.trigger({"function_id": CREATE_CHANNEL, "payload": payload}))


async def create_channel_async(client: III, buffer_size: int | None = None) -> Channel:
    """Create a channel with ``engine::channels::create``."""
    payload = {} if buffer_size is None else {"buffer_size": buffer_size}
    return _channel_from_refs(
        client, await client.trigger_async({"function_id": CREATE_CHANNEL, "payload": payload})
    )
