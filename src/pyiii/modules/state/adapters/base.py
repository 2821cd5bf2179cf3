"""The adapter contract (spec/state.md §8.1): the verbs every storage backend implements.

Values cross this boundary as their canonical JSON encoding (``bytes``, see ``values.py``); an
adapter stores and returns those bytes untouched and never interprets them. ``None`` stands for an
absent key: a stored JSON ``null`` is the text ``b"null"``, so the two never meet.

Every adapter guarantees:

1. ``set``, ``delete`` and ``update`` of one key are atomic and linearizable, and a write is visible
   to reads only once it is committed (durable, for a persistent store).
2. For one key, write calls *return* in commit order: the module emits each write's event right after
   its call returns, so this is what makes per-key event order equal commit order (§7.5).
3. Keys keep insertion positions drawn from a counter that only increases (§5.5, §5.7); lists read
   one consistent snapshot of a scope, in position order.
4. A scope exists exactly while it holds at least one key (C1).
5. Failures are raised as :class:`~pyiii.modules.state.errors.StoreError` and leave nothing written.

The update-op logic is not here: ``update`` receives a pure ``compute`` function (the module's
``apply_ops`` plus size guard) and only supplies the atomic read-compute-write around it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

#: The new value's encoding from the current one (``None`` when absent). Pure: an adapter may call it
#: more than once (optimistic retries) and commits the result of the last call. An exception it
#: raises aborts the update, writes nothing and propagates to the caller.
Compute = Callable[[bytes | None], bytes]

#: ``(key, encoded value, position)`` of one entry.
Entry = tuple[str, bytes, int]

#: Receives a committed write: ``(event_type, scope, key, previous value or None, new value or None,
#: position)``, event types as in spec §7.4 (``state:created``, ``state:updated``, ``state:deleted``);
#: ``position`` orders events (see :meth:`StateAdapter.event_position`).
EventSink = Callable[[str, str, str, bytes | None, bytes | None, Any], None]


class StateAdapter(ABC):
    """A storage backend of the state module. Create it, ``await open()``, use it, ``await close()``."""

    #: Random identifier of the store's contents (§5.7): persisted by persistent stores, new on every
    #: start for in-memory ones. Set by :meth:`open`.
    epoch: str = ""

    #: Whether the store is shared by several engines and reports every committed write, from any of
    #: them, through :meth:`watch` (§7.7). The module then fires triggers only from that feed; otherwise
    #: it fires them itself right after each write returns.
    shared_events: bool = False

    #: Whether every request method awaits nothing but futures resolved on the loop (no task of its
    #: own needed: no ``asyncio.timeout``, no ``current_task``). The module's functions are then
    #: finished without a task when they suspend (``ModuleHost.register_function(taskless=...)``).
    awaits_only_futures: bool = False

    async def watch(self, sink: EventSink) -> None:
        """Start handing every committed write to ``sink`` in commit order (``shared_events`` only)."""
        raise NotImplementedError

    def event_position(self) -> Any:
        """For ``shared_events``: a comparable position such that every write this engine saw commit
        (its own, or reported to the sink) is at or before it. Triggers registered now skip events at
        or before it, so a write that committed before a registration does not fire it (§7.1 rule 4)."""
        return None

    async def events_delivered(self) -> None:
        """Wait until every write committed so far has been handed to the sink (``shared_events``)."""
        return None

    @abstractmethod
    async def open(self) -> None:
        """Open or create the store; raise ``StateStartupError`` if it cannot be used."""

    @abstractmethod
    async def close(self) -> None:
        """Finish accepted writes and release the store. Acknowledged writes are already durable."""

    @abstractmethod
    async def get(self, scope: str, key: str) -> bytes | None:
        """The value of ``key``, or ``None`` when absent."""

    @abstractmethod
    async def set(self, scope: str, key: str, value: bytes) -> bytes | None:
        """Store ``value``; return the previous value (``None`` when the key was absent)."""

    @abstractmethod
    async def delete(self, scope: str, key: str) -> bytes | None:
        """Remove ``key`` in one atomic step; return the value it held (``None`` when absent)."""

    @abstractmethod
    async def update(self, scope: str, key: str, compute: Compute) -> tuple[bytes | None, bytes]:
        """Atomically read the value, ``compute`` the new one and store it: ``(previous, new)``."""

    @abstractmethod
    async def list_items(self, scope: str) -> list[tuple[str, bytes]]:
        """Every ``(key, value)`` of ``scope`` in position order (``[]`` for an unknown scope)."""

    @abstractmethod
    async def list_keys(self, scope: str) -> list[str]:
        """Every key of ``scope`` in position order."""

    @abstractmethod
    async def list_after(self, scope: str, after: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries with a position above ``after``, ascending, from one snapshot."""

    @abstractmethod
    async def list_groups(self) -> list[str]:
        """The scopes holding at least one key, in any order."""


__all__ = ["Compute", "Entry", "EventSink", "StateAdapter"]
