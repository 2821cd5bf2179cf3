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
* **Events for every engine** (§7.7). Each write script also appends the write's event to one Redis
  stream, so the stream is in commit order. Every engine reads the stream from where it started and
  hands each event to its own triggers: a write through any engine fires every matching trigger on
  every engine exactly once, in commit order per key, and no reply waits for it. After an outage an
  engine resumes where it stopped; events trimmed away meanwhile (the stream keeps about
  :data:`EVENTS_MAXLEN`) are logged and counted in ``events_missed``, detected from the gap in the
  events' sequence numbers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import StateStartupError, StoreError, StoreUnavailable
from .base import Compute, Entry, EventSink, StateAdapter

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
#: Approximate length the events stream is trimmed to: how far an engine may lag (or stay disconnected)
#: before it misses events, which it then logs and counts (§7.7 M5).
EVENTS_MAXLEN: Final = 10_000
#: Events read per XREAD, and how long one XREAD waits for new ones.
EVENTS_BATCH: Final = 1000
EVENTS_BLOCK_MS: Final = 1000
#: Pause between attempts to read events while Redis is unreachable.
EVENTS_RETRY_S: Final = 0.2

_EVENT_TYPES: Final = {b"c": "state:created", b"u": "state:updated", b"d": "state:deleted"}


class RedisKeys:
    """The key layout, in one place (§8.4). Scope names follow the prefix verbatim."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.meta = prefix + "meta"  # hash: epoch, clock (positions, versions, event sequence)
        self.scopes = prefix + "scopes"  # set: scopes holding at least one key
        self.events = prefix + "events"  # stream: one entry per committed write, in commit order

    def values(self, scope: str) -> str:
        return f"{self.prefix}v:{scope}"  # hash: key -> JSON text

    def versions(self, scope: str) -> str:
        return f"{self.prefix}n:{scope}"  # hash: key -> version

    def order(self, scope: str) -> str:
        return f"{self.prefix}o:{scope}"  # sorted set: key scored by position

    def of_scope(self, scope: str) -> list[str]:
        """KEYS of the write scripts: values, versions, order, meta, scopes, events."""
        return [
            self.values(scope),
            self.versions(scope),
            self.order(scope),
            self.meta,
            self.scopes,
            self.events,
        ]


# Every write appends its event to the events stream in the same script, so stream order is commit order
# (§7.7 M3). Entry fields: q (sequence: the clock value of the write), t (c, u or d: created, updated,
# deleted), s (scope), k (key), o (previous value, absent when the key was missing), n (new value, absent
# for a delete).

# KEYS: values, versions, order, meta, scopes, events. ARGV: key, value, scope, stream max length.
# Returns {previous value, event id}.
_SET: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local clock = redis.call('HINCRBY', KEYS[4], 'clock', 1)
local id
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], clock)
if not old then
  redis.call('ZADD', KEYS[3], clock, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[3])
  id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[4], '*',
    'q', clock, 't', 'c', 's', ARGV[3], 'k', ARGV[1], 'n', ARGV[2])
else
  id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[4], '*',
    'q', clock, 't', 'u', 's', ARGV[3], 'k', ARGV[1], 'o', old, 'n', ARGV[2])
end
return {old, id}
"""

# KEYS: values, versions, order, meta, scopes, events. ARGV: key, scope, stream max length.
# Returns {removed value, event id}. A delete of a missing key is an event too (§5.3 step 3).
_DELETE: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local clock = redis.call('HINCRBY', KEYS[4], 'clock', 1)
local id
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[5], ARGV[2])
  end
  id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*',
    'q', clock, 't', 'd', 's', ARGV[2], 'k', ARGV[1], 'o', old)
else
  id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*',
    'q', clock, 't', 'd', 's', ARGV[2], 'k', ARGV[1])
end
return {old, id}
"""

# KEYS: values, versions. ARGV: key. Returns {value, version} (nil, nil when absent).
_READ: Final = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: values, versions, order, meta, scopes, events.
# ARGV: key, expected version ('' = absent), value, scope, stream max length.
# Returns the event id when written, 0 when the key changed since it was read.
_COMPARE_AND_SET: Final = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if (current or '') ~= ARGV[2] then
  return 0
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
local clock = redis.call('HINCRBY', KEYS[4], 'clock', 1)
local id
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], clock)
if not current then
  redis.call('ZADD', KEYS[3], clock, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[4])
  id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*',
    'q', clock, 't', 'c', 's', ARGV[4], 'k', ARGV[1], 'n', ARGV[3])
else
  id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*',
    'q', clock, 't', 'u', 's', ARGV[4], 'k', ARGV[1], 'o', old, 'n', ARGV[3])
end
return id
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

    shared_events = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_budget_s: float = CONNECT_BUDGET_S,
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
        events_maxlen: int = EVENTS_MAXLEN,
    ) -> None:
        self.url = url
        #: Approximate length of the events stream. A user that never calls :meth:`watch` (the stream
        #: module, which fans out over pub/sub) passes 1: the write scripts stay the same and the stream
        #: stays a handful of entries.
        self.events_maxlen = events_maxlen
        self.keys = RedisKeys(prefix)
        self.connect_budget_s = connect_budget_s
        self.socket_timeout_s = socket_timeout_s
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._events_client: aioredis.Redis | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._sink: EventSink | None = None
        #: Id of the last stream entry handed to the sink; of the newest write this engine committed.
        self._events_seen: tuple[int, int] = (0, 0)
        self._own_latest: tuple[int, int] = (0, 0)
        self._last_seq = 0
        self._events_progress = asyncio.Event()
        #: Events this engine never saw: trimmed from the stream while it lagged or was disconnected.
        self.events_missed = 0

    # -------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        # Calls beyond MAX_CONNECTIONS wait for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=self.socket_timeout_s,
            socket_connect_timeout=min(SOCKET_CONNECT_TIMEOUT_S, self.socket_timeout_s),
            socket_timeout=self.socket_timeout_s,
            # No automatic retries: a write whose reply was lost may have been applied, and running it
            # again would apply it twice. Reads are retried by ``_do``; see there.
            retry=Retry(NoBackoff(), 0),
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
        task, self._events_task = self._events_task, None
        if task is not None:
            # Closing the connection ends the pending XREAD and the reader sees it was stopped. (A
            # cancellation is not enough: redis-py can swallow one that lands while a command is sent.)
            if self._events_client is not None:
                await self._events_client.aclose()
            done, _ = await asyncio.wait([task], timeout=self.socket_timeout_s)
            if not done:
                task.cancel()
                await asyncio.wait([task], timeout=self.socket_timeout_s)
        if self._events_client is not None:
            await self._events_client.aclose()
            self._events_client = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -------------------------------------------------------------- events of every engine (§7.7)

    async def watch(self, sink: EventSink) -> None:
        """Hand every write committed from now on, by any engine, to ``sink``, in commit order."""
        client = self._redis
        latest = await self._do(lambda: client.xrevrange(self.keys.events, count=1))
        start = latest[0][0] if latest else b"0-0"
        self._events_seen = _stream_id(start)
        self._sink = sink
        # XREAD blocks a connection: it gets a client of its own, with room for the block time.
        self._events_client = aioredis.Redis.from_url(
            self.url,
            client_name=f"pyiii-state-events:{self.keys.prefix}",
            socket_connect_timeout=min(SOCKET_CONNECT_TIMEOUT_S, self.socket_timeout_s),
            socket_timeout=EVENTS_BLOCK_MS / 1000 + self.socket_timeout_s,
        )
        self._events_task = asyncio.get_running_loop().create_task(
            self._read_events(start), name="pyiii-state-events"
        )

    def event_position(self) -> tuple[int, int]:
        """The newest commit this engine knows of: its own latest write or the latest event it read.

        A trigger registered now skips events at or before it (§7.1 rule 4: a write that committed
        before the registration does not fire it).
        """
        return max(self._events_seen, self._own_latest)

    async def events_delivered(self) -> None:
        """Wait until every event committed before this call has been handed to the sink."""
        client = self._client
        if self._events_task is None or client is None:
            return
        latest = await self._do(lambda: client.xrevrange(self.keys.events, count=1))
        if not latest:
            return
        target = _stream_id(latest[0][0])
        while self._events_seen < target and self._events_task is not None and not self._events_task.done():
            self._events_progress.clear()
            await self._events_progress.wait()

    async def _read_events(self, last_id: bytes) -> None:
        client = self._events_client
        assert client is not None
        unreachable = False
        while self._events_task is not None:
            try:
                reply: Any = await client.xread(
                    {self.keys.events: last_id}, count=EVENTS_BATCH, block=EVENTS_BLOCK_MS
                )
            except (RedisError, OSError, TimeoutError) as exc:
                if self._events_task is None:  # closed
                    return
                if not unreachable:
                    unreachable = True
                    log.warning("state events: Redis at %s unavailable (%s); will resume", self.url, exc)
                await asyncio.sleep(EVENTS_RETRY_S)
                continue
            if unreachable:
                unreachable = False
                log.info("state events: Redis at %s is back; resuming", self.url)
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    position = _stream_id(entry_id)
                    self._events_seen = position
                    self._event(position, fields)
            self._events_progress.set()

    def _event(self, position: tuple[int, int], fields: dict[bytes, bytes]) -> None:
        try:
            seq = int(fields[b"q"])
            event_type = _EVENT_TYPES[fields[b"t"]]
            scope, key = fields[b"s"].decode(), fields[b"k"].decode()
        except (KeyError, ValueError) as exc:
            log.warning("state events: malformed stream entry skipped: %r (%s)", fields, exc)
            return
        if self._last_seq and seq > self._last_seq + 1:
            missed = seq - self._last_seq - 1
            self.events_missed += missed
            log.warning(
                "state events: %d events were trimmed from the Redis stream before this engine read them; "
                "their triggers did not fire here",
                missed,
            )
        elif seq <= self._last_seq:
            log.warning("state events: the event sequence restarted (Redis lost its data?)")
        self._last_seq = seq
        assert self._sink is not None
        try:
            self._sink(event_type, scope, key, fields.get(b"o"), fields.get(b"n"), position)
        except Exception:
            log.exception("state events: delivering %s %r/%r failed", event_type, scope, key)

    # -------------------------------------------------------------- plumbing

    async def _do(self, call: Callable[[], Awaitable[Any]], *, idempotent: bool = True) -> Any:
        """Run a Redis call, translating driver errors (STYLE habit 5).

        A connection error drops the pool's idle connections (after a Redis restart they are all dead)
        and, for an idempotent call, tries once more on a fresh connection. Writes are never re-sent:
        one whose reply was lost may have been applied.
        """
        if self._client is None:
            raise StoreError("the state store is closed")
        for attempt in (1, 2):
            try:
                return await call()
            except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
                if self._client is not None:
                    await self._client.connection_pool.disconnect(inuse_connections=False)
                if idempotent and attempt == 1:
                    continue
                raise StoreUnavailable(
                    f"Redis unavailable at {self.url}: {exc or type(exc).__name__}"
                ) from exc
            except RedisError as exc:
                raise StoreError(f"Redis error: {exc}") from exc
        raise AssertionError("unreachable")

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError("the state store is closed")
        return self._client

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Callable[[], Awaitable[Any]]:
        script = self._scripts[name]
        return lambda: script(keys=keys, args=args)

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
        client = self._redis
        value: bytes | None = await self._do(lambda: client.hget(self.keys.values(scope), key))
        return value

    async def set(self, scope: str, key: str, value: bytes) -> bytes | None:
        async with self._key_lock(scope, key):
            old, event_id = await self._do(
                self._script("set", self.keys.of_scope(scope), [key, value, scope, self.events_maxlen]),
                idempotent=False,
            )
            self._committed(event_id)
            result: bytes | None = old
            return result

    async def delete(self, scope: str, key: str) -> bytes | None:
        async with self._key_lock(scope, key):
            old, event_id = await self._do(
                self._script("delete", self.keys.of_scope(scope), [key, scope, self.events_maxlen]),
                idempotent=False,
            )
            self._committed(event_id)
            result: bytes | None = old
            return result

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
                event_id = await self._do(
                    self._script("cas", keys, [key, expected, new, scope, self.events_maxlen]),
                    idempotent=False,
                )
                if event_id != 0:
                    self._committed(event_id)
                    return old, new
                attempt += 1
                if loop.time() >= deadline:
                    raise StoreError("too many conflicting writes")
                await asyncio.sleep(random.uniform(0, 0.0005 * 2 ** min(attempt, 7)))

    def _committed(self, event_id: bytes) -> None:
        """Note the stream position of a write this engine committed (see :meth:`event_position`)."""
        position = _stream_id(event_id)
        if position > self._own_latest:
            self._own_latest = position

    async def list_items(self, scope: str) -> list[tuple[str, bytes]]:
        flat = await self._do(self._script("list", [self.keys.values(scope), self.keys.order(scope)], []))
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def list_keys(self, scope: str) -> list[str]:
        client = self._redis
        keys = await self._do(lambda: client.zrange(self.keys.order(scope), 0, -1))
        return [key.decode() for key in keys]

    async def list_after(self, scope: str, after: int, limit: int) -> list[Entry]:
        flat = await self._do(
            self._script("list_after", [self.keys.values(scope), self.keys.order(scope)], [after, limit])
        )
        return [(flat[i].decode(), flat[i + 1], int(float(flat[i + 2]))) for i in range(0, len(flat), 3)]

    async def list_groups(self) -> list[str]:
        client = self._redis
        scopes = await self._do(lambda: client.smembers(self.keys.scopes))
        return [scope.decode() for scope in scopes]


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


__all__ = ["DEFAULT_PREFIX", "RedisAdapter", "RedisKeys"]
