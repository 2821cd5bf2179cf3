"""Public value types of the SDK (spec/protocol.md §10.3-§10.4), mirroring the official ``iii-sdk`` 0.25.

Plain dataclasses: pydantic is not a dependency. Everything here is data; behaviour lives in
:mod:`pyiii.sdk.client`.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from pyiii.sdk.client import III

__all__ = [
    "DEFAULT_INVOCATION_TIMEOUT_MS",
    "MAX_QUEUE_SIZE",
    "ConnectionState",
    "ConnectionStateCallback",
    "EngineFunctions",
    "EngineTriggers",
    "FunctionRef",
    "InitOptions",
    "ReconnectionConfig",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeRef",
]

DEFAULT_INVOCATION_TIMEOUT_MS = 30_000
#: Outbound frames kept while disconnected (§10.5 rule 6); the oldest is dropped beyond this.
MAX_QUEUE_SIZE = 1000

ConnectionState = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]
ConnectionStateCallback = Callable[[ConnectionState], None]

TConfig = TypeVar("TConfig")
C = TypeVar("C")
R = TypeVar("R")


@dataclass
class ReconnectionConfig:
    """Reconnect backoff (§10.5 rule 7): ``min(initial · multiplier^attempt, max)`` ± ``jitter_factor``.

    ``max_retries=-1`` retries forever.
    """

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30_000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1


@dataclass
class TelemetryOptions:
    """Worker metadata reported in ``engine::workers::register`` (§10.5 rule 3)."""

    language: str | None = None
    project_name: str | None = None
    framework: str | None = None
    amplitude_api_key: str | None = None  # accepted for compatibility; unused


@dataclass
class InitOptions:
    """Options of :func:`pyiii.register_worker` (§10.3).

    ``worker_name`` defaults to ``"<hostname>:<pid>"``; ``$III_WORKER_NAME``, when set, wins over both.
    ``namespace`` defaults to ``$III_NAMESPACE``; a blank namespace raises ``ValueError``.
    ``enable_metrics_reporting`` and ``otel`` are accepted for compatibility and ignored.
    """

    worker_name: str | None = None
    worker_description: str | None = None
    namespace: str | None = None
    invocation_timeout_ms: int = DEFAULT_INVOCATION_TIMEOUT_MS
    reconnection_config: ReconnectionConfig | None = None
    headers: dict[str, str] | None = None
    telemetry: TelemetryOptions | None = None
    enable_metrics_reporting: bool = True
    otel: Any = None

    def __post_init__(self) -> None:
        if self.namespace is not None and not self.namespace.strip():
            raise ValueError("InitOptions.namespace must not be blank")

    def resolved_worker_name(self) -> str:
        managed = os.environ.get("III_WORKER_NAME")
        if managed:
            return managed
        return self.worker_name or f"{socket.gethostname()}:{os.getpid()}"

    def resolved_namespace(self) -> str | None:
        if self.namespace is not None:
            return self.namespace
        env = os.environ.get("III_NAMESPACE")
        if env is None or env == "":
            return None
        if not env.strip():
            raise ValueError("$III_NAMESPACE must not be blank")
        return env


# ---------------------------------------------------------------------------------------------
# Trigger actions and requests


@dataclass(frozen=True)
class TriggerActionVoid:
    """Fire-and-forget: no reply; ``trigger`` returns ``None`` at once."""

    type: Literal["void"] = "void"

    def model_dump(self) -> dict[str, Any]:
        return {"type": "void"}


@dataclass(frozen=True)
class TriggerActionEnqueue:
    """Route the call through a named queue; ``trigger`` returns ``{"messageReceiptId": ...}``."""

    queue: str
    type: Literal["enqueue"] = "enqueue"

    def model_dump(self) -> dict[str, Any]:
        return {"type": "enqueue", "queue": self.queue}


class TriggerAction:
    """Constructors of the routing actions: ``TriggerAction.Void()``, ``TriggerAction.Enqueue(queue=...)``."""

    @staticmethod
    def Void() -> TriggerActionVoid:
        return TriggerActionVoid()

    @staticmethod
    def Enqueue(queue: str) -> TriggerActionEnqueue:
        return TriggerActionEnqueue(queue=queue)


@dataclass
class TriggerRequest:
    """A call made with :meth:`III.trigger`. A plain ``dict`` with the same keys works too."""

    function_id: str
    payload: Any = None
    action: TriggerActionVoid | TriggerActionEnqueue | dict[str, Any] | None = None
    timeout_ms: int | None = None
    metadata: Any = None
    namespace: str | None = None


# ---------------------------------------------------------------------------------------------
# Handles returned by registrations


@dataclass
class FunctionRef:
    """A registered function; ``unregister()`` removes it from the engine and from replay."""

    id: str
    unregister: Callable[[], None] = field(repr=False)


class Trigger:
    """A registered binding; ``unregister()`` removes it."""

    def __init__(
        self,
        trigger_id: str,
        unregister_fn: Callable[[], None],
        registration_error_fn: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.id = trigger_id
        self._unregister_fn = unregister_fn
        self._registration_error_fn = registration_error_fn

    def unregister(self) -> None:
        self._unregister_fn()

    @property
    def registration_error(self) -> dict[str, Any] | None:
        """The last ``triggerregistrationresult`` error the engine sent for this binding, or ``None``.

        Only failures are acknowledged (§3.7), so ``None`` means "no failure reported yet".
        """
        return self._registration_error_fn() if self._registration_error_fn is not None else None

    def __repr__(self) -> str:
        return f"Trigger(id={self.id!r})"


@dataclass
class TriggerConfig(Generic[TConfig]):
    """A binding as delivered to a :class:`TriggerHandler` (§3.5)."""

    id: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str | None = None


class TriggerHandler(ABC, Generic[TConfig]):
    """Implements a custom trigger type: told when bindings of the type appear and disappear.

    Raise from :meth:`register_trigger` to refuse a binding (the engine then reports
    ``trigger_registration_failed`` to whoever registered it).
    """

    @abstractmethod
    async def register_trigger(self, config: TriggerConfig[TConfig]) -> None: ...

    @abstractmethod
    async def unregister_trigger(self, config: TriggerConfig[TConfig]) -> None: ...


class TriggerTypeRef(Generic[C, R]):
    """Handle returned by :meth:`III.register_trigger_type`: binds functions to this type."""

    def __init__(self, iii: III, trigger_type_id: str) -> None:
        self._iii = iii
        self.id = trigger_type_id

    def register_trigger(
        self, function_id: str, config: C, metadata: dict[str, Any] | None = None
    ) -> Trigger:
        """Bind ``function_id`` to this type; the binding targets this worker's namespace."""
        value: Any = config.model_dump() if hasattr(config, "model_dump") else config
        request: dict[str, Any] = {"type": self.id, "function_id": function_id, "config": value}
        if metadata is not None:
            request["metadata"] = metadata
        namespace = self._iii.namespace
        if namespace is not None:
            request["namespace"] = namespace
        return self._iii.register_trigger(request)

    def register_function(
        self, function_id: str, handler: Callable[..., Any], *, description: str | None = None
    ) -> FunctionRef:
        return self._iii.register_function(function_id, handler, description=description)

    def unregister(self) -> None:
        self._iii.unregister_trigger_type(self)

    def __repr__(self) -> str:
        return f"TriggerTypeRef(id={self.id!r})"


class EngineFunctions:
    """Ids of the engine's built-in functions."""

    LIST_FUNCTIONS: Final[str] = "engine::functions::list"
    INFO_FUNCTIONS: Final[str] = "engine::functions::info"  # not provided by pyiii (§7.8)
    LIST_WORKERS: Final[str] = "engine::workers::list"
    INFO_WORKERS: Final[str] = "engine::workers::info"  # not provided by pyiii (§7.8)
    LIST_TRIGGERS: Final[str] = "engine::triggers::list"
    INFO_TRIGGERS: Final[str] = "engine::triggers::info"  # not provided by pyiii (§7.8)
    LIST_REGISTERED_TRIGGERS: Final[str] = "engine::registered-triggers::list"
    INFO_REGISTERED_TRIGGERS: Final[str] = "engine::registered-triggers::info"
    REGISTER_WORKER: Final[str] = "engine::workers::register"
    CREATE_CHANNEL: Final[str] = "engine::channels::create"


class EngineTriggers:
    """Ids of the engine's built-in trigger types."""

    FUNCTIONS_AVAILABLE: Final[str] = "engine::functions-available"
    WORKERS_AVAILABLE: Final[str] = "engine::workers-available"
    LOG: Final[str] = "log"
