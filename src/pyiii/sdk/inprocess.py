"""In-process transport: a client attached to an :class:`~pyiii.engine.core.Engine` of this process.

No socket and no JSON (spec/protocol.md §10, brief: "the same struct objects go to engine.handle").
The client runs on the engine's loop. Outbound messages are handed to ``engine.handle`` as they are;
the engine delivers its messages by calling the client synchronously (``LocalPeer.send``), and the
client never answers from inside that call: handlers run as tasks or in the thread pool.

Five deliberate shortcuts:

* a :class:`~pyiii.sdk.logger.Logger` record goes straight into the engine's log store
  (``Engine.log_sink``, set by the observability module) instead of as an ``engine::log::<level>``
  Void call: the same record, stored, printed and delivered to log triggers alike;
* a call of a **built-in** function (``state::*``, ``stream::*``, ``engine::log::*``...) goes straight
  to :meth:`Engine.call_builtin`: no ``invokefunction`` / ``invocationresult`` objects, and a result
  that is ready at once (a read, ``stream::send``) is returned without a loop turn. About 2.8 of the
  3.5 µs of such a call were the messages (bench/RESULTS.md). Anything else (a worker's function,
  an authorizer to ask, metadata, an Enqueue action) takes the message path;
* a handler's data is searched for channel refs only where the engine module that built it says
  they can be (``pyiii.engine.local.PayloadHint``: an HTTP request's two channels, none in a state
  event), instead of whole; anything else is searched whole, as every SDK does;
* the ``engine::workers::register`` Void call of the replay is applied with
  ``Engine.register_worker_info`` directly, so the namespace is fixed and every registration made
  right after ``register_worker(engine)`` is applied at once instead of waiting for a task;
* ``reattach`` is not sent: an in-process connection only goes away when the engine detached it, so
  there is never a stale predecessor to evict.

An in-process client does not reconnect: when the engine closes it (engine stop), its state becomes
``disconnected`` and calls queue until they time out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from msgspec import UNSET

from pyiii._ids import id_source
from pyiii.engine.core import NOT_BUILTIN
from pyiii.engine.local import PAYLOAD_HINT, connect_local
from pyiii.protocol.messages import InvokeFunction, Reattach, WorkerMessage
from pyiii.sdk.channels import materialize_channel_refs, materialize_keys
from pyiii.sdk.replay import REGISTER_WORKER
from pyiii.sdk.transport import Transport, TransportEvents

if TYPE_CHECKING:
    from pyiii.engine.core import Engine
    from pyiii.engine.local import LocalPeer

__all__ = ["InProcessTransport", "engine_loop"]

log = logging.getLogger("pyiii.sdk")


def engine_loop(engine: Engine) -> asyncio.AbstractEventLoop:
    """The running loop of a started engine (``RuntimeError`` otherwise)."""
    if not engine.started:
        raise RuntimeError("register_worker(engine) needs a started engine: 'await engine.start()' first")
    loop = engine.loop
    if loop.is_closed() or not loop.is_running():
        raise RuntimeError("register_worker(engine): the engine's event loop is not running")
    return loop


class InProcessTransport(Transport):
    #: What :meth:`direct_call` returns when the call must go as a message.
    NOT_DIRECT = NOT_BUILTIN

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._peer: LocalPeer | None = None
        self._events: TransportEvents | None = None
        self.connected = False
        # Invocation ids: a random UUID v4 prefix and a counter, so ids stay UUID-shaped and unique
        # without paying for uuid4() on every call (the engine accepts any non-empty string, D6).
        self._id_prefix, self._counter = id_source()
        self._background: asyncio.Future[Any] | None = None

    @property
    def address(self) -> str:
        return f"inprocess://engine-{id(self._engine):x}"

    def channel_base_url(self) -> str | None:
        # Channel sockets need the engine's WebSocket listener; a server that has one may publish it.
        url = getattr(self._engine, "ws_url", None)
        return url if isinstance(url, str) else None

    def new_invocation_id(self) -> str:
        return self._id_prefix + hex(next(self._counter))[3:]

    def start(self, events: TransportEvents) -> None:
        self._events = events
        events.state_changed("connecting")
        peer, registered = connect_local(self._engine, events.message_received, self._on_close)
        self._peer = peer
        self.connected = True
        events.connection_opened()
        events.message_received(registered)

    def send(self, message: WorkerMessage) -> None:
        peer = self._peer
        if peer is None:
            return
        cls = message.__class__
        if cls is InvokeFunction:
            if message.action is not UNSET and message.function_id == REGISTER_WORKER:  # type: ignore[union-attr]
                register_info = getattr(self._engine, "register_worker_info", None)
                if register_info is not None:
                    register_info(peer, message.data)  # type: ignore[union-attr]
                    return
        elif cls is Reattach:
            return
        outcome: Any = self._engine.handle(peer, message)
        if outcome is not None:  # only reattach is asynchronous, and it is never sent from here
            self._background = asyncio.ensure_future(outcome)

    def materialize_channel_refs(self, data: Any, base_url: str) -> Any:
        """Only where the engine module that built ``data`` says refs can be (``PayloadHint``)."""
        hint = PAYLOAD_HINT
        if data is hint.payload:
            keys = hint.ref_keys
            return materialize_keys(data, keys, base_url) if keys else data
        return materialize_channel_refs(data, base_url)

    def direct_call(
        self,
        function_id: str,
        data: Any,
        namespace: str | None,
        traceparent: str | None,
        void: bool,
        timeout_s: float | None = None,
    ) -> Any:
        """A call of a built-in function straight into the engine (no message objects; the engine
        checks what ``invokefunction`` would): the call's future, ``None`` for Void, or
        ``NOT_BUILTIN`` when the call must be sent as a message. ``timeout_s``: the client's own
        deadline for the call."""
        peer = self._peer
        if peer is None or not self.connected or function_id == REGISTER_WORKER:
            return NOT_BUILTIN
        return self._engine.call_builtin(peer, function_id, data, namespace, traceparent, void, timeout_s)

    def direct_log(self, level: str, payload: dict[str, Any]) -> bool:
        """An in-process logger's record straight into the engine's log store (what the
        ``engine::log::<level>`` Void call would do, without the call). False when it must go as a
        call: not connected, an authorizer to ask, or no observability module."""
        peer = self._peer
        if peer is None or not self.connected or peer.authorizer is not None or not peer.live:
            return False
        sink = self._engine.log_sink
        if sink is None:
            return False
        try:
            sink(level, payload)
        except Exception as exc:  # (a bad record, an unknown level) a Void call's failure goes nowhere either
            log.debug("log record not stored: %s", exc)
        return True

    def _on_close(self, code: int, reason: str) -> None:
        if not self.connected:
            return
        self.connected = False
        events = self._events
        if events is not None:
            events.connection_lost()
            events.state_changed("disconnected")

    def abort(self) -> None:
        """Detach from the engine now, so nothing is routed here any more (§6.3)."""
        peer = self._peer
        if peer is not None and self.connected:
            self.connected = False
            self._engine.detach(peer)

    async def close(self) -> None:
        peer = self._peer
        if peer is None:
            return
        if self.connected:
            self.connected = False
            self._engine.detach(peer)
        await peer.close(1000, "worker shut down")
