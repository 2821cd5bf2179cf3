"""The stream listener's limits, in one settings object (spec/stream.md §3.2, §3.3, §3.9).

The defaults are the spec's; tests shrink them (a queue of 8 frames, an auth timeout of a fraction of a
second) to exercise the same code paths without megabytes of traffic or ten-second waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Bytes a client socket may hold in the kernel that the peer has not yet been sent (TCP_NOTSENT_LOWAT on
#: each accepted socket). Why: without it the kernel grows a socket's send buffer towards ``tcp_wmem``'s
#: maximum (4 MiB on Linux by default) before the transport ever reports backpressure, so a client that
#: never reads costs megabytes of kernel memory and is dropped (§3.9 rule 3) only after thousands of
#: deliveries that are useless work for the engine. With the cap, a never-reading client fills this
#: plus the transport's buffer (64 KiB high-water mark) and then its 1,024-frame queue, and is closed with
#: 1013. It counts only data not yet sent: bytes in flight on a real network (up to the congestion window)
#: are not limited, so throughput to a reading client is not capped; 128 KiB is about a second of backlog
#: for a 1 Mbit/s client, and a reading client on loopback empties it on every write.
SOCKET_UNSENT_BYTES: Final = 128 * 1024


@dataclass(frozen=True, slots=True)
class StreamLimits:
    #: §3.9 rule 1: frames a connection may have queued (held frames included) before it is a slow
    #: consumer and is closed with 1013.
    queue_frames: int = 1024
    #: §3.2 rule 4: client messages up to 1 MiB are accepted; a larger one closes the connection with 1009.
    max_message_bytes: int = 1024 * 1024
    #: Subscriptions one connection may hold; a join of a new id beyond it closes the connection with
    #: 1008, so one socket cannot grow the index without bound (10,000 joins fit).
    max_subscriptions: int = 65_536
    #: S3: an auth function that has not answered within this long rejects the upgrade (401).
    auth_timeout_s: float = 10.0
    #: §3.9 rule 3: a close handshake not finished within this long aborts the transport.
    close_timeout_s: float = 5.0
    #: See :data:`SOCKET_UNSENT_BYTES`; ``None`` leaves the kernel's default (unbounded up to ``tcp_wmem``).
    socket_unsent_bytes: int | None = SOCKET_UNSENT_BYTES


DEFAULT_LIMITS = StreamLimits()

__all__ = ["DEFAULT_LIMITS", "SOCKET_UNSENT_BYTES", "StreamLimits"]
