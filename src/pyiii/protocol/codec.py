"""Bytes <-> messages for the worker socket. Pure functions; fuzzed by tests/protocol/test_codec.py.

Decoding never raises: a frame is a message, :class:`Ignored` (log and drop, §2.4 rule 2, §3.1 rule 2)
or :class:`Malformed` (a known type with fields of the wrong shape; the engine answers it with an error
when the frame names a usable ``invocation_id``, D5).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from pyiii.protocol.messages import (
    IGNORED_TYPES,
    KNOWN_WORKER_TYPES,
    EngineMessage,
    WorkerMessage,
    WorkerMessageIn,
)


class Ignored(msgspec.Struct, frozen=True):
    reason: str


class Malformed(msgspec.Struct, frozen=True):
    type: str
    reason: str
    invocation_id: str | None = None
    function_id: str | None = None


_worker_in = msgspec.json.Decoder(WorkerMessageIn)
_engine_in = msgspec.json.Decoder(EngineMessage)
_worker_out_decoder = msgspec.json.Decoder(WorkerMessage)
_encoder = msgspec.json.Encoder()

encode = _encoder.encode
"""Compact JSON bytes of a message (or any JSON-able value)."""


def may_hold_channel_ref(json: bytes) -> bool:
    """Whether JSON text could decode to something holding a channel ref (protocol.md §9): a ref
    needs the key ``"channel_id"``, spelled out or with a ``\\u`` escape. (Two ``bytes.find``: a
    third of the regex below's time on a 120-byte value.)"""
    return json.find(b'"channel_id"') >= 0 or json.find(b"\\u") >= 0


#: :func:`may_hold_channel_ref` for any buffer (``msgspec.Raw`` has no ``find``): a match object
#: or ``None``. A bound regex search, so hot paths call it without a Python frame around it.
find_channel_ref_spelling = re.compile(rb'"channel_id"|\\u').search


def decode_worker_frame(frame: bytes | str) -> WorkerMessageIn | Ignored | Malformed:
    """Decode one frame a worker sent to the engine."""
    if not isinstance(frame, str) and not frame.isascii():
        # msgspec checks UTF-8 only in the fields it decodes, not inside the payloads it keeps raw;
        # those are relayed in text frames to other workers, so they must be valid (§6.5 rule 2).
        try:
            frame.decode()
        except UnicodeDecodeError:
            return Ignored("invalid UTF-8")
    try:
        return _worker_in.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:  # ValueError: bad UTF-8
        return _classify_failure(frame, exc)
    except RecursionError:  # nesting deeper than msgspec follows
        return Ignored("JSON nested too deeply")


def decode_engine_frame(frame: bytes | str) -> EngineMessage | Ignored:
    """Decode one frame the engine sent to a worker (used by the SDK)."""
    try:
        return _engine_in.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        return Ignored(f"undecodable engine frame: {exc}")


def decode_worker_message(frame: bytes | str) -> WorkerMessage:
    """Decode an SDK-built frame into Python-valued structs (tests and tooling)."""
    return _worker_out_decoder.decode(frame)


def _classify_failure(frame: bytes | str, exc: Exception) -> Ignored | Malformed:
    if not (frame.strip() if isinstance(frame, str | bytes) else frame):
        return Ignored("empty frame")
    try:
        obj: Any = msgspec.json.decode(frame)
    except (msgspec.DecodeError, ValueError):
        return Ignored("invalid JSON")
    except RecursionError:
        return Ignored("JSON nested too deeply")
    if not isinstance(obj, dict):
        return Ignored("not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in KNOWN_WORKER_TYPES:
        if isinstance(kind, str) and kind in IGNORED_TYPES:
            return Ignored(f"{kind} is not used by pyiii")
        return Ignored(f"unknown message type {kind!r}")
    inv = obj.get("invocation_id")
    fid = obj.get("function_id")
    return Malformed(
        type=kind,
        reason=str(exc),
        invocation_id=inv if isinstance(inv, str) and inv else None,
        function_id=fid if isinstance(fid, str) else None,
    )


def to_python(value: Any) -> Any:
    """A payload as Python values: decodes a relayed ``msgspec.Raw``, passes anything else through."""
    if type(value) is msgspec.Raw:
        return msgspec.json.decode(value)
    return value
