"""Decoding of LOGS frame bodies (spec/protocol.md §8.2)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiii.protocol.otel import RECORD_FIELDS, any_value, decode_logs, normalize_id

# The frame body of protocol.md §8.2, verbatim.
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


def frame(*records: dict[str, Any], resource: Any = None, scope: Any = None) -> bytes:
    """A LOGS body with one resource and one scope holding ``records``."""
    scope_logs: dict[str, Any] = {"logRecords": list(records)}
    if scope is not None:
        scope_logs["scope"] = scope
    resource_logs: dict[str, Any] = {"scopeLogs": [scope_logs]}
    if resource is not None:
        resource_logs["resource"] = resource
    return msgspec.json.encode({"resourceLogs": [resource_logs]})


def one(record: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Decode a body holding only ``record`` and return the single stored record."""
    records = decode_logs(frame(record, **kw))
    assert len(records) == 1
    return dict(records[0])


def attr(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def test_spec_example_decodes_to_the_documented_record() -> None:
    """The §8.2 Python SDK frame gives exactly the documented record, `log.data` decoded."""
    records = decode_logs(EXAMPLE)
    assert records == [
        {
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
    ]
    assert records[0]["attributes"] == {
        "service.name": "",
        "log.data": {"order_id": "ord_123", "amount": 49.99},
    }
    assert "instrumentation_scope_version" not in records[0]


def test_decoding_accepts_str_and_bytes() -> None:
    """A body given as text decodes the same as bytes."""
    assert decode_logs(EXAMPLE.decode()) == decode_logs(EXAMPLE)


def test_record_keys_follow_the_spec_table_order() -> None:
    """Stored fields appear in §8.2 table order (scope fields last)."""
    record = one({}, scope={"name": "s", "version": "1"})
    assert tuple(record) == RECORD_FIELDS


def test_all_anyvalue_kinds() -> None:
    """Each AnyValue kind converts as §8.2 says."""
    attributes = [
        attr("s", {"stringValue": "text"}),
        attr("b", {"boolValue": True}),
        attr("i_str", {"intValue": "-42"}),
        attr("i_num", {"intValue": 7}),
        attr("d", {"doubleValue": 1.5}),
        attr("d_int", {"doubleValue": 2}),
        attr("bytes", {"bytesValue": "AAEC"}),
        attr(
            "arr", {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": "1"}, {"boolValue": False}]}}
        ),
        attr(
            "kv", {"kvlistValue": {"values": [attr("inner", {"kvlistValue": {"values": [attr("z", {})]}})]}}
        ),
        attr("empty_arr", {"arrayValue": {}}),
        attr("empty_kv", {"kvlistValue": {}}),
        attr("none", {}),
    ]
    got = one({"attributes": attributes})["attributes"]
    assert got == {
        "s": "text",
        "b": True,
        "i_str": -42,
        "i_num": 7,
        "d": 1.5,
        "d_int": 2.0,
        "bytes": "AAEC",
        "arr": ["x", 1, False],
        "kv": {"inner": {"z": None}},
        "empty_arr": [],
        "empty_kv": {},
        "none": None,
    }
    assert isinstance(got["d_int"], float)
    assert isinstance(got["i_str"], int)


def test_double_value_special_strings() -> None:
    """A doubleValue written as a string (proto3 JSON: "NaN", "Infinity", "1.25") is a float."""
    assert any_value({"doubleValue": "1.25"}) == 1.25
    assert math.isnan(any_value({"doubleValue": "NaN"}))
    assert any_value({"doubleValue": "-Infinity"}) == -math.inf


def test_malformed_anyvalues_become_null() -> None:
    """A value of the wrong type inside an AnyValue, or an unknown kind, converts to None."""
    cases: list[Any] = [
        {"stringValue": 5},
        {"boolValue": "true"},
        {"intValue": "12a"},
        {"intValue": 1.5},
        {"intValue": True},
        {"doubleValue": "abc"},
        {"doubleValue": False},
        {"bytesValue": 3},
        {"arrayValue": 5},
        {"kvlistValue": []},
        {"mapValue": {}},
        "a string",
        None,
        [1],
    ]
    for raw in cases:
        assert any_value(raw) is None, raw


def test_attribute_entries_without_string_key_are_dropped() -> None:
    """An attribute entry without a string key, or that is not an object, is left out; others stay."""
    attributes = [attr("ok", {"intValue": 1}), {"value": {"intValue": 2}}, {"key": 3, "value": {}}, "junk"]
    assert one({"attributes": attributes})["attributes"] == {"ok": 1}


def test_attribute_without_value_is_null() -> None:
    """An attribute entry with a key but no value is stored with value None."""
    assert one({"attributes": [{"key": "k"}]})["attributes"] == {"k": None}


def test_body_non_string_is_compact_json_and_absent_is_empty() -> None:
    """A non-string body is stored as compact JSON; a missing or empty body as ""."""
    kv = {
        "kvlistValue": {"values": [attr("a", {"intValue": "1"}), attr("b", {"arrayValue": {"values": []}})]}
    }
    assert one({"body": kv})["body"] == '{"a":1,"b":[]}'
    assert one({"body": {"intValue": 5}})["body"] == "5"
    assert one({"body": {"boolValue": True}})["body"] == "true"
    assert one({"body": {"stringValue": ""}})["body"] == ""
    assert one({})["body"] == ""
    assert one({"body": {}})["body"] == ""


def test_timestamps_as_strings_numbers_or_defaults() -> None:
    """Timestamps accept decimal strings and numbers; missing or unusable values are 0."""
    rec = one({"timeUnixNano": 1795213433727834601, "observedTimeUnixNano": "12"})
    assert (rec["timestamp_unix_nano"], rec["observed_timestamp_unix_nano"]) == (1795213433727834601, 12)
    for bad in ("abc", "", None, True, -5, "1.5", [1], {"x": 1}):
        rec = one({"timeUnixNano": bad, "observedTimeUnixNano": bad})
        assert (rec["timestamp_unix_nano"], rec["observed_timestamp_unix_nano"]) == (0, 0), bad
    assert one({})["timestamp_unix_nano"] == 0


def test_severity_defaults() -> None:
    """Missing or wrongly typed severity fields default to 0 and ""."""
    rec = one({})
    assert (rec["severity_number"], rec["severity_text"]) == (0, "")
    rec = one({"severityNumber": "x", "severityText": 17})
    assert (rec["severity_number"], rec["severity_text"]) == (0, "")
    rec = one({"severityNumber": 17, "severityText": "ERROR"})
    assert (rec["severity_number"], rec["severity_text"]) == (17, "ERROR")


def test_trace_and_span_ids_are_normalised() -> None:
    """Ids are lowercased; empty, all-zero, missing or non-string ids are None."""
    rec = one({"traceId": "4BF92F3577B34DA6A3CE929D0E0E4736", "spanId": "00F067AA0BA902B7"})
    assert (rec["trace_id"], rec["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    rec = one({"traceId": "0" * 32, "spanId": ""})
    assert (rec["trace_id"], rec["span_id"]) == (None, None)
    rec = one({"traceId": 5, "spanId": None})
    assert (rec["trace_id"], rec["span_id"]) == (None, None)
    assert one({})["trace_id"] is None
    assert normalize_id("0000000000000000") is None
    assert normalize_id("  AbC ") == "abc"


def test_resource_values_become_strings() -> None:
    """Resource attributes are stored as strings; non-string values as compact JSON."""
    resource = {
        "attributes": [
            attr("service.name", {"stringValue": "svc"}),
            attr("pid", {"intValue": "123"}),
            attr("debug", {"boolValue": False}),
            attr("tags", {"arrayValue": {"values": [{"stringValue": "a"}]}}),
        ]
    }
    rec = one({}, resource=resource)
    assert rec["resource"] == {"service.name": "svc", "pid": "123", "debug": "false", "tags": '["a"]'}
    assert rec["service_name"] == "svc"


def test_service_name_defaults_to_unknown() -> None:
    """Without a resource `service.name` (or with an empty one) the service name is "unknown"."""
    assert one({})["service_name"] == "unknown"
    assert (
        one({}, resource={"attributes": [attr("service.name", {"stringValue": ""})]})["service_name"]
        == "unknown"
    )
    assert one({}, resource="junk")["resource"] == {}


def test_scope_fields_omitted_when_empty() -> None:
    """Scope name and version are stored only when non-empty."""
    rec = one({}, scope={"name": "lib", "version": "1.2"})
    assert (rec["instrumentation_scope_name"], rec["instrumentation_scope_version"]) == ("lib", "1.2")
    rec = one({}, scope={"name": "", "version": 3})
    assert "instrumentation_scope_name" not in rec
    assert "instrumentation_scope_version" not in rec
    assert "instrumentation_scope_name" not in one({}, scope="junk")


def test_records_of_every_resource_and_scope_in_order() -> None:
    """Records of several resources and scopes are returned in frame order with their own resource."""
    body = msgspec.json.encode(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [attr("service.name", {"stringValue": "a"})]},
                    "scopeLogs": [
                        {"scope": {"name": "s1"}, "logRecords": [{"body": {"stringValue": "1"}}]},
                        {"scope": {"name": "s2"}, "logRecords": [{"body": {"stringValue": "2"}}]},
                    ],
                },
                {
                    "scopeLogs": [
                        {"logRecords": [{"body": {"stringValue": "3"}}, {"body": {"stringValue": "4"}}]}
                    ]
                },
            ]
        }
    )
    got = [(r["body"], r["service_name"], r.get("instrumentation_scope_name")) for r in decode_logs(body)]
    assert got == [("1", "a", "s1"), ("2", "a", "s2"), ("3", "unknown", None), ("4", "unknown", None)]


def test_records_do_not_share_the_resource_dict() -> None:
    """Each record owns its resource mapping."""
    a, b = decode_logs(frame({}, {}, resource={"attributes": [attr("k", {"stringValue": "v"})]}))
    a["resource"]["k"] = "changed"
    assert b["resource"] == {"k": "v"}


def test_bad_frames_give_no_records() -> None:
    """Undecodable bodies and bodies of the wrong shape decode to []."""
    for body in (
        b"",
        b"not json",
        b'{"resourceLogs":',
        b"[]",
        b"null",
        b"42",
        b'{"resourceSpans":[]}',
        b'{"resourceLogs":{}}',
        b'{"resourceLogs":[1,"x",null]}',
        b'{"resourceLogs":[{"scopeLogs":"x"}]}',
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":{}}]}]}',
        b"\xff\xfe\x00",
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":1e400}]}]}]}',
    ):
        assert decode_logs(body) == [], body


def test_a_bad_record_is_skipped_and_the_others_kept() -> None:
    """Non-object entries among the log records are skipped; valid siblings survive."""
    body = msgspec.json.encode(
        {
            "resourceLogs": [
                "junk",
                {"scopeLogs": [5, {"logRecords": [None, {"body": {"stringValue": "kept"}}, [1], "x"]}]},
            ]
        }
    )
    assert [r["body"] for r in decode_logs(body)] == ["kept"]


def test_deep_nesting_is_cut_not_fatal() -> None:
    """A pathologically nested AnyValue is cut to null beyond the depth limit instead of raising."""
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(200):
        value = {"arrayValue": {"values": [value]}}
    rec = one({"body": value})
    assert rec["body"].startswith("[[[") and "leaf" not in rec["body"]
    deep = b'{"resourceLogs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert decode_logs(deep) == []


# ---------------------------------------------------------------------------------------- fuzzing


def check_records(records: list[Any]) -> None:
    """Every decoded record has the documented field types and encodes as JSON."""
    for rec in records:
        assert set(RECORD_FIELDS[:10]) <= set(rec) <= set(RECORD_FIELDS)
        assert isinstance(rec["timestamp_unix_nano"], int) and rec["timestamp_unix_nano"] >= 0
        assert isinstance(rec["severity_number"], int)
        assert isinstance(rec["severity_text"], str) and isinstance(rec["body"], str)
        assert isinstance(rec["attributes"], dict) and isinstance(rec["resource"], dict)
        assert all(isinstance(v, str) for v in rec["resource"].values())
        assert rec["trace_id"] is None or isinstance(rec["trace_id"], str)
        assert isinstance(rec["service_name"], str) and rec["service_name"]
        msgspec.json.encode(rec)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(body: bytes) -> None:
    """Arbitrary bytes decode to a (usually empty) list without raising."""
    check_records(decode_logs(body))


@settings(max_examples=500)
@given(st.data())
def test_mutated_example_never_raises(data: st.DataObject) -> None:
    """Byte-level mutations of the spec frame (flips, deletions, insertions) never raise."""
    body = bytearray(EXAMPLE)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(body) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del body[pos]
        else:
            body[pos:pos] = data.draw(
                st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"0", b"null"])
            )
    check_records(decode_logs(bytes(body)))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
otlp_keys = st.sampled_from(
    [
        "resourceLogs", "resource", "attributes", "scopeLogs", "scope", "name", "version", "logRecords",
        "timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body", "traceId", "spanId",
        "key", "value", "stringValue", "boolValue", "intValue", "doubleValue", "bytesValue", "arrayValue",
        "kvlistValue", "values",
    ]
)  # fmt: skip
otlp_like = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(otlp_keys, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=500)
@given(otlp_like)
def test_random_otlp_shaped_documents_never_raise(doc: Any) -> None:
    """JSON documents built from OTLP field names and random values never raise and give valid records."""
    check_records(decode_logs(msgspec.json.encode({"resourceLogs": doc})))
    check_records(decode_logs(msgspec.json.encode(doc)))
