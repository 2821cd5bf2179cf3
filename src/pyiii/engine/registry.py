"""Function and trigger registries (spec/protocol.md §5). Plain data structures, no I/O.

Functions are keyed by ``(namespace, function_id)`` and have a list of owners (§5.1): every live peer
that registered the id. Bindings are keyed by their id; trigger types by ``(namespace, type_id)``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pyiii.engine.peer import Peer

if TYPE_CHECKING:
    from pyiii.engine.invocations import CallContext

DEFAULT_NS = "default"

BuiltinHandler = Callable[[Any, "CallContext"], Awaitable[Any]]


class FunctionEntry:
    """One ``(namespace, function_id)``: its owners and the latest registration's description."""

    __slots__ = (
        "builtin",
        "description",
        "function_id",
        "metadata",
        "namespace",
        "owners",
        "request_format",
        "response_format",
        "rr",
        "taskless",
    )

    def __init__(self, namespace: str, function_id: str) -> None:
        self.namespace = namespace
        self.function_id = function_id
        self.owners: list[Peer] = []
        self.description: str | None = None
        self.metadata: Any = None
        self.request_format: Any = None
        self.response_format: Any = None
        #: In-process implementation of a built-in module's function (None for worker functions).
        self.builtin: BuiltinHandler | None = None
        #: The built-in awaits nothing but futures (``ModuleHost.register_function``): started in the
        #: caller's context and finished without a task; otherwise each call is a task of its own.
        self.taskless = False
        self.rr = 0

    def pick_owner(self) -> Peer | None:
        """Next live owner, round-robin (§5.1 rule 2); owners under an eviction probe are skipped."""
        owners = self.owners
        n = len(owners)
        if n == 1:  # the common case: one worker serves the function
            peer = owners[0]
            return peer if peer.live and not peer.probing else None
        for _ in range(n):
            self.rr = (self.rr + 1) % n
            peer = owners[self.rr]
            if peer.live and not peer.probing:
                return peer
        return None

    @property
    def is_internal(self) -> bool:
        meta = self.metadata
        return isinstance(meta, dict) and meta.get("internal") is True


class FunctionRegistry:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], FunctionEntry] = {}
        #: function_id -> namespaces holding it; for the "registered in namespace(s)" hint (§4.1 step 4).
        self.namespaces_of: dict[str, set[str]] = {}
        self.version = 0

    def get(self, namespace: str, function_id: str) -> FunctionEntry | None:
        return self.entries.get((namespace, function_id))

    def resolve(self, namespace: str, function_id: str) -> FunctionEntry | None:
        """Strict lookup in ``namespace``, then a built-in of ``default`` (D20, §6.4 rule 5)."""
        entry = self.entries.get((namespace, function_id))
        if entry is None and namespace != DEFAULT_NS:
            entry = self.entries.get((DEFAULT_NS, function_id))
            if entry is not None and entry.builtin is None:
                return None
        return entry

    def not_found_message(self, namespace: str, function_id: str) -> str:
        msg = f"Function {function_id} not found in namespace {namespace}."
        elsewhere = sorted(self.namespaces_of.get(function_id, ()))
        if elsewhere:
            msg += f" It is registered in namespace(s): {', '.join(elsewhere)}."
        return msg

    def add_owner(self, namespace: str, function_id: str, peer: Peer) -> FunctionEntry:
        key = (namespace, function_id)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = FunctionEntry(namespace, function_id)
            self.namespaces_of.setdefault(function_id, set()).add(namespace)
        if peer not in entry.owners:
            entry.owners.append(peer)
        self.version += 1
        return entry

    def remove_owner(self, namespace: str, function_id: str, peer: Peer) -> bool:
        """Remove ``peer`` from the owners (§5.1 rule 5). True if the registry changed."""
        key = (namespace, function_id)
        entry = self.entries.get(key)
        if entry is None or peer not in entry.owners:
            return False
        entry.owners.remove(peer)
        if not entry.owners:
            del self.entries[key]
            spaces = self.namespaces_of.get(function_id)
            if spaces is not None:
                spaces.discard(namespace)
                if not spaces:
                    del self.namespaces_of[function_id]
        self.version += 1
        return True

    def owned_by(self, peer: Peer) -> list[FunctionEntry]:
        return [e for e in self.entries.values() if peer in e.owners]


class TriggerProvider(Protocol):
    """A built-in trigger type's implementation (what a worker's TriggerHandler is over the wire)."""

    def register_trigger(self, binding: Binding) -> None:
        """Validate and install synchronously; raise ``TriggerRegistrationError`` to reject the config."""

    def unregister_trigger(self, binding: Binding) -> None: ...


@dataclass(eq=False)
class TriggerType:
    id: str
    namespace: str
    description: str
    provider_peer: Peer
    #: Set for built-in types; worker-provided types are served over ``provider_peer``'s socket.
    builtin: TriggerProvider | None = None
    trigger_request_format: Any = None
    call_request_format: Any = None


@dataclass(eq=False)
class Binding:
    """One registered trigger (§1 terms). ``config`` and ``metadata`` are kept as received (possibly
    ``msgspec.Raw``); built-in providers get decoded copies through :attr:`config_value`."""

    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any
    namespace: str
    trigger_namespace: str | None
    owner: Peer
    #: The type currently serving it; ``None`` while parked (§5.2 step 5).
    provider: TriggerType | None = None
    registered_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    #: Free slot for the provider (built-ins keep their compiled config and counters here).
    state: Any = None

    @property
    def active(self) -> bool:
        return self.provider is not None


class TriggerRegistry:
    def __init__(self) -> None:
        self.types: dict[tuple[str, str], TriggerType] = {}
        self.bindings: dict[str, Binding] = {}

    def find_type(
        self, trigger_type: str, owner_ns: str, trigger_namespace: str | None
    ) -> TriggerType | None:
        """§5.2 step 4: only ``trigger_namespace`` when given, else the owner's namespace then default."""
        if trigger_namespace is not None:
            return self.types.get((trigger_namespace, trigger_type))
        found = self.types.get((owner_ns, trigger_type))
        if found is None and owner_ns != DEFAULT_NS:
            found = self.types.get((DEFAULT_NS, trigger_type))
        return found

    def bindings_of_type(self, trigger_type: str) -> list[Binding]:
        return [b for b in self.bindings.values() if b.trigger_type == trigger_type]
