"""Bookkeeping of one invocation in flight (spec/protocol.md §4)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiii.engine.peer import Peer


class Pending:
    """A call routed to a worker and not settled yet.

    Exactly one of ``caller`` (a peer waiting for an ``invocationresult`` under ``caller_invocation_id``)
    and ``future`` (an engine-initiated call) is set, or neither for a Void call whose result is
    discarded (§4.2).
    """

    __slots__ = ("caller", "caller_invocation_id", "function_id", "future", "id", "slot", "target")

    def __init__(
        self,
        invocation_id: str,
        function_id: str,
        target: Peer,
        caller: Peer | None,
        caller_invocation_id: str | None,
        future: asyncio.Future[Any] | None,
    ) -> None:
        self.id = invocation_id
        self.function_id = function_id
        self.target = target
        self.caller = caller
        self.caller_invocation_id = caller_invocation_id
        self.future = future
        #: The engine's deadline slot of this call (0 until it is sent).
        self.slot = 0


class CallContext:
    """What a built-in function knows about the call besides its input."""

    __slots__ = ("baggage", "caller", "function_id", "metadata", "namespace", "traceparent")

    def __init__(
        self,
        function_id: str,
        namespace: str,
        caller: Peer | None = None,
        metadata: Any = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        self.function_id = function_id
        self.namespace = namespace
        self.caller = caller
        self.metadata = metadata
        self.traceparent = traceparent
        self.baggage = baggage
