"""The engine's view of one worker connection (spec/protocol.md §1 terms).

A :class:`Peer` is whatever registers functions, trigger types and bindings: a remote WebSocket
connection (``pyiii.server.worker_socket``), an in-process SDK client (``pyiii.engine.local``) or a
built-in module (``pyiii.engine.modules``). The engine talks to every kind through :meth:`Peer.send`,
the one write path of a connection, and never knows which kind it is.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from pyiii.protocol.messages import Base

if TYPE_CHECKING:
    from pyiii.engine.invocations import Pending

MIB = 1024 * 1024
#: Largest message the engine sends or accepts (§2.4 rule 5).
MAX_MESSAGE_BYTES = 64 * MIB
#: Inbound limit of the 0.11 Python SDK and of peers whose runtime is not known yet (§6.5 rule 3).
LEGACY_MESSAGE_BYTES = 1 * MIB


class FrameTooLarge(Exception):
    """A message would exceed what this peer accepts; it was not sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds this worker's limit of {limit} bytes")
        self.size = size
        self.limit = limit


class PeerInfo:
    """What ``engine::workers::register`` told us (§7.1); shown by ``engine::workers::list``."""

    __slots__ = (
        "description",
        "features",
        "isolation",
        "name",
        "os",
        "pid",
        "runtime",
        "telemetry",
        "version",
    )

    def __init__(self) -> None:
        self.name: str | None = None
        self.description: str | None = None
        self.runtime: str = "unknown"
        self.version: str | None = None
        self.os: str | None = None
        self.pid: int | None = None
        self.isolation: str | None = None
        self.telemetry: dict[str, Any] | None = None
        self.features: list[str] = []


class Peer:
    """A connection as the engine sees it. Subclasses implement :meth:`send` and :meth:`close`."""

    kind = "abstract"

    def __init__(self, *, ip_address: str | None = None) -> None:
        self.worker_id = str(uuid.uuid4())
        self.reattach_token = str(uuid.uuid4())
        self.ip_address = ip_address
        self.connected_at_ms = int(time.time() * 1000)
        self.info = PeerInfo()
        #: Namespace of the connection (§6.4); ``None`` until fixed.
        self.namespace: str | None = None
        self.buffered: list[Base] = []
        #: False once teardown started: never chosen as a target again (§5.1 rule 2).
        self.live = True
        #: True while an identity-eviction probe is pending (§6.2): not chosen for new calls.
        self.probing = False
        #: Invocations routed to this peer and not settled yet, by target-leg id.
        self.inflight: dict[str, Pending] = {}
        #: Limit on messages sent to this peer; lifted when it reports ``large-messages.v1`` or a runtime
        #: that accepts 64 MiB (§6.5 rule 3).
        self.send_limit = LEGACY_MESSAGE_BYTES
        #: Call authorization of RBAC listeners (``None`` = everything allowed).
        self.authorizer: Any = None
        self.cleanup_done: Any = None  # asyncio.Event set when detach finished (set by the engine)

    # -- the one write path ------------------------------------------------------------------
    def send(self, message: Base) -> None:
        """Queue one message for this peer. Raises :class:`FrameTooLarge` if it exceeds the peer's limit.

        Never blocks; a peer that is closing drops the message silently.
        """
        raise NotImplementedError

    async def close(self, code: int, reason: str = "") -> None:
        """Close the connection; the engine's detach runs when the transport reports it closed."""
        raise NotImplementedError

    async def probe(self, timeout_s: float) -> bool:
        """Liveness check (WebSocket ping): True if the peer answered within the timeout."""
        return self.live

    # -- helpers ------------------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.info.name or self.worker_id

    def lift_legacy_limit(self) -> None:
        self.send_limit = MAX_MESSAGE_BYTES

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.worker_id} {self.info.name!r}>"
