"""WebSocket data frames built here and written in batches, one socket write per loop iteration.

aiohttp writes every ``send_frame`` to the socket at once: one ``send`` system call per message, and
on loopback each one also runs the receiver's TCP path on the sender's CPU. A worker connection
carries many small messages at a time (a todo of the live example is about 12 of them), so those
writes were a quarter of the engine's CPU with a remote worker (bench/RESULTS.md, todo_e2e).
:class:`FrameBatch` collects the text frames a connection sends during one loop iteration and writes
them with one ``writelines`` (a single ``writev`` on uvloop) when the loop next runs its callbacks,
so a message goes out in the same iteration's wake-up, never later than that.

Control frames (ping, pong, close) still go through aiohttp; :meth:`FrameBatch.flush` runs before a
close so that queued messages precede the close frame. Frames are never compressed: RFC 7692 §6
lets an endpoint send uncompressed messages (RSV1 clear) even when permessage-deflate was agreed.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable
from typing import Any, Final

_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack
_FIN_TEXT: Final = 0x81
_MASKED: Final = 0x80

_c_mask: Callable[[bytes, bytearray], None] | None
try:  # aiohttp's C masking (its own helper since 3.11); the pure-Python fallback is ~6x slower
    from aiohttp._websocket.helpers import websocket_mask as _c_mask
except ImportError:  # pragma: no cover - older aiohttp
    _c_mask = None


def text_frame_header(size: int, mask_bit: int = 0) -> bytes:
    """The header of one final text frame carrying ``size`` payload bytes (RFC 6455 §5.2)."""
    if size < 126:
        return _LEN1(_FIN_TEXT, size | mask_bit)
    if size < 65536:
        return _LEN2(_FIN_TEXT, 126 | mask_bit, size)
    return _LEN3(_FIN_TEXT, 127 | mask_bit, size)


def ws_text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, final WebSocket text frame (server to client, RFC 6455 §5.2)."""
    return text_frame_header(len(payload)) + payload


def ws_close_frame(code: int, reason: bytes = b"") -> bytes:
    """An unmasked Close frame with ``code`` and ``reason`` (RFC 6455 §5.5.1: a reason of at most
    123 bytes of UTF-8; a longer one is cut at a character boundary, never inside a character)."""
    if len(reason) > 123:
        reason = reason[:123].decode("utf-8", "ignore").encode()
    body = struct.pack("!H", code) + reason
    return _LEN1(0x88, len(body)) + body


_random = random.Random()


def mask_payload(key: bytes, payload: bytes) -> bytes:
    """``payload`` XORed with the 4-byte masking ``key`` (RFC 6455 §5.3)."""
    if _c_mask is not None:
        out = bytearray(payload)
        _c_mask(key, out)
        return bytes(out)
    size = len(payload)
    stretched = (key * ((size >> 2) + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stretched, "big")).to_bytes(size, "big")


def masked_text_frame(payload: bytes) -> bytes:
    """``payload`` as one masked, final text frame (client to server, RFC 6455 §5.3): a fresh
    random key per frame, as aiohttp's client does."""
    key = _random.getrandbits(32).to_bytes(4, "big")
    return text_frame_header(len(payload), _MASKED) + key + mask_payload(key, payload)


class FrameBatch:
    """The text frames of one connection, written once per loop iteration.

    :meth:`write` returns False when the transport is closing (the caller treats the socket as gone).
    Order is kept: frames leave in the order they were written. Memory is bounded by the same rule
    as before batching: a peer that does not read fills the kernel buffer, then the transport's
    buffer, and the keepalive (a missed pong) closes it.
    """

    __slots__ = ("_late", "_loop", "_mask", "_pending", "_transport")

    def __init__(
        self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop, *, mask: bool
    ) -> None:
        self._transport: Any = transport
        self._loop = loop
        self._mask = mask
        self._pending: list[bytes] | None = None
        self._late: list[bytes] | None = None

    def write(self, payload: bytes) -> bool:
        pending = self._pending
        if pending is None:
            if self._transport.is_closing():
                return False
            self._pending = pending = []
            self._loop.call_soon(self.flush)
        if self._mask:
            pending.append(masked_text_frame(payload))
        else:
            pending.append(text_frame_header(len(payload)))
            pending.append(payload)
        return True

    def write_late(self, payload: bytes) -> bool:
        """As :meth:`write`, for a frame nobody waits on (a log record): it goes out in the same
        socket write, after the frames written with :meth:`write` during this iteration, so that
        the peer handles those first (late frames keep their own order)."""
        if not self.write(payload):
            return False
        pending = self._pending
        assert pending is not None
        size = 1 if self._mask else 2  # the parts of the frame just written: move them
        if self._late is None:
            self._late = pending[-size:]
        else:
            self._late += pending[-size:]
        del pending[-size:]
        return True

    def flush(self) -> None:
        """Write what is pending now (also before a close frame)."""
        pending, self._pending = self._pending, None
        late, self._late = self._late, None
        if late:
            pending = late if not pending else pending + late
        if not pending:
            return
        transport = self._transport
        if transport.is_closing():
            return
        try:
            transport.writelines(pending)
        except (ConnectionError, RuntimeError):  # the socket died under us; the read side reports it
            pass


__all__ = [
    "FrameBatch",
    "mask_payload",
    "masked_text_frame",
    "text_frame_header",
    "ws_close_frame",
    "ws_text_frame",
]
