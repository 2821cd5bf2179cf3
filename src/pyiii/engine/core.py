"""The engine: registries, invocation routing, bindings, connection lifecycle (spec/protocol.md §4–§6).

The engine is transport-free. A transport (the WebSocket server, the in-process SDK transport, a
built-in module) creates a :class:`~pyiii.engine.peer.Peer`, calls :meth:`Engine.attach`, feeds each
decoded message to :meth:`Engine.handle` in arrival order, and calls :meth:`Engine.detach` exactly
when the connection is gone. Everything the engine says to a peer goes through ``Peer.send``.

Every handler except ``reattach`` is synchronous: a registration is fully applied before the next
message is read (§3.1 rule 6), and a built-in trigger provider validates and installs a binding
synchronously, so buffered registrations replay atomically once a namespace is known (§6.4).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from msgspec import UNSET, Raw

from pyiii._deadlines import RESOLUTION_S, Deadlines
from pyiii._eager import start_eagerly
from pyiii._ids import id_source
from pyiii.engine.invocations import CallContext, Pending
from pyiii.engine.local import PAYLOAD_HINT
from pyiii.engine.peer import FrameTooLarge, Peer
from pyiii.engine.registry import (
    DEFAULT_NS,
    Binding,
    BuiltinHandler,
    FunctionEntry,
    FunctionRegistry,
    TriggerProvider,
    TriggerRegistry,
    TriggerType,
)
from pyiii.protocol import errors as codes
from pyiii.protocol.codec import Malformed, to_python
from pyiii.protocol.errors import InvocationError, TriggerRegistrationError
from pyiii.protocol.messages import (
    ErrorBody,
    InvocationResult,
    InvocationResultIn,
    InvokeFunction,
    InvokeFunctionIn,
    PingIn,
    Pong,
    ReattachIn,
    RegisterFunctionIn,
    RegisterTrigger,
    RegisterTriggerIn,
    RegisterTriggerTypeIn,
    RegistrationRejected,
    TriggerRegistrationResult,
    TriggerRegistrationResultIn,
    UnregisterFunctionIn,
    UnregisterTrigger,
    UnregisterTriggerIn,
    UnregisterTriggerTypeIn,
    WorkerRegistered,
    present,
)

log = logging.getLogger("pyiii.engine")

#: Invocation ids the engine makes (UUID v4 shaped; see pyiii._ids).
_TID_PREFIX, _TID_COUNTER = id_source()

#: Trigger type ids that workers can never provide (§5.3 rule 1).
BUILTIN_TYPE_IDS = frozenset(
    {"http", "cron", "state", "stream", "stream:join", "stream:leave", "subscribe", "log"}
)

#: Invocation deadlines (§4.5) share one loop timer per slot of this many seconds: a timer per call cost
#: more than the rest of the routing, and cancelling a uvloop timer costs one more loop iteration.
#: A call expires within one slot after its deadline, never before.
DEADLINE_SLOT_S = 0.01

ENQUEUE_DISABLED = (
    "Cannot enqueue to queue '{queue}': the queue module is not enabled. "
    'Add "- name: queue" to "workers:" in the config file.'
)


@dataclass(frozen=True)
class EngineSettings:
    """Engine-wide limits (config-cli-modules.md §2.2); durations in milliseconds."""

    invocation_timeout_ms: int = 300_000
    registration_namespace_grace_ms: int = 5000
    reattach_wait_ms: int = 5000
    identity_probe_ms: int = 2000
    functions_changed_delay_ms: int = 100


@dataclass(frozen=True)
class EnqueueRequest:
    queue: str
    function_id: str
    data: Any
    message_receipt_id: str
    namespace: str
    traceparent: str | None = None
    baggage: str | None = None


EngineEventListener = Callable[[str, dict[str, Any]], None]


#: :meth:`Engine.call_builtin`: the call is not for the short path (the caller sends the message).
NOT_BUILTIN: Final = object()


class _BuiltinCall:
    """Who waits for a built-in call's answer, and whether it was given (the call's deadline may
    answer ``invocation_timeout`` first; the built-in's late result is then dropped)."""

    __slots__ = ("caller", "caller_inv_id", "function_id", "future", "settled", "slot")

    def __init__(
        self,
        caller: Peer | None,
        caller_inv_id: str | None,
        future: asyncio.Future[Any] | None,
        function_id: str,
    ) -> None:
        self.caller = caller
        self.caller_inv_id = caller_inv_id
        self.future = future
        self.function_id = function_id
        self.settled = False
        self.slot: Any = None


def _opt_str(value: Any) -> str | None:
    """An optional string field of either message family: UNSET and None both mean absent."""
    return value if isinstance(value, str) else None


def _blank(value: str | None) -> bool:
    return value is not None and not value.strip()


class Engine:
    """The iii engine core. Create it, add modules, ``await start()``, attach peers, ``await stop()``."""

    def __init__(self, settings: EngineSettings | None = None) -> None:
        from pyiii._version import __version__

        self.settings = settings or EngineSettings()
        self.version = __version__
        self.functions = FunctionRegistry()
        self.triggers = TriggerRegistry()
        self.peers: dict[str, Peer] = {}
        self.module_peers: dict[str, Peer] = {}
        self.pending: dict[str, Pending] = {}
        #: Function ids served by built-in modules in ``default``: reserved (§5.1 rule 4).
        self.reserved: set[str] = set()
        #: Set by the queue module; ``None`` means Enqueue answers ``enqueue_error`` (§4.3 rule 4).
        self.enqueue_hook: Callable[[EnqueueRequest], Awaitable[None]] | None = None
        self.modules: list[Any] = []
        #: ``ws://host:port`` of the first worker listener, once bound (in-process SDK channels use it).
        self.ws_url: str | None = None
        #: Set by the observability module: receives each ``LOGS``-prefixed telemetry frame (§8).
        self.telemetry_sink: Callable[[bytes], None] | None = None
        #: ``(level, payload)``: what an ``engine::log::<level>`` Void call stores, for in-process
        #: loggers (``InProcessTransport.direct_log``); set by the observability module.
        self.log_sink: Callable[[str, Any], None] | None = None
        self._listeners: list[EngineEventListener] = []
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}
        self._functions_changed_handle: asyncio.TimerHandle | None = None
        self._functions_version_seen = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout_s = self.settings.invocation_timeout_ms / 1000
        #: Invocation deadlines by target-leg id (one loop timer per slot, see ``_deadlines.py``).
        self._deadlines = Deadlines(None, self._on_deadline, DEADLINE_SLOT_S)
        self.started = False
        self._handlers: dict[type, Callable[[Peer, Any], Any]] = {
            InvokeFunctionIn: self._on_invoke,
            InvokeFunction: self._on_invoke,
            InvocationResultIn: self._on_result,
            InvocationResult: self._on_result,
            RegisterFunctionIn: self._on_registration,
            UnregisterFunctionIn: self._on_registration,
            RegisterTriggerTypeIn: self._on_registration,
            UnregisterTriggerTypeIn: self._on_registration,
            RegisterTriggerIn: self._on_registration,
            UnregisterTriggerIn: self._on_registration,
            TriggerRegistrationResultIn: self._on_trigger_verdict,
            TriggerRegistrationResult: self._on_trigger_verdict,
            ReattachIn: self._on_reattach,
            Malformed: self._on_malformed,
            PingIn: lambda peer, _msg: peer.send(Pong()),
        }
        # The plain (SDK-side) registration structs arrive from in-process peers.
        from pyiii.protocol import messages as m

        for cls in (
            m.RegisterFunction,
            m.UnregisterFunction,
            m.RegisterTriggerType,
            m.UnregisterTriggerType,
            m.RegisterTrigger,
            m.UnregisterTrigger,
        ):
            self._handlers[cls] = self._on_registration
        self._handlers[m.Reattach] = self._on_reattach

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def add_module(self, module: Any) -> None:
        """Add a built-in module; it is started by :meth:`start` (see ``pyiii.engine.modules``)."""
        self.modules.append(module)

    async def start(self) -> None:
        from pyiii.engine.modules import ModuleHost

        self._loop = asyncio.get_running_loop()
        for module in self.modules:
            peer = ModulePeer(module.name)
            peer.namespace = DEFAULT_NS
            self.module_peers[module.name] = peer
            await module.start(ModuleHost(self, peer))
        self.started = True

    async def stop(self) -> None:
        """Close every peer with 1012 (D19), fail pending calls with ``invocation_stopped``, stop modules."""
        # Fail pending calls first, while their callers are still live, so each caller gets its
        # `invocation_stopped` before the 1012 close (RemotePeer.close drains queued frames first).
        pending_calls = list(self.pending.values())
        self.pending.clear()
        for pending in pending_calls:
            pending.target.inflight.pop(pending.id, None)
            self._settle_error(pending, codes.INVOCATION_STOPPED, "Invocation stopped")
        peers = list(self.peers.values())
        for peer in peers:
            self.detach(peer)
        await asyncio.gather(*(p.close(1012, "engine shutting down") for p in peers), return_exceptions=True)
        for module in reversed(self.modules):
            try:
                await module.stop()
            except Exception:
                log.exception("module %s failed to stop", getattr(module, "name", module))
        for task in list(self._background):
            task.cancel()
        if self._functions_changed_handle is not None:
            self._functions_changed_handle.cancel()
        self._deadlines.clear()
        self.started = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run a background task owned by the engine (kept referenced, cancelled on stop)."""
        task: asyncio.Task[Any] = self.loop.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def telemetry(self, frame: bytes) -> None:
        """A binary telemetry frame from ``/otel`` or ``/`` (§8.1): ``LOGS`` frames go to the log store,
        ``OTLP`` and ``MTRC`` are discarded. Never raises."""
        sink = self.telemetry_sink
        if sink is None or not frame.startswith(b"LOGS"):
            return
        try:
            sink(frame[4:])
        except Exception:
            log.debug("telemetry frame dropped", exc_info=True)

    # ------------------------------------------------------------------ events

    def add_listener(self, listener: EngineEventListener) -> Callable[[], None]:
        """Observe engine events: ``worker_connected``, ``worker_disconnected``,
        ``worker_metadata_updated`` (payload ``{"worker_id"}``) and ``functions_changed`` (``{}``)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, payload)
            except Exception:
                log.exception("engine event listener failed on %s", event)

    def _functions_changed(self) -> None:
        """Coalesce registry changes into one ``functions_changed`` event (§5.4: within 1 s)."""
        if self._functions_changed_handle is None and self._loop is not None:
            self._functions_changed_handle = self._loop.call_later(
                self.settings.functions_changed_delay_ms / 1000, self._fire_functions_changed
            )

    def _fire_functions_changed(self) -> None:
        self._functions_changed_handle = None
        if self.functions.version != self._functions_version_seen:
            self._functions_version_seen = self.functions.version
            self._emit("functions_changed", {})

    # ------------------------------------------------------------------ connections

    def attach(self, peer: Peer) -> WorkerRegistered:
        """Register a new connection; returns the ``workerregistered`` frame to send first (§3.2)."""
        self.peers[peer.worker_id] = peer
        peer.cleanup_done = asyncio.Event()
        grace = self.settings.registration_namespace_grace_ms / 1000
        self._grace_timers[peer.worker_id] = self.loop.call_later(grace, self._grace_expired, peer)
        self._emit("worker_connected", {"worker_id": peer.worker_id})
        return WorkerRegistered(worker_id=peer.worker_id, reattach_token=peer.reattach_token)

    def handle(self, peer: Peer, message: Any) -> Awaitable[None] | None:
        """Process one decoded message from ``peer``. May return an awaitable the reader must await
        before reading the next message (only ``reattach`` does)."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return None  # ping, registerservice and other accepted-and-ignored messages
        return handler(peer, message)

    def detach(self, peer: Peer) -> None:
        """Disconnect cleanup (§6.3). Runs once per connection; later calls do nothing."""
        if not peer.live and peer.worker_id not in self.peers:
            return
        # 1-2. tearing down; drop the namespace buffer
        peer.live = False
        peer.buffered.clear()
        timer = self._grace_timers.pop(peer.worker_id, None)
        if timer is not None:
            timer.cancel()
        # 3. release its functions
        changed = False
        for entry in self.functions.owned_by(peer):
            changed |= self.functions.remove_owner(entry.namespace, entry.function_id, peer)
        # 4. fail the invocations routed to it; (5) calls it started are dropped when they settle
        for pending in list(peer.inflight.values()):
            self.pending.pop(pending.id, None)
            self._settle_error(pending, codes.INVOCATION_STOPPED, "Invocation stopped")
        peer.inflight.clear()
        # 6. its bindings
        for binding in [b for b in self.triggers.bindings.values() if b.owner is peer]:
            self._uninstall(binding)
            del self.triggers.bindings[binding.id]
        # 7. the trigger types it provides
        for key, ttype in list(self.triggers.types.items()):
            if ttype.provider_peer is peer:
                del self.triggers.types[key]
                self._park_bindings_of(ttype)
        # 8. forget it
        self.peers.pop(peer.worker_id, None)
        if peer.cleanup_done is not None:
            peer.cleanup_done.set()
        self._emit("worker_disconnected", {"worker_id": peer.worker_id})
        if changed:
            self._functions_changed()
        log.debug("worker %s disconnected", peer.display_name)

    def _on_reattach(self, peer: Peer, msg: Any) -> None:
        """§6.2: evict the previous connection of a reconnecting worker if its token matches."""
        old = self.peers.get(msg.previous_worker_id)
        token = _opt_str(msg.reattach_token)
        if old is None or old is peer or token is None:
            log.debug("reattach ignored: no live previous connection or no token")
            return
        if not hmac.compare_digest(token.encode(), old.reattach_token.encode()):
            log.debug("reattach ignored: wrong token for %s", msg.previous_worker_id)
            return
        self.evict(old)

    def evict(self, peer: Peer) -> None:
        """Close a stale connection (1001) and run its cleanup now (§6.2 rule 1)."""
        log.info("evicting stale connection %s (%s)", peer.worker_id, peer.display_name)
        self.detach(peer)
        self.spawn(peer.close(1001, "replaced by a newer connection"))

    def _identity_probe(self, peer: Peer) -> None:
        """Eviction by identity (§6.2): probe older live connections with the same name, pid, os, ip."""
        me = peer.info
        if me.name is None or me.pid is None or peer.ip_address is None:
            return  # in-process peers have no address and are never stale
        for other in list(self.peers.values()):
            if other is peer or not other.live or other.probing:
                continue
            o = other.info
            if (o.name, o.pid, o.os, other.ip_address) == (me.name, me.pid, me.os, peer.ip_address):
                other.probing = True
                self.spawn(self._probe_and_evict(other))

    async def _probe_and_evict(self, peer: Peer) -> None:
        try:
            alive = await peer.probe(self.settings.identity_probe_ms / 1000)
        except Exception:
            alive = False
        peer.probing = False
        if not alive and peer.live:
            self.evict(peer)

    # ------------------------------------------------------------------ worker metadata / namespace

    def register_worker_info(self, peer: Peer, data: dict[str, Any]) -> None:
        """``engine::workers::register`` (§7.1): update the calling connection."""
        info = peer.info
        name = data.get("name")
        if isinstance(name, str):
            info.name = name[:280]
        for attr in ("description", "version", "os", "isolation"):
            value = data.get(attr)
            if value is None or isinstance(value, str):
                setattr(info, attr, value)
        runtime = data.get("runtime")
        info.runtime = runtime if isinstance(runtime, str) else "unknown"
        pid = data.get("pid")
        info.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
        telemetry = data.get("telemetry")
        info.telemetry = telemetry if isinstance(telemetry, dict) else None
        features = data.get("features")
        info.features = [f for f in features if isinstance(f, str)] if isinstance(features, list) else []
        # §6.5 rule 3: only a Python worker without large-messages.v1 keeps the 1 MiB limit.
        if info.runtime != "python" or "large-messages.v1" in info.features:
            peer.lift_legacy_limit()
        if peer.namespace is None:
            ns = data.get("namespace")
            self._fix_namespace(peer, ns if isinstance(ns, str) else DEFAULT_NS)
        self._emit("worker_metadata_updated", {"worker_id": peer.worker_id})
        self._identity_probe(peer)

    def _grace_expired(self, peer: Peer) -> None:
        self._grace_timers.pop(peer.worker_id, None)
        if peer.live and peer.namespace is None:
            self._fix_namespace(peer, DEFAULT_NS)

    def _fix_namespace(self, peer: Peer, namespace: str) -> None:
        peer.namespace = namespace
        timer = self._grace_timers.pop(peer.worker_id, None)
        if timer is not None:
            timer.cancel()
        buffered, peer.buffered = peer.buffered, []
        for msg in buffered:
            self._apply_registration(peer, msg)

    # ------------------------------------------------------------------ registrations

    def _on_registration(self, peer: Peer, msg: Any) -> None:
        if peer.namespace is None:
            peer.buffered.append(msg)  # §6.4 rule 2
            return
        self._apply_registration(peer, msg)

    def _apply_registration(self, peer: Peer, msg: Any) -> None:
        kind = msg.__struct_config__.tag
        authorizer = peer.authorizer
        if authorizer is not None and (
            (kind == "registerfunction" and not authorizer.allow_function_registration)
            or (kind == "registertriggertype" and not authorizer.allow_trigger_type_registration)
        ):
            log.warning(
                "%s of %s by %s dropped: not allowed on this listener", kind, msg.id, peer.display_name
            )
            return
        if kind == "registerfunction":
            self._register_function(peer, msg)
        elif kind == "unregisterfunction":
            if self.functions.remove_owner(peer.namespace or DEFAULT_NS, msg.id, peer):
                self._functions_changed()
        elif kind == "registertriggertype":
            self._register_trigger_type(peer, msg)
        elif kind == "unregistertriggertype":
            self._unregister_trigger_type(peer, msg)
        elif kind == "registertrigger":
            self._register_trigger(peer, msg)
        elif kind == "unregistertrigger":
            binding = self.triggers.bindings.pop(msg.id, None)
            if binding is not None:
                self._uninstall(binding)
                log.info(
                    "[UNREGISTERED] trigger %s (%s → %s)",
                    binding.id,
                    binding.trigger_type,
                    binding.function_id,
                )

    def _register_function(self, peer: Peer, msg: Any) -> None:
        ns = peer.namespace or DEFAULT_NS
        fid = msg.id
        if present(getattr(msg, "invocation", None)):
            log.error("function %s not registered: HTTP-invoked functions are not supported (D15)", fid)
            return
        if (ns == DEFAULT_NS and fid in self.reserved) or (ns != DEFAULT_NS and fid.startswith("engine::")):
            peer.send(
                RegistrationRejected(
                    code=codes.FUNCTION_NAMESPACE_CONFLICT, namespace=ns, function_id=fid, owner_worker_id=""
                )
            )
            log.warning("registration of reserved function %s by %s rejected", fid, peer.display_name)
            return
        entry = self.functions.add_owner(ns, fid, peer)
        entry.description = _opt_str(msg.description)
        entry.metadata = to_python(msg.metadata) if present(msg.metadata) else None
        entry.request_format = to_python(msg.request_format) if present(msg.request_format) else None
        entry.response_format = to_python(msg.response_format) if present(msg.response_format) else None
        self._functions_changed()

    def register_builtin_function(
        self,
        peer: Peer,
        function_id: str,
        handler: BuiltinHandler,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
        taskless: bool = False,
    ) -> FunctionEntry:
        """The module seam's ``register_function``: a built-in lives in ``default`` and is reserved there."""
        entry = self.functions.add_owner(DEFAULT_NS, function_id, peer)
        entry.builtin = handler
        entry.taskless = taskless
        entry.description = description
        entry.metadata = metadata
        entry.request_format = request_format
        entry.response_format = response_format
        self.reserved.add(function_id)
        self._functions_changed()
        return entry

    def _register_trigger_type(self, peer: Peer, msg: Any) -> None:
        type_id = msg.id
        if type_id in BUILTIN_TYPE_IDS or type_id.startswith("engine::"):
            log.warning("%s tried to provide built-in trigger type %s; ignored", peer.display_name, type_id)
            return
        ns = _opt_str(msg.namespace) or peer.namespace or DEFAULT_NS
        ttype = TriggerType(
            id=type_id,
            namespace=ns,
            description=_opt_str(msg.description) or "",
            provider_peer=peer,
            trigger_request_format=to_python(msg.trigger_request_format)
            if present(msg.trigger_request_format)
            else None,
            call_request_format=to_python(msg.call_request_format)
            if present(msg.call_request_format)
            else None,
        )
        self.add_trigger_type(ttype)

    def add_trigger_type(self, ttype: TriggerType) -> None:
        """Install a trigger type and deliver every binding that resolves to it (§5.3 rules 2–3)."""
        key = (ttype.namespace, ttype.id)
        old = self.triggers.types.get(key)
        if old is not None and old.provider_peer is ttype.provider_peer:
            old.description = ttype.description  # idempotent re-registration (§6.5 rule 12)
            return
        self.triggers.types[key] = ttype
        if old is not None:
            for binding in self.triggers.bindings.values():
                if binding.provider is old:
                    self._uninstall(binding)
        level = logging.DEBUG if ttype.builtin is not None else logging.INFO
        log.log(level, "trigger type %s provided by %s", ttype.id, ttype.provider_peer.display_name)
        for binding in list(self.triggers.bindings_of_type(ttype.id)):
            if binding.provider is None and self._find_provider(binding) is ttype:
                self._install(binding)

    def _unregister_trigger_type(self, peer: Peer, msg: Any) -> None:
        ns = _opt_str(getattr(msg, "namespace", None)) or peer.namespace or DEFAULT_NS
        ttype = self.triggers.types.get((ns, msg.id))
        if ttype is None or ttype.provider_peer is not peer:
            return
        del self.triggers.types[(ns, msg.id)]
        self._park_bindings_of(ttype)

    def _park_bindings_of(self, ttype: TriggerType) -> None:
        for binding in self.triggers.bindings.values():
            if binding.provider is ttype:
                binding.provider = None
                log.info("[PENDING] trigger %s waits for a provider of %s", binding.id, binding.trigger_type)

    def _register_trigger(self, peer: Peer, msg: Any) -> None:
        ns = _opt_str(msg.namespace)
        tns = _opt_str(msg.trigger_namespace)
        if _blank(ns) or _blank(tns):
            self._trigger_error(peer, msg, codes.INVALID_NAMESPACE, "namespace must not be blank")
            return
        authorizer = peer.authorizer
        if authorizer is not None and not authorizer.allows_trigger_type(msg.trigger_type):
            log.warning(
                "trigger %s of type %s dropped: not allowed for this worker", msg.id, msg.trigger_type
            )
            return
        old = self.triggers.bindings.pop(msg.id, None)
        if old is not None:
            self._uninstall(old)
        binding = Binding(
            id=msg.id,
            trigger_type=msg.trigger_type,
            function_id=msg.function_id,
            config=to_python(msg.config),
            metadata=to_python(msg.metadata) if present(msg.metadata) else None,
            namespace=ns or DEFAULT_NS,
            trigger_namespace=tns,
            owner=peer,
        )
        self.triggers.bindings[binding.id] = binding
        self._install(binding)

    def add_binding(self, binding: Binding) -> None:
        """Register a binding on behalf of a module or in-process caller (same rules as a worker's)."""
        old = self.triggers.bindings.pop(binding.id, None)
        if old is not None:
            self._uninstall(old)
        self.triggers.bindings[binding.id] = binding
        self._install(binding)

    def _find_provider(self, binding: Binding) -> TriggerType | None:
        owner_ns = binding.owner.namespace or DEFAULT_NS
        return self.triggers.find_type(binding.trigger_type, owner_ns, binding.trigger_namespace)

    def _install(self, binding: Binding) -> None:
        """§5.2 steps 4–7."""
        ttype = self._find_provider(binding)
        if ttype is None:
            log.warning("[PENDING] trigger %s: no provider for type %s yet", binding.id, binding.trigger_type)
            return
        if ttype.builtin is not None:
            try:
                ttype.builtin.register_trigger(binding)
            except TriggerRegistrationError as exc:
                self.triggers.bindings.pop(binding.id, None)
                self._send_trigger_result(binding, exc.code, exc.message)
                log.warning("trigger %s rejected by %s: %s", binding.id, binding.trigger_type, exc.message)
                return
            except Exception as exc:  # a provider bug must not take the connection down
                self.triggers.bindings.pop(binding.id, None)
                self._send_trigger_result(binding, codes.TRIGGER_REGISTRATION_FAILED, str(exc))
                log.exception("trigger provider %s failed", binding.trigger_type)
                return
            binding.provider = ttype
        else:
            binding.provider = ttype
            self._send_to_provider(ttype, binding)
        log.info("[REGISTERED] trigger %s (%s → %s)", binding.id, binding.trigger_type, binding.function_id)

    def _send_to_provider(self, ttype: TriggerType, binding: Binding) -> None:
        msg = RegisterTrigger(
            id=binding.id,
            trigger_type=binding.trigger_type,
            function_id=binding.function_id,
            config=binding.config,
        )
        if binding.metadata is not None:
            msg.metadata = binding.metadata
        if binding.namespace != DEFAULT_NS:
            msg.namespace = binding.namespace
        if binding.trigger_namespace not in (None, DEFAULT_NS):
            msg.trigger_namespace = binding.trigger_namespace
        try:
            ttype.provider_peer.send(msg)
        except FrameTooLarge as exc:
            log.warning("trigger %s not delivered to its provider: %s", binding.id, exc)

    def _uninstall(self, binding: Binding) -> None:
        """Tell the provider a binding is gone; the binding itself stays where the caller puts it."""
        ttype, binding.provider = binding.provider, None
        if ttype is None:
            return
        if ttype.builtin is not None:
            try:
                ttype.builtin.unregister_trigger(binding)
            except Exception:
                log.exception("trigger provider %s failed to unregister %s", ttype.id, binding.id)
        elif ttype.provider_peer.live:
            ttype.provider_peer.send(UnregisterTrigger(id=binding.id, trigger_type=binding.trigger_type))

    def _on_trigger_verdict(self, peer: Peer, msg: Any) -> None:
        """§3.7: a provider's verdict; errors park the binding and are forwarded to its owner."""
        binding = self.triggers.bindings.get(msg.id)
        if binding is None or binding.provider is None or binding.provider.provider_peer is not peer:
            return
        if not present(msg.error):
            return
        binding.provider = None
        log.warning("[PENDING] trigger %s refused by its provider: %s", binding.id, msg.error.message)
        self._send_trigger_result(binding, msg.error.code, msg.error.message)

    def _send_trigger_result(self, binding: Binding, code: str, message: str) -> None:
        if binding.owner.live:
            binding.owner.send(
                TriggerRegistrationResult(
                    id=binding.id,
                    trigger_type=binding.trigger_type,
                    function_id=binding.function_id,
                    error=ErrorBody(code=code, message=message),
                )
            )

    def _trigger_error(self, peer: Peer, msg: Any, code: str, message: str) -> None:
        peer.send(
            TriggerRegistrationResult(
                id=msg.id,
                trigger_type=msg.trigger_type,
                function_id=msg.function_id,
                error=ErrorBody(code=code, message=message),
            )
        )

    # ------------------------------------------------------------------ invocations

    def _on_malformed(self, peer: Peer, msg: Malformed) -> None:
        if msg.type == "invokefunction" and msg.invocation_id:
            self._reply_error(
                peer,
                msg.invocation_id,
                msg.function_id or "",
                codes.INVALID_MESSAGE,
                f"Malformed invokefunction: {msg.reason}",
            )
        elif msg.type == "invocationresult" and msg.invocation_id:
            pending = self.pending.pop(msg.invocation_id, None)
            if pending is not None:
                self._settle_error(
                    pending, codes.INVALID_MESSAGE, f"Malformed invocationresult: {msg.reason}"
                )
        else:
            log.warning("dropped malformed %s from %s: %s", msg.type, peer.display_name, msg.reason)

    def _on_invoke(self, peer: Peer, msg: Any) -> None:
        """§4.1: validate, authorize, branch on the action, resolve, dispatch."""
        inv_id = msg.invocation_id or None
        fid = msg.function_id
        action = msg.action
        void = False
        if present(action):
            kind = action.get("type") if isinstance(action, dict) else None
            if kind == "void":
                void = True
            elif kind == "enqueue" and isinstance(action.get("queue"), str):
                self._enqueue(peer, msg, inv_id, action["queue"])
                return
            else:
                self._reply_error(peer, inv_id, fid, codes.INVALID_ACTION, f"Invalid action: {action!r}")
                return
        ns = _opt_str(msg.namespace)
        if _blank(ns):
            self._reply_error(peer, inv_id, fid, codes.INVALID_NAMESPACE, "namespace must not be blank")
            return
        authorizer = peer.authorizer
        if authorizer is not None and not authorizer.allows_call(self, fid, ns or DEFAULT_NS):
            self._reply_error(peer, inv_id, fid, codes.FORBIDDEN, f"Function {fid} is not allowed")
            return
        if void:
            if inv_id:
                self._reply(peer, inv_id, fid, None)
            inv_id = None
        namespace = ns or DEFAULT_NS
        entry = self.functions.resolve(namespace, fid)
        if entry is None:
            self._reply_error(
                peer, inv_id, fid, codes.FUNCTION_NOT_FOUND, self.functions.not_found_message(namespace, fid)
            )
            return
        metadata = msg.metadata if present(msg.metadata) else UNSET
        self._dispatch(
            entry,
            msg.data,
            metadata,
            _opt_str(msg.traceparent),
            _opt_str(msg.baggage),
            peer,
            inv_id,
            None,
            namespace,
        )

    def _dispatch(
        self,
        entry: FunctionEntry,
        data: Any,
        metadata: Any,
        traceparent: str | None,
        baggage: str | None,
        caller: Peer | None,
        caller_inv_id: str | None,
        future: asyncio.Future[Any] | None,
        namespace: str,
        deadline: bool = True,
    ) -> None:
        """``deadline`` False: a built-in's caller has a deadline of its own that expires first
        (:meth:`call_builtin`), so the engine keeps none for the call."""
        fid = entry.function_id
        if entry.builtin is not None:
            ctx = CallContext(
                fid,
                namespace,
                caller,
                to_python(metadata) if metadata is not UNSET else None,
                traceparent,
                baggage,
            )
            # Someone waits for the answer: the call is under invocation_timeout_ms like any other
            # (§4.5 rule 1) while it runs. A Void call waits for nobody and needs no record.
            waiting = _BuiltinCall(caller, caller_inv_id, future, fid) if caller_inv_id or future else None
            timed = waiting if deadline else None
            call = self._run_builtin(entry.builtin, data, ctx, waiting)
            if not entry.taskless:
                # Its own task, as a worker's function has its own process: the handler may need
                # one (asyncio.timeout and redis-py bind to the current task, which here would be
                # the caller's, or none in a callback).
                if timed is not None:
                    timed.slot = self._deadlines.add(timed, self._timeout_s, timed)
                self.spawn(call)
                return
            # A taskless built-in runs eagerly up to its first suspension (stream::send and
            # engine::log::* finish without one; a task per call was a measurable share of the
            # engine's time, bench/RESULTS.md todo_e2e); after one (a local store's write waiting
            # for its commit) it runs on from the awaited futures' callbacks.
            rest = start_eagerly(call)
            if rest is not None:
                if timed is not None:
                    timed.slot = self._deadlines.add(timed, self._timeout_s, timed)
                rest.drive()
            return
        target = entry.pick_owner()
        if target is None:
            self._fail(
                caller,
                caller_inv_id,
                future,
                fid,
                codes.FUNCTION_NOT_FOUND,
                self.functions.not_found_message(namespace, fid),
            )
            return
        if caller_inv_id and caller_inv_id not in self.pending:
            tid = caller_inv_id
        else:  # UUID v4 shaped (version and variant bits in the random prefix), no uuid4() per call
            tid = _TID_PREFIX + hex(next(_TID_COUNTER))[3:]
        pending = Pending(tid, fid, target, caller, caller_inv_id, future)
        self.pending[tid] = pending
        target.inflight[tid] = pending
        out = InvokeFunction(function_id=fid, invocation_id=tid, data=data, metadata=metadata)
        if traceparent is not None:
            out.traceparent = traceparent
        if baggage is not None:
            out.baggage = baggage
        self._track_deadline(pending)  # before sending: an in-process target may answer within send()
        try:
            target.send(out)
        except FrameTooLarge as exc:
            self.pending.pop(tid, None)
            target.inflight.pop(tid, None)
            self._settle_error(pending, codes.PAYLOAD_TOO_LARGE, f"Invocation of {fid} not sent: {exc}")

    async def _run_builtin(
        self, handler: BuiltinHandler, data: Any, ctx: CallContext, waiting: _BuiltinCall | None
    ) -> None:
        try:
            result = await handler(to_python(data), ctx)
        except Exception as exc:
            if isinstance(exc, InvocationError):
                error = (exc.code, exc.message, exc.stacktrace)
            else:
                log.exception("built-in function %s failed", ctx.function_id)
                error = (codes.INVOCATION_ERROR, str(exc), None)
            if waiting is not None and self._settle_builtin(waiting):
                self._fail(waiting.caller, waiting.caller_inv_id, waiting.future, ctx.function_id, *error)
            return
        if waiting is None or not self._settle_builtin(waiting):
            return  # Void, or answered invocation_timeout already: a late result is dropped (§4.5)
        future = waiting.future
        if future is not None:
            if not future.done():
                future.set_result(None if result is UNSET else result)
        elif waiting.caller is not None and waiting.caller_inv_id:
            self._reply(waiting.caller, waiting.caller_inv_id, ctx.function_id, result)

    def _settle_builtin(self, call: _BuiltinCall) -> bool:
        """Mark a built-in call answered; False if it was answered already (its deadline passed)."""
        if call.settled:
            return False
        call.settled = True
        if call.slot is not None:
            self._deadlines.remove(call.slot, call)
        return True

    def _expire_builtin(self, call: _BuiltinCall) -> None:
        if call.settled:
            return
        call.settled = True
        self._fail(
            call.caller,
            call.caller_inv_id,
            call.future,
            call.function_id,
            codes.INVOCATION_TIMEOUT,
            self._timeout_message(call.function_id),
        )

    def _timeout_message(self, function_id: str) -> str:
        """§4.5: the message of an ``invocation_timeout`` answer."""
        return f"Invocation of {function_id} timed out after {self.settings.invocation_timeout_ms} ms"

    def _on_result(self, peer: Peer, msg: Any) -> None:
        pending = self.pending.pop(msg.invocation_id, None)
        if pending is None:
            log.debug("result for unknown or settled invocation %s dropped", msg.invocation_id)
            return
        self._deadlines.remove(pending.slot, pending.id)
        pending.target.inflight.pop(pending.id, None)
        if present(msg.error):
            err = msg.error
            self._fail(
                pending.caller,
                pending.caller_invocation_id,
                pending.future,
                pending.function_id,
                err.code,
                err.message,
                err.stacktrace,
                _opt_str(msg.traceparent),
                _opt_str(msg.baggage),
            )
            return
        result = msg.result
        if result is UNSET:
            result = None  # success with null; the engine writes it explicitly (§3.9)
        future = pending.future
        if future is not None:
            if not future.done():
                future.set_result(to_python(result))
            return
        caller = pending.caller
        if caller is not None and caller.live and pending.caller_invocation_id:
            self._reply(
                caller,
                pending.caller_invocation_id,
                pending.function_id,
                result,
                _opt_str(msg.traceparent),
                _opt_str(msg.baggage),
            )

    def _track_deadline(self, pending: Pending) -> None:
        pending.slot = self._deadlines.add(pending.id, self._timeout_s, None)

    def _on_deadline(self, key: Any, value: _BuiltinCall | None) -> None:
        if value is None:
            self._expire(key)  # a target leg, by id
        else:
            self._expire_builtin(value)

    def _expire(self, tid: str) -> None:
        pending = self.pending.pop(tid, None)
        if pending is None:
            return
        pending.target.inflight.pop(tid, None)
        self._settle_error(pending, codes.INVOCATION_TIMEOUT, self._timeout_message(pending.function_id))

    def _settle_error(self, pending: Pending, code: str, message: str) -> None:
        self._deadlines.remove(pending.slot, pending.id)
        self._fail(
            pending.caller, pending.caller_invocation_id, pending.future, pending.function_id, code, message
        )

    def _fail(
        self,
        caller: Peer | None,
        caller_inv_id: str | None,
        future: asyncio.Future[Any] | None,
        function_id: str,
        code: str,
        message: str,
        stacktrace: str | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        if future is not None:
            if not future.done():
                future.set_exception(InvocationError(code, message, function_id, stacktrace))
        elif caller is not None and caller.live and caller_inv_id:
            body = ErrorBody(code=code, message=message, stacktrace=stacktrace)
            self._send_result(
                caller,
                InvocationResult(invocation_id=caller_inv_id, function_id=function_id, error=body),
                traceparent,
                baggage,
            )
        elif code != codes.INVOCATION_STOPPED:
            log.debug("fire-and-forget call of %s failed: %s: %s", function_id, code, message)

    def _reply(
        self,
        peer: Peer,
        invocation_id: str,
        function_id: str,
        result: Any,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        self._send_result(
            peer,
            InvocationResult(invocation_id=invocation_id, function_id=function_id, result=result),
            traceparent,
            baggage,
        )

    def _reply_error(
        self, peer: Peer, invocation_id: str | None, function_id: str, code: str, message: str
    ) -> None:
        """Reply an error when the call expects a reply (§4.1: else log and drop)."""
        if invocation_id:
            body = ErrorBody(code=code, message=message)
            self._send_result(
                peer, InvocationResult(invocation_id=invocation_id, function_id=function_id, error=body)
            )
        else:
            log.warning("call of %s from %s failed: %s: %s", function_id, peer.display_name, code, message)

    def _send_result(
        self, peer: Peer, msg: InvocationResult, traceparent: str | None = None, baggage: str | None = None
    ) -> None:
        if traceparent is not None:
            msg.traceparent = traceparent
        if baggage is not None:
            msg.baggage = baggage
        try:
            peer.send(msg)
        except FrameTooLarge as exc:
            body = ErrorBody(
                code=codes.PAYLOAD_TOO_LARGE, message=f"Result of {msg.function_id} not sent: {exc}"
            )
            peer.send(
                InvocationResult(invocation_id=msg.invocation_id, function_id=msg.function_id, error=body)
            )

    def _enqueue(self, peer: Peer, msg: Any, inv_id: str | None, queue: str) -> None:
        """§4.3: hand the job to the queue module, or answer ``enqueue_error``."""
        fid = msg.function_id
        hook = self.enqueue_hook
        if hook is None:
            self._reply_error(peer, inv_id, fid, codes.ENQUEUE_ERROR, ENQUEUE_DISABLED.format(queue=queue))
            return
        receipt = str(uuid.uuid4())
        request = EnqueueRequest(
            queue=queue,
            function_id=fid,
            data=to_python(msg.data),
            message_receipt_id=receipt,
            namespace=_opt_str(msg.namespace) or DEFAULT_NS,
            traceparent=_opt_str(msg.traceparent),
            baggage=_opt_str(msg.baggage),
        )

        async def run() -> None:
            try:
                await hook(request)
            except InvocationError as exc:
                self._reply_error(peer, inv_id, fid, codes.ENQUEUE_ERROR, exc.message)
                return
            if inv_id and peer.live:
                self._reply(peer, inv_id, fid, {"messageReceiptId": receipt})

        self.spawn(run())

    # ------------------------------------------------------------------ engine-initiated calls

    async def invoke(
        self,
        function_id: str,
        data: Any = None,
        *,
        namespace: str = DEFAULT_NS,
        metadata: Any = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Call a function from inside the engine (§4.4) and return its result as Python values.

        Raises :class:`InvocationError` for every failure (unknown function, handler error, timeout,
        the target disconnecting).
        """
        entry = self.functions.resolve(namespace, function_id)
        if entry is None:
            raise InvocationError(
                codes.FUNCTION_NOT_FOUND,
                self.functions.not_found_message(namespace, function_id),
                function_id,
            )
        if entry.builtin is not None and entry.taskless:  # awaited here: it needs no task of its own
            result = await entry.builtin(
                data, CallContext(function_id, namespace, None, metadata, traceparent, baggage)
            )
            return None if result is UNSET else result
        # A worker's function, or a built-in that runs as a task of its own (``_dispatch``).
        future: asyncio.Future[Any] = self.loop.create_future()
        meta = UNSET if metadata is None else metadata
        self._dispatch(entry, data, meta, traceparent, baggage, None, None, future, namespace)
        return await future

    def invoke_future(
        self,
        function_id: str,
        data: Any = None,
        *,
        namespace: str = DEFAULT_NS,
        metadata: Any = None,
        ref_keys: tuple[str, ...] | None = None,
    ) -> asyncio.Future[Any]:
        """:meth:`invoke` as a future, already dispatched: no coroutine and no task for a worker's
        function (front doors that wait on a call together with something else, http.md §12).

        The future fails with :class:`InvocationError` as :meth:`invoke` raises it; cancelling it
        abandons the call (a late result is dropped). ``ref_keys``: the caller built ``data`` and
        knows it holds channel refs only at these top-level keys (``()``: none), which an in-process
        worker's SDK then need not look for elsewhere (:class:`~pyiii.engine.local.PayloadHint`)."""
        entry = self.functions.resolve(namespace, function_id)
        if entry is None or (entry.builtin is not None and entry.taskless):
            call = self.invoke(function_id, data, namespace=namespace, metadata=metadata)
            return asyncio.ensure_future(call)
        # A worker's function, or a built-in that runs as a task of its own (``_dispatch``).
        future: asyncio.Future[Any] = self.loop.create_future()
        meta = UNSET if metadata is None else metadata
        if ref_keys is None:
            self._dispatch(entry, data, meta, None, None, None, None, future, namespace)
            return future
        hint = PAYLOAD_HINT  # an in-process peer receives the call within _dispatch
        hint.payload, hint.ref_keys = data, ref_keys
        try:
            self._dispatch(entry, data, meta, None, None, None, None, future, namespace)
        finally:
            hint.payload = None
        return future

    def call_builtin(
        self,
        peer: Peer,
        function_id: str,
        data: Any,
        namespace: str | None,
        traceparent: str | None,
        void: bool,
        caller_timeout_s: float | None = None,
    ) -> asyncio.Future[Any] | object | None:
        """An in-process worker's call of a built-in function without the message objects: what
        ``invokefunction`` from ``peer`` does (§4.1), for the common case only. Returns the call's
        future (``None`` for Void), or :data:`NOT_BUILTIN` when the message path must take the call
        (an authorizer to ask, a blank namespace, no built-in of that id): nothing was done then.

        The built-in runs as on the message path (a taskless one eagerly: its future is done on
        return unless it suspended, as a durable write waits for its commit); the future fails with
        :class:`InvocationError`. ``caller_timeout_s``: the caller's own deadline for the call."""
        if peer.authorizer is not None or not peer.live:
            return NOT_BUILTIN
        if namespace is None:
            namespace = DEFAULT_NS
        elif _blank(namespace):
            return NOT_BUILTIN
        entry = self.functions.resolve(namespace, function_id)
        if entry is None or entry.builtin is None:
            return NOT_BUILTIN
        future = None if void else self.loop.create_future()
        # A caller whose own deadline (``caller_timeout_s``) expires first, by two slots of the
        # wheel, needs none from the engine: the engine's could only fire into an abandoned call.
        deadline = caller_timeout_s is None or caller_timeout_s > self._timeout_s - 2 * RESOLUTION_S
        self._dispatch(entry, data, UNSET, traceparent, None, peer, None, future, namespace, deadline)
        return future

    def invoke_void(
        self, function_id: str, data: Any = None, *, namespace: str = DEFAULT_NS, metadata: Any = None
    ) -> None:
        """Fire-and-forget engine-initiated call; failures are logged at debug level."""
        entry = self.functions.resolve(namespace, function_id)
        if entry is None:
            log.debug("fire-and-forget call of unknown function %s in %s", function_id, namespace)
            return
        meta = UNSET if metadata is None else metadata
        self._dispatch(entry, data, meta, None, None, None, None, None, namespace)

    async def check_condition(self, binding: Binding, payload: Any) -> bool:
        """§4.4: run a binding's ``condition_function_id``; only an explicit ``false`` blocks."""
        config = binding.config if isinstance(binding.config, dict) else {}
        condition = config.get("condition_function_id")
        if not isinstance(condition, str) or not condition:
            return True
        try:
            result = await self.invoke(condition, payload, namespace=binding.namespace)
        except InvocationError as exc:
            log.warning("condition %s of trigger %s failed: %s", condition, binding.id, exc.message)
            return False
        return result is not False

    # ------------------------------------------------------------------ introspection helpers

    def worker_name_of(self, entry: FunctionEntry) -> str:
        """``worker_name`` of a function (§7.2 rule 4)."""
        if entry.builtin is None:
            for owner in entry.owners:  # owners are kept in registration order
                if owner.live and owner.info.name:
                    return owner.info.name
        return entry.function_id.split("::", 1)[0]


class ModulePeer(Peer):
    """The peer a built-in module registers through: it owns built-in functions and trigger types."""

    kind = "builtin"

    def __init__(self, module_name: str) -> None:
        super().__init__()
        self.worker_id = module_name
        self.info.name = module_name
        self.info.runtime = "engine"
        self.info.isolation = "in-process"
        self.lift_legacy_limit()

    def send(self, message: Any) -> None:
        # Built-ins never receive protocol frames: their functions are called directly and their
        # trigger types are served by TriggerProvider objects. Anything sent here is a verdict on a
        # module-registered binding; log it so a misconfigured module binding is visible.
        error = getattr(message, "error", None)
        if present(error):
            log.warning("module %s: %s", self.worker_id, getattr(error, "message", error))

    async def close(self, code: int, reason: str = "") -> None:
        return None


def now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "BUILTIN_TYPE_IDS",
    "Binding",
    "CallContext",
    "Engine",
    "EngineSettings",
    "EnqueueRequest",
    "ModulePeer",
    "Raw",
    "TriggerProvider",
    "TriggerType",
]
