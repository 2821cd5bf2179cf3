"""``kv`` with ``store_method: in_memory`` (spec/state.md §8.2): the reference adapter.

Nothing is persisted. Every operation runs to completion on the event loop without awaiting, so each
is atomic, and writes to one key return in the order they were made (contract rule 2).
"""

from __future__ import annotations

import logging
import uuid

from .base import Compute, Entry, StateAdapter
from .keyspace import Keyspace


class MemoryAdapter(StateAdapter):
    """The in-memory store. A new random epoch on every start (§5.7).

    ``label`` names the module using it in the startup warning (the stream module reuses this store).
    """

    awaits_only_futures = True

    def __init__(self, *, label: str = "state") -> None:
        self.label = label
        self._keys = Keyspace()
        self._clock = 0

    async def open(self) -> None:
        self.epoch = uuid.uuid4().hex
        logging.getLogger(f"pyiii.{self.label}").warning(
            "%s uses the in-memory store: data is lost on every stop; do not use it in production", self.label
        )

    async def close(self) -> None:
        return None

    async def get(self, scope: str, key: str) -> bytes | None:
        entry = self._keys.get(scope, key)
        return None if entry is None else entry[1]

    async def set(self, scope: str, key: str, value: bytes) -> bytes | None:
        return self._put(scope, key, value)

    async def delete(self, scope: str, key: str) -> bytes | None:
        entry = self._keys.remove(scope, key)
        return None if entry is None else entry[1]

    async def update(self, scope: str, key: str, compute: Compute) -> tuple[bytes | None, bytes]:
        entry = self._keys.get(scope, key)
        old = None if entry is None else entry[1]
        new = compute(old)
        self._put(scope, key, new)
        return old, new

    async def list_items(self, scope: str) -> list[tuple[str, bytes]]:
        return self._keys.items(scope)

    async def list_keys(self, scope: str) -> list[str]:
        return self._keys.keys(scope)

    async def list_after(self, scope: str, after: int, limit: int) -> list[Entry]:
        return self._keys.after(scope, after, limit)

    async def list_groups(self) -> list[str]:
        return self._keys.scopes()

    def _put(self, scope: str, key: str, value: bytes) -> bytes | None:
        entry = self._keys.get(scope, key)
        if entry is None:
            self._clock += 1
            self._keys.put(scope, key, self._clock, value)
            return None
        self._keys.put(scope, key, entry[0], value)
        return entry[1]


__all__ = ["MemoryAdapter"]
