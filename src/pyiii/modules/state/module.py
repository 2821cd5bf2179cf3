"""The ``iii-state`` module: the ``state::*`` functions and the ``state`` trigger type (spec/state.md).

Each function decodes its input (§3.2), runs one adapter verb, and turns the outcome into the
reference engine's result shape (§5). Writes publish their event right after the adapter call
returns, which for one key is commit order (adapter contract rule 2), and never wait for delivery.
A store shared by several engines (Redis) reports the writes of all of them instead, and the module
publishes from that feed only (§7.7).

Values go to adapters as canonical JSON bytes (``values.py``) and come back decoded afresh, so the
size guard (§3.4 rule 5) is the length of bytes the store keeps, and no caller shares an object
with the store or with an event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from msgspec import UNSET

from pyiii.config import StateSettings
from pyiii.engine.invocations import CallContext
from pyiii.engine.modules import Module, ModuleHost
from pyiii.protocol.errors import InvocationError, deserialization_error

from . import requests
from .adapters import create_adapter
from .adapters.base import StateAdapter
from .errors import (
    INVALID_CURSOR,
    INVALID_PAGE_LIMITS,
    StateError,
    StoreError,
    ValueTooLarge,
    call_error,
)
from .ops import MISSING, Op, apply_ops
from .paging import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor, build_page, decode_cursor
from .requests import RequestError
from .triggers import (
    CREATED,
    DELETED,
    TRIGGER_DESCRIPTION,
    TRIGGER_TYPE,
    UPDATED,
    LiveSettings,
    StateTriggers,
)
from .values import InvalidValue, decode_value, encode_value

log = logging.getLogger("pyiii.state")

MODULE_NAME: Final = "iii-state"
SET: Final = "state::set"
GET: Final = "state::get"
DELETE: Final = "state::delete"
UPDATE: Final = "state::update"
LIST: Final = "state::list"
LIST_KEYS: Final = "state::list_keys"
LIST_ENTRIES: Final = "state::list_entries"
LIST_GROUPS: Final = "state::list_groups"
ON_CONFIG_CHANGE: Final = "iii-state::on-config-change"

WORKER_DESCRIPTION: Final = "Distributed key-value state management with reactive change triggers."

#: function id -> registered description (§1).
DESCRIPTIONS: Final = {
    SET: "Set a value in state",
    GET: "Get a value from state",
    DELETE: "Delete a value from state",
    UPDATE: "Update a value in state",
    LIST: "Get a group from state",
    LIST_KEYS: "List the keys stored in a scope",
    LIST_ENTRIES: "List the entries stored in a scope, one page at a time",
    LIST_GROUPS: "List all state groups",
}

Handler = Callable[[Any, CallContext], Awaitable[Any]]


class StateModule(Module):
    """Scoped key-value state with reactive change triggers.

    ``adapter`` overrides the store chosen by ``settings.adapter`` (tests use it to give each Redis
    test its own key prefix). ``live`` holds the settings read on every call (§9.3); changing its
    fields takes effect on the next call.
    """

    name = MODULE_NAME

    def __init__(self, settings: StateSettings | None = None, *, adapter: StateAdapter | None = None) -> None:
        self.settings = settings if settings is not None else StateSettings()
        self.live = LiveSettings(
            triggers_enabled=self.settings.triggers_enabled,
            max_value_bytes=self.settings.max_value_bytes,
            trigger_timeout_ms=self.settings.trigger_timeout_ms,
        )
        self.adapter = adapter if adapter is not None else create_adapter(self.settings)
        self.triggers: StateTriggers | None = None
        self._stopping = False

    async def start(self, host: ModuleHost) -> None:
        host.peer.info.description = WORKER_DESCRIPTION  # shown by engine::workers::list (§1)
        await self.adapter.open()
        self.triggers = StateTriggers(host.engine, self.live, position=self.adapter.event_position)
        if self.adapter.shared_events:
            # Events of writes by any engine sharing the store, in commit order (§7.7).
            await self.adapter.watch(self._publish_shared)
        host.register_trigger_type(TRIGGER_TYPE, self.triggers, description=TRIGGER_DESCRIPTION)
        handlers: dict[str, Handler] = {
            SET: self._set,
            GET: self._get,
            DELETE: self._delete,
            UPDATE: self._update,
            LIST: self._list,
            LIST_KEYS: self._list_keys,
            LIST_ENTRIES: self._list_entries,
            LIST_GROUPS: self._list_groups,
        }
        taskless = self.adapter.awaits_only_futures
        for function_id, handler in handlers.items():
            host.register_function(
                function_id, handler, description=DESCRIPTIONS[function_id], taskless=taskless
            )
        host.register_function(ON_CONFIG_CHANGE, self._on_config_change, metadata={"internal": True})

    async def idle(self) -> None:
        """Wait until the events of every write committed so far have been delivered (tests, tools)."""
        await self.adapter.events_delivered()
        if self.triggers is not None:
            await self.triggers.idle()

    async def stop(self) -> None:
        """Stop accepting writes, let deliveries finish (up to 5 s), close the store (§7.5)."""
        self._stopping = True
        if self.triggers is not None:
            await self.triggers.close()
        await self.adapter.close()

    # -------------------------------------------------------------- writes

    async def _set(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope, key, value = requests.set_input(data)
            encoded = encode_value(value)
        except (RequestError, InvalidValue) as exc:
            raise _decode_error(SET, exc) from None
        limit = self.live.max_value_bytes
        try:
            if limit and len(encoded) > limit:
                raise ValueTooLarge(len(encoded), limit)
            self._check_open()
            old = await self.adapter.set(scope, key, encoded)
        except StateError as exc:
            raise call_error(SET, exc) from exc
        self._publish(UPDATED if old is not None else CREATED, scope, key, old, encoded)
        return {"new_value": decode_value(encoded), "old_value": None if old is None else decode_value(old)}

    async def _delete(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope, key = requests.scope_key(data, requests.DELETE_INPUT)
        except RequestError as exc:
            raise _decode_error(DELETE, exc) from None
        try:
            self._check_open()
            old = await self.adapter.delete(scope, key)
        except StateError as exc:
            raise call_error(DELETE, exc) from exc
        self._publish(DELETED, scope, key, old, None)
        return UNSET if old is None else decode_value(old)

    async def _update(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope, key, ops = requests.update_input(data)
            for op in ops:  # non-finite numbers and non-JSON values are refused before anything runs
                if op.value is not None:
                    encode_value(op.value)
        except (RequestError, InvalidValue) as exc:
            raise _decode_error(UPDATE, exc) from None
        compute = _Update(ops, self.live.max_value_bytes)
        try:
            self._check_open()
            old, new = await self.adapter.update(scope, key, compute)
        except StateError as exc:
            raise call_error(UPDATE, exc) from exc
        except InvalidValue as exc:  # an op produced a number JSON cannot hold
            raise call_error(UPDATE, StoreError(str(exc))) from exc
        self._publish(UPDATED if old is not None else CREATED, scope, key, old, new)
        result: dict[str, Any] = {}
        if compute.errors:  # keys in byte order, like every object the module sends (§3.3 rule 5)
            result["errors"] = [dict(sorted(error.items())) for error in compute.errors]
        result["new_value"] = decode_value(new)
        result["old_value"] = None if old is None else decode_value(old)
        return result

    def _check_open(self) -> None:
        if self._stopping:
            raise StoreError("the state module is shutting down")

    def _publish(self, event_type: str, scope: str, key: str, old: bytes | None, new: bytes | None) -> None:
        if not self.adapter.shared_events:
            self._publish_shared(event_type, scope, key, old, new, None)

    def _publish_shared(
        self, event_type: str, scope: str, key: str, old: bytes | None, new: bytes | None, position: Any
    ) -> None:
        triggers = self.triggers
        if triggers is not None:
            triggers.publish(event_type, scope, key, old, new, position)

    # -------------------------------------------------------------- reads

    async def _get(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope, key = requests.scope_key(data, requests.GET_INPUT)
        except RequestError as exc:
            raise _decode_error(GET, exc) from None
        try:
            raw = await self.adapter.get(scope, key)
        except StateError as exc:
            raise call_error(GET, exc) from exc
        return UNSET if raw is None else decode_value(raw)

    async def _list(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope = requests.scope_only(data)
        except RequestError as exc:
            raise _decode_error(LIST, exc) from None
        try:
            items = await self.adapter.list_items(scope)
        except StateError as exc:
            raise call_error(LIST, exc) from exc
        return [decode_value(value) for _, value in items]

    async def _list_keys(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope = requests.scope_only(data)
        except RequestError as exc:
            raise _decode_error(LIST_KEYS, exc) from None
        try:
            keys = await self.adapter.list_keys(scope)
        except StateError as exc:
            raise call_error(LIST_KEYS, exc) from exc
        return {"keys": keys}

    async def _list_entries(self, data: Any, ctx: CallContext) -> Any:
        try:
            scope, cursor, limit = requests.page_input(data)
        except RequestError as exc:
            raise _decode_error(LIST_ENTRIES, exc) from None
        if limit is None:
            limit = DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise InvocationError(
                INVALID_PAGE_LIMITS, "limit must be an integer between 1 and 1000", LIST_ENTRIES
            )
        epoch = self.adapter.epoch
        try:
            after = 0 if cursor is None else decode_cursor(cursor, epoch, scope)
        except InvalidCursor:
            raise InvocationError(
                INVALID_CURSOR, "invalid cursor; restart the listing without a cursor", LIST_ENTRIES
            ) from None
        try:
            candidates = await self.adapter.list_after(scope, after, limit + 1)
        except StateError as exc:
            raise call_error(LIST_ENTRIES, exc) from exc
        return build_page(epoch, scope, candidates, limit)

    async def _list_groups(self, data: Any, ctx: CallContext) -> Any:
        try:
            requests.groups_input(data)
        except RequestError as exc:
            raise _decode_error(LIST_GROUPS, exc) from None
        try:
            groups = await self.adapter.list_groups()
        except StateError as exc:
            raise call_error(LIST_GROUPS, exc) from exc
        return {"groups": sorted(set(groups))}

    async def _on_config_change(self, data: Any, ctx: CallContext) -> Any:
        # §5.9: pyiii has no configuration worker, so there is nothing to re-read.
        return {"ok": True}


class _Update:
    """The ``compute`` of ``state::update``: ``apply_ops`` then the size guard (§5.4 steps 1-2).

    Pure, so an adapter may run it again after a conflict; ``errors`` are those of the last run,
    which is the one whose result was stored.
    """

    __slots__ = ("errors", "limit", "ops")

    def __init__(self, ops: tuple[Op, ...], limit: int | None) -> None:
        self.ops = ops
        self.limit = limit
        self.errors: list[dict[str, Any]] = []

    def __call__(self, old: bytes | None) -> bytes:
        result = apply_ops(MISSING if old is None else decode_value(old), self.ops)
        encoded = encode_value(result.new_value)
        if self.limit and len(encoded) > self.limit:
            raise ValueTooLarge(len(encoded), self.limit)
        self.errors = result.errors
        return encoded


def _decode_error(function_id: str, exc: RequestError | InvalidValue) -> InvocationError:
    detail = exc.detail if isinstance(exc, RequestError) else f"value: {exc}"
    return deserialization_error(function_id, detail)


__all__ = ["DESCRIPTIONS", "MODULE_NAME", "StateModule"]
