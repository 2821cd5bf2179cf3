"""The ``iii-stream`` module: stream functions, trigger types and the client listener (spec/stream.md).

Layout of the package:

=================  =====================================================================
:mod:`.module`     this file: the ``stream::*`` functions (§4), custom implementations (§6),
                   emission (§4.4), the listener's lifecycle
:mod:`.requests`   input decoding with the ``deserialization_error`` details (§4.1)
:mod:`.frames`     the client wire protocol, pure (§3.5, §3.6)
:mod:`.server`     the WebSocket listener: handshake, read loop, join/leave, teardown (§3)
:mod:`.auth`       the ``auth_function`` call and its outcomes (§3.3)
:mod:`.hub`        connections, bounded outbound queues, the subscription index (§3.9)
:mod:`.bus`        the event bus seam: local (kv) or Redis pub/sub (§7.1.5, §7.2.5)
:mod:`.triggers`   ``stream``, ``stream:join``, ``stream:leave`` (§5)
:mod:`.store`      the data model on the state module's adapters (§7), see its docstring
:mod:`.errors`     wire error codes
=================  =====================================================================

Storage reuses the state adapters (memory, SQLite, Redis): ``(stream, group)`` is a state scope
encoded as ``f"{len(stream.encode())}:{stream}:{group}"`` and the item id is the key (:mod:`.store`
explains why and what it costs).

Order of effects of a write (§4.4): persist (durable first, with ``file_based``), schedule the
``stream`` triggers, emit the event (never blocking on sockets), return. Values travel as canonical
JSON bytes from the adapter into the frame, so each event is serialized exactly once (S5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from msgspec import UNSET

from pyiii._listen import listen
from pyiii.config import StreamSettings
from pyiii.engine.invocations import CallContext
from pyiii.engine.modules import Module, ModuleHost
from pyiii.engine.registry import DEFAULT_NS
from pyiii.modules.state.adapters.base import StateAdapter
from pyiii.modules.state.errors import StateError
from pyiii.modules.state.ops import MISSING, Op, apply_ops, invalid_type
from pyiii.modules.state.values import InvalidValue, decode_value, encode_value
from pyiii.protocol.errors import InvocationError, deserialization_error

from . import frames, requests
from .bus import BusError, EventBus, LocalBus
from .errors import (
    DELETE,
    GET,
    LIST,
    LIST_ALL,
    LIST_GROUPS,
    SEND,
    SET,
    UPDATE,
    custom_error,
    json_error,
    store_error,
)
from .hub import Hub
from .limits import DEFAULT_LIMITS, StreamLimits
from .requests import RequestError
from .store import StreamStore, create_stream_adapter
from .triggers import DESCRIPTIONS as TRIGGER_DESCRIPTIONS
from .triggers import StreamTriggers

log = logging.getLogger("pyiii.stream")

MODULE_NAME: Final = "iii-stream"
WORKER_DESCRIPTION: Final = "Realtime streams of JSON data pushed to WebSocket clients."

DESCRIPTIONS: Final = {
    SET: "Set a value in a stream",
    GET: "Get a value from a stream",
    DELETE: "Delete a value from a stream",
    LIST: "List the values of a stream group",
    LIST_GROUPS: "List the groups of a stream",
    LIST_ALL: "List every stream with its groups",
    SEND: "Send a custom event to a stream's subscribers",
    UPDATE: "Atomically update a value in a stream",
}

Handler = Callable[[Any, CallContext], Awaitable[Any]]


class StreamModule(Module):
    """Realtime JSON streams. ``port`` is the bound listener port once started.

    ``adapter`` and ``bus`` override what ``settings.adapter`` chooses (tests use them: a Redis key
    prefix per test, for example); ``limits`` are the listener's (:class:`~.limits.StreamLimits`).
    """

    name = MODULE_NAME

    def __init__(
        self,
        settings: StreamSettings | None = None,
        *,
        adapter: StateAdapter | None = None,
        bus: EventBus | None = None,
        limits: StreamLimits = DEFAULT_LIMITS,
    ) -> None:
        self.settings = settings if settings is not None else StreamSettings()
        self.store = StreamStore(
            adapter if adapter is not None else create_stream_adapter(self.settings.adapter)
        )
        self.bus = bus if bus is not None else _default_bus(self.settings)
        self.hub = Hub()
        self.limits = limits
        self.triggers: StreamTriggers
        self.auth: Any = None
        self.server: Any = None
        self.port: int | None = None
        self.host = self.settings.host
        self._engine: Any = None
        self._runner: web.BaseRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: ModuleHost) -> None:
        from .server import StreamServer

        host.peer.info.description = WORKER_DESCRIPTION
        self._engine = host.engine
        await self.store.open()
        await self.bus.start(self.hub)
        self.triggers = StreamTriggers(host.engine)
        for type_id, provider in self.triggers.providers.items():
            host.register_trigger_type(type_id, provider, description=TRIGGER_DESCRIPTIONS[type_id])
        handlers: dict[str, Handler] = {
            SET: self._set,
            GET: self._get,
            DELETE: self._delete,
            LIST: self._list,
            LIST_GROUPS: self._list_groups,
            LIST_ALL: self._list_all,
            SEND: self._send,
            UPDATE: self._update,
        }
        # No task per call when the store and the bus are local (a Redis one needs the call's own
        # task: redis-py binds its timeouts to the current task).
        taskless = self.store.adapter.awaits_only_futures and self.bus.awaits_only_futures
        for function_id, handler in handlers.items():
            host.register_function(
                function_id, handler, description=DESCRIPTIONS[function_id], taskless=taskless
            )
        if self.settings.auth_function:
            from .auth import Authenticator

            self.auth = Authenticator(
                host.engine, self.settings.auth_function, timeout_s=self.limits.auth_timeout_s
            )
        self.server = StreamServer(self, self.limits)
        await self._listen()

    async def _listen(self) -> None:
        assert self.server is not None
        # No handler cancellation: a client that goes away ends its read loop, and teardown runs there.
        listener = web.Server(self.server.handle, access_log=None)
        self._runner, self.port = await listen(
            listener, self.settings.host, self.settings.port, shutdown_timeout=1.0
        )
        log.info("Stream API listening on address: %s:%s", self.settings.host, self.port)

    async def stop(self) -> None:
        """Stop accepting, close clients with 1001 (teardown runs), stop triggers, close the store."""
        runner, self._runner = self._runner, None
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()
        if self.server is not None:
            await self.server.close_all()
        if runner is not None:
            await runner.cleanup()
        if hasattr(self, "triggers"):
            await self.triggers.close()
        await self.bus.stop()
        await self.store.close()

    @property
    def url(self) -> str:
        """``ws://host:port`` of the bound listener."""
        if self.port is None:
            raise RuntimeError("the stream module is not started")
        return f"ws://{self.host}:{self.port}"

    async def idle(self) -> None:
        """Wait until emitted events were delivered and triggers and teardowns have finished (tests)."""
        await self.bus.idle()
        await self.triggers.idle()
        if self.server is not None:
            await self.server.idle()

    # ------------------------------------------------------------------ emission (§4.4)

    async def _emit(
        self, stream_name: str, group_id: str, item_id: str | None, event: bytes, *, strict: bool = False
    ) -> None:
        """Build the frame once, schedule the ``stream`` triggers, publish. ``strict``: a failed publish
        raises :class:`BusError` (``send``); otherwise it is logged (§4.4)."""
        payload = frames.stream_frame(_now_ms(), stream_name, group_id, item_id, event)
        self.triggers.fire(stream_name, group_id, item_id, payload)
        try:
            await self.bus.publish(stream_name, group_id, item_id, payload)
        except BusError as exc:
            if strict:
                raise
            log.error("stream event for %r/%r/%r not emitted: %s", stream_name, group_id, item_id, exc)

    # ------------------------------------------------------------------ custom implementations (§6)

    def _custom(self, function_id: str, stream_name: str) -> str | None:
        """``stream::<op>(<stream_name>)`` when registered in ``default`` (§6 rule 1)."""
        custom = f"{function_id}({stream_name})"
        entry = self._engine.functions.get(DEFAULT_NS, custom)
        return custom if entry is not None and (entry.owners or entry.builtin is not None) else None

    async def _custom_write(
        self, function_id: str, custom: str, data: Any, *, needs_new: bool
    ) -> tuple[Any, Any, dict[str, Any]]:
        """Run a custom ``set``/``update``/``delete`` and check its result (§6 rule 4).

        Returns ``(old_value or None, new_value, result object)``.
        """
        try:
            result = await self._engine.invoke(custom, data)
        except InvocationError as exc:
            raise custom_error(function_id, f"Failed to invoke function: {exc.message}") from None
        if result is None:
            code_prefix = {SET: "set", UPDATE: "update", DELETE: "delete"}[function_id]
            raise custom_error(
                function_id, f"Failed to {code_prefix} stream item: Function returned no result"
            )
        if not isinstance(result, dict):
            raise json_error(function_id, invalid_type(result, "a map"))
        if needs_new and "new_value" not in result:
            raise json_error(function_id, "missing field `new_value`")
        return result.get("old_value"), result.get("new_value"), result

    async def _custom_read(self, custom: str, data: Any) -> Any:
        """A custom ``get``/``list``/``list_groups``: verbatim result, errors unchanged (§6 rule 3)."""
        result = await self._engine.invoke(custom, data)
        return UNSET if result is None else result

    # ------------------------------------------------------------------ writes

    async def _set(self, data: Any, ctx: CallContext) -> Any:
        try:
            ref, value = requests.set_input(data)
            encoded = encode_value(value)
        except (RequestError, InvalidValue) as exc:
            raise _decode_error(SET, exc) from None
        custom = self._custom(SET, ref.stream_name)
        if custom is not None:
            old, new, _ = await self._custom_write(SET, custom, data, needs_new=True)
            await self._emit_change(ref, frames.CREATE if old is None else frames.UPDATE, new)
            return {"new_value": new, "old_value": old}
        try:
            previous = await self.store.set(ref.stream_name, ref.group_id, ref.item_id, encoded)
        except StateError as exc:
            raise store_error(SET, str(exc)) from exc
        kind = frames.CREATE if previous is None else frames.UPDATE  # a stored null counts as present
        await self._emit(ref.stream_name, ref.group_id, ref.item_id, frames.change_event(kind, encoded))
        return {
            "new_value": decode_value(encoded),
            "old_value": None if previous is None else decode_value(previous),
        }

    async def _delete(self, data: Any, ctx: CallContext) -> Any:
        try:
            ref = requests.item_ref(data, requests.DELETE_INPUT)
        except RequestError as exc:
            raise _decode_error(DELETE, exc) from None
        custom = self._custom(DELETE, ref.stream_name)
        if custom is not None:
            old, _, _ = await self._custom_write(DELETE, custom, data, needs_new=False)
            if old is not None:  # §6 rule 5: delete only when old_value is present and not null
                await self._emit_change(ref, frames.DELETE, old)
            return {"old_value": old}
        try:
            previous = await self.store.delete(ref.stream_name, ref.group_id, ref.item_id)
        except StateError as exc:
            raise store_error(DELETE, str(exc)) from exc
        if previous is None:
            return {"old_value": None}  # §4.3.3: nothing removed, nothing pushed
        await self._emit(
            ref.stream_name, ref.group_id, ref.item_id, frames.change_event(frames.DELETE, previous)
        )
        return {"old_value": decode_value(previous)}

    async def _update(self, data: Any, ctx: CallContext) -> Any:
        try:
            ref, ops = requests.update_input(data)
            for op in ops:  # non-finite numbers and non-JSON values are refused before anything runs
                if op.value is not None:
                    encode_value(op.value)
        except (RequestError, InvalidValue) as exc:
            raise _decode_error(UPDATE, exc) from None
        custom = self._custom(UPDATE, ref.stream_name)
        if custom is not None:
            old, new, result = await self._custom_write(UPDATE, custom, data, needs_new=True)
            await self._emit_change(ref, frames.CREATE if old is None else frames.UPDATE, new)
            out: dict[str, Any] = {}
            if "errors" in result:
                out["errors"] = result["errors"]
            out["new_value"] = new
            out["old_value"] = old
            return out
        compute = _Update(ops)
        try:
            previous, encoded = await self.store.update(ref.stream_name, ref.group_id, ref.item_id, compute)
        except StateError as exc:
            raise store_error(UPDATE, str(exc)) from exc
        except InvalidValue as exc:  # an op produced a number JSON cannot hold
            raise store_error(UPDATE, str(exc)) from exc
        kind = frames.CREATE if previous is None else frames.UPDATE
        await self._emit(ref.stream_name, ref.group_id, ref.item_id, frames.change_event(kind, encoded))
        result_out: dict[str, Any] = {}
        if compute.errors:  # §4.3.8 rule 5: only when an op failed; keys in byte order
            result_out["errors"] = [dict(sorted(error.items())) for error in compute.errors]
        result_out["new_value"] = decode_value(encoded)
        result_out["old_value"] = None if previous is None else decode_value(previous)
        return result_out

    async def _emit_change(self, ref: requests.ItemRef, kind: str, value: Any) -> None:
        """The frame of a successful custom write (§6 rule 5)."""
        try:
            encoded = encode_value(value)
        except InvalidValue as exc:
            log.error("stream::%s(%s) returned a value that cannot be sent: %s", kind, ref.stream_name, exc)
            return
        await self._emit(ref.stream_name, ref.group_id, ref.item_id, frames.change_event(kind, encoded))

    async def _send(self, data: Any, ctx: CallContext) -> Any:
        try:
            message = requests.send_input(data)
            encoded = encode_value(message.data)
        except (RequestError, InvalidValue) as exc:
            raise _decode_error(SEND, exc) from None
        event = frames.custom_event(message.event_type, encoded)
        try:
            await self._emit(message.stream_name, message.group_id, message.item_id, event, strict=True)
        except BusError as exc:
            raise store_error(SEND, str(exc)) from exc
        return None

    # ------------------------------------------------------------------ reads

    async def _get(self, data: Any, ctx: CallContext) -> Any:
        try:
            ref = requests.item_ref(data, requests.GET_INPUT)
        except RequestError as exc:
            raise _decode_error(GET, exc) from None
        custom = self._custom(GET, ref.stream_name)
        if custom is not None:
            return await self._custom_read(custom, data)
        try:
            raw = await self.store.get(ref.stream_name, ref.group_id, ref.item_id)
        except StateError as exc:
            raise store_error(GET, str(exc)) from exc
        return UNSET if raw is None else decode_value(raw)

    async def _list(self, data: Any, ctx: CallContext) -> Any:
        try:
            stream_name, group_id = requests.group_ref(data)
        except RequestError as exc:
            raise _decode_error(LIST, exc) from None
        custom = self._custom(LIST, stream_name)
        if custom is not None:
            return await self._custom_read(custom, data)
        try:
            values = await self.store.list_values(stream_name, group_id)
        except StateError as exc:
            raise store_error(LIST, str(exc)) from exc
        return [decode_value(value) for value in values]

    async def _list_groups(self, data: Any, ctx: CallContext) -> Any:
        try:
            stream_name = requests.stream_only(data)
        except RequestError as exc:
            raise _decode_error(LIST_GROUPS, exc) from None
        custom = self._custom(LIST_GROUPS, stream_name)
        if custom is not None:
            return await self._custom_read(custom, data)
        try:
            return await self.store.list_groups(stream_name)
        except StateError as exc:
            raise store_error(LIST_GROUPS, str(exc)) from exc

    async def _list_all(self, data: Any, ctx: CallContext) -> Any:
        try:
            requests.list_all_input(data)
        except RequestError as exc:
            raise _decode_error(LIST_ALL, exc) from None
        try:
            streams = await self.store.list_all()
        except StateError as exc:
            raise store_error(LIST_ALL, str(exc)) from exc
        # Keys in byte order, like every object the module returns (state.md §3.3 rule 5).
        return {"count": len(streams), "stream": [{"groups": g, "id": name} for name, g in streams.items()]}

    # ------------------------------------------------------------------ join snapshots (§3.7 step 6)

    async def snapshot(self, stream_name: str, group_id: str, item_id: str | None) -> bytes | None:
        """The ``sync`` event of a join, or ``None`` when the read failed (logged, §3.7 step 8).

        Reads go through the custom ``get``/``list`` when one is registered (§6 rule 6); otherwise the
        stored bytes go into the frame as they are.
        """
        try:
            if item_id is None:
                if self._custom(LIST, stream_name) is not None:
                    values = await self._engine.invoke(
                        LIST, {"stream_name": stream_name, "group_id": group_id}
                    )
                    return frames.sync_group_event(encode_value(values))
                stored = await self.store.list_values(stream_name, group_id)
                return frames.sync_group_event(b"[" + b",".join(stored) + b"]")
            if self._custom(GET, stream_name) is not None:
                value = await self._engine.invoke(
                    GET, {"stream_name": stream_name, "group_id": group_id, "item_id": item_id}
                )
                return frames.sync_item_event(encode_value(value))
            return frames.sync_item_event(await self.store.get(stream_name, group_id, item_id))
        except (InvocationError, StateError, InvalidValue) as exc:
            detail = f"{exc.code}: {exc.message}" if isinstance(exc, InvocationError) else str(exc)
            log.warning("stream join snapshot of %r/%r/%r failed: %s", stream_name, group_id, item_id, detail)
            return None


class _Update:
    """The ``compute`` of ``stream::update``: ``apply_ops`` unchanged, no size limit (§4.3.8 rule 2)."""

    __slots__ = ("errors", "ops")

    def __init__(self, ops: tuple[Op, ...]) -> None:
        self.ops = ops
        self.errors: list[dict[str, Any]] = []

    def __call__(self, old: bytes | None) -> bytes:
        result = apply_ops(MISSING if old is None else decode_value(old), self.ops)
        encoded = encode_value(result.new_value)
        self.errors = result.errors
        return encoded


def _default_bus(settings: StreamSettings) -> EventBus:
    if settings.adapter.name == "redis":
        from .redis_bus import RedisBus

        return RedisBus(settings.adapter.redis_url or "redis://localhost:6379")
    return LocalBus()


def _decode_error(function_id: str, exc: RequestError | InvalidValue) -> InvocationError:
    detail = exc.detail if isinstance(exc, RequestError) else f"data: {exc}"
    return deserialization_error(function_id, detail)


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["DESCRIPTIONS", "MODULE_NAME", "StreamModule"]
