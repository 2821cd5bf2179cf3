"""Cross-engine fan-out over Redis pub/sub (spec/stream.md §7.2.5-7).

* **Publish.** The frame text (serialized once, S5) is published on :data:`CHANNEL` unchanged. One
  sender task owns the publishing connection and sends queued frames in order, pipelined: frames of
  one engine reach Redis in emit order, and a burst costs one round trip, not one per frame.
  ``publish`` returns once Redis accepted the frame, or raises :class:`~.bus.BusError`.
* **Deliver.** Every engine, the publisher included, subscribes to the channel and hands each received
  frame to its own :class:`~.hub.Hub` (no local shortcut: all engines see one order, §7.2.5). Routing
  reads ``streamName``/``groupId``/``id`` from the frame with a typed decoder; the received bytes are
  the frame that is sent.
* **Reconnect.** If the subscription connection drops, it is re-established with backoff
  (:data:`BACKOFF_S`), and the gap is logged: events published meanwhile are lost to this engine's
  clients (§7.2.7). Nothing else waits for it: publishing uses its own connection.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pyiii.modules.state.errors import StateStartupError

from .bus import BusError, EventBus
from .hub import Hub

log = logging.getLogger("pyiii.stream")

#: §7.2.5: the channel every engine publishes on and subscribes to.
CHANNEL: Final = "pyiii:stream:events"
#: §7.2.1: startup fails when Redis cannot be reached within this long.
CONNECT_BUDGET_S: Final = 5.0
SOCKET_TIMEOUT_S: Final = 5.0
#: Delays between attempts to re-subscribe after the subscription connection dropped.
BACKOFF_S: Final = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Frames sent per pipeline.
BATCH: Final = 512
#: A message only this engine's :meth:`RedisBus.idle` sends; never a frame (frames are JSON objects).
_MARKER: Final = b"pyiii-idle:"


class _Route(msgspec.Struct):
    streamName: str  # the frame's keys (§3.6)
    groupId: str
    id: str | None = None


_route = msgspec.json.Decoder(_Route).decode


class RedisBus(EventBus):
    """Publishes frames on ``channel`` and delivers every frame received there to this engine's hub."""

    def __init__(
        self, url: str, *, channel: str = CHANNEL, connect_budget_s: float = CONNECT_BUDGET_S
    ) -> None:
        self.url = url
        self.channel = channel
        self.connect_budget_s = connect_budget_s
        #: Client name of the subscription connection (unique, so tests and operators can find it).
        self.subscriber_name = f"pyiii-stream-events-{uuid.uuid4().hex[:12]}"
        #: Times the subscription was re-established after a drop.
        self.reconnects = 0
        #: Times the subscription was established (1 after start, +1 per reconnect).
        self.subscriptions = 0
        self._publisher: aioredis.Redis | None = None
        self._outbox: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._markers: dict[bytes, asyncio.Future[None]] = {}
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self, hub: Hub) -> None:
        await super().start(hub)
        self._publisher = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=min(2.0, self.connect_budget_s),
            socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),  # a lost reply must not publish a frame twice
        )
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen(), name="pyiii-stream-subscriber")
        try:
            async with asyncio.timeout(self.connect_budget_s):
                await self._subscribed.wait()
        except TimeoutError:
            await self.stop()
            raise StateStartupError(
                f"Redis connection timed out after {self.connect_budget_s:g}s. "
                f"Please ensure Redis is running at: {self.url}"
            ) from None
        self._sender = loop.create_task(self._send_loop(), name="pyiii-stream-publisher")
        log.info("stream events: Redis pub/sub on %s channel %r", self.url, self.channel)

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._sender, self._listener):
            if task is not None:
                task.cancel()
        for task in (self._sender, self._listener):
            if task is not None:
                await asyncio.wait([task])
        self._sender = self._listener = None
        for _, future in self._outbox:
            if not future.done():
                future.set_exception(BusError("the stream module is stopping"))
        self._outbox.clear()
        if self._publisher is not None:
            await self._publisher.aclose()
            self._publisher = None

    # ------------------------------------------------------------------ publishing

    async def publish(self, stream_name: str, group_id: str, item_id: str | None, payload: bytes) -> None:
        await self._enqueue(payload)

    def _enqueue(self, message: bytes) -> asyncio.Future[None]:
        if self._stopping or self._sender is None:
            raise BusError("the Redis event bus is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((message, future))
        self._wake.set()
        return future

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch, self._outbox = self._outbox[:BATCH], self._outbox[BATCH:]
                await self._send(batch)

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        assert self._publisher is not None
        error: BaseException | None = None
        try:
            async with self._publisher.pipeline(transaction=False) as pipe:
                for message, _ in batch:
                    pipe.publish(self.channel, message)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            error = BusError(f"Redis publish failed at {self.url}: {exc or type(exc).__name__}")
            # Drop the broken connection; the next batch connects afresh.
            await self._publisher.connection_pool.disconnect(inuse_connections=True)
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    # ------------------------------------------------------------------ subscription

    async def _listen(self) -> None:
        attempt = 0
        lost_at: float | None = None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            client = aioredis.Redis.from_url(
                self.url,
                client_name=self.subscriber_name,
                socket_connect_timeout=min(2.0, self.connect_budget_s),
                retry=Retry(NoBackoff(), 0),
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if lost_at is not None:
                    self.reconnects += 1
                    log.warning(
                        "stream events: resubscribed to Redis after %.1f s; events published meanwhile "
                        "were not delivered to this engine's clients",
                        loop.time() - lost_at,
                    )
                    lost_at = None
                attempt = 0
                self.subscriptions += 1
                self._subscribed.set()
                await self._receive(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                if self._stopping:
                    return
                if lost_at is None:
                    lost_at = loop.time()
                    log.warning("stream events: Redis subscription lost (%s); reconnecting", exc)
            finally:
                await _close_quietly(pubsub, client)
            if self._stopping:
                return
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1

    async def _receive(self, pubsub: Any) -> None:
        hub = self.hub
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            if data.startswith(_MARKER):
                marker = self._markers.pop(data, None)
                if marker is not None and not marker.done():
                    marker.set_result(None)
                continue
            try:
                route = _route(data)
            except msgspec.DecodeError as exc:  # not one of our frames: someone else publishes here
                log.warning("stream events: message on %r dropped: %s", self.channel, exc)
                continue
            hub.deliver(route.streamName, route.groupId, route.id, data)

    async def wait_subscribed(self, count: int) -> None:
        """Wait until the subscription has been established ``count`` times (tests of reconnection)."""
        while self.subscriptions < count:
            self._subscribed.clear()
            await self._subscribed.wait()

    async def idle(self) -> None:
        """Wait until every frame this engine published so far has come back through Redis."""
        marker = _MARKER + uuid.uuid4().hex.encode()
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[marker] = arrived
        await self._enqueue(marker)
        await arrived


async def _close_quietly(pubsub: Any, client: aioredis.Redis) -> None:
    try:
        await pubsub.aclose()
        await client.aclose()
    except (RedisError, OSError, TimeoutError, RuntimeError):
        pass


__all__ = ["CHANNEL", "RedisBus"]
