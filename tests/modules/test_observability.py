"""The iii-observability module against a real Engine (config-cli-modules.md §7, protocol.md §7.6, §8)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from pyiii.engine.core import Engine
from pyiii.engine.invocations import CallContext
from pyiii.engine.local import connect_local
from pyiii.engine.modules import Module, ModuleHost
from pyiii.engine.registry import Binding
from pyiii.modules.observability import ObservabilityModule, ObservabilitySettings, format_console_line
from pyiii.protocol import errors as codes
from pyiii.protocol import messages as m
from pyiii.protocol.errors import InvocationError
from pyiii.protocol.otel import RECORD_FIELDS, decode_logs

# The frame body of protocol.md §8.2, verbatim (the official Python SDK's `Logger().info(...)`).
EXAMPLE = (
    b'{"resourceLogs":[{"resource":{"attributes":[{"key":"telemetry.sdk.language","value":{"stringValue":'
    b'"python"}},{"key":"service.name","value":{"stringValue":"my-svc"}}]},"scopeLogs":[{"scope":{"name":'
    b'"iii.logger","version":""},"logRecords":[{"timeUnixNano":"1795213433727834601","observedTimeUnixNano":'
    b'"1795213433727836464","severityNumber":9,"severityText":"INFO","body":{"stringValue":'
    b'"Order processed"},'
    b'"attributes":[{"key":"service.name","value":{"stringValue":""}},{"key":"log.data","value":{"kvlistValue":'
    b'{"values":[{"key":"order_id","value":{"stringValue":"ord_123"}},{"key":"amount","value":{"doubleValue":'
    b"49.99}}]}}}]}]}]}]}"
)

# The `logs` entry of the config-cli-modules.md §7.2 example output (the §8.2 frame, stored). The
# spec abridges the frame's resource attributes; every one of them is kept (§8.2 table).
EXAMPLE_STORED = {
    "timestamp_unix_nano": 1795213433727834601,
    "observed_timestamp_unix_nano": 1795213433727836464,
    "severity_number": 9,
    "severity_text": "INFO",
    "body": "Order processed",
    "attributes": {"service.name": "", "log.data": {"order_id": "ord_123", "amount": 49.99}},
    "trace_id": None,
    "span_id": None,
    "resource": {"telemetry.sdk.language": "python", "service.name": "my-svc"},
    "service_name": "my-svc",
    "instrumentation_scope_name": "iii.logger",
}
NULL_QUERY = dict.fromkeys(
    ("trace_id", "span_id", "severity_min", "severity_text", "start_time", "end_time", "offset", "limit")
)
MS = 1_000_000  # ns per ms
T0 = 1_795_213_440_000 * MS  # a fixed "now", Unix ns


class Clock:
    """A settable Unix-nanosecond clock."""

    def __init__(self, now_ns: int = T0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


class Catcher(Module):
    """A test module serving `test::on_log`: records every (payload, metadata) it receives."""

    name = "test-catcher"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self.host: ModuleHost | None = None

    async def start(self, host: ModuleHost) -> None:
        self.host = host

        async def on_log(data: Any, ctx: CallContext) -> None:
            self.calls.append((data, ctx.metadata))

        host.register_function("test::on_log", on_log)

    def bind(self, config: Any, metadata: Any = None) -> Binding:
        assert self.host is not None
        return self.host.register_trigger("log", "test::on_log", config, metadata=metadata)


class Harness:
    """An engine with the observability module (console captured) and the catcher module."""

    def __init__(self, settings: ObservabilitySettings, rng: Callable[[], float] | None = None) -> None:
        self.clock = Clock()
        self.lines: list[str] = []
        kwargs: dict[str, Any] = {} if rng is None else {"rng": rng}
        self.module = ObservabilityModule(settings, clock_ns=self.clock, console=self.lines.append, **kwargs)
        self.catcher = Catcher()
        self.engine = Engine()
        self.engine.add_module(self.module)
        self.engine.add_module(self.catcher)

    async def list(self, query: Any = None) -> Any:
        return await self.engine.invoke("engine::logs::list", {} if query is None else query)

    async def log(self, level: str, message: str, **fields: Any) -> Any:
        return await self.engine.invoke(f"engine::log::{level}", {"message": message, **fields})

    def frame(self, body: bytes) -> None:
        self.engine.telemetry(b"LOGS" + body)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Any]]:
    """Factory of started harnesses (settings as keywords, plus `rng`); engines are stopped at teardown."""
    harnesses: list[Harness] = []

    async def factory(**settings: Any) -> Harness:
        rng = settings.pop("rng", None)
        harness = Harness(ObservabilitySettings(**settings), rng)
        await harness.engine.start()
        harnesses.append(harness)
        return harness

    yield factory
    for harness in harnesses:
        if harness.engine.started:
            await harness.engine.stop()


@pytest.fixture
async def h(make: Callable[..., Any]) -> Harness:
    """A harness with default settings."""
    harness: Harness = await make()
    return harness


async def settle() -> None:
    """Let fire-and-forget deliveries (spawned tasks that finish in one step) run."""
    for _ in range(5):
        await asyncio.sleep(0)


def otlp_record(
    severity: int, text: str, ts_ns: int, *, trace_id: str = "", span_id: str = ""
) -> dict[str, Any]:
    return {
        "timeUnixNano": str(ts_ns),
        "observedTimeUnixNano": str(ts_ns),
        "severityNumber": severity,
        "severityText": text,
        "body": {"stringValue": f"{text} at {ts_ns}"},
        "traceId": trace_id,
        "spanId": span_id,
    }


def otlp_body(*records: dict[str, Any], service: str = "svc") -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    doc = {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": list(records)}]}]}
    return msgspec.json.encode(doc)


async def expect_deserialization_error(h: Harness, function_id: str, data: Any) -> InvocationError:
    with pytest.raises(InvocationError) as info:
        await h.engine.invoke(function_id, data)
    assert info.value.code == codes.DESERIALIZATION_ERROR
    assert info.value.message.startswith(f"Failed to deserialize input for {function_id}: ")
    return info.value


# ------------------------------------------------------------------ LOGS frames (protocol.md §11 item 31)


async def test_logs_frame_is_returned_by_logs_list(h: Harness) -> None:
    """The §8.2 Python SDK frame is listed as in the §7.2 example, with the query echo and timestamp."""
    h.frame(EXAMPLE)
    assert await h.list() == {
        "logs": [EXAMPLE_STORED],
        "total": 1,
        "query": NULL_QUERY,
        "timestamp": T0 // MS,
    }


async def test_null_input_lists_like_empty_object(h: Harness) -> None:
    """`engine::logs::list` with input null behaves as `{}`."""
    h.frame(EXAMPLE)
    assert await h.engine.invoke("engine::logs::list", None) == await h.list({})


async def test_other_telemetry_frames_are_discarded(h: Harness) -> None:
    """OTLP and MTRC frames, unknown prefixes and garbage LOGS bodies store nothing."""
    h.engine.telemetry(b"OTLP" + b'{"resourceSpans":[]}')
    h.engine.telemetry(b"MTRC" + b'{"resourceMetrics":[]}')
    h.engine.telemetry(b"XXXX" + EXAMPLE)
    h.engine.telemetry(b"LOG")
    h.frame(b"not json")
    h.frame(b"")
    assert (await h.list())["total"] == 0
    assert h.lines == []


async def test_stop_detaches_the_telemetry_sink(make: Callable[..., Any]) -> None:
    """After the module stops, the engine no longer feeds it frames."""
    harness: Harness = await make()
    assert harness.engine.telemetry_sink is not None
    await harness.engine.stop()
    assert harness.engine.telemetry_sink is None


# ---------------------------------------------------------- engine::log::* (protocol.md §7.6, §11 item 33)


@pytest.mark.parametrize(
    ("level", "number", "text"),
    [
        ("info", 9, "INFO"),
        ("warn", 13, "WARN"),
        ("error", 17, "ERROR"),
        ("debug", 5, "DEBUG"),
        ("trace", 1, "TRACE"),
    ],
)
async def test_engine_log_levels(h: Harness, level: str, number: int, text: str) -> None:
    """Each `engine::log::<level>` stores one record with its severity number and text, and returns null."""
    assert await h.log(level, "hello") is None
    (record,) = (await h.list())["logs"]
    assert (record["severity_number"], record["severity_text"], record["body"]) == (number, text, "hello")


async def test_engine_log_record_fields(h: Harness) -> None:
    """Data keys become attributes; ids and service name are stored; the timestamps are the engine's clock."""
    await h.log(
        "warn",
        "Payment retried",
        data={"order_id": "o1", "attempt": 2},
        trace_id="4BF92F3577B34DA6A3CE929D0E0E4736",
        span_id="00f067aa0ba902b7",
        service_name="billing",
    )
    (record,) = (await h.list())["logs"]
    assert record == {
        "timestamp_unix_nano": T0,
        "observed_timestamp_unix_nano": T0,
        "severity_number": 13,
        "severity_text": "WARN",
        "body": "Payment retried",
        "attributes": {"order_id": "o1", "attempt": 2},
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "resource": {"service.name": "billing"},
        "service_name": "billing",
    }


async def test_engine_log_defaults(h: Harness) -> None:
    """No data, ids or service name: no attributes, null ids, service `unknown`; unknown keys ignored."""
    await h.log("info", "plain", extra="ignored", trace_id=None)
    (record,) = (await h.list())["logs"]
    assert record["attributes"] == {}
    assert (record["trace_id"], record["span_id"]) == (None, None)
    assert (record["service_name"], record["resource"]) == ("unknown", {})


async def test_engine_log_non_object_data_is_kept(h: Harness) -> None:
    """Data that is not an object is kept under the `data` attribute rather than dropped."""
    await h.log("info", "list", data=[1, 2])
    (record,) = (await h.list())["logs"]
    assert record["attributes"] == {"data": [1, 2]}


async def test_engine_log_bad_input(h: Harness) -> None:
    """A missing or wrongly typed field, or a non-object input, is a deserialization_error."""
    await expect_deserialization_error(h, "engine::log::info", {})
    await expect_deserialization_error(h, "engine::log::info", None)
    err = await expect_deserialization_error(h, "engine::log::error", {"message": 5})
    assert "message" in err.message
    await expect_deserialization_error(h, "engine::log::warn", {"message": "m", "trace_id": 1})
    await expect_deserialization_error(h, "engine::log::debug", ["message"])
    assert (await h.list())["total"] == 0


# ---------------------------------------------------------- engine::logs::list / clear (checklist item 36)


async def seed(h: Harness) -> None:
    """Five records: ts 1..5 ms past T0, mixed severities, two sharing a trace."""
    h.frame(
        otlp_body(
            otlp_record(9, "INFO", T0 + 1 * MS, trace_id="aa" * 16, span_id="01" * 8),
            otlp_record(17, "ERROR", T0 + 2 * MS, trace_id="aa" * 16, span_id="02" * 8),
            otlp_record(5, "DEBUG", T0 + 3 * MS),
            otlp_record(13, "WARN", T0 + 4 * MS + 999_999),
            otlp_record(17, "error", T0 + 5 * MS, trace_id="bb" * 16),
        )
    )


def times(result: dict[str, Any]) -> list[int]:
    """The records' timestamps as ms offsets from T0."""
    return [(r["timestamp_unix_nano"] - T0) // MS for r in result["logs"]]


async def test_list_sorts_newest_first(h: Harness) -> None:
    """Records come newest first by timestamp, whatever their arrival order."""
    h.frame(otlp_body(otlp_record(9, "INFO", T0 + 2 * MS)))
    h.frame(otlp_body(otlp_record(9, "INFO", T0 + 5 * MS), otlp_record(9, "INFO", T0 + 1 * MS)))
    assert times(await h.list()) == [5, 2, 1]


async def test_list_filters_by_severity(h: Harness) -> None:
    """`severity_min` skips lower severity numbers; `severity_text` matches case-insensitively."""
    await seed(h)
    assert times(await h.list({"severity_min": 13})) == [5, 4, 2]
    assert times(await h.list({"severity_text": "ERROR"})) == [5, 2]
    assert times(await h.list({"severity_text": "debug"})) == [3]


async def test_list_filters_by_trace_and_span(h: Harness) -> None:
    """`trace_id` and `span_id` match exactly."""
    await seed(h)
    assert times(await h.list({"trace_id": "aa" * 16})) == [2, 1]
    assert times(await h.list({"trace_id": "aa" * 16, "span_id": "02" * 8})) == [2]
    assert times(await h.list({"trace_id": "cc" * 16})) == []


async def test_list_filters_by_time_range_inclusive_ms(h: Harness) -> None:
    """`start_time` and `end_time` are inclusive Unix ms bounds on the record timestamp."""
    await seed(h)
    base = T0 // MS
    assert times(await h.list({"start_time": base + 2, "end_time": base + 4})) == [4, 3, 2]
    assert times(await h.list({"start_time": base + 4})) == [5, 4]
    assert times(await h.list({"end_time": base + 1})) == [1]


async def test_list_total_counts_before_pagination(h: Harness) -> None:
    """`total` counts every match; `offset` and `limit` page through them; the query is echoed."""
    await seed(h)
    result = await h.list({"severity_min": 9, "offset": 1, "limit": 2})
    assert (times(result), result["total"]) == ([4, 2], 4)
    assert result["query"] == NULL_QUERY | {"severity_min": 9, "offset": 1, "limit": 2}
    result = await h.list({"offset": 10})
    assert (result["logs"], result["total"]) == ([], 5)
    assert times(await h.list({"limit": 0})) == []


async def test_list_bad_input(h: Harness) -> None:
    """Wrongly typed filters and negative pagination are deserialization errors."""
    cases: list[Any] = [
        {"severity_min": "9"},
        {"severity_min": True},
        {"trace_id": 5},
        {"start_time": 1.5},
        {"offset": -1},
        {"limit": "10"},
        [],
        "x",
    ]
    for query in cases:
        await expect_deserialization_error(h, "engine::logs::list", query)


async def test_clear_empties_the_store(h: Harness) -> None:
    """`engine::logs::clear` returns success and leaves nothing to list."""
    await seed(h)
    assert await h.engine.invoke("engine::logs::clear", {}) == {"success": True}
    assert (await h.list())["total"] == 0
    assert await h.engine.invoke("engine::logs::clear", None) == {"success": True}
    await expect_deserialization_error(h, "engine::logs::clear", [1])


# ------------------------------------------------------------------ bounds, sampling, switches (items 37, 38)


async def test_max_count_keeps_the_newest(make: Callable[..., Any]) -> None:
    """Beyond `logs_max_count` the oldest records are evicted."""
    h: Harness = await make(logs_max_count=3)
    for i in range(5):
        await h.log("info", f"m{i}")
        h.clock.now_ns += MS
    result = await h.list()
    assert ([r["body"] for r in result["logs"]], result["total"]) == (["m4", "m3", "m2"], 3)


async def test_retention_evicts_old_records(make: Callable[..., Any]) -> None:
    """Records stored longer ago than `logs_retention_seconds` are gone."""
    h: Harness = await make(logs_retention_seconds=10)
    await h.log("info", "old")
    h.clock.now_ns += 6_000 * MS
    await h.log("info", "new")
    h.clock.now_ns += 5_000 * MS  # "old" is now 11 s old, "new" 5 s
    assert [r["body"] for r in (await h.list())["logs"]] == ["new"]


async def test_sampling_ratio(make: Callable[..., Any]) -> None:
    """Only records whose random draw falls below `logs_sampling_ratio` are kept (and printed)."""
    draws = iter([0.1, 0.7, 0.49, 0.5])
    h: Harness = await make(logs_sampling_ratio=0.5, rng=lambda: next(draws))
    for i in range(4):
        await h.log("info", f"m{i}")
        h.clock.now_ns += MS
    assert [r["body"] for r in (await h.list())["logs"]] == ["m2", "m0"]
    assert len(h.lines) == 2


async def test_sampling_ratio_zero_drops_everything(make: Callable[..., Any]) -> None:
    """A sampling ratio of 0 keeps nothing."""
    h: Harness = await make(logs_sampling_ratio=0.0)
    h.frame(EXAMPLE)
    await h.log("error", "x")
    assert (await h.list())["total"] == 0


async def test_logs_disabled(make: Callable[..., Any]) -> None:
    """`logs_enabled: false` drops SDK logs; the list is empty and has no `query`."""
    h: Harness = await make(logs_enabled=False)
    h.catcher.bind(None)
    h.frame(EXAMPLE)
    await h.log("error", "x")
    await settle()
    assert await h.list({"severity_min": 1}) == {"logs": [], "total": 0, "timestamp": T0 // MS}
    assert (h.lines, h.catcher.calls) == ([], [])


async def test_module_disabled(make: Callable[..., Any]) -> None:
    """`enabled: false`: nothing is stored, printed or delivered."""
    h: Harness = await make(enabled=False)
    h.catcher.bind(None)
    h.frame(EXAMPLE)
    await h.log("error", "x")
    await settle()
    result = await h.list()
    assert (result["logs"], result["total"]) == ([], 0)
    assert (h.lines, h.catcher.calls) == ([], [])


# ------------------------------------------------------------------ log trigger type (item 39)


async def test_log_trigger_level_error_gets_only_errors(h: Harness) -> None:
    """A `level: error` binding receives only ERROR records, with every stored field and its metadata."""
    h.catcher.bind({"level": "error"}, metadata={"team": "ops"})
    await seed(h)
    await h.log("error", "boom", data={"k": 1}, service_name="svc2")
    await h.log("warn", "meh")
    await settle()
    payloads = [payload for payload, _ in h.catcher.calls]
    assert [p["body"] for p in payloads] == [f"ERROR at {T0 + 2 * MS}", f"error at {T0 + 5 * MS}", "boom"]
    assert all(meta == {"team": "ops"} for _, meta in h.catcher.calls)
    assert all(tuple(p) == RECORD_FIELDS for p in payloads)
    assert payloads[2] == {
        "timestamp_unix_nano": T0,
        "observed_timestamp_unix_nano": T0,
        "severity_number": 17,
        "severity_text": "ERROR",
        "body": "boom",
        "attributes": {"k": 1},
        "trace_id": None,
        "span_id": None,
        "resource": {"service.name": "svc2"},
        "service_name": "svc2",
        "instrumentation_scope_name": None,
        "instrumentation_scope_version": None,
    }


async def test_log_trigger_all_gets_everything(h: Harness) -> None:
    """A binding with `level: all`, or without config, receives every record."""
    h.catcher.bind({"level": "all"})
    h.catcher.bind(None)
    h.frame(EXAMPLE)
    await h.log("trace", "t")
    await settle()
    assert len(h.catcher.calls) == 4
    first = h.catcher.calls[0][0]
    assert first == {**EXAMPLE_STORED, "instrumentation_scope_version": None}


async def test_log_trigger_level_is_case_insensitive(h: Harness) -> None:
    """The binding level and the record's severity text are compared lowercased."""
    h.catcher.bind({"level": "WARN"})
    h.frame(otlp_body(otlp_record(13, "Warn", T0)))
    await h.log("info", "no")
    await settle()
    assert [p["severity_text"] for p, _ in h.catcher.calls] == ["Warn"]


async def test_log_trigger_from_a_worker(h: Harness) -> None:
    """A worker's `log` binding gets matching records with its metadata; after unregistering, nothing."""
    received: list[Any] = []
    peer, _ = connect_local(h.engine, received.append)
    peer.namespace = "default"  # as if engine::workers::register had run (protocol.md §6.4)
    h.engine.handle(peer, m.RegisterFunction(id="w::on_log"))
    trigger = m.RegisterTrigger(
        id="t1", trigger_type="log", function_id="w::on_log", config={"level": "warn"}, metadata={"a": 1}
    )
    h.engine.handle(peer, trigger)
    await h.log("warn", "one")
    await h.log("info", "skipped")
    h.engine.handle(peer, m.UnregisterTrigger(id="t1", trigger_type="log"))
    await h.log("warn", "two")
    await settle()
    calls = [msg for msg in received if isinstance(msg, m.InvokeFunction)]
    assert [(c.function_id, c.data["body"], c.metadata) for c in calls] == [("w::on_log", "one", {"a": 1})]
    await peer.close(1000)


async def test_log_trigger_rejection_reaches_the_worker(h: Harness) -> None:
    """A worker's `log` binding with an invalid level is refused with trigger_registration_failed."""
    received: list[Any] = []
    peer, _ = connect_local(h.engine, received.append)
    peer.namespace = "default"
    h.engine.handle(
        peer, m.RegisterTrigger(id="t2", trigger_type="log", function_id="f", config={"level": "x"})
    )
    (result,) = [msg for msg in received if isinstance(msg, m.TriggerRegistrationResult)]
    assert result.error.code == codes.TRIGGER_REGISTRATION_FAILED
    assert "Invalid log trigger level 'x'" in result.error.message
    await peer.close(1000)


@pytest.mark.parametrize("config", [{"level": "fatal"}, {"level": 3}, "error", [1]])
async def test_log_trigger_bad_config_is_rejected(h: Harness, config: Any) -> None:
    """An unknown level or a non-object config rejects the binding."""
    binding = h.catcher.bind(config)
    assert binding.id not in h.engine.triggers.bindings
    await h.log("error", "x")
    await settle()
    assert h.catcher.calls == []


async def test_log_trigger_type_is_registered(h: Harness) -> None:
    """The `log` trigger type is provided by iii-observability."""
    ttype = h.engine.triggers.types[("default", "log")]
    assert ttype.provider_peer.worker_id == "iii-observability"


# ------------------------------------------------------------------ console output (item 40)

LINE_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\.\d{3}\] ")


async def test_console_prints_sdk_logs_with_service_and_data(h: Harness) -> None:
    """An SDK log prints one line with level, service name, body and `log.data` (without service.name)."""
    h.frame(EXAMPLE)
    (line,) = h.lines
    assert LINE_PREFIX.match(line)
    rest = LINE_PREFIX.sub("", line)
    assert rest == '[INFO] my-svc Order processed {"log.data":{"order_id":"ord_123","amount":49.99}}'


async def test_console_omits_empty_attributes(h: Harness) -> None:
    """Without attributes (besides service.name) the line ends with the body."""
    await h.log("warn", "careful", data={"service.name": "x"}, service_name="api")
    assert LINE_PREFIX.sub("", h.lines[0]) == "[WARN] api careful"


async def test_console_off(make: Callable[..., Any]) -> None:
    """`logs_console_output: false` prints nothing but still stores."""
    h: Harness = await make(logs_console_output=False)
    h.frame(EXAMPLE)
    assert h.lines == []
    assert (await h.list())["total"] == 1


async def test_console_json_format(make: Callable[..., Any]) -> None:
    """With `format: json` each record prints as one JSON object of its fields."""
    h: Harness = await make(format="json")
    h.frame(EXAMPLE)
    (line,) = h.lines
    assert json.loads(line) == EXAMPLE_STORED


def test_console_line_format() -> None:
    """The time is the record's local HH:MM:SS.mmm; the level falls back to the severity number."""
    (record,) = decode_logs(otlp_body({"timeUnixNano": "1795213433727834601", "severityNumber": 18}))
    line = format_console_line(record)
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\.727\] \[ERROR\] svc ", line)
    record["severity_number"] = 0
    assert "[UNSPECIFIED]" in format_console_line(record)


async def test_console_goes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without an injected console, record lines are written to stderr."""
    engine = Engine()
    engine.add_module(ObservabilityModule(ObservabilitySettings()))
    await engine.start()
    engine.telemetry(b"LOGS" + EXAMPLE)
    await engine.stop()
    err = capsys.readouterr().err
    assert "[INFO] my-svc Order processed" in err


async def test_default_settings() -> None:
    """`ObservabilitySettings()` carries the §7.1 defaults."""
    s = ObservabilitySettings()
    assert (s.enabled, s.service_name, s.level, s.format) == (True, "iii", "info", "default")
    assert (s.logs_enabled, s.logs_max_count, s.logs_retention_seconds) == (True, 1000, 3600)
    assert (s.logs_console_output, s.logs_sampling_ratio) == (True, 1.0)
    assert ObservabilityModule().name == "iii-observability"


async def test_default_console_writes_a_pass_of_lines_at_once_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default console buffers the lines of one loop pass and writes them in order at its end."""
    from pyiii.modules.observability.module import StderrConsole

    console = StderrConsole()
    console("first")
    console("second")
    assert capsys.readouterr().err == ""  # nothing before the loop pass ends
    await asyncio.sleep(0)
    assert capsys.readouterr().err == "first\nsecond\n"
    console("third")
    console.flush()
    assert capsys.readouterr().err == "third\n"
