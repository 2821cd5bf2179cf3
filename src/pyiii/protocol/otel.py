"""Decoding the body of a ``LOGS`` telemetry frame (spec/protocol.md §8.2). Pure: bytes in, records out.

:func:`decode_logs` turns OTLP/JSON ``{"resourceLogs": [...]}`` into one :class:`LogRecord` dict per
``logRecord``. It never raises. How much of a bad input survives:

* a body that is not JSON, or not an object with a ``resourceLogs`` list, gives ``[]``;
* a resource, scope or log record that is not an object is skipped; its siblings are kept;
* inside a record, a field of the wrong type takes its default (``0``, ``""``, ``null``), an attribute
  entry without a string ``key`` is dropped, and an unusable AnyValue becomes ``null``.

Field names, defaults and key order are those of the §8.2 table, which is also the stored record shape
of ``engine::logs::list`` and of the ``log`` trigger payload (config-cli-modules.md §7.2, §7.4).
"""

from __future__ import annotations

import math
import re
from typing import Any, NotRequired, TypedDict

import msgspec

__all__ = ["RECORD_FIELDS", "LogRecord", "any_value", "compact_json", "decode_logs", "normalize_id"]

#: Deeper AnyValue nesting is cut to ``null``: no sane logger nests this far, and it keeps the
#: converter's recursion well below Python's limit whatever the frame holds.
MAX_DEPTH = 64

_INT_RE = re.compile(r"[+-]?[0-9]+")


class LogRecord(TypedDict):
    """One stored log record (§8.2); the scope fields are omitted when empty."""

    timestamp_unix_nano: int
    observed_timestamp_unix_nano: int
    severity_number: int
    severity_text: str
    body: str
    attributes: dict[str, Any]
    trace_id: str | None
    span_id: str | None
    resource: dict[str, str]
    service_name: str
    instrumentation_scope_name: NotRequired[str]
    instrumentation_scope_version: NotRequired[str]


#: Every stored field, in §8.2 order (the ``log`` trigger payload has all of them, ``null`` when missing).
RECORD_FIELDS: tuple[str, ...] = tuple(LogRecord.__annotations__)

_encoder = msgspec.json.Encoder()


def compact_json(value: Any) -> str:
    """Compact JSON text of a decoded value (NaN and infinities become ``null``, as msgspec writes them)."""
    return _encoder.encode(value).decode()


def decode_logs(body: bytes | str) -> list[LogRecord]:
    """Every log record of a ``LOGS`` frame body (prefix already stripped), in frame order."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        # ValueError: msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string.
        return []
    if not isinstance(doc, dict):
        return []
    records: list[LogRecord] = []
    for resource_logs in _objects(doc.get("resourceLogs")):
        resource = _resource(resource_logs.get("resource"))
        service_name = resource.get("service.name") or "unknown"
        for scope_logs in _objects(resource_logs.get("scopeLogs")):
            scope = scope_logs.get("scope")
            scope_name = scope_version = ""
            if isinstance(scope, dict):
                scope_name = _str(scope.get("name"))
                scope_version = _str(scope.get("version"))
            for raw in _objects(scope_logs.get("logRecords")):
                record = _record(raw, resource, service_name)
                if scope_name:
                    record["instrumentation_scope_name"] = scope_name
                if scope_version:
                    record["instrumentation_scope_version"] = scope_version
                records.append(record)
    return records


def _record(raw: dict[str, Any], resource: dict[str, str], service_name: str) -> LogRecord:
    body = any_value(raw.get("body"))
    return LogRecord(
        timestamp_unix_nano=_uint(raw.get("timeUnixNano")),
        observed_timestamp_unix_nano=_uint(raw.get("observedTimeUnixNano")),
        severity_number=_uint(raw.get("severityNumber")),
        severity_text=_str(raw.get("severityText")),
        # An absent body is "" rather than "null": every record has a printable text.
        body=body if isinstance(body, str) else ("" if body is None else compact_json(body)),
        attributes=_key_values(raw.get("attributes"), 0),
        trace_id=normalize_id(raw.get("traceId")),
        span_id=normalize_id(raw.get("spanId")),
        # Each record gets its own copy: stored records never share mutable parts.
        resource=dict(resource),
        service_name=service_name,
    )


def _resource(raw: Any) -> dict[str, str]:
    """Resource attributes as ``{key: string}``: strings as-is, other values as compact JSON."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in _key_values(raw.get("attributes"), 0).items():
        out[key] = value if isinstance(value, str) else compact_json(value)
    return out


def normalize_id(value: Any) -> str | None:
    """A trace or span id as stored: lowercase; not a string, empty or all zeros → ``None``."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    if not value or value.strip("0") == "":
        return None
    return value


def any_value(raw: Any, depth: int = 0) -> Any:
    """Convert one OTLP AnyValue to a Python value (§8.2); empty, unknown or malformed → ``None``.

    ``bytesValue`` is already base64 text in OTLP/JSON and is kept as that string.
    """
    if not isinstance(raw, dict) or depth > MAX_DEPTH:
        return None
    if "stringValue" in raw:
        value = raw["stringValue"]
        return value if isinstance(value, str) else None
    if "boolValue" in raw:
        value = raw["boolValue"]
        return value if isinstance(value, bool) else None
    if "intValue" in raw:
        return _int(raw["intValue"])
    if "doubleValue" in raw:
        return _float(raw["doubleValue"])
    if "bytesValue" in raw:
        value = raw["bytesValue"]
        return value if isinstance(value, str) else None
    if "arrayValue" in raw:
        array = raw["arrayValue"]
        values = array.get("values") if isinstance(array, dict) else None
        if not isinstance(values, list):
            return [] if isinstance(array, dict) else None
        return [any_value(item, depth + 1) for item in values]
    if "kvlistValue" in raw:
        kvlist = raw["kvlistValue"]
        if not isinstance(kvlist, dict):
            return None
        return _key_values(kvlist.get("values"), depth + 1)
    return None


def _key_values(raw: Any, depth: int) -> dict[str, Any]:
    """A list of ``{key, value}`` entries as an object; entries without a string key are dropped."""
    out: dict[str, Any] = {}
    for entry in _objects(raw):
        key = entry.get("key")
        if isinstance(key, str):
            out[key] = any_value(entry.get("value"), depth)
    return out


def _objects(raw: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (anything else in it is skipped); not a list → ``[]``."""
    if not isinstance(raw, list):
        return []
    return [item for item in raw if isinstance(item, dict)]


def _str(raw: Any) -> str:
    return raw if isinstance(raw, str) else ""


def _int(raw: Any) -> int | None:
    """An OTLP int64: a JSON integer, an integral float, or a decimal string."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() else None
    if isinstance(raw, str) and _INT_RE.fullmatch(raw.strip()):
        try:
            return int(raw)
        except ValueError:  # more digits than int() accepts
            return None
    return None


def _uint(raw: Any) -> int:
    """A timestamp or severity number: a non-negative int, default 0."""
    value = _int(raw)
    return value if value is not None and value >= 0 else 0


def _float(raw: Any) -> float | None:
    """An OTLP double: a JSON number, or a string such as ``"NaN"`` / ``"Infinity"`` / ``"1.5"``."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            return float(raw)
        except OverflowError:
            return None
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None
