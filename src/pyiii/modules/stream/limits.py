"""The stream listener's limits, in one settings object (spec/stream.md §3.2, §3.3, §3.9).

The defaults are the spec's; tests shrink them (a queue of 8 frames, an auth timeout of a fraction of a
second) to exercise the same code paths without megabytes of traffic or ten-second waits.
"""

from __future__ import annotations

from dataclasses import dataclass


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


DEFAULT_LIMITS = StreamLimits()

__all__ = ["DEFAULT_LIMITS", "StreamLimits"]
