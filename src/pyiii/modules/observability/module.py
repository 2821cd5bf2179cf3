"""The ``iii-observability`` module (config-cli-modules.md §7): the log store's front.

Records arrive from two places, ``LOGS`` telemetry frames (protocol.md §8.2, through
``Engine.telemetry_sink``) and ``engine::log::*`` calls (protocol.md §7.6), and go through one path,
:meth:`ObservabilityModule.ingest`: drop when disabled, sample, store, print (§7.3), deliver to ``log``
bindings (§7.4).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import msgspec

from pyiii.engine.invocations import CallContext
from pyiii.engine.modules import Module, ModuleHost
from pyiii.engine.registry import Binding, BuiltinHandler, TriggerProvider
from pyiii.protocol.codec import to_python
from pyiii.protocol.errors import TriggerRegistrationError, deserialization_error
from pyiii.protocol.otel import RECORD_FIELDS, LogRecord, decode_logs, normalize_id

from .console import format_console_line
from .settings import ObservabilitySettings
from .store import LogQuery, LogStore

log = logging.getLogger("pyiii.observability")

LOG_TRIGGER_TYPE = "log"

#: ``engine::log::<level>`` → (severity number, severity text) (protocol.md §7.6).
SEVERITIES: dict[str, tuple[int, str]] = {
    "info": (9, "INFO"),
    "warn": (13, "WARN"),
    "error": (17, "ERROR"),
    "debug": (5, "DEBUG"),
    "trace": (1, "TRACE"),
}

_LOG_FUNCTIONS: dict[str, str] = {level: f"engine::log::{level}" for level in SEVERITIES}

#: Values of a ``log`` binding's ``level`` (§7.4).
TRIGGER_LEVELS = ("all", "trace", "debug", "info", "warn", "error")


class LogInput(msgspec.Struct, frozen=True):
    """``engine::log::*`` input (protocol.md §7.6)."""

    message: str
    data: Any = None
    trace_id: str | None = None
    span_id: str | None = None
    service_name: str | None = None


class ClearInput(msgspec.Struct, frozen=True):
    """``engine::logs::clear`` takes no fields; unknown ones are ignored."""


_T = TypeVar("_T")


def decode_input(function_id: str, data: Any, type_: type[_T]) -> _T:
    """Input of a built-in: ``null`` is ``{}``, unknown keys are ignored, a wrong type is
    ``deserialization_error`` (protocol.md §7)."""
    try:
        return msgspec.convert({} if data is None else data, type_)
    except msgspec.ValidationError as exc:
        raise deserialization_error(function_id, str(exc)) from exc


class StderrConsole:
    """The default console: lines printed during one event-loop pass go to stderr in one write at the
    end of the pass (a write and a flush per record were 8 % of the engine's time in the todo
    benchmark, whose handlers log every change). Outside a running loop a line is written at once."""

    __slots__ = ("_lines", "_loop", "_scheduled", "_thread")

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._scheduled = False
        # The loop last found running, and its thread: asking for the running loop costs a getpid
        # system call per call on Python 3.11, and this runs for every log line.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def __call__(self, line: str) -> None:
        self._lines.append(line)
        if self._scheduled:
            return
        loop = self._loop
        if loop is None or self._thread != threading.get_ident() or not loop.is_running():
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._thread = threading.get_ident()
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        lines, self._lines = self._lines, []
        if lines:
            lines.append("")
            sys.stderr.write("\n".join(lines))
            sys.stderr.flush()


class ObservabilityModule(Module):
    """Log store, ``engine::log::*``, ``engine::logs::{list,clear}`` and the ``log`` trigger type.

    ``clock_ns`` (Unix nanoseconds), ``rng`` (uniform in [0, 1), for sampling) and ``console`` (receives
    each formatted line) are injectable for tests.
    """

    name = "iii-observability"

    def __init__(
        self,
        settings: ObservabilitySettings | None = None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        rng: Callable[[], float] = random.random,
        console: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings or ObservabilitySettings()
        self.store = LogStore(self.settings.logs_max_count, self.settings.logs_retention_seconds, clock_ns)
        self.triggers = LogTriggers()
        self._clock_ns = clock_ns
        self._rng = rng
        self._console = console if console is not None else StderrConsole()
        self._host: ModuleHost | None = None

    @property
    def accepting(self) -> bool:
        """Whether incoming records are kept at all (``enabled`` and ``logs_enabled``, §7.1)."""
        return self.settings.enabled and self.settings.logs_enabled

    async def start(self, host: ModuleHost) -> None:
        self._host = host
        # None of them awaits anything: started in the caller's context, no task per call.
        for level, function_id in _LOG_FUNCTIONS.items():
            host.register_function(function_id, self._log_handler(level),
                                   description=f"Store a {level} log record", taskless=True)  # fmt: skip
        host.register_function(
            "engine::logs::list", self._list, description="List stored log records", taskless=True
        )
        host.register_function(
            "engine::logs::clear", self._clear, description="Remove every stored log record", taskless=True
        )
        # The engine calls built-in providers synchronously (engine/core.py ``_install``); the
        # ``TriggerProvider`` protocol in registry.py still declares coroutines, hence the cast.
        host.register_trigger_type(LOG_TRIGGER_TYPE, cast(TriggerProvider, self.triggers),
                                   description="Log records as they are stored")  # fmt: skip
        host.engine.telemetry_sink = self.ingest_frame
        host.engine.log_sink = self.log_call

    async def stop(self) -> None:
        flush = getattr(self._console, "flush", None)
        if flush is not None:
            flush()
        host = self._host
        if host is not None and host.engine.telemetry_sink == self.ingest_frame:
            host.engine.telemetry_sink = None
        if host is not None and host.engine.log_sink == self.log_call:
            host.engine.log_sink = None
        self._host = None

    # ------------------------------------------------------------------ ingestion

    def ingest_frame(self, body: bytes) -> None:
        """The body of a ``LOGS`` frame (prefix stripped): every record in it is ingested."""
        if not self.accepting:
            return
        records = decode_logs(body)
        if not records:
            log.debug("LOGS frame without usable records dropped (%d bytes)", len(body))
        for record in records:
            self.ingest(record)

    def ingest(self, record: LogRecord) -> bool:
        """Sample, store, print and deliver one record. False when it was dropped."""
        if not self.accepting:
            return False
        ratio = self.settings.logs_sampling_ratio
        if ratio < 1.0 and not self._rng() < ratio:
            return False
        self.store.add(record)
        if self.settings.logs_console_output:
            try:
                self._console(format_console_line(record, self.settings.format))
            except Exception:  # a broken console must not lose the record for the store or triggers
                log.debug("console output of a log record failed", exc_info=True)
        if self._host is not None:
            self.triggers.deliver(record, self._host)
        return True

    def record_from_call(self, level: str, request: LogInput) -> LogRecord:
        """The stored record of an ``engine::log::<level>`` call (protocol.md §7.6)."""
        number, text = SEVERITIES[level]
        now = self._clock_ns()
        data = request.data
        if isinstance(data, dict):
            attributes = dict(data)
        elif data is None:
            attributes = {}
        else:
            # §7.6 only says what an object becomes; other data is kept rather than lost.
            attributes = {"data": data}
        service_name = request.service_name
        return LogRecord(
            timestamp_unix_nano=now,
            observed_timestamp_unix_nano=now,
            severity_number=number,
            severity_text=text,
            body=request.message,
            attributes=attributes,
            trace_id=normalize_id(request.trace_id),
            span_id=normalize_id(request.span_id),
            resource={} if service_name is None else {"service.name": service_name},
            service_name="unknown" if service_name is None else service_name,
        )

    # ------------------------------------------------------------------ functions

    def _log_handler(self, level: str) -> BuiltinHandler:
        async def handler(data: Any, ctx: CallContext) -> None:
            self.log_call(level, data)

        return handler

    def log_call(self, level: str, data: Any) -> None:
        """What ``engine::log::<level>`` does with its input (also the engine's ``log_sink``, which
        in-process loggers call without a function call around it)."""
        self.ingest(self.record_from_call(level, decode_input(_LOG_FUNCTIONS[level], data, LogInput)))

    async def _list(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        query = decode_input("engine::logs::list", data, LogQuery)
        now_ms = self._clock_ns() // 1_000_000
        if not self.settings.logs_enabled:
            return {"logs": [], "total": 0, "timestamp": now_ms}
        records, total = self.store.query(query)
        return {
            "logs": [dict(record) for record in records],
            "total": total,
            "query": msgspec.structs.asdict(query),
            "timestamp": now_ms,
        }

    async def _clear(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        decode_input("engine::logs::clear", data, ClearInput)
        self.store.clear()
        return {"success": True}


class LogTriggers:
    """The ``log`` trigger type's provider (§7.4): bindings by id, each with its level."""

    def __init__(self) -> None:
        self.bindings: dict[str, tuple[Binding, str]] = {}

    def register_trigger(self, binding: Binding) -> None:
        self.bindings[binding.id] = (binding, parse_level(binding.config))

    def unregister_trigger(self, binding: Binding) -> None:
        self.bindings.pop(binding.id, None)

    def deliver(self, record: LogRecord, host: ModuleHost) -> None:
        """Fire-and-forget the record to every binding whose level is ``all`` or the record's level."""
        level = record["severity_text"].lower()
        for binding, wanted in list(self.bindings.values()):
            if wanted == "all" or wanted == level:
                host.engine.invoke_void(binding.function_id, trigger_payload(record),
                                        namespace=binding.namespace, metadata=binding.metadata)  # fmt: skip


def parse_level(config: Any) -> str:
    """The ``level`` of a ``log`` binding's config (default ``all``, case-insensitive)."""
    config = to_python(config)
    if config is None:
        return "all"
    if not isinstance(config, dict):
        raise TriggerRegistrationError("log trigger config must be an object")
    level = config.get("level")
    if level is None:
        return "all"
    if isinstance(level, str) and level.lower() in TRIGGER_LEVELS:
        return level.lower()
    raise TriggerRegistrationError(
        f"Invalid log trigger level {level!r}: expected one of {', '.join(TRIGGER_LEVELS)}"
    )


def trigger_payload(record: LogRecord) -> dict[str, Any]:
    """Every stored field, ``null`` when missing (§7.4); a fresh dict per delivery."""
    return {name: record.get(name) for name in RECORD_FIELDS}
