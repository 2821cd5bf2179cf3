"""Stream storage on the state module's adapters (spec/stream.md §7).

Decision: streams do not have adapters of their own. The state adapters (``state/adapters``) already
give everything §7 asks of a stream store: missing and present-``null`` kept apart, ``set`` and
``delete`` returning the previous value atomically, atomic per-key ``update`` around a pure compute
(so ``apply_ops`` runs unchanged), insertion order with overwrite keeping the position (§4.3.4),
groups that vanish with their last key (S12), SQLite with per-write durability (§7.1.3) and Redis with
optimistic updates (§7.2.4). This module maps the stream data model onto them:

* ``(stream_name, group_id)`` is one state **scope**, ``item_id`` the key;
* the scope is ``f"{n}:{stream_name}:{group_id}"`` with ``n`` the UTF-8 byte length of the stream
  name, so any two (stream, group) pairs map to different scopes, ``:`` in names included (S12);
* ``list_groups`` and ``list_all`` decode the scopes back, so names are exact.

The adapters are constructed with stream-specific parameters (:func:`create_stream_adapter`): the
SQLite file is ``pyiii-stream.sqlite3`` inside a ``file_path`` directory (§7.1.3), the Redis keys live
under ``pyiii:stream:``, and the state module's cross-engine event log is cut to one entry (streams fan
out over pub/sub instead, :mod:`.redis_bus`; the write scripts stay the state module's, unchanged).

Cost: ``list_groups`` of one stream scans the scope list of the whole store (every group of every
stream). Scopes are held in memory by the kv adapters and in one Redis set, so this is a scan of names,
never of values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pyiii.modules.state.adapters.base import Compute, StateAdapter

if TYPE_CHECKING:
    from pyiii.config import AdapterSettings

#: Name of the SQLite database inside a ``file_path`` directory (§7.1.3).
DB_FILE_NAME: Final = "pyiii-stream.sqlite3"
#: Prefix of every Redis key of the stream store (§7.2, S13).
REDIS_PREFIX: Final = "pyiii:stream:"


def scope_of(stream_name: str, group_id: str) -> str:
    """The state scope holding one group's items (unambiguous: the stream name's length comes first)."""
    return f"{len(stream_name.encode('utf-8', 'surrogatepass'))}:{stream_name}:{group_id}"


def parse_scope(scope: str) -> tuple[str, str] | None:
    """``(stream_name, group_id)`` of a scope made by :func:`scope_of`; ``None`` for anything else."""
    head, sep, rest = scope.partition(":")
    if not sep or not head.isdigit():
        return None
    size = int(head)
    raw = rest.encode("utf-8", "surrogatepass")
    if len(raw) <= size or raw[size : size + 1] != b":":
        return None
    try:
        return raw[:size].decode("utf-8", "surrogatepass"), raw[size + 1 :].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


class StreamStore:
    """The stream data model over one state adapter. Values are canonical JSON bytes both ways."""

    def __init__(self, adapter: StateAdapter) -> None:
        self.adapter = adapter

    async def open(self) -> None:
        await self.adapter.open()

    async def close(self) -> None:
        await self.adapter.close()

    async def get(self, stream_name: str, group_id: str, item_id: str) -> bytes | None:
        return await self.adapter.get(scope_of(stream_name, group_id), item_id)

    async def set(self, stream_name: str, group_id: str, item_id: str, value: bytes) -> bytes | None:
        """Store ``value``; the previous value or ``None`` when the item was missing."""
        return await self.adapter.set(scope_of(stream_name, group_id), item_id, value)

    async def delete(self, stream_name: str, group_id: str, item_id: str) -> bytes | None:
        return await self.adapter.delete(scope_of(stream_name, group_id), item_id)

    async def update(
        self, stream_name: str, group_id: str, item_id: str, compute: Compute
    ) -> tuple[bytes | None, bytes]:
        return await self.adapter.update(scope_of(stream_name, group_id), item_id, compute)

    async def list_values(self, stream_name: str, group_id: str) -> list[bytes]:
        """The group's values in position order (kv: insertion order, §4.3.4)."""
        return [value for _, value in await self.adapter.list_items(scope_of(stream_name, group_id))]

    async def list_groups(self, stream_name: str) -> list[str]:
        """Group ids of exactly ``stream_name`` holding an item, sorted by code point (§4.3.5)."""
        groups = set()
        for scope in await self.adapter.list_groups():
            parsed = parse_scope(scope)
            if parsed is not None and parsed[0] == stream_name:
                groups.add(parsed[1])
        return sorted(groups)

    async def list_all(self) -> dict[str, list[str]]:
        """Stream name -> sorted group ids, streams sorted (§4.3.6)."""
        streams: dict[str, set[str]] = {}
        for scope in await self.adapter.list_groups():
            parsed = parse_scope(scope)
            if parsed is not None:
                streams.setdefault(parsed[0], set()).add(parsed[1])
        return {name: sorted(streams[name]) for name in sorted(streams)}


def create_stream_adapter(settings: AdapterSettings) -> StateAdapter:
    """The state adapter for the stream module's ``adapter`` block (validated by the config loader)."""
    if settings.name == "kv":
        if settings.file_based:
            from pyiii.modules.state.adapters.sqlite import SqliteAdapter

            return SqliteAdapter(
                settings.file_path or "kv_store_data.db", db_file_name=DB_FILE_NAME, label="stream"
            )
        from pyiii.modules.state.adapters.memory import MemoryAdapter

        return MemoryAdapter(label="stream")
    if settings.name == "redis":
        from pyiii.modules.state.adapters.redis import RedisAdapter

        return RedisAdapter(
            settings.redis_url or "redis://localhost:6379", prefix=REDIS_PREFIX, events_maxlen=1
        )
    # The config loader refuses other names (§8.2 rule 2); this guards direct construction.
    from pyiii.modules.state.errors import StateStartupError

    raise StateStartupError(f"Adapter factory '{settings.name}' not found. Available: [kv, redis]")


__all__ = ["DB_FILE_NAME", "REDIS_PREFIX", "StreamStore", "create_stream_adapter", "parse_scope", "scope_of"]
