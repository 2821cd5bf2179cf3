"""``Logger`` (spec/protocol.md §10.6): structured logs sent to ``engine::log::<level>``.

Each call is a Void ``invokefunction`` through the most recently created live client of the process.
Inside a handler, ``trace_id`` and ``span_id`` default to those of the current invocation's W3C
``traceparent`` (kept in a context variable set by the client around every handler call). With no
client, or while it is disconnected, records go to the standard ``logging`` logger ``pyiii`` instead.
A log call never raises.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiii.sdk.client import III

__all__ = ["Logger", "current_traceparent"]

#: ``traceparent`` of the invocation whose handler is running in this context (``None`` outside one).
current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pyiii_current_traceparent", default=None
)

_fallback = logging.getLogger("pyiii")
_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR, "debug": logging.DEBUG}

_clients: list[weakref.ref[III]] = []
_clients_lock = threading.Lock()


def register_client(client: III) -> None:
    """Called by every new client: it becomes the one loggers send through."""
    with _clients_lock:
        _clients.append(weakref.ref(client))


def unregister_client(client: III) -> None:
    with _clients_lock:
        _clients[:] = [ref for ref in _clients if ref() is not None and ref() is not client]


def _active_client() -> III | None:
    with _clients_lock:
        for ref in reversed(_clients):
            client = ref()
            if client is not None and client.is_live:
                return client
    return None


def parse_traceparent(traceparent: str | None) -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``)."""
    if not traceparent:
        return None, None
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None, None
    return parts[1], parts[2]


class Logger:
    """Structured logger. ``Logger(trace_id=None, service_name=None, span_id=None)``."""

    def __init__(
        self, trace_id: str | None = None, service_name: str | None = None, span_id: str | None = None
    ) -> None:
        self.trace_id = trace_id
        self.service_name = service_name
        self.span_id = span_id

    def info(self, message: str, data: Any = None) -> None:
        self._emit("info", message, data)

    def warn(self, message: str, data: Any = None) -> None:
        self._emit("warn", message, data)

    def warning(self, message: str, data: Any = None) -> None:
        """Alias of :meth:`warn`."""
        self._emit("warn", message, data)

    def error(self, message: str, data: Any = None) -> None:
        self._emit("error", message, data)

    def debug(self, message: str, data: Any = None) -> None:
        self._emit("debug", message, data)

    def _emit(self, level: str, message: Any, data: Any) -> None:
        try:
            trace_id, span_id = self.trace_id, self.span_id
            if trace_id is None or span_id is None:
                ctx_trace, ctx_span = parse_traceparent(current_traceparent.get())
                trace_id = trace_id or ctx_trace
                span_id = span_id or ctx_span
            payload: dict[str, Any] = {"message": str(message)}
            if data is not None:
                payload["data"] = data
            if trace_id is not None:
                payload["trace_id"] = trace_id
            if span_id is not None:
                payload["span_id"] = span_id
            client = _active_client()
            # Without an explicit service name, the record names the worker that logged it (the
            # engine would otherwise print "unknown").
            service_name = self.service_name or getattr(client, "_name", None)
            if service_name is not None:
                payload["service_name"] = service_name
            if client is not None and client.send_log(level, payload):
                return
            if data is None:
                _fallback.log(_LEVELS[level], "%s", message)
            else:
                _fallback.log(_LEVELS[level], "%s %s", message, data)
        except Exception:  # a log call never raises (§10.6 rule 3)
            try:
                _fallback.exception("pyiii Logger failed")
            except Exception:
                pass
