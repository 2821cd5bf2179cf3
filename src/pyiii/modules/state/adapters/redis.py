"""``redis``: state shared by every engine using one Redis database (spec/state.md §8.4, D4).

Values are pyiii's canonical JSON text; the Lua scripts below only move those strings and compare
versions, never decode them, so empty arrays, big integers and key sets stay exact.

* ``set`` and ``delete`` are one script each, returning the previous value atomically.
* ``update`` is optimistic: read value and version in one script, run ``compute`` (``apply_ops`` and
  the size guard) here, then write only if the version is unchanged (a compare-and-set script); on a
  conflict, retry after a short random pause, for up to :data:`CONFLICT_BUDGET_S`. Versions come from
  one counter that only grows, so a delete and re-create cannot pass for "unchanged".
* This engine serialises its own writes per key before going to Redis: fewer conflicts, and writes to
  one key return in commit order (adapter contract rule 2).
* Driver errors become :class:`StoreUnavailable` (connection lost, timeout) or :class:`StoreError`
  (anything else); commands have a socket timeout, so a dead Redis is an error, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Final

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..errors import StateStartupError, StoreError, StoreUnavailable
from .base import Compute, Entry, StateAdapter

log = logging.getLogger("pyiii.state")

DEFAULT_PREFIX: Final = "pyiii:state:"
#: Startup gives up after this long without a connection (§8.4).
CONNECT_BUDGET_S: Final = 5.0
#: Per-command limits: a Redis that stopped answering fails calls instead of hanging them.
SOCKET_CONNECT_TIMEOUT_S: Final = 2.0
SOCKET_TIMEOUT_S: Final = 5.0
#: Connections per engine.
MAX_CONNECTIONS: Final = 64
#: Sustained conflicts an update tolerates before failing (§8.4 rule 3).
CONFLICT_BUDGET_S: Final = 30.0


class RedisKeys:
    """The key layout, in one place (§8.4). Scope names follow the prefix verbatim."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.meta = prefix + "meta"  # hash: epoch, clock (positions and versions)
        self.scopes = prefix + "scopes"  # set: scopes holding at least one key

    def values(self, scope: str) -> str:
        return f"{self.prefix}v:{scope}"  # hash: key -> JSON text

    def versions(self, scope: str) -> str:
        return f"{self.prefix}n:{scope}"  # hash: key -> version

    def order(self, scope: str) -> str:
        return f"{self.prefix}o:{scope}"  # sorted set: key scored by position

    def of_scope(self, scope: str) -> list[str]:
        """KEYS of the write scripts: values, versions, order, meta, scopes."""
        return [self.values(scope), self.versions(scope), self.order(scope), self.meta, self.scopes]


# KEYS: values, versions, order, meta, scopes. ARGV: key, value, scope. Returns the previous value.
_SET: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local clock = redis.call('HINCRBY', KEYS[4], 'clock', 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], clock)
if not old then
  redis.call('ZADD', KEYS[3], clock, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[3])
end
return old
"""

# KEYS: values, versions, order, meta, scopes. ARGV: key, scope. Returns the removed value.
_DELETE: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[5], ARGV[2])
  end
end
return old
"""

# KEYS: values, versions. ARGV: key. Returns {value, version} (nil, nil when absent).
_READ: Final = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: values, versions, order, meta, scopes. ARGV: key, expected version ('' = absent), value, scope.
# Returns 1 when written, 0 when the key changed since it was read.
_COMPARE_AND_SET: Final = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if (current or '') ~= ARGV[2] then
  return 0
end
local clock = redis.call('HINCRBY', KEYS[4], 'clock', 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], clock)
if not current then
  redis.call('ZADD', KEYS[3], clock, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[4])
end
return 1
"""

# KEYS: values, order. Returns key1, value1, key2, value2, ... in position order.
_LIST: Final = """
local keys = redis.call('ZRANGE', KEYS[2], 0, -1)
local out = {}
for i = 1, #keys, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #keys) do
    chunk[#chunk + 1] = keys[j]
  end
  local values = redis.call('HMGET', KEYS[1], unpack(chunk))
  for j = 1, #values do
    out[#out + 1] = chunk[j]
    out[#out + 1] = values[j]
  end
end
return out
"""

# KEYS: values, order. ARGV: after (exclusive position), limit.
# Returns key1, value1, position1, ... ascending by position.
_LIST_AFTER: Final = """
local scored = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])
if #scored == 0 then
  return {}
end
local keys = {}
for i = 1, #scored, 2 do
  keys[#keys + 1] = scored[i]
end
local values = redis.call('HMGET', KEYS[1], unpack(keys))
local out = {}
for i = 1, #keys do
  out[#out + 1] = keys[i]
  out[#out + 1] = values[i]
  out[#out + 1] = scored[2 * i]
end
return out
"""


class RedisAdapter(StateAdapter):
    """State in Redis, shared by every engine configured with the same URL and prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_budget_s: float = CONNECT_BUDGET_S,
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.keys = RedisKeys(prefix)
        self.connect_budget_s = connect_budget_s
        self.socket_timeout_s = socket_timeout_s
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    # -------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        # Calls beyond MAX_CONNECTIONS wait for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=self.socket_timeout_s,
            socket_connect_timeout=min(SOCKET_CONNECT_TIMEOUT_S, self.socket_timeout_s),
            socket_timeout=self.socket_timeout_s,
            # One quick retry replaces a pooled connection that died with a restarted Redis.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        client = aioredis.Redis.from_pool(pool)
        self._client = client
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("set", _SET),
                ("delete", _DELETE),
                ("read", _READ),
                ("cas", _COMPARE_AND_SET),
                ("list", _LIST),
                ("list_after", _LIST_AFTER),
            )
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_budget_s
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.01)):
                    await client.hsetnx(self.keys.meta, "epoch", uuid.uuid4().hex)
                    epoch = await client.hget(self.keys.meta, "epoch")
                break
            except (RedisError, OSError, TimeoutError) as exc:
                if loop.time() >= deadline:
                    self._client = None
                    await client.aclose()
                    raise StateStartupError(
                        f"Redis connection timed out after {self.connect_budget_s:g}s. "
                        f"Please ensure Redis is running at: {self.url}"
                    ) from exc
                await asyncio.sleep(0.1)
        self.epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        log.info("state store: Redis at %s (prefix %r)", self.url, self.keys.prefix)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -------------------------------------------------------------- plumbing

    async def _do(self, call: Awaitable[Any]) -> Any:
        """Await a Redis call, translating driver errors (STYLE habit 5)."""
        try:
            return await call
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"Redis unavailable at {self.url}: {exc or type(exc).__name__}") from exc
        except RedisError as exc:
            raise StoreError(f"Redis error: {exc}") from exc

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        if self._client is None:
            raise StoreError("the state store is closed")
        return self._scripts[name](keys=keys, args=args)

    @asynccontextmanager
    async def _key_lock(self, scope: str, key: str) -> AsyncIterator[None]:
        """Serialise this engine's writes to one key (§8.4 rule 3)."""
        sk = (scope, key)
        lock, users = self._locks.get(sk) or (asyncio.Lock(), 0)
        self._locks[sk] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock_now, users_now = self._locks[sk]
            if users_now == 1:
                del self._locks[sk]
            else:
                self._locks[sk] = (lock_now, users_now - 1)

    # -------------------------------------------------------------- verbs

    async def get(self, scope: str, key: str) -> bytes | None:
        if self._client is None:
            raise StoreError("the state store is closed")
        value: bytes | None = await self._do(self._client.hget(self.keys.values(scope), key))
        return value

    async def set(self, scope: str, key: str, value: bytes) -> bytes | None:
        async with self._key_lock(scope, key):
            old: bytes | None = await self._do(
                self._script("set", self.keys.of_scope(scope), [key, value, scope])
            )
            return old

    async def delete(self, scope: str, key: str) -> bytes | None:
        async with self._key_lock(scope, key):
            old: bytes | None = await self._do(
                self._script("delete", self.keys.of_scope(scope), [key, scope])
            )
            return old

    async def update(self, scope: str, key: str, compute: Compute) -> tuple[bytes | None, bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFLICT_BUDGET_S
        keys = self.keys.of_scope(scope)
        attempt = 0
        async with self._key_lock(scope, key):
            while True:
                old, version = await self._do(self._script("read", keys[:2], [key]))
                new = compute(old)
                expected = b"" if version is None else version
                if await self._do(self._script("cas", keys, [key, expected, new, scope])):
                    return old, new
                attempt += 1
                if loop.time() >= deadline:
                    raise StoreError("too many conflicting writes")
                await asyncio.sleep(random.uniform(0, 0.0005 * 2 ** min(attempt, 7)))

    async def list_items(self, scope: str) -> list[tuple[str, bytes]]:
        flat = await self._do(self._script("list", [self.keys.values(scope), self.keys.order(scope)], []))
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def list_keys(self, scope: str) -> list[str]:
        if self._client is None:
            raise StoreError("the state store is closed")
        keys = await self._do(self._client.zrange(self.keys.order(scope), 0, -1))
        return [key.decode() for key in keys]

    async def list_after(self, scope: str, after: int, limit: int) -> list[Entry]:
        flat = await self._do(
            self._script("list_after", [self.keys.values(scope), self.keys.order(scope)], [after, limit])
        )
        return [(flat[i].decode(), flat[i + 1], int(float(flat[i + 2]))) for i in range(0, len(flat), 3)]

    async def list_groups(self) -> list[str]:
        if self._client is None:
            raise StoreError("the state store is closed")
        scopes = await self._do(self._client.smembers(self.keys.scopes))
        return [scope.decode() for scope in scopes]


__all__ = ["DEFAULT_PREFIX", "RedisAdapter", "RedisKeys"]
