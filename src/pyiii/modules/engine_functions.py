"""The ``engine::`` functions and event trigger types (spec/protocol.md §5.4, §7), as a built-in module.

Introspection reads the engine's registries; ``engine::workers::register`` updates the calling
connection. Module name ``iii-engine-functions`` (always on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyiii.engine.channels import ChannelRegistry
from pyiii.engine.core import Engine
from pyiii.engine.invocations import CallContext
from pyiii.engine.modules import Module, ModuleHost
from pyiii.engine.peer import Peer
from pyiii.engine.registry import Binding
from pyiii.protocol import errors as codes
from pyiii.protocol.errors import InvocationError, TriggerRegistrationError, deserialization_error

log = logging.getLogger("pyiii.engine")

WORKERS_AVAILABLE = "engine::workers-available"
FUNCTIONS_AVAILABLE = "engine::functions-available"


def _args(function_id: str, data: Any, spec: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Validate a built-in's input: ``null`` is ``{}``, unknown keys ignored, wrong types rejected (§7)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise deserialization_error(function_id, f"expected an object, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, kind in spec.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise deserialization_error(function_id, f"invalid type for field `{key}`")
        out[key] = value
    return out


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _contains(haystack: str | None, needle: str) -> bool:
    return haystack is not None and needle.lower() in haystack.lower()


#: Input fields of ``engine::workers::register`` and their types (§7.1).
_REGISTER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "runtime": str,
    "version": str,
    "os": str,
    "pid": int,
    "isolation": str,
    "namespace": str,
    "telemetry": dict,
    "features": list,
}


class EventProvider:
    """Provider of ``engine::workers-available`` / ``engine::functions-available``: bindings take ``{}``."""

    def __init__(self) -> None:
        self.bindings: dict[str, Binding] = {}

    def register_trigger(self, binding: Binding) -> None:
        if binding.config not in (None, {}) and not isinstance(binding.config, dict):
            raise TriggerRegistrationError("config must be an object")
        self.bindings[binding.id] = binding

    def unregister_trigger(self, binding: Binding) -> None:
        self.bindings.pop(binding.id, None)


class EngineFunctionsModule(Module):
    name = "iii-engine-functions"

    def __init__(self, channels: ChannelRegistry | None = None) -> None:
        self.channels = channels or ChannelRegistry()
        self.workers_events = EventProvider()
        self.functions_events = EventProvider()
        self._unlisten: Callable[[], None] | None = None
        self.engine: Engine | None = None

    async def start(self, host: ModuleHost) -> None:
        engine = self.engine = host.engine
        fns: dict[str, Any] = {
            "engine::workers::register": (self.workers_register, "Report worker metadata"),
            "engine::functions::list": (self.functions_list, "List registered functions"),
            "engine::workers::list": (self.workers_list, "List connected workers and built-in modules"),
            "engine::triggers::list": (self.triggers_list, "List trigger types"),
            "engine::registered-triggers::list": (self.registered_triggers_list, "List registered triggers"),
            "engine::registered-triggers::info": (
                self.registered_triggers_info,
                "Describe one registered trigger",
            ),
            "engine::channels::create": (self.channels_create, "Create a streaming channel"),
        }
        for fid, (handler, description) in fns.items():  # none awaits anything: no task per call
            host.register_function(fid, handler, description=description, taskless=True)
        host.register_trigger_type(
            WORKERS_AVAILABLE, self.workers_events, description="Worker connected/left"
        )
        host.register_trigger_type(
            FUNCTIONS_AVAILABLE, self.functions_events, description="Functions changed"
        )
        self._unlisten = engine.add_listener(self._on_event)

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()

    # -- events (§5.4) ------------------------------------------------------------------------
    def _on_event(self, event: str, payload: dict[str, Any]) -> None:
        assert self.engine is not None
        if event == "functions_changed":
            if self.functions_events.bindings:
                listing = self._function_summaries({})
                self._fire(self.functions_events, {"event": "functions_changed", "functions": listing})
        else:
            self._fire(self.workers_events, {"event": event, **payload})

    def _fire(self, provider: EventProvider, payload: dict[str, Any]) -> None:
        assert self.engine is not None
        for binding in list(provider.bindings.values()):
            self.engine.invoke_void(
                binding.function_id, payload, namespace=binding.namespace, metadata=binding.metadata
            )

    # -- functions ----------------------------------------------------------------------------
    async def workers_register(self, data: Any, ctx: CallContext) -> Any:
        assert self.engine is not None
        fid = "engine::workers::register"
        args = _args(fid, data, _REGISTER_FIELDS)  # §7: a wrongly typed field is a deserialization_error
        data = data or {}
        ns = args.get("namespace")
        if ns is not None and not ns.strip():
            raise InvocationError(codes.INVALID_NAMESPACE, "namespace must not be blank", fid)
        if ctx.caller is None:
            raise InvocationError(
                codes.INVOCATION_ERROR, "engine::workers::register needs a calling worker", fid
            )
        self.engine.register_worker_info(ctx.caller, data)
        return {"success": True}

    def _function_summaries(self, args: dict[str, Any], caller: Peer | None = None) -> list[dict[str, Any]]:
        assert self.engine is not None
        engine = self.engine
        include_internal = args.get("include_internal") is True
        prefix = args.get("prefix")
        search = args.get("search")
        names: set[str] = set()
        if isinstance(args.get("worker"), str):
            names.add(args["worker"])
        if isinstance(args.get("workers"), list):
            names.update(w for w in args["workers"] if isinstance(w, str))
        out = []
        for entry in engine.functions.entries.values():
            fid = entry.function_id
            if not include_internal and (
                (fid.startswith("engine::") and not fid.startswith("engine::queue::")) or entry.is_internal
            ):
                continue
            if prefix and not fid.startswith(prefix):
                continue
            if search and not (_contains(fid, search) or _contains(entry.description, search)):
                continue
            worker_name = engine.worker_name_of(entry)
            if names and not ({o.info.name for o in entry.owners} & names or worker_name in names):
                continue
            if (
                caller is not None
                and caller.authorizer is not None
                and not caller.authorizer.allows_call(engine, fid, entry.namespace)
            ):
                continue
            item: dict[str, Any] = {
                "function_id": fid,
                "namespace": entry.namespace,
                "worker_name": worker_name,
            }
            if entry.description is not None:
                item["description"] = entry.description
            if entry.metadata is not None:
                item["metadata"] = entry.metadata
            out.append(item)
        out.sort(key=lambda f: (f["function_id"], f["namespace"]))
        return out

    async def functions_list(self, data: Any, ctx: CallContext) -> Any:
        args = _args(
            ctx.function_id,
            data,
            {"search": str, "prefix": str, "worker": str, "workers": list, "include_internal": bool},
        )
        return {"functions": self._function_summaries(args, ctx.caller)}

    async def workers_list(self, data: Any, ctx: CallContext) -> Any:
        assert self.engine is not None
        engine = self.engine
        args = _args(ctx.function_id, data, {"search": str, "runtime": str, "status": str})
        rows = []
        for peer in engine.peers.values():
            if peer.info.pid is None:
                continue  # §7.3 rule 1
            rows.append(self._worker_row(peer, "connected"))
        for peer in engine.module_peers.values():
            rows.append(self._worker_row(peer, "available"))
        if "runtime" in args:
            rows = [r for r in rows if r["runtime"] == args["runtime"]]
        if "status" in args:
            rows = [r for r in rows if r["status"] == args["status"]]
        if "search" in args:
            rows = [r for r in rows if _contains(r["name"], args["search"])]
        rows.sort(key=lambda r: (r["name"] or r["id"], r["id"]))
        return {"workers": rows}

    def _worker_row(self, peer: Peer, status: str) -> dict[str, Any]:
        assert self.engine is not None
        info = peer.info
        builtin = status == "available"
        return {
            "id": peer.worker_id,
            "name": info.name,
            "description": info.description,
            "version": self.engine.version if builtin else info.version,
            "runtime": info.runtime,
            "os": info.os,
            "isolation": info.isolation,
            "namespace": peer.namespace or "default",
            "status": status,
            "function_count": sum(1 for e in self.engine.functions.entries.values() if peer in e.owners),
            "active_invocations": len(peer.inflight),
            "connected_at_ms": peer.connected_at_ms,
            "ip_address": peer.ip_address,
        }

    async def triggers_list(self, data: Any, ctx: CallContext) -> Any:
        assert self.engine is not None
        args = _args(
            ctx.function_id, data, {"search": str, "prefix": str, "worker": str, "include_internal": bool}
        )
        out = []
        for ttype in self.engine.triggers.types.values():
            if not args.get("include_internal") and ttype.id.startswith("engine::"):
                continue
            if "prefix" in args and not ttype.id.startswith(args["prefix"]):
                continue
            if "search" in args and not (
                _contains(ttype.id, args["search"]) or _contains(ttype.description, args["search"])
            ):
                continue
            name = ttype.provider_peer.info.name or ttype.provider_peer.worker_id
            if "worker" in args and name != args["worker"]:
                continue
            out.append(
                {
                    "id": ttype.id,
                    "namespace": ttype.namespace,
                    "worker_name": name,
                    "description": ttype.description,
                }
            )
        out.sort(key=lambda t: (t["id"], t["namespace"]))
        return {"triggers": out}

    def _binding_row(self, binding: Binding) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": binding.id,
            "trigger_type": binding.trigger_type,
            "function_id": binding.function_id,
            "config": binding.config,
            "metadata": binding.metadata,
            "namespace": binding.namespace,
            "worker_id": binding.owner.worker_id,
            "worker_name": binding.owner.info.name,
            "state": "active" if binding.active else "pending",
        }
        stats = getattr(binding.state, "delivery_stats", None)
        if callable(stats):
            row["delivery_stats"] = stats()
        return row

    async def registered_triggers_list(self, data: Any, ctx: CallContext) -> Any:
        assert self.engine is not None
        args = _args(ctx.function_id, data, {"type": str, "function_id": str, "worker": str})
        out = []
        for binding in self.engine.triggers.bindings.values():
            if "type" in args and binding.trigger_type != args["type"]:
                continue
            if "function_id" in args and binding.function_id != args["function_id"]:
                continue
            if "worker" in args and args["worker"] not in (binding.owner.info.name, binding.owner.worker_id):
                continue
            out.append(self._binding_row(binding))
        out.sort(key=lambda b: b["id"])
        return {"triggers": out}

    async def registered_triggers_info(self, data: Any, ctx: CallContext) -> Any:
        assert self.engine is not None
        args = _args(ctx.function_id, data, {"id": str})
        binding = self.engine.triggers.bindings.get(args.get("id", ""))
        if binding is None:
            raise InvocationError(codes.NOT_FOUND, f"Trigger {args.get('id')} not found", ctx.function_id)
        return self._binding_row(binding)

    async def channels_create(self, data: Any, ctx: CallContext) -> Any:
        args = _args(ctx.function_id, data, {"buffer_size": int})
        return self.channels.create(args.get("buffer_size"))
