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
