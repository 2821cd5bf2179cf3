"""The trigger types ``stream``, ``stream:join`` and ``stream:leave`` (spec/stream.md §5).

* ``stream`` (§5.1): data changes made **on this engine** (never fanned out through Redis, §7.2.6).
  Bindings are indexed by stream name, so an event only looks at the triggers of its stream. For one
  operation the matching triggers run sequentially in one background task; the writer never waits.
* ``stream:join`` / ``stream:leave`` (§5.2, S6): run by the listener, sequentially, awaited by the
  connection's read loop. A join trigger answering ``{"unauthorized": true}`` rejects the join; every
  other outcome, errors included, allows it.

Handlers and conditions resolve in the binding's namespace; handlers get the binding's metadata,
conditions none (§5 preamble).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from pyiii.engine.registry import Binding, TriggerProvider
from pyiii.modules.state.ops import invalid_type
from pyiii.protocol.errors import InvocationError, TriggerRegistrationError

if TYPE_CHECKING:
    from pyiii.engine.core import Engine

log = logging.getLogger("pyiii.stream")

STREAM: Final = "stream"
JOIN: Final = "stream:join"
LEAVE: Final = "stream:leave"

DESCRIPTIONS: Final = {
    STREAM: "Stream change trigger",
    JOIN: "Stream subscription join trigger",
    LEAVE: "Stream subscription leave trigger",
}

STREAM_NAME_REQUIRED: Final = "stream_name is required for stream triggers"

_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class StreamTriggerConfig:
    """A decoded ``stream`` trigger config (§5.1); ``None`` filters match anything."""

    stream_name: str
    group_id: str | None
    item_id: str | None
    condition_function_id: str | None

    @classmethod
    def parse(cls, config: Any) -> StreamTriggerConfig:
        """Raises ``TriggerRegistrationError`` with the §5.1 messages (S11)."""
        if not isinstance(config, dict):
            detail = invalid_type(config, "struct StreamTriggerConfig")
            raise TriggerRegistrationError(f"Failed to deserialize stream trigger: {detail}")
        values: dict[str, str | None] = {}
        for name in ("stream_name", "group_id", "item_id", "condition_function_id"):
            value = config.get(name)
            if value is not None and not isinstance(value, str):
                detail = f"{name}: {invalid_type(value, 'a string')}"
                raise TriggerRegistrationError(f"Failed to deserialize stream trigger: {detail}")
            values[name] = value
        stream_name = values["stream_name"]
        if stream_name is None:
            raise TriggerRegistrationError(STREAM_NAME_REQUIRED)
        return cls(
            stream_name,
            values["group_id"] or None,
            values["item_id"] or None,
            values["condition_function_id"] or None,
        )

    def matches(self, group_id: str, item_id: str | None) -> bool:
        """§5.1: ``group_id``/``item_id`` exact unless unset; a ``null`` event id compares as ``""``."""
        if self.group_id is not None and self.group_id != group_id:
            return False
        return self.item_id is None or self.item_id == (item_id or "")


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """A ``stream:join`` / ``stream:leave`` config (§5.2); anything malformed counts as ``{}``."""

    stream_name: str | None
    condition_function_id: str | None

    @classmethod
    def parse(cls, config: Any) -> LifecycleConfig:
        if not isinstance(config, dict):
            return cls(None, None)
        stream_name = config.get("stream_name")
        condition = config.get("condition_function_id")
        return cls(
            stream_name if isinstance(stream_name, str) and stream_name else None,
            condition if isinstance(condition, str) and condition else None,
        )


class _StreamProvider:
    """The ``stream`` trigger type's provider (registration only; firing is :meth:`StreamTriggers.fire`)."""

    def __init__(self, owner: StreamTriggers) -> None:
        self._owner = owner

    def register_trigger(self, binding: Binding) -> None:
        config = StreamTriggerConfig.parse(binding.config)
        binding.state = config
        self._owner.by_stream.setdefault(config.stream_name, {})[binding.id] = binding

    def unregister_trigger(self, binding: Binding) -> None:
        config = binding.state
        if not isinstance(config, StreamTriggerConfig):
            return  # never installed: a no-op (§5.1)
        group = self._owner.by_stream.get(config.stream_name)
        if group is not None and group.get(binding.id) is binding:
            del group[binding.id]
            if not group:
                del self._owner.by_stream[config.stream_name]


class _LifecycleProvider:
    """The ``stream:join`` or ``stream:leave`` provider."""

    def __init__(self, bindings: dict[str, Binding]) -> None:
        self._bindings = bindings

    def register_trigger(self, binding: Binding) -> None:
        binding.state = LifecycleConfig.parse(binding.config)
        self._bindings[binding.id] = binding

    def unregister_trigger(self, binding: Binding) -> None:
        if self._bindings.get(binding.id) is binding:
            del self._bindings[binding.id]


class StreamTriggers:
    """The three trigger types of the stream module and their invocation."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: stream name -> binding id -> binding of a ``stream`` trigger.
        self.by_stream: dict[str, dict[str, Binding]] = {}
        self.joins: dict[str, Binding] = {}
        self.leaves: dict[str, Binding] = {}
        self.providers: dict[str, TriggerProvider] = {
            STREAM: _StreamProvider(self),
            JOIN: _LifecycleProvider(self.joins),
            LEAVE: _LifecycleProvider(self.leaves),
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ `stream` (§5.1)

    def fire(self, stream_name: str, group_id: str, item_id: str | None, payload: bytes) -> None:
        """Schedule the matching ``stream`` triggers of one operation; never waits (§4.4 step 2)."""
        group = self.by_stream.get(stream_name)
        if not group or self._closed:
            return
        matching = [
            b
            for b in group.values()
            if isinstance(b.state, StreamTriggerConfig) and b.state.matches(group_id, item_id)
        ]
        if not matching:
            return
        task = self._engine.loop.create_task(self._run_stream(matching, _decode(payload)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_stream(self, bindings: list[Binding], frame: Any) -> None:
        for binding in bindings:  # §5.1 firing rule 2: sequentially
            config = binding.state
            assert isinstance(config, StreamTriggerConfig)
            if config.condition_function_id is not None:
                try:
                    verdict = await self._call(config.condition_function_id, frame, binding.namespace, None)
                except Exception as exc:  # §5.1 rule 3: a condition error skips the handler
                    self._log(binding, "condition", config.condition_function_id, exc)
                    continue
                if verdict is False:
                    continue
            try:
                await self._call(binding.function_id, frame, binding.namespace, binding.metadata)
            except Exception as exc:  # §5.1 rule 4: only logged
                self._log(binding, "handler", binding.function_id, exc)

    # ------------------------------------------------------------------ `stream:join` / `stream:leave` (§5.2)

    async def run_join(self, payload: dict[str, Any]) -> bool:
        """Run the applicable join triggers; ``True`` when one rejected the join (§3.7 steps 2-3)."""
        rejected = False
        for binding in self._applicable(self.joins, payload):
            if not await self._condition_allows(binding, payload):
                continue
            try:
                result = await self._call(binding.function_id, payload, binding.namespace, binding.metadata)
            except Exception as exc:  # §5.2 rule 3: an error allows the join
                self._log(binding, "handler", binding.function_id, exc)
                continue
            if isinstance(result, dict) and "unauthorized" in result:
                flag = result["unauthorized"]
                if flag is True:
                    rejected = True
                elif not isinstance(flag, bool):
                    log.warning(
                        "stream:join trigger %s returned a non-boolean unauthorized %r; join allowed",
                        binding.id,
                        flag,
                    )
        return rejected

    async def run_leave(self, payload: dict[str, Any]) -> None:
        """Run the applicable leave triggers; results and errors are ignored (§5.2 rule 4)."""
        for binding in self._applicable(self.leaves, payload):
            if not await self._condition_allows(binding, payload):
                continue
            try:
                await self._call(binding.function_id, payload, binding.namespace, binding.metadata)
            except Exception as exc:
                self._log(binding, "handler", binding.function_id, exc)

    def _applicable(self, bindings: dict[str, Binding], payload: dict[str, Any]) -> list[Binding]:
        return [
            b
            for b in list(bindings.values())
            if isinstance(b.state, LifecycleConfig)
            and (b.state.stream_name is None or b.state.stream_name == payload["stream_name"])
        ]

    async def _condition_allows(self, binding: Binding, payload: dict[str, Any]) -> bool:
        config = binding.state
        assert isinstance(config, LifecycleConfig)
        if config.condition_function_id is None:
            return True
        try:
            verdict = await self._call(config.condition_function_id, payload, binding.namespace, None)
        except Exception as exc:  # §5.2: a condition error lets the trigger run
            self._log(binding, "condition", config.condition_function_id, exc)
            return True
        return verdict is not False

    # ------------------------------------------------------------------ plumbing

    async def _call(self, function_id: str, payload: Any, namespace: str, metadata: Any) -> Any:
        return await self._engine.invoke(function_id, payload, namespace=namespace, metadata=metadata)

    @staticmethod
    def _log(binding: Binding, role: str, function_id: str, exc: Exception) -> None:
        detail = f"{exc.code}: {exc.message}" if isinstance(exc, InvocationError) else repr(exc)
        log.warning(
            "%s trigger %s: %s %s failed: %s", binding.trigger_type, binding.id, role, function_id, detail
        )

    async def idle(self) -> None:
        """Wait until no ``stream`` trigger task is running (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self, wait_s: float = 5.0) -> None:
        """Stop firing; give running deliveries ``wait_s`` to finish, then cancel them."""
        self._closed = True
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=wait_s)
            for task in pending:
                task.cancel()


__all__ = [
    "DESCRIPTIONS",
    "JOIN",
    "LEAVE",
    "STREAM",
    "STREAM_NAME_REQUIRED",
    "LifecycleConfig",
    "StreamTriggerConfig",
    "StreamTriggers",
]
