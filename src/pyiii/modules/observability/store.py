"""The bounded in-memory log store and its query (config-cli-modules.md §7.1, §7.2). No I/O, no engine."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Annotated

import msgspec

from pyiii.protocol.otel import LogRecord

NonNegative = Annotated[int, msgspec.Meta(ge=0)]

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


class LogQuery(msgspec.Struct, frozen=True):
    """``engine::logs::list`` input (§7.2). Field order is the order of the ``query`` echo."""

    trace_id: str | None = None
    span_id: str | None = None
    severity_min: int | None = None
    severity_text: str | None = None
    start_time: int | None = None  # Unix ms, inclusive
    end_time: int | None = None  # Unix ms, inclusive
    offset: NonNegative | None = None
    limit: NonNegative | None = None

    def matches(self, record: LogRecord) -> bool:
        if self.trace_id is not None and record["trace_id"] != self.trace_id:
            return False
        if self.span_id is not None and record["span_id"] != self.span_id:
            return False
        if self.severity_min is not None and record["severity_number"] < self.severity_min:
            return False
        if self.severity_text is not None and record["severity_text"].lower() != self.severity_text.lower():
            return False
        # The time range is in whole milliseconds: a record at 12.9 ms is inside [12, 12].
        ms = record["timestamp_unix_nano"] // _NS_PER_MS
        if self.start_time is not None and ms < self.start_time:
            return False
        return self.end_time is None or ms <= self.end_time


class LogStore:
    """Records, oldest first, bounded by count and by age.

    Age is measured from when the engine stored a record, not from the record's own timestamp: an
    SDK clock that is off (or a timestamp of 0) must not make records vanish at once or linger.
    ``clock_ns`` returns Unix nanoseconds (injected by tests).
    """

    def __init__(
        self, max_count: int, retention_seconds: float, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._entries: deque[tuple[int, int, LogRecord]] = deque(maxlen=max(0, max_count))
        self._retention_ns = int(max(0.0, retention_seconds) * _NS_PER_S)
        self._clock_ns = clock_ns
        self._seq = 0

    def __len__(self) -> int:
        self._evict_expired()
        return len(self._entries)

    def add(self, record: LogRecord) -> None:
        """Store a record; beyond ``max_count`` the oldest one is evicted."""
        self._evict_expired()
        self._seq += 1
        self._entries.append((self._clock_ns(), self._seq, record))

    def clear(self) -> None:
        self._entries.clear()

    def query(self, query: LogQuery) -> tuple[list[LogRecord], int]:
        """Matching records newest first (by timestamp, then by arrival), paginated, and the count of
        matches before ``offset``/``limit``."""
        self._evict_expired()
        matched = [
            (rec["timestamp_unix_nano"], seq, rec) for _, seq, rec in self._entries if query.matches(rec)
        ]
        matched.sort(key=lambda item: (item[0], item[1]), reverse=True)
        start = query.offset or 0
        end = None if query.limit is None else start + query.limit
        return [rec for _, _, rec in matched[start:end]], len(matched)

    def _evict_expired(self) -> None:
        entries = self._entries
        cutoff = self._clock_ns() - self._retention_ns
        while entries and entries[0][0] < cutoff:
            entries.popleft()
