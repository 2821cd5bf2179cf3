"""The client wire protocol of the stream listener, without I/O (spec/stream.md §3.5, §3.6).

Bytes in, messages out; messages in, bytes out. Nothing here touches a socket, so every frame can be
tested byte for byte.

* :func:`parse_client_message` turns one received text into a :class:`Join`, :class:`Leave`,
  :data:`PING` or an :class:`Ignored` carrying the reason (§3.4 step 5: log and drop).
* The ``*_event`` builders and :func:`stream_frame` build server frames as **bytes**, once per
  event (S5): values arrive as canonical JSON bytes (``state/values.py``: compact, UTF-8, keys in
  byte order) and are spliced in without being decoded again. The wrapper keys are written in the
  order §3.6 gives, which no dict encoder with sorted keys would produce.
* :func:`ws_text_frame` (``pyiii.protocol.wsframes``) wraps a payload in an unmasked WebSocket text
  frame header (RFC 6455 §5.2). A server frame is the same bytes for every client, so the fan-out
  builds it once and writes the same object to every matching socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from pyiii.protocol.wsframes import ws_close_frame, ws_text_frame

_encode_str = msgspec.json.encode
_decode = msgspec.json.Decoder().decode

#: The text of the reply to a JSON ``{"type":"ping"}`` (S7); the only frame that is not a stream frame.
PONG: Final = b'{"type":"pong"}'


@dataclass(frozen=True, slots=True)
class Join:
    """A ``join`` (§3.5): ``item_id`` is ``None`` for a group subscription."""

    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None


@dataclass(frozen=True, slots=True)
class Leave:
    """A ``leave`` (§3.5, §3.8): same fields as a join; only ``subscription_id`` selects what is removed."""

    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    """A JSON ``{"type":"ping"}`` (S7)."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that is dropped; ``reason`` is ``None`` for blank text (dropped without a warning)."""

    reason: str | None


PING: Final = Ping()
BLANK: Final = Ignored(None)

ClientMessage = Join | Leave | Ping | Ignored


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Decode one client text or binary message (§3.4 step 5, §3.5). Never raises.

    ``type`` is matched exactly; unknown ``data`` fields are ignored; a join or leave with a missing
    or non-string required field, or an ``id`` that is neither a string nor ``null``, is ignored whole.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return Ignored("binary message is not UTF-8")
    if not text.strip():
        return BLANK
    try:
        message = _decode(text)
    except (msgspec.DecodeError, ValueError) as exc:
        return Ignored(f"invalid JSON: {exc}")
    if not isinstance(message, dict):
        return Ignored("message is not a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return PING
    if kind not in ("join", "leave"):
        return Ignored(f"unknown message type {_short(kind)}")
    data = message.get("data")
    if not isinstance(data, dict):
        return Ignored(f"{kind} without a data object")
    fields = []
    for name in ("subscriptionId", "streamName", "groupId"):
        value = data.get(name)
        if type(value) is not str:
            return Ignored(f"{kind}: data.{name} is missing or not a string")
        fields.append(value)
    item = data.get("id")
    if item is not None and type(item) is not str:
        return Ignored(f"{kind}: data.id is neither a string nor null")
    cls = Join if kind == "join" else Leave
    return cls(fields[0], fields[1], fields[2], item)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------- server frames


def json_string(text: str) -> bytes:
    """A JSON string literal: UTF-8, non-ASCII not escaped (§3.6 Encoding)."""
    return _encode_str(text)


def stream_frame(
    timestamp_ms: int, stream_name: str, group_id: str, item_id: str | None, event: bytes
) -> bytes:
    """The §3.6 wrapper around an ``event`` object (already encoded), keys in the spec's order."""
    return b"".join(
        (
            b'{"type":"stream","timestamp":',
            str(int(timestamp_ms)).encode(),
            b',"streamName":',
            _encode_str(stream_name),
            b',"groupId":',
            _encode_str(group_id),
            b',"id":',
            b"null" if item_id is None else _encode_str(item_id),
            b',"event":',
            event,
            b"}",
        )
    )


#: Event kinds of data changes (§3.6 table).
CREATE: Final = "create"
UPDATE: Final = "update"
DELETE: Final = "delete"


def change_event(kind: str, value: bytes) -> bytes:
    """``{"type":"create"|"update"|"delete","data":<value>}``; ``value`` is canonical JSON bytes."""
    return b'{"type":"' + kind.encode() + b'","data":' + value + b"}"


def sync_item_event(value: bytes | None) -> bytes:
    """Reply to an item join: the value, ``null`` when missing."""
    return b'{"type":"sync","data":' + (b"null" if value is None else value) + b"}"


def sync_group_event(values: bytes) -> bytes:
    """Reply to a group join; ``values`` is the encoded JSON array of ``stream::list``."""
    return b'{"type":"sync","data":' + values + b"}"


def custom_event(event_type: str, data: bytes) -> bytes:
    """``{"type":"event","event":{"type":<custom>,"data":<any>}}`` of ``stream::send``."""
    return b'{"type":"event","event":{"type":' + _encode_str(event_type) + b',"data":' + data + b"}}"


UNAUTHORIZED_EVENT: Final = b'{"type":"unauthorized"}'


# ------------------------------------------------------------------------------------- WebSocket framing
# (shared with the worker socket: pyiii/protocol/wsframes.py)

PONG_WIRE: Final = ws_text_frame(PONG)


__all__ = [
    "BLANK",
    "CREATE",
    "DELETE",
    "PING",
    "PONG",
    "PONG_WIRE",
    "UNAUTHORIZED_EVENT",
    "UPDATE",
    "ClientMessage",
    "Ignored",
    "Join",
    "Leave",
    "Ping",
    "change_event",
    "custom_event",
    "json_string",
    "parse_client_message",
    "stream_frame",
    "sync_group_event",
    "sync_item_event",
    "ws_close_frame",
    "ws_text_frame",
]
