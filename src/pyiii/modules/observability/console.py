"""Console lines for stored log records (config-cli-modules.md §7.3). The one place they are formatted."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import msgspec

from pyiii.protocol.otel import LogRecord

# Fallback when a record has no severity text: OTLP severity number ranges (1-4 TRACE, 5-8 DEBUG, ...).
_LEVELS_BY_NUMBER = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))

# Values that are not JSON (a Python object passed to engine::log::* in-process) print as their str().
_encoder = msgspec.json.Encoder(enc_hook=str)


def level_of(record: LogRecord) -> str:
    """The ``[LEVEL]`` of a record: its severity text uppercased, else derived from its number."""
    text = record["severity_text"]
    if text:
        return text.upper()
    number = record["severity_number"]
    return next((name for floor, name in _LEVELS_BY_NUMBER if number >= floor), "UNSPECIFIED")


def format_console_line(record: LogRecord, fmt: str = "default") -> str:
    """One line, without newline. ``default``: ``[HH:MM:SS.mmm] [LEVEL] <service_name> <body>
    <attributes as compact JSON, without service.name>`` (attributes omitted when empty), in local
    time of the record's timestamp; ``json``: the record as one compact JSON object."""
    if fmt == "json":
        return _json(record)
    ts_ns = record["timestamp_unix_nano"] or record["observed_timestamp_unix_nano"] or time.time_ns()
    parts = [_stamp(ts_ns), f"[{level_of(record)}]", record["service_name"], record["body"]]
    attributes = {k: v for k, v in record["attributes"].items() if k != "service.name"}
    if attributes:
        parts.append(_json(attributes))
    return " ".join(parts)


#: The ``[HH:MM:SS`` of the last whole second formatted (lines come in bursts within one second).
_last_second: list[Any] = [None, ""]


def _stamp(ts_ns: int) -> str:
    """``[HH:MM:SS.mmm]`` in local time."""
    second, rest_ns = divmod(ts_ns, 1_000_000_000)
    if second != _last_second[0]:
        try:
            when = datetime.fromtimestamp(second)
        except (OverflowError, OSError, ValueError):  # a timestamp beyond what the platform can show
            when = datetime.now()
        _last_second[:] = [second, f"[{when:%H:%M:%S}"]
    return f"{_last_second[1]}.{rest_ns // 1_000_000:03d}]"


def _json(value: Any) -> str:
    try:
        return _encoder.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return repr(value)
