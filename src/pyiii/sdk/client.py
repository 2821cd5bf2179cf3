"""The worker client: registrations, pending calls and handler dispatch (spec/protocol.md §10).

:class:`III` is transport-agnostic: it builds protocol structs and hands them to a
:class:`~pyiii.sdk.transport.Transport` (a WebSocket in :mod:`pyiii.sdk.remote`, an in-process
engine in :mod:`pyiii.sdk.inprocess`), which reports back through the ``TransportEvents`` methods
(``connection_opened``, ``message_received``, ``connection_lost``, ``state_changed``).

Threading. All mutable state except the registration tables is touched only on the client's event
loop (a background thread for a remote engine, the engine's own loop in-process). Registration tables
are written by the calling thread under ``_lock``, so ``register_function`` can reject a duplicate id
synchronously; the message itself is sent from the loop. Sync methods called from another thread
marshal onto the loop; a blocking ``trigger()`` on the loop thread raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, EncodeError, Raw
from msgspec.json import decode as decode_json

from pyiii._deadlines import Deadlines
from pyiii.protocol import errors as codes
from pyiii.protocol.codec import find_channel_ref_spelling, to_python
from pyiii.protocol.errors import InvocationError, RegistrationRejectedError
from pyiii.protocol.messages import (
    ErrorBody,
    ErrorMessage,
    InvocationResult,
    InvokeFunction,
    Pong,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerMessage,
    WorkerRegistered,
)
from pyiii.sdk.channels import materialize_channel_refs
from pyiii.sdk.handlers import FunctionHandler, derive_formats, jsonable
from pyiii.sdk.logger import current_traceparent, register_client, unregister_client
from pyiii.sdk.replay import VOID, replay_messages, worker_register_payload
from pyiii.sdk.transport import PayloadTooLarge, Transport
from pyiii.sdk.types import (
    MAX_QUEUE_SIZE,
    ConnectionState,
    ConnectionStateCallback,
    FunctionRef,
    InitOptions,
    ReconnectionConfig,
    Trigger,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
    TriggerTypeRef,
)

if TYPE_CHECKING:
    from pyiii.engine.core import Engine
    from pyiii.sdk.remote import BackgroundLoop

#: The engine's error code for a refused connection (protocol.md §2.2 rule 4).
AUTH_ERROR = "AUTH_ERROR"

__all__ = ["DEFAULT_ADDRESS", "III", "register_worker", "set_default_engine"]

log = logging.getLogger("pyiii.sdk")

DEFAULT_ADDRESS = "ws://127.0.0.1:49134"
#: How long ``register_worker`` blocks for the first connection (§10.2 rule 2).
CONNECT_WAIT_S = 30.0

#: Payload classes sent as they are (anything else may be a Pydantic model to dump).
_PLAIN_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})
#: Calls to these always resolve in ``default`` (§10.5 rule 4).
_DEFAULT_NS_PREFIXES = ("engine::", "configuration::")

_get_running_loop = asyncio._get_running_loop  # C accessor: None outside a loop, no exception


class _Pending(msgspec.Struct):
    """An outbound call waiting for its ``invocationresult``. (A Struct: built in C, once per call.)"""

    future: asyncio.Future[Any]
    function_id: str
    invocation_id: str
    timeout_ms: int
    #: Connection generation it was written on; ``None`` while it waits in the offline queue.
    sent_gen: int | None = None
    #: Its slot in ``III._deadlines``.
    slot: int = 0


class _Function:
    __slots__ = ("handler", "message")

    def __init__(self, message: RegisterFunction, handler: FunctionHandler) -> None:
        self.message = message
        self.handler = handler


class _TriggerType:
    __slots__ = ("handler", "message")

    def __init__(self, message: RegisterTriggerType, handler: TriggerHandler[Any]) -> None:
        self.message = message
        self.handler = handler


def _error(code: str, message: str, pending: _Pending) -> InvocationError:
    return InvocationError(code, message, pending.function_id, None, pending.invocation_id)


def _copy_error(error: InvocationError, pending: _Pending | None) -> InvocationError:
    """A fresh exception per failed call (one object raised in many tasks would share a traceback)."""
    if isinstance(error, RegistrationRejectedError):
        return RegistrationRejectedError(error.code, error.message, error.function_id, error.namespace)
    if pending is None:
        return InvocationError(error.code, error.message)
    return InvocationError(error.code, error.message, pending.function_id, None, pending.invocation_id)


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dict(dump())
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    raise TypeError(f"{what} must be a dict, got {type(value).__name__}")


def _wire_action(action: Any) -> dict[str, Any] | None:
    """``None`` (request/response), or the wire dict of a TriggerAction (§3.12)."""
    if action is None:
        return None
    if isinstance(action, TriggerActionVoid):
        return VOID
    if isinstance(action, TriggerActionEnqueue):
        return {"type": "enqueue", "queue": action.queue}
    if isinstance(action, dict):
        return action
    dump = getattr(action, "model_dump", None)
    if dump is not None:
        return dict(dump())
    raise TypeError(
        f"action must be TriggerAction.Void(), TriggerAction.Enqueue(...) or a dict, got {action!r}"
    )


class III:
    """A worker connected to an engine. Create it with :func:`register_worker`.

    ``address`` is a ``ws://`` URL (default ``$III_URL``, else ``ws://127.0.0.1:49134``) or a started
    :class:`~pyiii.engine.core.Engine` of this process (in-process transport, no JSON).
    Constructing it starts connecting without waiting; :func:`register_worker` also waits.
    ``transport`` replaces both with any :class:`~pyiii.sdk.transport.Transport`; the client then
    runs on the calling thread's running loop.
    """

    def __init__(
        self,
        address: str | Engine | None = None,
        options: InitOptions | None = None,
        *,
        transport: Transport | None = None,
    ) -> None:
        self._options = options = options or InitOptions()
        self._name = options.resolved_worker_name()
        self._namespace = options.resolved_namespace()
        self._timeout_ms = options.invocation_timeout_ms
        self._reconnection = options.reconnection_config or ReconnectionConfig()

        self._lock = threading.Lock()
        self._functions: dict[str, _Function] = {}
        self._trigger_types: dict[str, _TriggerType] = {}
        self._triggers: dict[str, RegisterTrigger] = {}
        self._trigger_errors: dict[str, dict[str, Any]] = {}
        #: Bindings of the types this worker provides, as delivered by the engine (for unregister).
        self._provided: dict[str, TriggerConfig[Any]] = {}

        self._pending: dict[str, _Pending] = {}
        self._queue: deque[tuple[WorkerMessage, _Pending | None]] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Running async handler tasks by key; each removes itself when done (cheaper than a done
        #: callback, which costs an extra loop callback per call). The loop holds tasks weakly.
        self._handler_tasks: dict[int, asyncio.Task[Any]] = {}
        self._handler_keys = itertools.count()
        #: ``ws://host:port`` for channel sockets, fixed per transport (§9); ``None`` = refs stay dicts.
        self._channel_base: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._state: ConnectionState = "disconnected"
        self._state_listeners: list[ConnectionStateCallback] = []
        self._ready = threading.Event()
        self._closed = False
        self._fatal: InvocationError | None = None
        #: The engine's AUTH_ERROR on the last connection, until a connection is accepted.
        self._auth_failure: InvocationError | None = None
        self._gen = 0
        self._worker_id: str | None = None
        self._reattach_token: str | None = None
        self._loop_thread: int | None = None
        self._background: BackgroundLoop | None = None

        default_engine = _default_engine
        if (address is None or address == "") and default_engine is not None and default_engine.started:
            address = default_engine  # `pyiii run`: the worker file attaches to the embedded engine
        engine = None if transport is not None else _as_engine(address)
        if transport is not None:
            # A caller-supplied transport (tests, custom wires) runs on the caller's loop.
            loop = asyncio.get_running_loop()
        elif engine is not None:
            from pyiii.sdk.inprocess import InProcessTransport, engine_loop

            loop = engine_loop(engine)
            transport = InProcessTransport(engine)
        else:
            from pyiii.sdk.remote import BackgroundLoop, RemoteTransport, upgrade_headers

            url = (
                address
                if isinstance(address, str) and address
                else os.environ.get("III_URL") or DEFAULT_ADDRESS
            )
            self._background = BackgroundLoop()
            loop = self._background.loop
            transport = RemoteTransport(url, upgrade_headers(options.headers), self._reconnection)
        self._loop: asyncio.AbstractEventLoop = loop
        self._deadlines = Deadlines(loop, self._expire)
        self._transport = transport
        self._new_id = transport.new_invocation_id
        #: In-process only: built-in calls straight into the engine (InProcessTransport.direct_call).
        self._direct: Callable[..., Any] | None = getattr(transport, "direct_call", None)
        self._direct_log: Callable[[str, dict[str, Any]], bool] | None = getattr(
            transport, "direct_log", None
        )
        self._not_direct: Any = getattr(transport, "NOT_DIRECT", None)
        self._channel_base = transport.channel_base_url()
        self._materialize: Callable[[Any, str], Any] = getattr(
            transport, "materialize_channel_refs", materialize_channel_refs
        )
        self._dispatch: dict[type, Callable[[Any], None]] = {
            InvocationResult: self._on_result,
            InvokeFunction: self._on_invoke,
            RegisterTrigger: self._on_provider_register,
            UnregisterTrigger: self._on_provider_unregister,
            TriggerRegistrationResult: self._on_trigger_result,
            RegistrationRejected: self._on_rejected,
            WorkerRegistered: self._on_worker_registered,
            ErrorMessage: self._on_engine_error,
            Pong: lambda _msg: None,
        }
        register_client(self)
        if _get_running_loop() is loop:
            self._start_on_loop()
        else:
            started = asyncio.run_coroutine_threadsafe(self._start_async(), loop)
            if engine is not None:
                started.result(timeout=CONNECT_WAIT_S)

    # ================================================================== public API

    @property
    def worker_id(self) -> str | None:
        """The engine-assigned id of the current (or last) connection; ``None`` before the first."""
        return self._worker_id

    @property
    def namespace(self) -> str | None:
        """This worker's namespace (``None`` = ``default``)."""
        return self._namespace

    @property
    def is_live(self) -> bool:
        """Not shut down and not failed for good."""
        return not self._closed and self._fatal is None

    def get_address(self) -> str:
        return self._transport.address

    def get_connection_state(self) -> ConnectionState:
        return self._state

    def add_connection_state_listener(self, callback: ConnectionStateCallback) -> Callable[[], None]:
        """Call ``callback(state)`` on every state change (on the client's loop). Returns the unsubscribe."""
        self._state_listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._state_listeners:
                self._state_listeners.remove(callback)

        return unsubscribe

    def channel_base_url(self) -> str | None:
        """``ws://host:port`` for channel sockets, when known."""
        return self._channel_base

    # ------------------------------------------------------------------ functions

    def register_function(
        self,
        function_id: str,
        handler: Callable[..., Any],
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> FunctionRef:
        """Serve ``function_id`` with ``handler`` (sync or async; ``handler(data)`` or
        ``handler(data, metadata)``). Sync handlers run in a thread pool.

        Raises ``ValueError`` if this client already serves ``function_id``. Formats not given are
        derived from Pydantic-model type hints when present.
        """
        if not isinstance(function_id, str) or not function_id:
            raise ValueError("function_id must be a non-empty string")
        wrapped = FunctionHandler(handler)
        if request_format is None or response_format is None:
            derived_request, derived_response = derive_formats(handler)
            request_format = request_format if request_format is not None else derived_request
            response_format = response_format if response_format is not None else derived_response
        message = RegisterFunction(id=function_id)
        if description is not None:
            message.description = description
        if request_format is not None:
            message.request_format = jsonable(request_format)
        if response_format is not None:
            message.response_format = jsonable(response_format)
        if metadata is not None:
            message.metadata = metadata
        with self._lock:
            if function_id in self._functions:
                raise ValueError(f"function {function_id!r} is already registered by this worker")
            self._functions[function_id] = entry = _Function(message, wrapped)
        self._call_soon(self._send_registration, message)

        def unregister() -> None:
            with self._lock:
                if self._functions.get(function_id) is not entry:
                    return
                del self._functions[function_id]
            self._call_soon(self._send_registration, UnregisterFunction(id=function_id))

        return FunctionRef(id=function_id, unregister=unregister)

    # ------------------------------------------------------------------ triggers

    def register_trigger(self, trigger: dict[str, Any] | Any) -> Trigger:
        """Bind a function to a trigger type: ``{"type", "function_id", "config"?, "metadata"?,
        "namespace"?, "trigger_namespace"?}``. The binding id (a UUID v4) is generated once and
        replayed unchanged after reconnects."""
        spec = _as_dict(trigger, "trigger")
        trigger_type = spec.get("type") or spec.get("trigger_type")
        function_id = spec.get("function_id")
        if not isinstance(trigger_type, str) or not trigger_type:
            raise ValueError("trigger 'type' must be a non-empty string")
        if not isinstance(function_id, str) or not function_id:
            raise ValueError("trigger 'function_id' must be a non-empty string")
        trigger_id = str(uuid.uuid4())
        message = RegisterTrigger(
            id=trigger_id,
            trigger_type=trigger_type,
            function_id=function_id,
            config=jsonable(spec.get("config")),
        )
        if spec.get("metadata") is not None:
            message.metadata = spec["metadata"]
        namespace = spec.get("namespace") or self._namespace
        if namespace is not None:
            message.namespace = namespace
        if spec.get("trigger_namespace") is not None:
            message.trigger_namespace = spec["trigger_namespace"]
        with self._lock:
            self._triggers[trigger_id] = message
        self._call_soon(self._send_registration, message)

        def unregister() -> None:
            with self._lock:
                if self._triggers.pop(trigger_id, None) is None:
                    return
                self._trigger_errors.pop(trigger_id, None)
            self._call_soon(
                self._send_registration, UnregisterTrigger(id=trigger_id, trigger_type=trigger_type)
            )

        return Trigger(trigger_id, unregister, lambda: self._trigger_errors.get(trigger_id))

    def register_trigger_type(
        self, trigger_type: dict[str, Any] | Any, handler: TriggerHandler[Any]
    ) -> TriggerTypeRef[Any, Any]:
        """Provide a custom trigger type: ``{"id", "description", "trigger_request_format"?,
        "call_request_format"?}``. ``handler`` is told about each binding of the type."""
        spec = _as_dict(trigger_type, "trigger_type")
        type_id = spec.get("id")
        if not isinstance(type_id, str) or not type_id:
            raise ValueError("trigger type 'id' must be a non-empty string")
        message = RegisterTriggerType(id=type_id, description=spec.get("description") or "")
        request_format = spec.get("trigger_request_format", spec.get("configuration_format"))
        if request_format is not None:
            message.trigger_request_format = jsonable(request_format)
        if spec.get("call_request_format") is not None:
            message.call_request_format = jsonable(spec["call_request_format"])
        with self._lock:
            self._trigger_types[type_id] = _TriggerType(message, handler)
        self._call_soon(self._send_registration, message)
        return TriggerTypeRef(self, type_id)

    def unregister_trigger_type(
        self, trigger_type: TriggerTypeRef[Any, Any] | str | dict[str, Any] | Any
    ) -> None:
        """Stop providing a trigger type (a ref, its id, or its registration dict)."""
        if isinstance(trigger_type, TriggerTypeRef):
            type_id = trigger_type.id
        elif isinstance(trigger_type, str):
            type_id = trigger_type
        else:
            type_id = _as_dict(trigger_type, "trigger_type").get("id")  # type: ignore[assignment]
        with self._lock:
            if self._trigger_types.pop(type_id, None) is None:
                return
        self._call_soon(self._send_registration, UnregisterTriggerType(id=type_id))

    # ------------------------------------------------------------------ calls

    def trigger(self, request: dict[str, Any] | TriggerRequest) -> Any:
        """Call a function and block for its result (``None`` for Void, the receipt for Enqueue).

        Raises :class:`~pyiii.errors.InvocationError`. Must not be called on the client's own event
        loop (from an async handler): use ``await trigger_async(...)`` there.
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "III.trigger() would block the SDK's event loop (called from an async handler or the loop "
                "thread); use 'await iii.trigger_async(...)' instead"
            )
        self._check_usable()
        return asyncio.run_coroutine_threadsafe(self.trigger_async(request), self._loop).result()

    async def trigger_async(self, request: dict[str, Any] | TriggerRequest) -> Any:
        """Call a function and await its result (``None`` for Void, the receipt for Enqueue).

        Raises :class:`~pyiii.errors.InvocationError` (``TIMEOUT`` after ``timeout_ms``, or
        ``InitOptions.invocation_timeout_ms``). Works from any event loop.
        """
        # On the loop thread the running loop is the client's (cheaper to test than the running loop,
        # which costs a getpid syscall on Python 3.11).
        if threading.get_ident() != self._loop_thread:
            self._check_usable()
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.trigger_async(request), self._loop)
            )
        future = self._start_call(request)
        if future is None:
            return None
        return await future

    def _check_usable(self) -> None:
        """Before relaying a call to the loop from elsewhere: fail like the loop would, without it."""
        if self._fatal is not None:
            raise _copy_error(self._fatal, None)
        if self._closed:
            raise InvocationError(codes.SHUTDOWN, "iii is shut down")

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Fail pending calls with ``SHUTDOWN``, close the connection and stop the background thread.

        On the client's own loop thread this cannot block: the close completes in the background.
        """
        if threading.get_ident() == self._loop_thread:
            if self._begin_shutdown():
                self._spawn(self._finish_shutdown())
            return
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown_on_loop(), self._loop).result(timeout=10)
        except RuntimeError:  # the loop stopped under us
            pass
        if self._background is not None:
            self._background.stop()

    async def shutdown_async(self) -> None:
        """Fail pending calls with ``SHUTDOWN``, close the connection and stop the background thread."""
        if _get_running_loop() is not self._loop:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._shutdown_on_loop(), self._loop))
            if self._background is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._background.stop)
            return
        await self._shutdown_on_loop()

    # ================================================================== internals: threads and loop

    async def _start_async(self) -> None:
        self._start_on_loop()

    def _start_on_loop(self) -> None:
        self._loop_thread = threading.get_ident()
        self._transport.start(self)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop: now when already there, else in order via the loop."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed: the client is gone
                log.debug("client loop closed; %s dropped", getattr(fn, "__name__", fn))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(thread_name_prefix=f"pyiii-{self._name}")
        return pool

    def wait_ready(self, timeout_s: float = CONNECT_WAIT_S) -> bool:
        """Block until the first connection is open (or failed). True if it opened in time."""
        if threading.get_ident() == self._loop_thread:
            return self._ready.is_set()
        return self._ready.wait(timeout_s)

    # ================================================================== transport events

    def connection_opened(self) -> None:
        """Replay everything on the fresh connection (§10.5 rule 2), then flush the offline queue."""
        self._gen += 1
        gen = self._gen
        with self._lock:
            trigger_types = [t.message for t in self._trigger_types.values()]
            functions = [f.message for f in self._functions.values()]
            triggers = list(self._triggers.values())
        queued = [(m, p) for m, p in self._queue if p is None or not p.future.done()]
        self._queue.clear()
        messages = replay_messages(
            previous_worker_id=self._worker_id,
            reattach_token=self._reattach_token,
            register_payload=worker_register_payload(self._options, self._name, self._namespace),
            trigger_types=trigger_types,
            functions=functions,
            triggers=triggers,
            queued=[m for m, _ in queued],
        )
        first_queued = len(messages) - len(queued)
        send = self._transport.send
        for index, message in enumerate(messages):
            pending = queued[index - first_queued][1] if index >= first_queued else None
            try:
                send(message)
            except PayloadTooLarge as exc:
                if pending is not None:
                    self._settle_error(pending, codes.PAYLOAD_TOO_LARGE, f"Invocation not sent: {exc}")
                else:
                    log.error("%s not sent: %s", type(message).__name__, exc)
                continue
            if pending is not None:
                pending.sent_gen = gen
        self._set_state("connected")

    def message_received(self, message: Any) -> None:
        handler = self._dispatch.get(message.__class__)
        if handler is not None:
            handler(message)

    def connection_lost(self) -> None:
        """Calls written on the lost connection fail with ``invocation_stopped`` (§10.5 rule 6)."""
        gen = self._gen
        for pending in [p for p in self._pending.values() if p.sent_gen == gen]:
            self._settle_error(pending, codes.INVOCATION_STOPPED, "Invocation stopped")
        if not self._closed and self._state == "connected":
            self._set_state("disconnected")

    def state_changed(self, state: ConnectionState) -> None:
        if state == "failed" and self._fatal is None:
            self._fatal = InvocationError(codes.UNKNOWN, f"connection to {self.get_address()} failed")
            self._fail_everything(self._fatal)
        if not self._closed:
            self._set_state(state)

    def _set_state(self, state: ConnectionState) -> None:
        if state == self._state:
            return
        self._state = state
        if state == "failed":
            self._ready.set()
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                log.exception("connection state listener failed")

    # ================================================================== outbound

    def _send_registration(self, message: WorkerMessage) -> None:
        """Registrations are sent only while connected; the replay covers the rest (§10.5 rule 2)."""
        if self._transport.connected and not self._closed:
            try:
                self._transport.send(message)
            except PayloadTooLarge as exc:
                log.error("%s not sent: %s", type(message).__name__, exc)

    def _send_call(self, message: InvokeFunction, pending: _Pending | None, late: bool = False) -> None:
        """Write a call, or queue it while disconnected (max 1000, oldest dropped; §10.5 rule 6).
        ``late``: nobody waits on it (a log call), so it may follow this iteration's other messages."""
        if self._transport.connected:
            if late:
                self._transport.send_late(message)
            else:
                self._transport.send(message)
            if pending is not None:
                pending.sent_gen = self._gen
            return
        queue = self._queue
        if len(queue) >= MAX_QUEUE_SIZE:
            _, dropped = queue.popleft()
            log.warning("outbound queue full (%d) while disconnected: oldest frame dropped", MAX_QUEUE_SIZE)
            if dropped is not None:
                self._settle_error(dropped, codes.INVOCATION_STOPPED, "Dropped from the full offline queue")
        queue.append((message, pending))

    def send_log(self, level: str, payload: dict[str, Any]) -> bool:
        """Send one ``engine::log::<level>`` Void call (for :class:`~pyiii.sdk.logger.Logger`).

        Thread-safe and non-blocking. False when not connected (the logger then falls back)."""
        if self._closed or self._state != "connected":
            return False
        self._call_soon(self._send_log, level, payload)
        return True

    def _send_log(self, level: str, payload: dict[str, Any]) -> None:
        """On the loop: the record straight into an in-process engine's log store, else the log call
        (into an in-process engine's built-in, or as a Void message)."""
        direct_log = self._direct_log
        if direct_log is not None and self._transport.connected and direct_log(level, payload):
            return
        function_id = f"engine::log::{level}"
        direct = self._direct
        if direct is not None and self._transport.connected:
            if direct(function_id, payload, "default", None, True) is not self._not_direct:
                return
        message = InvokeFunction(function_id=function_id, data=payload, action=VOID, namespace="default")
        try:
            self._send_call(message, None, late=True)
        except Exception as exc:
            log.debug("log call not sent: %s", exc)

    def _start_call(self, request: Any) -> asyncio.Future[Any] | None:
        """Build and send one call (on the loop). Returns the result future, ``None`` for Void."""
        if type(request) is dict:
            get = request.get
            function_id = get("function_id")
            payload = get("payload")
            if len(request) - (payload is not None) > 1:  # anything besides function_id and payload
                action = get("action")
                timeout_ms = get("timeout_ms")
                metadata = get("metadata")
                namespace = get("namespace")
            else:
                action = timeout_ms = metadata = namespace = None
        elif isinstance(request, TriggerRequest):
            function_id = request.function_id
            payload = request.payload
            action = request.action
            timeout_ms = request.timeout_ms
            metadata = request.metadata
            namespace = request.namespace
        else:
            return self._start_call(_as_dict(request, "request"))
        if not isinstance(function_id, str) or not function_id:
            raise ValueError("trigger request needs a non-empty 'function_id'")
        if self._fatal is not None:
            raise _copy_error(self._fatal, None)
        if self._closed:
            raise InvocationError(codes.SHUTDOWN, "iii is shut down", function_id)
        if self._auth_failure is not None and self._state != "connected":
            raise _copy_error(self._auth_failure, None)
        if payload.__class__ not in _PLAIN_TYPES:
            payload = jsonable(payload)
        if namespace is None:  # §10.5 rule 4 (inlined call_namespace: this is the hot path)
            namespace = "default" if function_id.startswith(_DEFAULT_NS_PREFIXES) else self._namespace
        if self._direct is not None and metadata is None and self._transport.connected:
            # In-process: a built-in is called straight into the engine (InProcessTransport.direct_call);
            # an Enqueue action, metadata or a worker's function take the message path below.
            void = action is not None
            if void:
                wire = _wire_action(action)
                void = isinstance(wire, dict) and wire.get("type") == "void"
            if action is None or void:
                # The engine keeps no deadline of its own for a call whose client deadline is shorter.
                timeout_s = None if void else (timeout_ms or self._timeout_ms) / 1000
                traceparent = current_traceparent.get()
                outcome = self._direct(function_id, payload, namespace, traceparent, void, timeout_s)
                if outcome is not self._not_direct:
                    return None if void else self._direct_result(outcome, function_id, timeout_ms)
        message = InvokeFunction(function_id=function_id, data=payload)
        if metadata is not None:
            message.metadata = metadata
        if namespace is not None:
            message.namespace = namespace
        traceparent = current_traceparent.get()
        if traceparent is not None:
            message.traceparent = traceparent
        wire_action = _wire_action(action) if action is not None else None
        if wire_action is not None:
            message.action = wire_action
            if wire_action.get("type") == "void":
                try:
                    self._send_call(message, None)
                except PayloadTooLarge as exc:
                    raise InvocationError(
                        codes.PAYLOAD_TOO_LARGE, f"Invocation of {function_id} not sent: {exc}", function_id
                    ) from None
                return None
        invocation_id = self._new_id()
        message.invocation_id = invocation_id
        future = self._loop.create_future()
        timeout_ms = timeout_ms or self._timeout_ms
        pending = _Pending(future, function_id, invocation_id, timeout_ms)
        self._pending[invocation_id] = pending
        pending.slot = self._deadlines.add(invocation_id, timeout_ms / 1000, pending)
        try:
            self._send_call(message, pending)
        except BaseException as exc:  # nothing was sent: forget the call
            self._pending.pop(invocation_id, None)
            self._deadlines.remove(pending.slot, invocation_id)
            future.cancel()
            if not isinstance(exc, PayloadTooLarge):
                raise
            raise InvocationError(
                codes.PAYLOAD_TOO_LARGE,
                f"Invocation of {function_id} not sent: {exc}",
                function_id,
                None,
                invocation_id,
            ) from None
        return future

    def _direct_result(
        self, outcome: asyncio.Future[Any], function_id: str, timeout_ms: int | None
    ) -> asyncio.Future[Any]:
        """The future of a built-in call made by :meth:`InProcessTransport.direct_call`: the engine's
        own when it is done (awaiting it takes no loop turn), else one under this client's
        ``timeout_ms`` like a sent call, settled from the engine's."""
        if outcome.done():
            if outcome.cancelled() or outcome.exception() is None:
                return outcome
            failed: asyncio.Future[Any] = self._loop.create_future()
            failed.set_exception(self._direct_error(outcome.exception(), function_id, self._new_id()))
            return failed
        invocation_id = self._new_id()
        future = self._loop.create_future()
        timeout_ms = timeout_ms or self._timeout_ms
        pending = _Pending(future, function_id, invocation_id, timeout_ms, self._gen)
        self._pending[invocation_id] = pending
        pending.slot = self._deadlines.add(invocation_id, timeout_ms / 1000, pending)
        outcome.add_done_callback(lambda done: self._direct_done(pending, done))
        return future

    def _direct_done(self, pending: _Pending, outcome: asyncio.Future[Any]) -> None:
        """The engine answered a suspended direct call (see :meth:`_on_result`)."""
        if self._pending.pop(pending.invocation_id, None) is None:
            return  # timed out or failed by a disconnect already
        self._deadlines.remove(pending.slot, pending.invocation_id)
        future = pending.future
        if future.done():
            return
        if outcome.cancelled():
            future.set_exception(_error(codes.INVOCATION_STOPPED, "Invocation stopped", pending))
        elif outcome.exception() is not None:
            future.set_exception(
                self._direct_error(outcome.exception(), pending.function_id, pending.invocation_id)
            )
        else:
            future.set_result(outcome.result())

    @staticmethod
    def _direct_error(exc: BaseException | None, function_id: str, invocation_id: str) -> BaseException:
        """An engine failure as a sent call would raise it: code, message and stack trace of the
        engine's answer, with this call's function and invocation ids."""
        if isinstance(exc, InvocationError):
            return InvocationError(exc.code, exc.message, function_id, exc.stacktrace, invocation_id)
        return exc if exc is not None else InvocationError(codes.UNKNOWN, "no result", function_id)

    def _expire(self, invocation_id: str, pending: _Pending) -> None:
        if self._pending.pop(invocation_id, None) is not None and not pending.future.done():
            message = f"invocation timed out after {pending.timeout_ms}ms"
            pending.future.set_exception(_error(codes.TIMEOUT, message, pending))

    def _settle_error(self, pending: _Pending, code: str, message: str) -> None:
        self._pending.pop(pending.invocation_id, None)
        self._deadlines.remove(pending.slot, pending.invocation_id)
        if not pending.future.done():
            pending.future.set_exception(_error(code, message, pending))

    def _fail_everything(self, error: InvocationError) -> None:
        self._deadlines.clear()
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(_copy_error(error, pending))
        self._pending.clear()
        self._queue.clear()

    # ================================================================== inbound

    def _on_result(self, message: InvocationResult) -> None:
        pending = self._pending.pop(message.invocation_id, None)
        if pending is None:
            log.debug("result for unknown or settled invocation %s dropped", message.invocation_id)
            return
        self._deadlines.remove(pending.slot, message.invocation_id)
        future = pending.future
        if future.done():
            return
        error = message.error
        if error is not UNSET and error is not None:
            future.set_exception(
                InvocationError(
                    error.code, error.message, pending.function_id, error.stacktrace, pending.invocation_id
                )
            )
        else:
            result = message.result
            if result is UNSET:
                result = None
            elif result.__class__ is Raw:
                result = decode_json(result)
            future.set_result(result)

    def _on_invoke(self, message: InvokeFunction) -> None:
        """§10.5 rule 8: run the handler; reply unless the call has no ``invocation_id``."""
        function_id = message.function_id
        raw_id = message.invocation_id
        invocation_id = raw_id if isinstance(raw_id, str) and raw_id else None
        entry = self._functions.get(function_id)
        if entry is None:
            if invocation_id is not None:
                self._reply_error(
                    invocation_id,
                    function_id,
                    codes.FUNCTION_NOT_FOUND,
                    f"Function {function_id} not found",
                    None,
                    self._gen,
                )
            else:
                log.warning("invocation of unknown function %s dropped", function_id)
            return
        data = message.data
        channel_base = self._channel_base
        if data.__class__ is Raw:
            # Only a frame holding "channel_id" (or a \u escape that could spell it) can carry a ref.
            if channel_base is not None and find_channel_ref_spelling(memoryview(data)) is None:
                channel_base = None
            data = decode_json(data)
        if channel_base is not None and (type(data) is dict or type(data) is list):
            data = self._materialize(data, channel_base)
        metadata = message.metadata
        if metadata is UNSET:
            metadata = None
        elif metadata.__class__ is Raw:
            metadata = decode_json(metadata)
        traceparent = message.traceparent if isinstance(message.traceparent, str) else None
        handler = entry.handler
        if handler.is_async:
            # Keep a reference: the loop holds tasks weakly (asyncio docs, create_task). Named after
            # the function: more useful in a task dump than "Task-N", whose formatting was 0.5 % of
            # an in-process todo write.
            key = next(self._handler_keys)
            task = self._loop.create_task(
                self._run_async(
                    handler, invocation_id, function_id, data, metadata, traceparent, self._gen, key
                ),
                name=function_id,
            )
            if not task.done():  # (an eager task factory may already have finished it)
                self._handler_tasks[key] = task
        else:
            self._executor().submit(
                self._run_sync, handler, invocation_id, function_id, data, metadata, traceparent, self._gen
            )

    async def _run_async(
        self,
        handler: FunctionHandler,
        invocation_id: str | None,
        function_id: str,
        data: Any,
        metadata: Any,
        traceparent: str | None,
        gen: int,
        key: int,
    ) -> None:
        if traceparent is not None or current_traceparent.get() is not None:
            current_traceparent.set(traceparent)  # this task's own context copy
        try:
            if handler.plain:
                result = await handler.fn(data)
            else:
                result = await handler.call(data, metadata)
        except Exception as exc:
            self._handler_failed(invocation_id, function_id, exc, gen)
            return
        finally:
            self._handler_tasks.pop(key, None)
        if invocation_id is None:
            return
        # _reply inlined for the common case (this is the in-process hot path).
        if gen == self._gen and result.__class__ in _PLAIN_TYPES and self._transport.connected:
            try:
                self._transport.send(
                    InvocationResult(invocation_id=invocation_id, function_id=function_id, result=result)
                )
                return
            except (
                PayloadTooLarge,
                TypeError,
                ValueError,
                EncodeError,
            ):  # nothing sent: _reply builds the error
                pass
        self._reply(invocation_id, function_id, result, gen)

    def _run_sync(
        self,
        handler: FunctionHandler,
        invocation_id: str | None,
        function_id: str,
        data: Any,
        metadata: Any,
        traceparent: str | None,
        gen: int,
    ) -> None:
        """Runs in the thread pool; hands the outcome back to the loop."""
        token = current_traceparent.set(traceparent)
        try:
            result = handler.call(data, metadata)
        except Exception as exc:
            self._call_soon(self._handler_failed, invocation_id, function_id, exc, gen)
            return
        finally:
            current_traceparent.reset(token)
        if inspect.isawaitable(result):
            self._call_soon(self._spawn_await, result, invocation_id, function_id, traceparent, gen)
        elif invocation_id is not None:
            self._call_soon(self._reply, invocation_id, function_id, result, gen)

    def _spawn_await(
        self, awaitable: Any, invocation_id: str | None, function_id: str, traceparent: str | None, gen: int
    ) -> None:
        async def finish() -> None:
            current_traceparent.set(traceparent)
            try:
                result = await awaitable
            except Exception as exc:
                self._handler_failed(invocation_id, function_id, exc, gen)
                return
            if invocation_id is not None:
                self._reply(invocation_id, function_id, result, gen)

        self._spawn(finish())

    def _handler_failed(
        self, invocation_id: str | None, function_id: str, exc: BaseException, gen: int
    ) -> None:
        if invocation_id is None:
            log.error("handler of %s failed (no reply expected)", function_id, exc_info=exc)
            return
        stack = "".join(traceback.format_exception(exc))
        self._reply_error(
            invocation_id, function_id, codes.INVOCATION_FAILED, str(exc) or type(exc).__name__, stack, gen
        )

    def _reply(self, invocation_id: str, function_id: str, result: Any, gen: int) -> None:
        """Send a handler's result on the connection the call came from (else it is moot: the engine
        already failed that call with ``invocation_stopped``)."""
        if gen != self._gen or not self._transport.connected:
            log.debug("result of %s dropped: its connection is gone", function_id)
            return
        try:
            self._transport.send(
                InvocationResult(
                    invocation_id=invocation_id, function_id=function_id, result=jsonable(result)
                )
            )
        except PayloadTooLarge as exc:
            self._reply_error(
                invocation_id,
                function_id,
                codes.PAYLOAD_TOO_LARGE,
                f"Result of {function_id} not sent: {exc}",
                None,
                gen,
            )
        except (TypeError, ValueError, EncodeError) as exc:  # not JSON-encodable
            self._reply_error(
                invocation_id,
                function_id,
                codes.INVOCATION_FAILED,
                f"Result of {function_id} is not JSON-serializable: {exc}",
                None,
                gen,
            )

    def _reply_error(
        self, invocation_id: str, function_id: str, code: str, message: str, stacktrace: str | None, gen: int
    ) -> None:
        if gen != self._gen or not self._transport.connected:
            return
        body = ErrorBody(code=code, message=message, stacktrace=stacktrace)
        try:
            self._transport.send(
                InvocationResult(invocation_id=invocation_id, function_id=function_id, error=body)
            )
        except PayloadTooLarge:  # a huge traceback: send the error without it
            body.stacktrace = None
            self._transport.send(
                InvocationResult(invocation_id=invocation_id, function_id=function_id, error=body)
            )

    # ------------------------------------------------------------------ trigger providers (§10.5 rule 9)

    def _on_provider_register(self, message: RegisterTrigger) -> None:
        provided = self._trigger_types.get(message.trigger_type)
        if provided is None:
            self._send_trigger_verdict(
                message.id,
                message.trigger_type,
                message.function_id,
                codes.TRIGGER_TYPE_NOT_FOUND,
                f"Trigger type {message.trigger_type} not found",
            )
            return
        config: TriggerConfig[Any] = TriggerConfig(
            id=message.id,
            function_id=message.function_id,
            config=to_python(message.config),
            metadata=None if message.metadata is UNSET else to_python(message.metadata),
            namespace=message.namespace if isinstance(message.namespace, str) else None,
        )
        self._provided[message.id] = config
        gen = self._gen

        async def deliver() -> None:
            try:
                outcome = provided.handler.register_trigger(config)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                log.warning("trigger %s refused by the %s handler: %s", message.id, message.trigger_type, exc)
                if gen == self._gen:
                    self._send_trigger_verdict(
                        message.id,
                        message.trigger_type,
                        message.function_id,
                        codes.TRIGGER_REGISTRATION_FAILED,
                        str(exc) or type(exc).__name__,
                    )
                return
            if gen == self._gen:
                self._send_trigger_verdict(message.id, message.trigger_type, message.function_id, None, None)

        self._spawn(deliver())

    def _on_provider_unregister(self, message: UnregisterTrigger) -> None:
        trigger_type = message.trigger_type if isinstance(message.trigger_type, str) else None
        config = self._provided.pop(message.id, None)
        provided = self._trigger_types.get(trigger_type or "")
        if provided is None:
            return  # providers never reply to unregistertrigger (§3.6)
        if config is None:
            config = TriggerConfig(id=message.id, function_id="")

        async def deliver() -> None:
            try:
                outcome = provided.handler.unregister_trigger(config)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("unregister_trigger of %s failed", message.id)

        self._spawn(deliver())

    def _send_trigger_verdict(
        self, trigger_id: str, trigger_type: str, function_id: str, code: str | None, text: str | None
    ) -> None:
        if not self._transport.connected:
            return
        verdict = TriggerRegistrationResult(id=trigger_id, trigger_type=trigger_type, function_id=function_id)
        if code is not None:
            verdict.error = ErrorBody(code=code, message=text or "")
        self._transport.send(verdict)

    def _on_trigger_result(self, message: TriggerRegistrationResult) -> None:
        error = message.error
        if error is UNSET:
            return
        self._trigger_errors[message.id] = {"code": error.code, "message": error.message}
        log.warning(
            "trigger %s (%s -> %s) rejected: %s: %s",
            message.id,
            message.trigger_type,
            message.function_id,
            error.code,
            error.message,
        )

    # ------------------------------------------------------------------ connection-level messages

    def _on_worker_registered(self, message: WorkerRegistered) -> None:
        self._auth_failure = None
        self._worker_id = message.worker_id
        self._reattach_token = message.reattach_token
        self._ready.set()

    def _on_rejected(self, message: RegistrationRejected) -> None:
        """§10.5 rule 10: a namespace conflict is only logged; any other code is fatal."""
        if message.code == codes.FUNCTION_NAMESPACE_CONFLICT:
            log.warning(
                "registration of %s rejected in namespace %s (reserved id)",
                message.function_id,
                message.namespace,
            )
            return
        error = RegistrationRejectedError(
            message.code, f"registration rejected: {message.code}", message.function_id, message.namespace
        )
        log.error("engine rejected this worker for good: %s (%s)", message.code, message.function_id)
        self._fatal = error
        self._fail_everything(error)
        self._set_state("failed")
        self._spawn(self._transport.close())

    def _on_engine_error(self, message: ErrorMessage) -> None:
        code, text = message.error.code, message.error.message
        log.warning("engine error: %s: %s", code, text)
        if code == AUTH_ERROR:
            # protocol.md §2.2 rule 4: the engine closes the socket next, and every reconnect fails the
            # same way until the token changes. The SDK keeps reconnecting (as the official ones do),
            # but calls fail with the engine's reason instead of waiting out their timeouts, until a
            # connection is accepted; register_worker() stops waiting for one.
            error = InvocationError(code, text)
            self._auth_failure = error
            self._fail_everything(error)
            self._ready.set()

    # ================================================================== shutdown

    def _begin_shutdown(self) -> bool:
        """The synchronous part of shutdown (on the loop). False if already shut down."""
        if self._closed:
            return False
        self._closed = True
        unregister_client(self)
        for pending in list(self._pending.values()):
            self._settle_error(pending, codes.SHUTDOWN, "iii is shutting down")
        self._queue.clear()
        self._transport.abort()
        current = asyncio.current_task(self._loop) if _get_running_loop() is self._loop else None
        for task in [*self._tasks, *self._handler_tasks.values()]:
            if task is not current:
                task.cancel()
        self._set_state("disconnected")
        self._ready.set()
        return True

    async def _finish_shutdown(self) -> None:
        try:
            await self._transport.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._background is not None and threading.get_ident() == self._loop_thread:
                self._background.stop_soon()

    async def _shutdown_on_loop(self) -> None:
        if self._begin_shutdown():
            try:
                await self._transport.close()
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"<III {self._name!r} {self.get_address()} {self._state}>"


def _as_engine(address: Any) -> Engine | None:
    if address is None or isinstance(address, str):
        return None
    from pyiii.engine.core import Engine

    if isinstance(address, Engine):
        return address
    raise TypeError(f"address must be a ws:// URL or an Engine, got {type(address).__name__}")


#: The engine a worker created without an address attaches to, instead of ``$III_URL``. Set by
#: ``pyiii run`` (:func:`set_default_engine`), so one worker file runs embedded or standalone.
_default_engine: Engine | None = None


def set_default_engine(engine: Engine | None) -> None:
    """Make ``register_worker()`` without an address attach to ``engine`` while it is started
    (``None`` restores ``$III_URL``; a stopped engine is ignored)."""
    global _default_engine
    _default_engine = engine


def register_worker(address: str | Engine | None = None, options: InitOptions | None = None) -> III:
    """Connect a worker to an engine and return its client (§10.2).

    ``address``: a ``ws://`` URL or a started :class:`~pyiii.engine.core.Engine` in this process.
    Without one: the engine of ``pyiii run`` when the worker runs under it, else ``$III_URL``, else
    ``ws://127.0.0.1:49134``. Blocks until the connection is open, at most
    30 s; after that it logs a warning, returns, and keeps retrying in the background. Called on the
    engine's own loop thread, the in-process connection is made synchronously.
    """
    client = III(address, options)
    if not client.wait_ready(CONNECT_WAIT_S) and client.get_connection_state() != "failed":
        log.warning(
            "not connected to %s after %.0f s; retrying in the background",
            client.get_address(),
            CONNECT_WAIT_S,
        )
    return client
