"""The ``state`` trigger type: matching, per-key ordered delivery, statistics (spec/state.md §7).

Delivery model (§7.5, D6): every (trigger, scope, key) has its own FIFO queue with at most one
delivery running. :meth:`StateTriggers.publish` is synchronous and called in commit order, right
after a write commits, so each queue holds its key's events in commit order; it never waits, so the
write's reply is never delayed. A queue is drained by its own task and dropped when empty: different
keys and different triggers never wait for each other.

A delivery calls the trigger's condition (if any) and then its function, both in the trigger's
namespace, each limited by ``trigger_timeout_ms``. Outcomes are logged and counted in the binding's
:class:`DeliveryStats`, shown by ``engine::registered-triggers::list`` (§7.6). There are no retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from msgspec import UNSET

from pyiii._deadlines import Deadlines
from pyiii._eager import finish, start_eagerly
from pyiii.engine.registry import Binding
from pyiii.protocol.codec import may_hold_channel_ref
from pyiii.protocol.errors import InvocationError, TriggerRegistrationError

from .ops import invalid_type
from .values import decode_value

if TYPE_CHECKING:
    from pyiii.engine.core import Engine

log = logging.getLogger("pyiii.state")

TRIGGER_TYPE: Final = "state"
TRIGGER_DESCRIPTION: Final = "State trigger"

CREATED: Final = "state:created"
UPDATED: Final = "state:updated"
DELETED: Final = "state:deleted"

#: How long a graceful shutdown waits for running and queued deliveries (§7.5 lifecycle).
SHUTDOWN_WAIT_S: Final = 5.0

_CONFIG_FIELDS: Final = ("scope", "key", "condition_function_id")


class LiveSettings:
    """The settings read at write or delivery time (§9.3): the module and its triggers share one."""

    __slots__ = ("max_value_bytes", "trigger_timeout_ms", "triggers_enabled")

    def __init__(self, *, triggers_enabled: bool, max_value_bytes: int | None, trigger_timeout_ms: int):
        self.triggers_enabled = triggers_enabled
        self.max_value_bytes = max_value_bytes
        self.trigger_timeout_ms = trigger_timeout_ms


def event_payload(event_type: str, scope: str, key: str, old_value: Any, new_value: Any) -> dict[str, Any]:
    """The six-field event (§7.4), keys in byte order (§3.3 rule 5)."""
    return {
        "event_type": event_type,
        "key": key,
        "new_value": new_value,
        "old_value": old_value,
        "scope": scope,
        "type": "state",
    }


#: A queued event: its payload, and whether it holds no channel refs (its values' encodings cannot
#: spell one; see ``pyiii.engine.local.PayloadHint``).
Event = tuple[dict[str, Any], bool]


class DeliveryStats:
    """Counters of one trigger (§7.6)."""

    __slots__ = (
        "condition_failed",
        "condition_skipped",
        "delivered",
        "discarded",
        "failed",
        "last_error",
        "pending",
        "timed_out",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.timed_out = 0
        self.condition_skipped = 0
        self.condition_failed = 0
        self.discarded = 0
        self.pending = 0
        self.last_error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "condition_failed": self.condition_failed,
            "condition_skipped": self.condition_skipped,
            "delivered": self.delivered,
            "discarded": self.discarded,
            "failed": self.failed,
            "last_error": self.last_error,
            "pending": self.pending,
            "timed_out": self.timed_out,
        }


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """A decoded ``state`` trigger config (§7.1): ``None`` fields match anything."""

    scope: str | None
    key: str | None
    condition_function_id: str | None

    @classmethod
    def parse(cls, config: Any) -> TriggerConfig:
        """Decode a config; raises ``ValueError`` with a serde-style detail."""
        if not isinstance(config, dict):
            raise ValueError(invalid_type(None if config is UNSET else config, "struct StateTriggerConfig"))
        values: dict[str, str | None] = {}
        for name in _CONFIG_FIELDS:
            value = config.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: {invalid_type(value, 'a string')}")
            values[name] = value
        return cls(values["scope"], values["key"], values["condition_function_id"] or None)


class StateTrigger:
    """A registered ``state`` trigger: its config, its per-key queues and its counters.

    Kept in ``binding.state``; the engine's introspection reads :meth:`delivery_stats`.
    """

    __slots__ = ("binding", "closed", "config", "queues", "since", "stats")

    def __init__(self, binding: Binding, config: TriggerConfig) -> None:
        self.binding = binding
        self.config = config
        #: Events at or before this position committed before the registration: they do not fire it.
        self.since: Any = None
        self.stats = DeliveryStats()
        #: (scope, key) -> events not yet finished; the head is the one being delivered.
        self.queues: dict[tuple[str, str], deque[Event]] = {}
        self.closed = False

    def delivery_stats(self) -> dict[str, Any]:
        return self.stats.as_dict()


#: Deliveries started eagerly inside one another (an in-process handler that writes, whose write
#: starts the next delivery, ...) before the next one becomes a task: bounds the stack depth.
_MAX_EAGER_DEPTH: Final = 4


class StateTriggers:
    """The ``state`` trigger provider (a ``TriggerProvider`` for the engine) and event dispatcher."""

    def __init__(
        self, engine: Engine, live: LiveSettings, *, position: Callable[[], Any] | None = None
    ) -> None:
        self._engine = engine
        self._live = live
        #: The store's current event position (shared stores only, see ``StateAdapter.event_position``).
        self._position = position
        self._exact: dict[tuple[str, str], dict[str, StateTrigger]] = {}
        self._by_scope: dict[str, dict[str, StateTrigger]] = {}
        self._by_key: dict[str, dict[str, StateTrigger]] = {}
        self._any: dict[str, StateTrigger] = {}
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: The running call of each callback-driven drain (:class:`_Drain`).
        self._calls: set[asyncio.Future[Any]] = set()
        self._eager_depth = 0
        #: ``trigger_timeout_ms`` per call on the shared 10 ms wheel (an ``asyncio.timeout`` per
        #: delivery was 5 % of the todo benchmark's engine time); expired calls are cancelled.
        self._deadlines = Deadlines(None, self._expire_call)
        self._expired: set[asyncio.Future[Any]] = set()
        #: Events dropped because ``triggers_enabled`` was false (§7.6).
        self.events_dropped_disabled = 0
        self._closed = False

    # -------------------------------------------------------------- registration (TriggerProvider)

    def register_trigger(self, binding: Binding) -> None:
        try:
            config = TriggerConfig.parse(binding.config)
        except ValueError as exc:
            raise TriggerRegistrationError(f"Failed to parse trigger config: {exc}") from None
        trigger = StateTrigger(binding, config)
        if self._position is not None:
            trigger.since = self._position()
        binding.state = trigger
        index, index_key = self._slot(config)
        if index is None:
            self._any[binding.id] = trigger
        else:
            index.setdefault(index_key, {})[binding.id] = trigger
        self._count += 1

    def unregister_trigger(self, binding: Binding) -> None:
        trigger = binding.state
        if not isinstance(trigger, StateTrigger) or trigger.closed:
            return
        trigger.closed = True
        self._count -= 1
        index, index_key = self._slot(trigger.config)
        group = self._any if index is None else index.get(index_key)
        if group is not None and group.get(binding.id) is trigger:
            del group[binding.id]
            if not group and index is not None:
                del index[index_key]
        self._discard_queued(trigger, "unregistered")

    def _slot(self, config: TriggerConfig) -> tuple[dict[Any, dict[str, StateTrigger]] | None, Any]:
        """The index holding triggers of this config and their key there (``None``: match-all)."""
        if config.scope is not None:
            if config.key is not None:
                return self._exact, (config.scope, config.key)
            return self._by_scope, config.scope
        if config.key is not None:
            return self._by_key, config.key
        return None, None

    # -------------------------------------------------------------- events

    @property
    def active(self) -> bool:
        """Whether any trigger is registered (lets writes skip building events)."""
        return self._count > 0

    def publish(
        self,
        event_type: str,
        scope: str,
        key: str,
        old: bytes | None,
        new: bytes | None,
        position: Any = None,
    ) -> None:
        """Queue one committed write's event for every matching trigger (§7.2, §7.3). Never waits.

        ``old`` and ``new`` are the values' canonical encodings (``None``: absent); they are decoded
        only when a trigger matches. ``position`` (shared stores) is the write's place in commit
        order; triggers registered after it committed are skipped (§7.1 rule 4).
        """
        if not self._count or self._closed:
            return
        if not self._live.triggers_enabled:
            self.events_dropped_disabled += 1
            log.debug("state event %s %r/%r dropped: triggers are disabled", event_type, scope, key)
            return
        event: Event | None = None
        for group in (
            self._any,
            self._exact.get((scope, key)),
            self._by_scope.get(scope),
            self._by_key.get(key),
        ):
            if not group:
                continue
            for trigger in group.values():
                if position is not None and trigger.since is not None and position <= trigger.since:
                    continue
                if event is None:
                    payload = event_payload(
                        event_type,
                        scope,
                        key,
                        None if old is None else decode_value(old),
                        None if new is None else decode_value(new),
                    )
                    ref_free = not (
                        (old is not None and may_hold_channel_ref(old))
                        or (new is not None and may_hold_channel_ref(new))
                    )
                    event = (payload, ref_free)
                self._enqueue(trigger, (scope, key), event)

    def _enqueue(self, trigger: StateTrigger, scope_key: tuple[str, str], event: Event) -> None:
        trigger.stats.pending += 1
        queue = trigger.queues.get(scope_key)
        if queue is not None:
            queue.append(event)
            return
        queue = trigger.queues[scope_key] = deque((event,))
        if trigger.config.condition_function_id is None:
            # The common case: each event is one call, driven by its future's done-callback (no
            # coroutine and no task per event). The call is on its way to the handler's worker in
            # this loop iteration (one process wake-up less per event with a remote worker); §7.5
            # rule 3 allows a handler to start before or after the writer's reply.
            _Drain(self, trigger, scope_key, queue).deliver()
            return
        drain = self._drain(trigger, scope_key, queue)
        if self._eager_depth >= _MAX_EAGER_DEPTH:  # a chain of handlers writing in-process: no deeper
            self._track(self._engine.loop.create_task(drain))
            return
        # With a condition, the first delivery starts now, up to its first suspension; the rest
        # runs as a task.
        self._eager_depth += 1
        try:
            rest = start_eagerly(drain)
        finally:
            self._eager_depth -= 1
        if rest is not None:
            self._track(self._engine.loop.create_task(finish(rest)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, trigger: StateTrigger, scope_key: tuple[str, str], queue: deque[Event]) -> None:
        """Deliver one key's events to one trigger, one at a time, in order (§7.5 rule 1)."""
        try:
            while queue:
                try:
                    await self._deliver(trigger, queue[0])
                finally:
                    if queue:
                        queue.popleft()
                        trigger.stats.pending -= 1
        finally:
            if trigger.queues.get(scope_key) is queue:
                del trigger.queues[scope_key]

    async def _deliver(self, trigger: StateTrigger, event: Event) -> None:
        payload, ref_free = event
        binding = trigger.binding
        stats = trigger.stats
        condition = trigger.config.condition_function_id
        if condition is not None:
            try:
                verdict = await self._call(condition, payload, binding.namespace, None, ref_free)
            except Exception as exc:
                stats.condition_failed += 1
                self._log_failure(trigger, payload, condition, exc, "condition")
                return
            if verdict is False:  # only an explicit false blocks (§7.5 step 1)
                stats.condition_skipped += 1
                return
        try:
            await self._call(binding.function_id, payload, binding.namespace, binding.metadata, ref_free)
        except Exception as exc:
            self._record_outcome(trigger, payload, exc)
        else:
            self._record_outcome(trigger, payload, None)

    def _record_outcome(
        self, trigger: StateTrigger, payload: dict[str, Any], error: Exception | None
    ) -> None:
        """Count (and log) the outcome of one handler call (§7.6): ``TimeoutError`` is our deadline."""
        stats = trigger.stats
        if error is None:
            stats.delivered += 1
            return
        if isinstance(error, TimeoutError):
            stats.timed_out += 1
        else:
            stats.failed += 1
        stats.last_error = self._error_record(error)
        self._log_failure(trigger, payload, trigger.binding.function_id, error, "handler")

    async def _call(
        self, function_id: str, payload: Any, namespace: str, metadata: Any, ref_free: bool = False
    ) -> Any:
        """One call under ``trigger_timeout_ms``; raises ``TimeoutError`` when it expires."""
        call, slot = self._start_call(function_id, payload, namespace, metadata, ref_free)
        try:
            return await call
        except asyncio.CancelledError:
            if self._expired_call(call, slot):  # our deadline, not a cancellation of this task
                raise TimeoutError from None
            raise
        finally:
            self._expired_call(call, slot)

    def _start_call(
        self, function_id: str, payload: Any, namespace: str, metadata: Any, ref_free: bool = False
    ) -> tuple[asyncio.Future[Any], int | None]:
        """Dispatch one call; the future is cancelled once ``trigger_timeout_ms`` passes. ``ref_free``:
        the payload holds no channel refs (an in-process SDK need not walk it, ``PayloadHint``)."""
        timeout_ms = self._live.trigger_timeout_ms
        call = self._engine.invoke_future(
            function_id, payload, namespace=namespace, metadata=metadata, ref_keys=() if ref_free else None
        )
        slot = self._deadlines.add(call, timeout_ms / 1000, None) if timeout_ms and not call.done() else None
        return call, slot

    def _expired_call(self, call: asyncio.Future[Any], slot: int | None) -> bool:
        """Forget a finished call's deadline; whether the deadline is what cancelled it."""
        if slot is None:
            return False
        self._deadlines.remove(slot, call)
        if call in self._expired:
            self._expired.discard(call)
            return True
        return False

    def _expire_call(self, call: asyncio.Future[Any], _value: None) -> None:
        if not call.done():
            self._expired.add(call)
            call.cancel()

    def _error_record(self, exc: Exception) -> dict[str, Any]:
        code, message = self._describe(exc)
        return {"at": int(time.time() * 1000), "code": code, "message": message}

    def _describe(self, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, InvocationError):
            return exc.code, exc.message
        if isinstance(exc, TimeoutError):
            return "timeout", f"no result within trigger_timeout_ms ({self._live.trigger_timeout_ms} ms)"
        return "invocation_error", str(exc) or type(exc).__name__

    def _log_failure(
        self, trigger: StateTrigger, payload: dict[str, Any], function_id: str, exc: Exception, role: str
    ) -> None:
        code, message = self._describe(exc)
        log.warning(
            "state trigger %s: %s %s failed for %s %r/%r: %s: %s",
            trigger.binding.id,
            role,
            function_id,
            payload["event_type"],
            payload["scope"],
            payload["key"],
            code,
            message,
        )

    def _discard_queued(self, trigger: StateTrigger, why: str) -> None:
        """Drop queued (not running) deliveries of a trigger; the running ones complete (§7.5)."""
        dropped = 0
        for queue in trigger.queues.values():
            if len(queue) > 1:
                head = queue[0]
                dropped += len(queue) - 1
                queue.clear()
                queue.append(head)
        if dropped:
            trigger.stats.discarded += dropped
            trigger.stats.pending -= dropped
            log.info("state trigger %s %s: %d queued deliveries discarded", trigger.binding.id, why, dropped)

    # -------------------------------------------------------------- lifecycle

    async def idle(self) -> None:
        """Wait until no delivery is queued or running (for tests and shutdown)."""
        while self._tasks or self._calls:
            await asyncio.wait([*self._tasks, *self._calls])

    async def close(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Graceful stop (§7.5): wait up to ``wait_s`` for deliveries, then discard the rest.

        Events published after this call are dropped.
        """
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (self._tasks or self._calls) and loop.time() < deadline:
            await asyncio.wait([*self._tasks, *self._calls], timeout=deadline - loop.time())
        tasks = list(self._tasks)
        for group in self._all_triggers():
            for trigger in group:
                dropped = sum(len(queue) for queue in trigger.queues.values())
                if dropped:
                    trigger.stats.discarded += dropped
                    trigger.stats.pending -= dropped
                    log.warning(
                        "state trigger %s: %d deliveries discarded at shutdown", trigger.binding.id, dropped
                    )
                    for queue in trigger.queues.values():
                        queue.clear()
        for task in tasks:
            task.cancel()
        calls = list(self._calls)
        for call in calls:  # the running calls of callback-driven drains are abandoned
            call.cancel()
        if tasks or calls:
            await asyncio.wait([*tasks, *calls])
        await asyncio.sleep(0)  # (the drains' done-callbacks run)
        self._deadlines.clear()

    def _all_triggers(self) -> list[list[StateTrigger]]:
        groups: list[list[StateTrigger]] = [list(self._any.values())]
        for index in (self._exact, self._by_scope, self._by_key):
            groups.extend(list(group.values()) for group in index.values())
        return groups


class _Drain:
    """One key's queue of one trigger without a condition (§7.5 rule 1: one event at a time, in
    order), delivered from done-callbacks: a call per event, no coroutine and no task (those were a
    measurable share of the engine's time, bench/RESULTS.md todo_e2e). What it counts and logs is
    what :meth:`StateTriggers._deliver` does."""

    __slots__ = ("owner", "queue", "scope_key", "slot", "trigger")

    def __init__(
        self,
        owner: StateTriggers,
        trigger: StateTrigger,
        scope_key: tuple[str, str],
        queue: deque[Event],
    ) -> None:
        self.owner = owner
        self.trigger = trigger
        self.scope_key = scope_key
        self.queue = queue
        self.slot: int | None = None

    def deliver(self) -> None:
        """Call the handler with the event at the head of the queue (or end the drain)."""
        owner, trigger, queue = self.owner, self.trigger, self.queue
        binding = trigger.binding
        while queue:
            payload, ref_free = queue[0]
            try:
                call, self.slot = owner._start_call(
                    binding.function_id, payload, binding.namespace, binding.metadata, ref_free
                )
            except Exception as exc:  # (dispatching raised: counted like a failed call)
                owner._record_outcome(trigger, payload, exc)
                self._pop()
                continue
            owner._calls.add(call)
            call.add_done_callback(self._done)
            return
        self._end()

    def _done(self, call: asyncio.Future[Any]) -> None:
        owner = self.owner
        owner._calls.discard(call)
        expired = owner._expired_call(call, self.slot)
        if call.cancelled() and not expired:  # abandoned at shutdown (close): the drain ends
            self._pop()
            self._end()
            return
        if self.queue:  # (close empties it, counting the head as discarded)
            error = TimeoutError() if expired else call.exception()
            if error is not None and not isinstance(error, Exception):
                error = RuntimeError(repr(error))
            owner._record_outcome(self.trigger, self.queue[0][0], error)
        self._pop()
        self.deliver()

    def _pop(self) -> None:
        if self.queue:
            self.queue.popleft()
            self.trigger.stats.pending -= 1

    def _end(self) -> None:
        queues = self.trigger.queues
        if queues.get(self.scope_key) is self.queue:
            del queues[self.scope_key]


__all__ = [
    "CREATED",
    "DELETED",
    "TRIGGER_DESCRIPTION",
    "TRIGGER_TYPE",
    "UPDATED",
    "DeliveryStats",
    "LiveSettings",
    "StateTrigger",
    "StateTriggers",
    "TriggerConfig",
    "event_payload",
]
