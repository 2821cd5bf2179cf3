"""The seam between the client and the wire (STYLE: "one tiny transport seam").

:class:`~pyiii.sdk.client.III` knows registrations, pending calls and handlers; a :class:`Transport`
knows how to reach an engine. Two implementations: :mod:`pyiii.sdk.remote` (WebSocket, reconnects
with backoff) and :mod:`pyiii.sdk.inprocess` (an :class:`~pyiii.engine.core.Engine` in this process,
no JSON). Every method runs on the client's event loop thread.

The transport reports to the client through :class:`TransportEvents`:

* ``connection_opened()`` when a connection is ready to carry messages; the client replays its
  registrations synchronously from inside this call (§10.5 rule 2);
* ``message_received(msg)`` for every engine message, in arrival order;
* ``connection_lost()`` when that connection is gone;
* ``state_changed(state)`` for ``connecting`` / ``reconnecting`` / ``failed``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from pyiii.protocol.messages import WorkerMessage
from pyiii.sdk.channels import materialize_channel_refs
from pyiii.sdk.types import ConnectionState

__all__ = ["PayloadTooLarge", "Transport", "TransportEvents"]


class PayloadTooLarge(Exception):
    """An outbound message exceeds the 64 MiB limit (§10.5 rule 11); it was not sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class TransportEvents(Protocol):
    def connection_opened(self) -> None: ...

    def message_received(self, message: Any) -> None: ...

    def connection_lost(self) -> None: ...

    def state_changed(self, state: ConnectionState) -> None: ...


class Transport(ABC):
    """One way to reach an engine. Created by ``register_worker``, driven by the client."""

    #: True while a connection can carry messages (between ``connection_opened`` and ``connection_lost``).
    connected: bool = False

    @abstractmethod
    def start(self, events: TransportEvents) -> None:
        """Begin connecting (and reconnecting). Returns at once; progress is reported to ``events``."""

    @abstractmethod
    def send(self, message: WorkerMessage) -> None:
        """Hand one message to the current connection, in order. Only called while ``connected``.

        Raises :class:`PayloadTooLarge` when the message is over the limit; nothing is sent then.
        """

    def send_late(self, message: WorkerMessage) -> None:
        """As :meth:`send`, for a message nobody waits on (a log call): a transport may write it
        after the messages sent during the same loop iteration."""
        self.send(message)

    @abstractmethod
    async def close(self) -> None:
        """Stop reconnecting and close the connection (normal closure)."""

    def abort(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Synchronous first step of :meth:`close` (on the loop): stop carrying messages at once."""

    @property
    @abstractmethod
    def address(self) -> str:
        """What :meth:`III.get_address` returns."""

    def new_invocation_id(self) -> str:
        """A fresh ``invocation_id`` for an outbound call (§10.5 rule 5: a UUID v4)."""
        import uuid

        return str(uuid.uuid4())

    def channel_base_url(self) -> str | None:
        """``ws://host:port`` of the engine for channel sockets (§9), or ``None`` when unknown."""
        return None

    def materialize_channel_refs(self, data: Any, base_url: str) -> Any:
        """An invocation's decoded ``data`` with its channel refs as readers and writers (§9). A
        transport that knows where a payload's refs can be (the in-process one) may look only there."""
        return materialize_channel_refs(data, base_url)
