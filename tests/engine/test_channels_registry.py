"""engine/channels.py: the channel registry's bookkeeping (expiry, removal)."""

from __future__ import annotations

import asyncio

import pytest

from pyiii.engine import channels as ch
from pyiii.engine.channels import ChannelRegistry


async def test_many_channels_share_one_expiry_timer() -> None:
    """Creating channels arms one sweep timer, not one timer per channel (no callbacks pile up under load)."""
    registry = ChannelRegistry()
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for _ in range(500):
        registry.create()
    assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]


async def test_removed_channel_is_gone() -> None:
    """remove() forgets a channel: its refs no longer open it."""
    registry = ChannelRegistry()
    refs = registry.create()
    writer = refs["writer"]
    assert registry.lookup(writer["channel_id"], writer["access_key"], "write") is not None
    registry.remove(writer["channel_id"])
    assert registry.lookup(writer["channel_id"], writer["access_key"], "write") is None


async def test_unattached_channels_expire_and_attached_ones_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    """§9 rule 8: a channel not fully attached is removed after the TTL; a fully attached one is kept."""
    monkeypatch.setattr(ch, "UNATTACHED_TTL_S", 0.05)
    registry = ChannelRegistry()
    idle = registry.create()["writer"]["channel_id"]
    busy = registry.create()["writer"]["channel_id"]
    registry.channels[busy].writer_attached = registry.channels[busy].reader_attached = True
    await asyncio.sleep(0.3)  # the behaviour under test is a timeout: wait past it (TTL 0.05 s)
    assert idle not in registry.channels
    assert busy in registry.channels


async def test_channels_their_opener_removes_stay_out_of_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """``expires=False`` (an HTTP request's channels, removed when the request ends): no sweep entry
    and no timer, so a busy server does not hold two entries per request for the TTL; such a channel
    stays until removed, even when unattached past the TTL."""
    monkeypatch.setattr(ch, "UNATTACHED_TTL_S", 0.05)
    registry = ChannelRegistry()
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    kept = [registry.open(engine_end="read", expires=False) for _ in range(1000)]
    assert len(loop._scheduled) == before  # type: ignore[attr-defined]
    assert len(registry._expiry) == 0
    swept = registry.open()  # an ordinary channel still expires
    await asyncio.sleep(0.3)  # the behaviour under test is a timeout: wait past it (TTL 0.05 s)
    assert swept.id not in registry.channels
    assert all(channel.id in registry.channels for channel in kept)
    for channel in kept:
        registry.remove(channel.id)
    assert registry.channels == {}


async def test_engine_end_has_no_key() -> None:
    """A channel opened with ``engine_end`` has no access key for that end: no socket can attach to it."""
    registry = ChannelRegistry()
    channel = registry.open(engine_end="write")
    ref = registry.ref(channel, "read")
    assert registry.lookup(channel.id, ref["access_key"], "read") is channel
    assert registry.lookup(channel.id, ref["access_key"], "write") is None
    assert registry.lookup(channel.id, "", "write") is None
    with pytest.raises(ValueError):
        registry.ref(channel, "write")


async def test_ids_and_keys_are_uuid4_and_distinct() -> None:
    """§9 rule 1: channel ids and access keys are UUID v4 strings; keys never repeat."""
    import uuid

    registry = ChannelRegistry()
    seen: set[str] = set()
    for _ in range(600):  # more than one pooled random read
        refs = registry.create()
        for value in (
            refs["writer"]["channel_id"],
            refs["writer"]["access_key"],
            refs["reader"]["access_key"],
        ):
            assert str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4
        seen.update((refs["writer"]["access_key"], refs["reader"]["access_key"]))
    assert len(seen) == 1200


async def test_preloaded_items_come_first_and_put_wakes_waiter() -> None:
    """Items preloaded before the queue exists are read first, in order; put() resolves the waiter."""
    registry = ChannelRegistry()
    channel = registry.open()
    assert not channel.used
    channel.preload([(False, b"a")])
    assert channel.used
    channel.waiter = asyncio.get_running_loop().create_future()
    await channel.put((True, b"b"))
    assert channel.waiter.done()
    assert [channel.queue.get_nowait(), channel.queue.get_nowait()] == [(False, b"a"), (True, b"b")]
