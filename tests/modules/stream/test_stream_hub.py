"""The output side of one connection (hub.py) over an in-memory wire: order, slow consumers, memory."""

from __future__ import annotations

import asyncio

from pyiii.modules.stream.hub import Connection


class PausableWire:
    """A :class:`~pyiii.modules.stream.hub.WireIO` recording writes, pausable like a full socket."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False
        self._resumed = asyncio.Event()

    def writable(self) -> bool:
        return not self.paused

    def closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drain(self) -> None:
        await self._resumed.wait()

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()


async def test_backlog_is_written_in_order_then_released() -> None:
    """Frames queued while the wire is paused follow the earlier ones in order; the emptied queue is freed."""
    wire = PausableWire()
    connection = Connection("c", wire, queue_limit=8)
    connection.send(b"1")
    wire.paused = True
    for frame in (b"2", b"3", b"4"):
        connection.send(frame)
    assert connection.backlog == 3
    wire.resume()
    await connection.flushed()
    assert wire.written == [b"1", b"2", b"3", b"4"]
    assert connection.backlog == 0
    assert connection._queue is None  # an idle connection holds no queue (memory per idle client)


async def test_overflow_drops_the_queue_and_reports_a_slow_consumer() -> None:
    """A frame beyond ``queue_limit`` makes a slow consumer: its queue is dropped, later frames ignored."""
    wire = PausableWire()
    dropped: list[Connection] = []
    connection = Connection("c", wire, queue_limit=2, on_slow=dropped.append)
    wire.paused = True
    for frame in (b"1", b"2", b"3", b"4"):
        connection.send(frame)
    assert dropped == [connection]
    assert connection.slow and connection.closing
    assert connection.backlog == 0
    wire.resume()
    await connection.flushed()
    assert wire.written == []
