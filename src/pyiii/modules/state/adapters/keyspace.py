"""An in-memory keyspace: scopes of keys with insertion positions (spec/state.md §5.5, §5.7, §8.2).

The in-memory adapter is this structure; the SQLite adapter keeps one as its committed read cache.
A scope is two ``dict``s (Python keeps insertion order and keeps a key's place when it is
overwritten, which is exactly §5.5): key -> encoded value and key -> position. Positions only grow, so
dict order is position order and a page lookup is a binary search over a per-scope list of positions,
rebuilt only after a key was created or deleted.

Why two dicts and not one of ``(position, value)`` tuples: a dict holding only strings, bytes and ints
is never tracked by the cyclic garbage collector, while one holding tuples is untracked by a
collection and tracked again, into the youngest generation, by the next write. Every young
collection then walked the whole scope: with 114,000 todos, gen-0 collections took 3-6 ms and a
gen-1 collection 26 ms, the reactive-latency tail of bench/todo_e2e.py (bench/RESULTS.md). A write
also no longer allocates a tuple.

No method awaits: callers on the event loop get atomic, consistent snapshots for free.
"""

from __future__ import annotations

from bisect import bisect_right

from .base import Entry


class _Scope:
    __slots__ = ("order", "order_keys", "positions", "values")

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        #: Same keys, same order as ``values``.
        self.positions: dict[str, int] = {}
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
        if s is None:
            return None
        value = s.values.get(key)
        return None if value is None else (s.positions[key], value)

    def put(self, scope: str, key: str, position: int, value: bytes) -> None:
        """Store ``value``. ``position`` is used when the key is new; an existing key keeps its own."""
        s = self._scopes.get(scope)
        if s is None:
            s = self._scopes[scope] = _Scope()
        values = s.values
        if key not in values:
            s.positions[key] = position
            s.order = None
        values[key] = value

    def remove(self, scope: str, key: str) -> tuple[int, bytes] | None:
        s = self._scopes.get(scope)
        if s is None:
            return None
        value = s.values.pop(key, None)
        if value is None:
            return None
        position = s.positions.pop(key)
        s.order = None
        if not s.values:
            del self._scopes[scope]
        return position, value

    def items(self, scope: str) -> list[tuple[str, bytes]]:
        s = self._scopes.get(scope)
        return [] if s is None else list(s.values.items())

    def keys(self, scope: str) -> list[str]:
        s = self._scopes.get(scope)
        return [] if s is None else list(s.values)

    def after(self, scope: str, after: int, limit: int) -> list[Entry]:
        s = self._scopes.get(scope)
        if s is None:
            return []
        if s.order is None:
            s.order = list(s.positions.values())
            s.order_keys = list(s.positions)
        start = bisect_right(s.order, after)
        values, positions = s.values, s.positions
        return [(key, values[key], positions[key]) for key in s.order_keys[start : start + limit]]

    def scopes(self) -> list[str]:
        return list(self._scopes)

    def max_position(self) -> int:
        return max((max(s.positions.values()) for s in self._scopes.values() if s.positions), default=0)


__all__ = ["Keyspace"]
