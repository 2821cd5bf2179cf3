"""An in-memory keyspace: scopes of keys with insertion positions (spec/state.md §5.5, §5.7, §8.2).

The in-memory adapter is this structure; the SQLite adapter keeps one as its committed read cache.
A scope is a ``dict`` (Python keeps insertion order and keeps a key's place when it is overwritten,
which is exactly §5.5) mapping a key to ``(position, encoded value)``. Positions only grow, so dict
order is position order and a page lookup is a binary search over a per-scope list of positions,
rebuilt only after a key was created or deleted.

No method awaits: callers on the event loop get atomic, consistent snapshots for free.
"""

from __future__ import annotations

from bisect import bisect_right

from .base import Entry


class _Scope:
    __slots__ = ("entries", "order", "order_keys")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes]] = {}
        #: Positions and keys in order, for paging; ``None`` after a key was created or deleted.
        self.order: list[int] | None = None
        self.order_keys: list[str] = []


class Keyspace:
    """``scope -> key -> (position, value)``."""

    __slots__ = ("_scopes",)

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}

    def get(self, scope: str, key: str) -> tuple[int, bytes] | None:
        s = self._scopes.get(scope)
        return None if s is None else s.entries.get(key)

    def put(self, scope: str, key: str, position: int, value: bytes) -> None:
        """Store ``value``. ``position`` is used when the key is new; an existing key keeps its own."""
        s = self._scopes.get(scope)
        if s is None:
            s = self._scopes[scope] = _Scope()
        entries = s.entries
        current = entries.get(key)
        if current is None:
            entries[key] = (position, value)
            s.order = None
        else:
            entries[key] = (current[0], value)

    def remove(self, scope: str, key: str) -> tuple[int, bytes] | None:
        s = self._scopes.get(scope)
        if s is None:
            return None
        current = s.entries.pop(key, None)
        if current is not None:
            s.order = None
            if not s.entries:
                del self._scopes[scope]
        return current

    def items(self, scope: str) -> list[tuple[str, bytes]]:
        s = self._scopes.get(scope)
        return [] if s is None else [(key, entry[1]) for key, entry in s.entries.items()]

    def keys(self, scope: str) -> list[str]:
        s = self._scopes.get(scope)
        return [] if s is None else list(s.entries)

    def after(self, scope: str, after: int, limit: int) -> list[Entry]:
        s = self._scopes.get(scope)
        if s is None:
            return []
        if s.order is None:
            s.order = [entry[0] for entry in s.entries.values()]
            s.order_keys = list(s.entries)
        start = bisect_right(s.order, after)
        out: list[Entry] = []
        entries = s.entries
        for key in s.order_keys[start : start + limit]:
            position, value = entries[key]
            out.append((key, value, position))
        return out

    def scopes(self) -> list[str]:
        return list(self._scopes)

    def max_position(self) -> int:
        return max(
            (entry[0] for s in self._scopes.values() for entry in s.entries.values()),
            default=0,
        )


__all__ = ["Keyspace"]
