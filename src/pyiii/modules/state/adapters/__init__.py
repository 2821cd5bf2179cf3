"""Storage backends of the state module, behind the contract of :mod:`.base` (spec/state.md §8).

=================  ==========================  ===================================================
config             adapter                     guarantees
=================  ==========================  ===================================================
kv / in_memory     :class:`.memory.MemoryAdapter`   nothing persisted; the reference implementation
kv / file_based    :class:`.sqlite.SqliteAdapter`   SQLite WAL; a reply only once the write is on disk
redis              :class:`.redis.RedisAdapter`     shared by engines; atomic updates across them
=================  ==========================  ===================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import StateStartupError
from .base import StateAdapter

if TYPE_CHECKING:
    from pyiii.config import StateSettings


def create_adapter(settings: StateSettings) -> StateAdapter:
    """The adapter named by ``settings.adapter`` (already validated by the config loader)."""
    adapter = settings.adapter
    if adapter.name == "kv":
        if adapter.file_based:
            from .sqlite import SqliteAdapter

            return SqliteAdapter(adapter.file_path or "kv_store_data.db")
        from .memory import MemoryAdapter

        return MemoryAdapter()
    if adapter.name == "redis":
        from .redis import RedisAdapter

        return RedisAdapter(adapter.redis_url or "redis://localhost:6379")
    raise StateStartupError(f"Adapter factory '{adapter.name}' not found. Available: [kv, redis]")


__all__ = ["StateAdapter", "create_adapter"]
