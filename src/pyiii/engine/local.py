"""The in-process connection: an SDK client attached to an :class:`Engine` in the same event loop.

No socket and no JSON: the SDK hands the engine the same message structs it would encode
(``pyiii.protocol.messages``), and the engine hands back its structs through ``deliver``. Payloads
that came from a remote peer may arrive as ``msgspec.Raw``; the SDK turns them into Python values with
``pyiii.protocol.codec.to_python``. Everything runs on the engine's loop thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyiii.engine.peer import Peer

if TYPE_CHECKING:
    from pyiii.engine.core import Engine


class PayloadHint:
    """Where channel refs can be in a payload an engine module is dispatching, for an in-process SDK.

    An SDK replaces every channel ref in a call's data (a dict with ``channel_id``, ``access_key`` and
    ``direction``, protocol.md §9) with a reader or writer, so it walks all of the data, as the
    official SDKs do. A remote SDK first scans the frame's bytes; an in-process one gets the engine's
    own objects and had to walk them: 3 % of the instructions of an embedded todo write
    (bench/RESULTS.md, session 6). A module that builds a payload knows better: an HTTP request's
    refs are its ``request_body`` and ``response`` (its body holds one only if the raw JSON could
    spell one), a state event holds none unless a value's encoding could spell one.

    Such a module passes ``ref_keys`` to :meth:`Engine.invoke_future`, which sets
    :data:`PAYLOAD_HINT` around its dispatch (that delivers to an in-process peer synchronously) and
    clears it after. An in-process SDK that receives that very object (``is``) looks for refs only
    at ``ref_keys``, top-level keys of a dict payload. Anything else, or the same object at any other
    time, is walked as before; a hint lost to a nested dispatch only costs the walk.
    """

    __slots__ = ("payload", "ref_keys")

    def __init__(self) -> None:
        self.payload: Any = None
        self.ref_keys: tuple[str, ...] = ()


#: The one hint (everything runs on the engine's loop thread).
PAYLOAD_HINT = PayloadHint()


class LocalPeer(Peer):
    """Engine side of an in-process client. ``deliver`` receives every message the engine sends;
    ``on_close`` is called with the close code when the engine closes the connection."""

    kind = "local"

    def __init__(
        self,
        engine: Engine,
        deliver: Callable[[Any], None],
        on_close: Callable[[int, str], None] | None = None,
    ) -> None:
        super().__init__(ip_address=None)
        self.engine = engine
        self._deliver = deliver
        self._on_close = on_close
        self.closed = False
        self.lift_legacy_limit()  # no frame limit without frames

    def send(self, message: Any) -> None:
        if not self.closed:
            self._deliver(message)

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.engine.detach(self)
        if self._on_close is not None:
            self._on_close(code, reason)

    async def probe(self, timeout_s: float) -> bool:
        return not self.closed


def connect_local(
    engine: Engine, deliver: Callable[[Any], None], on_close: Callable[[int, str], None] | None = None
) -> tuple[LocalPeer, Any]:
    """Attach an in-process client; returns the peer and the ``workerregistered`` message for it."""
    peer = LocalPeer(engine, deliver, on_close)
    return peer, engine.attach(peer)
