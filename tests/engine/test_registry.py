"""engine/registry.py: picking the owner of a function (§5.1 rule 2)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pyiii.engine.registry import FunctionEntry


def owner(live: bool = True, probing: bool = False) -> Any:
    return SimpleNamespace(live=live, probing=probing)


def entry_with(*owners: Any) -> FunctionEntry:
    entry = FunctionEntry("default", "a::f")
    entry.owners.extend(owners)
    return entry


def test_a_single_owner_is_picked_while_live_and_not_under_a_probe() -> None:
    peer = owner()
    entry = entry_with(peer)
    assert [entry.pick_owner() for _ in range(3)] == [peer, peer, peer]
    peer.probing = True
    assert entry.pick_owner() is None
    peer.probing, peer.live = False, False
    assert entry.pick_owner() is None
    assert entry_with().pick_owner() is None


def test_owners_take_turns_and_unusable_ones_are_skipped() -> None:
    a, b, c = owner(), owner(probing=True), owner()
    entry = entry_with(a, b, c)
    picks = [entry.pick_owner() for _ in range(4)]
    assert picks[0] is not picks[1]
    assert all(p is a or p is c for p in picks)
    assert picks[0] is picks[2] and picks[1] is picks[3]
    a.live = c.live = False
    assert entry.pick_owner() is None
