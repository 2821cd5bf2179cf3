"""The update-op interpreter of state::update (spec/state.md §6) and the decoding of ops (§3.2, §6.2)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pyiii.modules.state.ops import (
    DEFAULT_LIMITS,
    DOC_URL,
    MISSING,
    Op,
    OpLimits,
    OpResult,
    OpsDecodeError,
    apply_ops,
    decode_ops,
    invalid_type,
    json_depth,
    json_type,
    serde_unexpected,
)

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
_ABSENT = object()


# -- op builders (the abbreviations of §6.8) -------------------------------------------------------


def inc(path: Any, by: Any) -> dict[str, Any]:
    return {"type": "increment", "path": path, "by": by}


def dec(path: Any, by: Any) -> dict[str, Any]:
    return {"type": "decrement", "path": path, "by": by}


def set_(path: Any, value: Any = _ABSENT) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "set", "path": path}
    if value is not _ABSENT:
        op["value"] = value
    return op


def merge(path: Any, value: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "merge", "value": value}
    if path is not _ABSENT:
        op["path"] = path
    return op


def append(path: Any, value: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "append", "value": value}
    if path is not _ABSENT:
        op["path"] = path
    return op


def remove(path: Any) -> dict[str, Any]:
    return {"type": "remove", "path": path}


ROOT = _ABSENT  # merge/append with the path left out, as the SDK encoders send it (§6.2)


def exact(value: Any) -> str:
    """Canonical text that tells 1, 1.0 and true apart (Python's == does not)."""
    return json.dumps(value, sort_keys=True, allow_nan=True)


def run(start: Any, ops: list[Any], **kwargs: Any) -> OpResult:
    """``apply_ops``, also checking that neither the start value nor the ops were mutated."""
    start_before = copy.deepcopy(start)
    ops_before = copy.deepcopy(ops)
    result = apply_ops(start, ops, **kwargs)
    assert exact(start) == exact(start_before) if start is not MISSING else start is MISSING
    assert exact(ops) == exact(ops_before)
    return result


def codes(result: OpResult) -> list[tuple[int, str]]:
    return [(e["op_index"], e["code"]) for e in result.errors]


def messages(result: OpResult) -> list[tuple[int, str, str]]:
    return [(e["op_index"], e["code"], e["message"]) for e in result.errors]


# -- §6.8 worked examples ---------------------------------------------------------------------------

NOT_OBJECT_TAIL = "expected array, string, null, or missing field."

WORKED_EXAMPLES: list[tuple[int, Any, list[Any], Any, list[tuple[int, str, str]]]] = [
    (1, MISSING, [], {}, []),
    (2, MISSING, [inc("counter", 1)], {"counter": 1}, []),
    (3, MISSING, [inc("", 3)], 3, []),
    (4, MISSING, [dec("n", 3)], {"n": -3}, []),
    (5, MISSING, [append(ROOT, "hello")], "hello", []),
    (6, MISSING, [append(ROOT, {"k": 1})], [{"k": 1}], []),
    (
        7,
        MISSING,
        [remove("x"), inc("", 3)],
        {},
        [(1, "increment.not_number", "Expected number at path 'root', got object.")],
    ),
    (
        8,
        MISSING,
        [set_("a", 1), inc("", 1)],
        {"a": 1},
        [(1, "increment.not_number", "Expected number at path 'root', got object.")],
    ),
    (9, MISSING, [remove("")], None, []),
    (
        10,
        {"count": 2, "bad": "value"},
        [inc("count", 3), inc("bad", 3), inc("missing", 3)],
        {"bad": "value", "count": 5, "missing": 3},
        [(1, "increment.not_number", "Expected number at path 'bad', got string.")],
    ),
    (
        11,
        {"bad": "value", "events": {}},
        [inc("bad", 1), set_("__proto__", 1), append("events", "chunk"), set_("ok", True)],
        {"bad": "value", "events": {}, "ok": True},
        [
            (0, "increment.not_number", "Expected number at path 'bad', got string."),
            (1, "set.path.proto_polluted", "Path segment '__proto__' is not allowed (prototype pollution)."),
            (
                2,
                "append.type_mismatch",
                f"Cannot append at path 'events': target is object, {NOT_OBJECT_TAIL}",
            ),
        ],
    ),
    (12, {"n": 10}, [inc("n", 5), dec("n", 3)], {"n": 12}, []),
    (13, {"n": 1.5}, [inc("n", 2), dec("n", 1)], {"n": 2.5}, []),
    (
        14,
        {"n": None},
        [inc("n", 1)],
        {"n": None},
        [(0, "increment.not_number", "Expected number at path 'n', got null.")],
    ),
    (15, {"n": I64_MAX}, [inc("n", 1)], {"n": 9223372036854775808}, []),
    (
        16,
        {"n": U64_MAX},
        [inc("n", 1)],
        {"n": U64_MAX},
        [(0, "increment.not_number", "Expected number at path 'n', got number.")],
    ),
    (
        17,
        {"n": I64_MIN},
        [dec("n", 1)],
        {"n": I64_MIN},
        [(0, "decrement.not_number", "Expected number at path 'n', got number.")],
    ),
    (
        18,
        "text",
        [inc("n", 1)],
        "text",
        [
            (
                0,
                "increment.target_not_object",
                "Cannot increment at path 'n': target is string, expected object.",
            )
        ],
    ),
    (
        19,
        None,
        [set_("a", 1)],
        None,
        [(0, "set.target_not_object", "Cannot set at path 'a': target is null, expected object.")],
    ),
    (20, {"": "empty-field", "keep": True}, [set_("")], None, []),
    (21, {"a": 1}, [set_("a.b", 2)], {"a": 1, "a.b": 2}, []),
    (22, {"a": 1}, [merge(ROOT, {"b": {"c": 1}, "a": 2})], {"a": 2, "b": {"c": 1}}, []),
    (23, "leaf", [merge(ROOT, {"a": 1})], "leaf", []),
    (24, "leaf", [merge("a", {"x": 1})], {"a": {"x": 1}}, []),
    (
        25,
        {"sessions": {"abc": "garbage"}},
        [merge(["sessions", "abc"], {"author": "alice"})],
        {"sessions": {"abc": {"author": "alice"}}},
        [],
    ),
    (
        26,
        {"a": {"x": 1}},
        [merge("a", {"y": 2}), merge("a", {"z": 3})],
        {"a": {"x": 1, "y": 2, "z": 3}},
        [],
    ),
    (27, {}, [merge(ROOT, [])], {}, [(0, "merge.value.not_an_object", "Merge value must be a JSON object")]),
    (
        28,
        {},
        [merge(["a", "__proto__"], {"x": 1})],
        {},
        [(0, "merge.path.proto_polluted", "Path segment '__proto__' is not allowed (prototype pollution).")],
    ),
    (
        29,
        {},
        [merge(["a", ""], [1])],
        {},
        [(0, "merge.path.empty_segment", "Path contains an empty segment")],
    ),
    (30, {"buffer": []}, [append("buffer", "x")], {"buffer": ["x"]}, []),
    (31, {"l": [1]}, [append("l", [2, 3])], {"l": [1, [2, 3]]}, []),
    (32, {"t": "hello"}, [append("t", " world")], {"t": "hello world"}, []),
    (
        33,
        {"transcript": "hello"},
        [append("transcript", {"not": "string"})],
        {"transcript": "hello"},
        [
            (
                0,
                "append.type_mismatch",
                "Expected string append value at path 'transcript', got object.",
            )
        ],
    ),
    (34, {}, [append("buf", "x")], {"buf": "x"}, []),
    (35, {"e": {}}, [append(["e", "buf"], "x")], {"e": {"buf": ["x"]}}, []),
    (36, {"e": {"buf": None}}, [append(["e", "buf"], "x")], {"e": {"buf": "x"}}, []),
    (
        37,
        {"e": {"b": {"x": 1}}},
        [append(["e", "b"], "z")],
        {"e": {"b": {"x": 1}}},
        [(0, "append.type_mismatch", f"Cannot append at path 'b': target is object, {NOT_OBJECT_TAIL}")],
    ),
    (38, {"a": [1, 2, 3]}, [append(["a", "b"], 42)], {"a": {"b": [42]}}, []),
    (
        39,
        [1, 2, 3],
        [append(["a", "b"], "x")],
        [1, 2, 3],
        [
            (
                0,
                "append.target_not_object",
                "Cannot append at path '[a, b]': target is array, expected object.",
            )
        ],
    ),
    (
        40,
        {"user.name": ["A"], "user": {"name": ["B"]}},
        [append("user.name", "C")],
        {"user": {"name": ["B"]}, "user.name": ["A", "C"]},
        [],
    ),
    (41, {"a": 1}, [remove("a"), remove("a")], {}, []),
    (
        42,
        5,
        [remove("a")],
        5,
        [(0, "remove.target_not_object", "Cannot remove at path 'a': target is number, expected object.")],
    ),
    (43, {"a": 1}, [remove("")], None, []),
]


@pytest.mark.parametrize(
    ("start", "ops", "new_value", "errors"),
    [pytest.param(*example[1:], id=f"example-{example[0]}") for example in WORKED_EXAMPLES],
)
def test_worked_examples(start: Any, ops: list[Any], new_value: Any, errors: list[Any]) -> None:
    """§6.8 examples 1-43 give exactly the listed new_value and errors (codes and messages)."""
    result = run(start, ops)
    assert exact(result.new_value) == exact(new_value)
    assert messages(result) == errors
    assert all(e["doc_url"] == DOC_URL for e in result.errors)


def test_worked_examples_cover_all_43() -> None:
    """Every §6.8 example is in the table exactly once."""
    assert [example[0] for example in WORKED_EXAMPLES] == list(range(1, 44))


def test_update_example_of_5_4() -> None:
    """The §5.4 exchange: a failing increment, then a set; the wire result with its error entry."""
    old = {"name": "Ada"}
    result = run(
        old, [{"type": "increment", "path": "name", "by": 1}, {"type": "set", "path": "age", "value": 36}]
    )
    assert result.response(old) == {
        "old_value": {"name": "Ada"},
        "new_value": {"age": 36, "name": "Ada"},
        "errors": [
            {
                "op_index": 0,
                "code": "increment.not_number",
                "message": "Expected number at path 'name', got string.",
                "doc_url": "https://iii.dev/docs/workers/iii-state#error-codes",
            }
        ],
    }


# -- D. batch rules (§6.4) --------------------------------------------------------------------------


def test_empty_ops_on_missing_key_gives_empty_object_and_no_errors_key() -> None:
    """D39: [] on a missing key gives {}; the response has old_value null and no errors key."""
    result = run(MISSING, [])
    assert result.new_value == {} and result.errors == []
    assert result.response(MISSING) == {"old_value": None, "new_value": {}}


def test_all_ops_failing_on_missing_key_gives_empty_object_with_errors() -> None:
    """D40: every op failing on a missing key still gives {}, with errors."""
    result = run(MISSING, [merge(ROOT, 1), set_("__proto__", 1), append(["a", ""], 1)])
    assert exact(result.new_value) == "{}"
    assert codes(result) == [
        (0, "merge.value.not_an_object"),
        (1, "set.path.proto_polluted"),
        (2, "append.path.empty_segment"),
    ]
    assert "errors" in result.response(MISSING)


def test_empty_ops_on_existing_value_leaves_it_unchanged() -> None:
    """D41: [] on an existing key returns the value itself, unchanged."""
    value = {"a": [1, {"b": 2}]}
    result = run(value, [])
    assert result.new_value is value and not result.changed and result.errors == []
    assert result.response(value) == {"old_value": value, "new_value": value}


def test_partial_failure_keeps_earlier_and_later_successes() -> None:
    """D42: a failing op in the middle: earlier and later ops applied; op_index is the original index."""
    result = run(
        {"n": 1, "s": "x"},
        [inc("n", 1), set_("m", 1), inc("s", 1), remove("m"), append("l", 1), inc("s", 2), set_("z", 0)],
    )
    assert exact(result.new_value) == exact({"l": [1], "n": 2, "s": "x", "z": 0})
    assert codes(result) == [(2, "increment.not_number"), (5, "increment.not_number")]


def test_error_entries_have_exactly_the_wire_fields() -> None:
    """D43: each error is {op_index, code, message, doc_url}, doc_url always filled in."""
    result = run({}, [set_("constructor", 1)])
    assert result.errors == [
        {
            "op_index": 0,
            "code": "set.path.proto_polluted",
            "message": "Path segment 'constructor' is not allowed (prototype pollution).",
            "doc_url": DOC_URL,
        }
    ]


def test_errors_key_absent_when_no_op_failed() -> None:
    """D44: the errors key is absent when there are no errors."""
    result = run({"a": 1}, [inc("a", 1)])
    assert result.response({"a": 1}) == {"old_value": {"a": 1}, "new_value": {"a": 2}}


def test_failed_op_leaves_working_value_unchanged() -> None:
    """§6.4 rule 2: a failed op changes nothing, even on a deep path it had to walk."""
    start = {"e": {"b": {"x": 1}}, "l": [1]}
    result = run(start, [append(["e", "b"], "z"), append(["q", "r", "s", "__proto__"], 1)])
    assert result.new_value is start and not result.changed
    assert len(result.errors) == 2


def test_missing_flag_kept_by_failed_ops_and_silent_noop() -> None:
    """§6.4 rule 3: failed ops leave the missing flag, so a later root increment still sees a missing key."""
    result = run(MISSING, [set_("__proto__", 1), merge(ROOT, []), inc("", 7)])
    assert result.new_value == 7
    assert codes(result) == [(0, "set.path.proto_polluted"), (1, "merge.value.not_an_object")]


def test_missing_flag_cleared_by_a_success_that_changes_nothing() -> None:
    """§6.4 rule 3: a successful remove of an absent field clears the flag (example 7)."""
    assert run(MISSING, [remove("x"), append(ROOT, "s")]).errors[0]["code"] == "append.type_mismatch"
    assert run(MISSING, [merge(ROOT, {}), dec("", 1)]).errors[0]["code"] == "decrement.not_number"


# -- E. set (§6.6.1) --------------------------------------------------------------------------------


def test_set_root_replaces_value() -> None:
    """E46: set "" replaces the root; without a value, or with null, the root is null."""
    assert run({"a": 1}, [set_("", [1, 2])]).new_value == [1, 2]
    assert run({"a": 1}, [set_("")]).new_value is None
    assert run({"a": 1}, [set_("", None)]).new_value is None
    assert run(MISSING, [set_("", "x")]).new_value == "x"


def test_set_field_without_value_stores_null() -> None:
    """§6.2: set without value (or with null) stores null at the field."""
    assert run({}, [set_("a")]).new_value == {"a": None}
    assert run({"a": 1}, [set_("a", None)]).new_value == {"a": None}


def test_set_on_string_root_message() -> None:
    """E48: set on a string root fails with the exact message."""
    result = run("hello", [set_("field", 1)])
    assert messages(result) == [
        (0, "set.target_not_object", "Cannot set at path 'field': target is string, expected object.")
    ]


@pytest.mark.parametrize(
    ("root", "type_name"), [(1, "number"), (True, "boolean"), ([], "array"), (None, "null")]
)
def test_set_target_type_names(root: Any, type_name: str) -> None:
    """§3.4 rule 4: the target type is named with JSON type names."""
    result = run(root, [set_("a", 1)])
    assert result.errors[0]["message"] == f"Cannot set at path 'a': target is {type_name}, expected object."


@pytest.mark.parametrize("name", ["__proto__", "constructor", "prototype"])
@pytest.mark.parametrize("op_type", ["set", "increment", "decrement", "remove"])
def test_field_path_proto_names_rejected(op_type: str, name: str) -> None:
    """E49, G81, I98: proto names as a field path are rejected by every field-path op."""
    op: dict[str, Any] = {"type": op_type, "path": name, "by": 1, "value": 1}
    result = run({name: 1}, [op])
    assert messages(result) == [
        (0, f"{op_type}.path.proto_polluted", f"Path segment '{name}' is not allowed (prototype pollution).")
    ]
    assert result.new_value == {name: 1}


@pytest.mark.parametrize("name", ["__Proto__", "Constructor", "PROTOTYPE", "__proto", "proto"])
def test_proto_check_is_case_sensitive(name: str) -> None:
    """§6.5 check 4 is case-sensitive and exact."""
    assert run({}, [set_(name, 1)]).new_value == {name: 1}


@pytest.mark.parametrize(
    ("segment", "size"),
    [
        ("a" * 256, 256),
        ("é" * 128, 256),
        ("😀" * 64, 256),
        ("€" * 85 + "a", 256),
    ],
)
def test_segment_of_exactly_256_bytes_accepted(segment: str, size: int) -> None:
    """E50: a 256-byte segment (multibyte characters counted in UTF-8 bytes) is valid."""
    assert len(segment.encode()) == size
    assert run({}, [set_(segment, 1)]).new_value == {segment: 1}
    assert run({}, [merge([segment, segment], {"x": 1})]).errors == []


@pytest.mark.parametrize(
    ("segment", "size"),
    [("a" * 257, 257), ("é" * 128 + "a", 257), ("😀" * 64 + "a", 257), ("€" * 86, 258), ("x" * 300, 300)],
)
@pytest.mark.parametrize("op_type", ["set", "increment", "decrement", "remove", "merge", "append"])
def test_segment_over_256_bytes_rejected(op_type: str, segment: str, size: int) -> None:
    """E50: one byte over the limit fails with `<op>.path.segment_too_long` and the byte count."""
    op: dict[str, Any] = {"type": op_type, "path": segment, "by": 1, "value": {"v": 1}}
    result = run({}, [op])
    assert messages(result) == [
        (0, f"{op_type}.path.segment_too_long", f"Path segment of {size} bytes exceeds maximum of 256")
    ]
    assert result.new_value == {}


def test_set_value_containing_proto_keys_accepted() -> None:
    """E51: values are never scanned for proto names by set."""
    value = {"__proto__": {"constructor": 1}, "prototype": 2}
    assert run({}, [set_("a", value)]).new_value == {"a": value}
    assert run({}, [set_("", value)]).new_value == value


def test_set_on_stored_null_fails_but_on_missing_key_succeeds() -> None:
    """E52: a stored null is not an object; a missing key starts as {}."""
    assert codes(run(None, [set_("a", 1)])) == [(0, "set.target_not_object")]
    assert run(MISSING, [set_("a", 1)]).new_value == {"a": 1}


# -- F. merge (§6.6.2) ------------------------------------------------------------------------------


def test_root_merge_is_shallow_and_overwrites() -> None:
    """F53: a root merge replaces same-named keys whole, it does not merge deeply."""
    result = run({"a": {"x": 1}, "b": 1}, [merge(ROOT, {"a": {"y": 2}})])
    assert result.new_value == {"a": {"y": 2}, "b": 1}


@pytest.mark.parametrize("root", ["leaf", 1, 1.5, True, [1], None])
def test_root_merge_on_non_object_is_silent_noop(root: Any) -> None:
    """F54: root merge on a scalar, array or null root: no change, no error."""
    result = run(root, [merge(ROOT, {"a": 1})])
    assert result.new_value is root and result.errors == [] and not result.changed


@pytest.mark.parametrize("path", [ROOT, None, "", []])
def test_segment_path_root_forms(path: Any) -> None:
    """A11: merge/append with path absent, null, "" or [] act on the root."""
    assert run({"a": 1}, [merge(path, {"b": 2})]).new_value == {"a": 1, "b": 2}
    assert run([1], [append(path, 2)]).new_value == [1, 2]
    assert run(MISSING, [append(path, "s")]).new_value == "s"


def test_merge_string_path_equals_one_segment_array() -> None:
    """F55: merge "x" is merge ["x"]."""
    start = {"x": {"a": 1}, "y": 2}
    assert exact(run(start, [merge("x", {"b": 2})]).new_value) == exact(
        run(start, [merge(["x"], {"b": 2})]).new_value
    )


def test_nested_merge_creates_intermediates() -> None:
    """F56: missing intermediates are created as objects."""
    result = run({}, [merge(["a", "b", "c"], {"v": 1})])
    assert result.new_value == {"a": {"b": {"c": {"v": 1}}}}


@pytest.mark.parametrize("intermediate", ["s", None, [1, 2], 3, True])
def test_nested_merge_replaces_non_object_intermediates(intermediate: Any) -> None:
    """F57: a string, null, array or scalar intermediate is replaced with {}."""
    result = run({"a": intermediate, "k": 1}, [merge(["a", "b"], {"v": 1})])
    assert result.new_value == {"a": {"b": {"v": 1}}, "k": 1}


@pytest.mark.parametrize("root", ["leaf", 5, [1], None, False])
def test_nested_merge_on_non_object_root_replaces_root(root: Any) -> None:
    """F58: a nested merge on a non-object root replaces the root with {}."""
    assert run(root, [merge("a", {"x": 1})]).new_value == {"a": {"x": 1}}


def test_merge_dotted_segment_is_literal() -> None:
    """F59: ["a.b"] is one literal key."""
    result = run({"a": {"b": {"x": 1}}}, [merge(["a.b"], {"y": 2})])
    assert result.new_value == {"a": {"b": {"x": 1}}, "a.b": {"y": 2}}


def test_merge_remove_merge_recreates_cleanly() -> None:
    """F61: merge, remove, merge on the same key recreates it from scratch."""
    result = run({}, [merge("a", {"x": 1}), remove("a"), merge("a", {"y": 2})])
    assert result.new_value == {"a": {"y": 2}}


@pytest.mark.parametrize("value", [[], [1], "s", 1, 1.5, True, None])
def test_merge_non_object_value_rejected(value: Any) -> None:
    """F62: a non-object merge value (arrays included) fails with merge.value.not_an_object."""
    result = run({"a": 1}, [merge(ROOT, value), merge("x", value)])
    assert messages(result) == [
        (0, "merge.value.not_an_object", "Merge value must be a JSON object"),
        (1, "merge.value.not_an_object", "Merge value must be a JSON object"),
    ]
    assert result.new_value == {"a": 1}


def test_merge_key_count_limit() -> None:
    """F63: 1024 top-level keys accepted; 1025 fail with the exact message."""
    ok = {f"k{i}": i for i in range(1024)}
    assert run({}, [merge(ROOT, ok)]).new_value == ok
    over = {f"k{i}": i for i in range(1025)}
    assert messages(run({}, [merge("a", over)])) == [
        (0, "merge.value.too_many_keys", "Merge value has 1025 top-level keys, exceeds maximum of 1024")
    ]


@pytest.mark.parametrize("key", ["__proto__", "constructor", "prototype"])
def test_merge_value_top_level_proto_key_rejected(key: str) -> None:
    """F64: a top-level proto key is rejected, named in double quotes."""
    result = run({}, [merge(ROOT, {"ok": 1, key: {}})])
    assert messages(result) == [
        (0, "merge.value.proto_polluted", f'Merge value top-level key "{key}" is a prototype-pollution sink')
    ]
    assert result.new_value == {}


def test_merge_value_proto_keys_reported_in_sorted_order() -> None:
    """§6.6.2: top-level keys are checked in sorted order; the first offender is reported."""
    result = run({}, [merge(ROOT, {"prototype": 1, "constructor": 2})])
    assert (
        result.errors[0]["message"] == 'Merge value top-level key "constructor" is a prototype-pollution sink'
    )
    result = run({}, [merge(ROOT, {"prototype": 1, "constructor": 2, "__proto__": 3})])
    assert '"__proto__"' in result.errors[0]["message"]


def test_merge_value_nested_proto_key_accepted() -> None:
    """F64: nested __proto__ keys are allowed."""
    value = {"a": {"__proto__": {"constructor": 1}}}
    assert run({}, [merge(ROOT, value)]).new_value == value


def nested(depth: int, *, arrays: bool = False) -> dict[str, Any]:
    """An object of exactly ``depth`` nesting levels (arrays inside when asked)."""
    value: Any = 1
    for level in range(depth - 1):
        value = [value] if arrays and level % 2 else {"k": value}
    return {"top": value}


def test_merge_depth_limit() -> None:
    """F65: depth 16 accepted, depth 17 rejected showing 17; arrays count."""
    for arrays in (False, True):
        assert json_depth(nested(16, arrays=arrays)) == 16
        assert run({}, [merge(ROOT, nested(16, arrays=arrays))]).errors == []
        result = run({}, [merge(ROOT, nested(17, arrays=arrays))])
        assert messages(result) == [
            (0, "merge.value.too_deep", "Merge value JSON nesting depth 17 exceeds maximum of 16")
        ]


def test_merge_depth_message_shows_full_depth() -> None:
    """§6.6.2: {d} is the full depth of the value, not the limit plus one."""
    result = run({}, [merge(ROOT, nested(40))])
    assert result.errors[0]["message"] == "Merge value JSON nesting depth 40 exceeds maximum of 16"


def test_merge_value_checks_run_in_table_order() -> None:
    """§6.6.2: too_many_keys is reported before proto_polluted, which comes before too_deep."""
    many = {f"k{i}": nested(20) for i in range(1025)} | {"__proto__": 1}
    assert codes(run({}, [merge(ROOT, many)])) == [(0, "merge.value.too_many_keys")]
    deep_proto = {"__proto__": 1, "x": nested(20)}
    assert codes(run({}, [merge(ROOT, deep_proto)])) == [(0, "merge.value.proto_polluted")]


@pytest.mark.parametrize("op_type", ["merge", "append"])
def test_segment_path_depth_limit(op_type: str) -> None:
    """F66: 32 segments accepted; 33 (and 40) fail with `<op>.path.too_deep`."""
    value = {"v": 1}
    path32 = [f"s{i}" for i in range(32)]
    result = run({}, [{"type": op_type, "path": path32, "value": value}])
    assert result.errors == []
    node = result.new_value
    for segment in path32[:-1]:
        node = node[segment]
    assert path32[-1] in node
    for depth in (33, 40):
        path = [f"s{i}" for i in range(depth)]
        result = run({}, [{"type": op_type, "path": path, "value": value}])
        assert messages(result) == [
            (0, f"{op_type}.path.too_deep", f"Path depth {depth} exceeds maximum of 32")
        ]
        assert result.new_value == {}


@pytest.mark.parametrize("path", [["a", ""], [""], ["", "a"], ["a", "", "__proto__"]])
@pytest.mark.parametrize("op_type", ["merge", "append"])
def test_empty_segment_rejected(op_type: str, path: list[str]) -> None:
    """F67: an empty segment in an array path fails; checks run per segment in order."""
    result = run({}, [{"type": op_type, "path": path, "value": {}}])
    assert messages(result) == [(0, f"{op_type}.path.empty_segment", "Path contains an empty segment")]


def test_path_checks_run_in_order() -> None:
    """§6.5: depth first, then per segment empty -> too long -> proto, segment by segment."""
    too_deep = ["__proto__"] + [""] * 40
    assert codes(run({}, [merge(too_deep, {})])) == [(0, "merge.path.too_deep")]
    assert codes(run({}, [merge(["x" * 300, ""], {})])) == [(0, "merge.path.segment_too_long")]
    assert codes(run({}, [merge(["__proto__", "x" * 300], {})])) == [(0, "merge.path.proto_polluted")]
    assert codes(run({}, [append(["ok", "", "x" * 300], 1)])) == [(0, "append.path.empty_segment")]


@pytest.mark.parametrize(
    "path",
    [
        ["__proto__", "a"],
        ["a", "__proto__", "b"],
        ["a", "b", "__proto__"],
        ["a", "constructor"],
        ["prototype"],
    ],
)
def test_merge_proto_segment_creates_nothing(path: list[str]) -> None:
    """F68: a proto segment anywhere fails and creates no intermediates."""
    result = run({"k": 1}, [merge(path, {"x": 1})])
    assert codes(result) == [(0, "merge.path.proto_polluted")]
    assert result.new_value == {"k": 1} and not result.changed


def test_path_error_wins_over_value_error() -> None:
    """F69: invalid path and invalid value together report only the path error."""
    assert codes(run({}, [merge(["a", "__proto__"], [1])])) == [(0, "merge.path.proto_polluted")]


def test_merge_into_existing_nested_object_keeps_siblings() -> None:
    """§6.6.2 step 4: the target object receives the value's top-level keys; siblings are kept."""
    start = {"a": {"b": {"x": 1}, "c": 2}, "d": 3}
    result = run(start, [merge(["a", "b"], {"y": 2})])
    assert result.new_value == {"a": {"b": {"x": 1, "y": 2}, "c": 2}, "d": 3}
    assert result.new_value["d"] == 3 and start["a"]["b"] == {"x": 1}


# -- G. increment / decrement (§6.6.3) --------------------------------------------------------------


def test_increment_decrement_missing_field() -> None:
    """G70: a missing field becomes by (increment) or -by (decrement)."""
    assert run({}, [inc("a", 5), dec("b", 5)]).new_value == {"a": 5, "b": -5}


def test_increment_decrement_existing_integer() -> None:
    """G71: existing integers are added to and subtracted from."""
    assert run({"a": 10, "b": 10}, [inc("a", 5), dec("b", 5)]).new_value == {"a": 15, "b": 5}


def test_float_field_gives_float_result() -> None:
    """G72: a double stays a double, even when the result is integral."""
    result = run({"n": 1.5, "m": 1.5}, [inc("n", 2), dec("n", 1), inc("m", 0)])
    assert exact(result.new_value) == exact({"m": 1.5, "n": 2.5})
    result = run({"n": 1.5}, [inc("n", 1), dec("n", 0)])
    assert type(result.new_value["n"]) is float
    assert exact(run({"n": 1.0}, [inc("n", 1)]).new_value) == exact({"n": 2.0})
    assert exact(run(1.5, [inc("", 1)]).new_value) == "2.5"


@pytest.mark.parametrize(
    ("field", "type_name"),
    [("s", "string"), (None, "null"), (True, "boolean"), (False, "boolean"), ({}, "object"), ([], "array")],
)
@pytest.mark.parametrize("op_type", ["increment", "decrement"])
@pytest.mark.parametrize("by", [1, 0, -1])
def test_non_number_field_rejected(op_type: str, by: int, field: Any, type_name: str) -> None:
    """G73, G74: non-number fields (null is not missing) fail, even with by 0."""
    start = {"n": field}
    result = run(start, [{"type": op_type, "path": "n", "by": by}])
    assert messages(result) == [
        (0, f"{op_type}.not_number", f"Expected number at path 'n', got {type_name}.")
    ]
    assert result.new_value is start


def test_integer_range_boundaries() -> None:
    """G75: results stay exact integers in [-2^63, 2^64-1]; one outside fails with got number."""
    assert exact(run({"n": I64_MAX}, [inc("n", 1)]).new_value) == '{"n": 9223372036854775808}'
    assert run({"n": U64_MAX - 1}, [inc("n", 1)]).new_value == {"n": U64_MAX}
    assert codes(run({"n": U64_MAX}, [inc("n", 1)])) == [(0, "increment.not_number")]
    assert run({"n": I64_MIN + 1}, [dec("n", 1)]).new_value == {"n": I64_MIN}
    assert codes(run({"n": I64_MIN}, [dec("n", 1)])) == [(0, "decrement.not_number")]
    assert codes(run({"n": I64_MIN}, [inc("n", -1)])) == [(0, "increment.not_number")]
    assert run({"n": 0}, [inc("n", I64_MAX), inc("n", I64_MAX), inc("n", 1)]).new_value == {"n": U64_MAX}
    assert codes(run(U64_MAX, [inc("", 1)])) == [(0, "increment.not_number")]
    assert run(U64_MAX, [inc("", 1)]).errors[0]["message"] == "Expected number at path 'root', got number."


def test_decrement_by_i64_min() -> None:
    """G76: decrementing a missing field (or root) by i64 min gives 2^63 exactly."""
    assert exact(run({}, [dec("n", I64_MIN)]).new_value) == '{"n": 9223372036854775808}'
    assert run(MISSING, [dec("", I64_MIN)]).new_value == 2**63
    assert run({"n": 0}, [dec("n", I64_MIN)]).new_value == {"n": 2**63}


def test_big_integers_stay_exact() -> None:
    """§3.4 rule 2, D4: integer arithmetic is exact beyond 2^53; other ops never touch numbers."""
    assert run({"n": 2**53 + 1}, [inc("n", 1)]).new_value == {"n": 2**53 + 2}
    assert run({"n": 2**63 - 1}, [dec("n", -(2**63 - 1))]).new_value == {"n": 2**64 - 2}
    big = 2**70 + 1  # already out of the exact range: the decoder's job (values.py), not the interpreter's
    result = run({"a": big, "b": [big]}, [set_("c", big), merge(ROOT, {"d": big}), append("b", big)])
    assert result.new_value == {"a": big, "b": [big, big], "c": big, "d": big}
    assert all(type(v) is int for v in (result.new_value["a"], result.new_value["c"], result.new_value["d"]))
    # Arithmetic on such a value would leave the exact range, so it fails like any overflow.
    assert codes(run({"n": big}, [inc("n", 1)])) == [(0, "increment.not_number")]


def test_non_finite_double_result_fails() -> None:
    """§6.6.3: a non-finite double result fails with not_number (got number)."""
    for start in (math.inf, -math.inf, math.nan):
        result = run({"n": start}, [inc("n", 1)])
        assert messages(result) == [(0, "increment.not_number", "Expected number at path 'n', got number.")]


def test_root_increment() -> None:
    """G77: root increment on a missing key gives by; on a number adds; on an object fails."""
    assert run(MISSING, [inc("", 4)]).new_value == 4
    assert run(MISSING, [dec("", 4)]).new_value == -4
    assert run(10, [inc("", 4)]).new_value == 14
    assert run(10, [dec("", 4)]).new_value == 6
    assert messages(run({}, [inc("", 1)])) == [
        (0, "increment.not_number", "Expected number at path 'root', got object.")
    ]
    assert messages(run("s", [dec("", 1)])) == [
        (0, "decrement.not_number", "Expected number at path 'root', got string.")
    ]
    assert messages(run(None, [inc("", 1)])) == [
        (0, "increment.not_number", "Expected number at path 'root', got null.")
    ]


def test_root_increment_after_success_on_missing_key_fails() -> None:
    """G78: set "a" clears the missing flag, so a root increment then sees an object."""
    assert codes(run(MISSING, [set_("a", 1), inc("", 1)])) == [(1, "increment.not_number")]


@pytest.mark.parametrize("op_type", ["increment", "decrement"])
@pytest.mark.parametrize(
    ("root", "type_name"), [("s", "string"), ([1], "array"), (None, "null"), (2, "number")]
)
def test_increment_field_on_non_object_root(op_type: str, root: Any, type_name: str) -> None:
    """G79: a field path on a non-object root fails with `<op>.target_not_object`."""
    result = run(root, [{"type": op_type, "path": "n", "by": 1}])
    assert messages(result) == [
        (
            0,
            f"{op_type}.target_not_object",
            f"Cannot {op_type} at path 'n': target is {type_name}, expected object.",
        )
    ]


# -- H. append (§6.6.4) -----------------------------------------------------------------------------


def test_append_pushes_onto_array() -> None:
    """H82: push onto an array field; an array value is pushed as one nested element."""
    assert run({"l": [1]}, [append("l", 2), append("l", [3, 4])]).new_value == {"l": [1, 2, [3, 4]]}


def test_append_string_concatenation_and_mismatch() -> None:
    """H83: string + string concatenates; string + non-string fails with the exact message."""
    assert run({"t": "a"}, [append("t", "b")]).new_value == {"t": "ab"}
    for value, type_name in ((1, "number"), (None, "null"), ([], "array"), (True, "boolean")):
        assert messages(run({"t": "a"}, [append("t", value)])) == [
            (0, "append.type_mismatch", f"Expected string append value at path 't', got {type_name}.")
        ]


@pytest.mark.parametrize("field", [_ABSENT, None])
@pytest.mark.parametrize(
    ("value", "expected"),
    [("s", "s"), ("", ""), (1, [1]), ({"a": 1}, [{"a": 1}]), ([1], [[1]]), (None, [None]), (False, [False])],
)
def test_append_initial_value_on_missing_or_null_field(field: Any, value: Any, expected: Any) -> None:
    """H84, H85: a missing or null field becomes the string itself, or [value]."""
    start = {} if field is _ABSENT else {"f": field}
    assert exact(run(start, [append("f", value)]).new_value) == exact({"f": expected})


@pytest.mark.parametrize(
    ("field", "type_name"), [({}, "object"), (1, "number"), (2.5, "number"), (True, "boolean")]
)
def test_append_onto_object_number_boolean_fails(field: Any, type_name: str) -> None:
    """H86: object, number and boolean fields are not appendable."""
    result = run({"f": field}, [append("f", "x")])
    assert messages(result) == [
        (0, "append.type_mismatch", f"Cannot append at path 'f': target is {type_name}, {NOT_OBJECT_TAIL}")
    ]


def test_root_append() -> None:
    """H87: root append on missing, array, string, null and object roots."""
    assert run(MISSING, [append(ROOT, "s")]).new_value == "s"
    assert run(MISSING, [append(ROOT, {"o": 1})]).new_value == [{"o": 1}]
    assert run([], [append(ROOT, "x")]).new_value == ["x"]
    assert run("ab", [append(ROOT, "c")]).new_value == "abc"
    assert run(None, [append(ROOT, 1)]).new_value == [1]
    assert messages(run({}, [append(ROOT, "x")])) == [
        (0, "append.type_mismatch", f"Cannot append at path 'root': target is object, {NOT_OBJECT_TAIL}")
    ]
    assert messages(run(3, [append(ROOT, "x")])) == [
        (0, "append.type_mismatch", f"Cannot append at path 'root': target is number, {NOT_OBJECT_TAIL}")
    ]
    assert codes(run("ab", [append(ROOT, 1)])) == [(0, "append.type_mismatch")]


def test_root_append_twice_on_missing_key() -> None:
    """§6.6.4 step 2: the first root append clears the flag; the second appends to its result."""
    assert run(MISSING, [append(ROOT, "a"), append(ROOT, "b")]).new_value == "ab"
    assert run(MISSING, [append(ROOT, 1), append(ROOT, 2)]).new_value == [1, 2]


@pytest.mark.parametrize(
    ("root", "type_name"), [("s", "string"), (None, "null"), ([1], "array"), (0, "number")]
)
def test_non_root_append_on_non_object_root(root: Any, type_name: str) -> None:
    """H88: bracketed label even for one segment; the root is not replaced."""
    result = run(root, [append("events", 1), append(["a", "b", "c"], 1)])
    tail = f"target is {type_name}, expected object."
    assert messages(result) == [
        (0, "append.target_not_object", f"Cannot append at path '[events]': {tail}"),
        (1, "append.target_not_object", f"Cannot append at path '[a, b, c]': {tail}"),
    ]
    assert result.new_value is root


def test_nested_append_creates_intermediates_and_array_leaf() -> None:
    """H89: a nested missing leaf is always an array, even for a string."""
    result = run({}, [append(["a", "b", "c"], "x")])
    assert result.new_value == {"a": {"b": {"c": ["x"]}}}


def test_nested_append_target_table() -> None:
    """H90: nested append pushes onto arrays, concatenates strings, uses the initial value on null."""
    start = {"e": {"l": [1], "s": "a", "n": None, "o": {}}}
    result = run(start, [append(["e", "l"], 2), append(["e", "s"], "b"), append(["e", "n"], "x")])
    assert result.new_value == {"e": {"l": [1, 2], "s": "ab", "n": "x", "o": {}}}
    assert run(start, [append(["e", "n"], 1)]).new_value["e"]["n"] == [1]
    assert messages(run(start, [append(["e", "o"], 1)])) == [
        (0, "append.type_mismatch", f"Cannot append at path 'o': target is object, {NOT_OBJECT_TAIL}")
    ]
    assert messages(run(start, [append(["e", "s"], 1)])) == [
        (0, "append.type_mismatch", "Expected string append value at path 's', got number.")
    ]


@pytest.mark.parametrize("intermediate", [[1, 2, 3], "s", None, 7])
def test_nested_append_replaces_non_object_intermediates(intermediate: Any) -> None:
    """H91: an array (or other non-object) intermediate is replaced with an object."""
    result = run({"a": intermediate}, [append(["a", "b", "c"], 42)])
    assert result.new_value == {"a": {"b": {"c": [42]}}}


def test_append_dotted_path_is_literal() -> None:
    """H92: "user.name" is one key; the nested structure is untouched."""
    result = run({"user": {"name": ["B"]}}, [append("user.name", "C")])
    assert result.new_value == {"user": {"name": ["B"]}, "user.name": "C"}


@pytest.mark.parametrize(
    "path", ["__proto__", "constructor", ["__proto__"], ["a", "constructor"], ["prototype", "b", "c"]]
)
def test_append_proto_segments_create_nothing(path: Any) -> None:
    """H93: proto names at any segment fail with append.path.proto_polluted; nothing is created."""
    result = run({}, [append(path, 1)])
    assert codes(result) == [(0, "append.path.proto_polluted")]
    assert result.new_value == {}


def test_appends_keep_order() -> None:
    """H94: two appends in one call land in order."""
    assert run({}, [append("l", 1), append("l", 2), append("l", 3)]).new_value == {"l": [1, 2, 3]}
    assert run({}, [append("s", "a"), append("s", "b")]).new_value == {"s": "ab"}


# -- I. remove (§6.6.5) -----------------------------------------------------------------------------


def test_remove_field_and_absent_field() -> None:
    """I96: remove a field; removing an absent field is a silent success."""
    assert run({"a": 1, "b": 2}, [remove("a")]).new_value == {"b": 2}
    result = run({"b": 2}, [remove("a")])
    assert result.new_value == {"b": 2} and result.errors == [] and not result.changed


def test_remove_root_gives_null() -> None:
    """I97: remove "" gives a stored null (the key is kept)."""
    assert run({"a": 1}, [remove("")]).new_value is None
    assert run(MISSING, [remove("")]).new_value is None


@pytest.mark.parametrize(
    ("root", "type_name"), [(5, "number"), ("s", "string"), ([1], "array"), (None, "null")]
)
def test_remove_on_non_object_root(root: Any, type_name: str) -> None:
    """I98: remove of a field on a non-object root fails."""
    assert messages(run(root, [remove("a")])) == [
        (0, "remove.target_not_object", f"Cannot remove at path 'a': target is {type_name}, expected object.")
    ]


# -- limits -----------------------------------------------------------------------------------------


def test_default_limits() -> None:
    """§6.5, §6.6.2: 32 segments, 256 bytes, 1024 keys, depth 16."""
    assert DEFAULT_LIMITS == OpLimits(
        max_path_depth=32, max_segment_bytes=256, max_merge_keys=1024, max_merge_depth=16
    )


def test_custom_limits_apply_and_appear_in_messages() -> None:
    """OpLimits bounds are inclusive and quoted in the messages."""
    limits = OpLimits(max_path_depth=2, max_segment_bytes=3, max_merge_keys=2, max_merge_depth=2)
    assert run({}, [merge(["a", "b"], {"x": {}})], limits=limits).errors == []
    assert [e["message"] for e in run({}, [
        merge(["a", "b", "c"], {}),
        set_("abcd", 1),
        merge(ROOT, {"a": 1, "b": 2, "c": 3}),
        merge(ROOT, {"a": {"b": {}}}),
    ], limits=limits).errors] == [
        "Path depth 3 exceeds maximum of 2",
        "Path segment of 4 bytes exceeds maximum of 3",
        "Merge value has 3 top-level keys, exceeds maximum of 2",
        "Merge value JSON nesting depth 3 exceeds maximum of 2",
    ]  # fmt: skip


# -- immutability and cost --------------------------------------------------------------------------


def test_input_never_mutated_by_any_op_kind() -> None:
    """§6.1: ops copy on write; the input value and the ops' values stay intact."""
    start = {"l": [1], "o": {"p": {"q": [1]}}, "s": "a", "n": 1}
    before = copy.deepcopy(start)
    shared_value = {"x": [1]}
    ops = [
        append("l", 2),
        merge(["o", "p"], {"r": 1}),
        append(["o", "p", "q"], 2),
        append("s", "b"),
        inc("n", 1),
        remove("s"),
        set_("v", shared_value),
        merge("v", {"y": 2}),  # merges into the op's own value: must copy it
        append(["v", "x"], 2),
        set_("w", [1]),
        append("w", 2),
    ]
    result = apply_ops(start, ops)
    assert start == before
    assert shared_value == {"x": [1]}
    assert ops[9]["value"] == [1]
    assert result.new_value == {
        "l": [1, 2],
        "o": {"p": {"q": [1, 2], "r": 1}},
        "n": 2,
        "v": {"x": [1, 2], "y": 2},
        "w": [1, 2],
    }


def test_input_not_mutated_when_rerun() -> None:
    """§6.1: re-running the same decoded ops on the same value gives the same result (retry safety)."""
    start = {"l": [1], "o": {"a": 1}}
    ops = decode_ops([append("l", 2), merge("o", {"b": 2}), merge(["o", "c"], {"d": 1}), inc("n", 1)])
    first = apply_ops(start, ops)
    second = apply_ops(start, ops)
    assert exact(first.new_value) == exact(second.new_value)
    assert start == {"l": [1], "o": {"a": 1}}


def test_untouched_subtrees_are_shared_not_copied() -> None:
    """Speed: one increment copies only the top-level object; other subtrees are shared."""
    big = {"k": list(range(1000)), "o": {"deep": {"x": 1}}}
    start = {"n": 1, "big": big, "other": {"y": [1]}}
    result = apply_ops(start, [inc("n", 1)])
    assert result.new_value is not start
    assert result.new_value["big"] is big and result.new_value["other"] is start["other"]
    result = apply_ops(start, [merge(["other", "z"], {"a": 1})])
    assert result.new_value["big"] is big
    assert result.new_value["other"]["y"] is start["other"]["y"]


def test_copy_is_made_once_per_batch() -> None:
    """Copy on write: later ops reuse the containers the batch already copied."""
    start = {"o": {"l": []}}
    result = apply_ops(start, [append(["o", "l"], i) for i in range(100)])
    assert result.new_value == {"o": {"l": list(range(100))}}
    assert start == {"o": {"l": []}}


def test_changed_flag() -> None:
    """OpResult.changed is False only when nothing was written; then new_value is the input itself."""
    start = {"a": 1}
    unchanged = apply_ops(start, [remove("b"), merge(ROOT, {}), set_("__proto__", 1), inc("", 1)])
    assert not unchanged.changed and unchanged.new_value is start and len(unchanged.errors) == 2
    assert apply_ops(start, [set_("a", 1)]).changed
    assert apply_ops(start, [inc("a", 0)]).changed


# -- decoding: request-level errors (§3.2, §6.2) ---------------------------------------------------


def decode_error(raw: Any) -> str:
    with pytest.raises(OpsDecodeError) as info:
        decode_ops(raw)
    assert info.value.code == "deserialization_error"
    return info.value.detail


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("x", 'invalid type: string "x", expected a sequence'),
        (None, "invalid type: null, expected a sequence"),
        ({}, "invalid type: map, expected a sequence"),
        (1, "invalid type: integer `1`, expected a sequence"),
        ([{"path": "a"}], "ops[0]: missing field `type`"),
        (
            [{"type": "x"}],
            "ops[0]: unknown variant `x`, expected one of `set`, `merge`, `increment`, `decrement`, "
            "`append`, `remove`",
        ),
        (
            [{"type": "Set", "path": "a"}],
            "ops[0]: unknown variant `Set`, expected one of `set`, `merge`, `increment`, `decrement`, "
            "`append`, `remove`",
        ),
        ([inc("a", 1.5)], "ops[0].by: invalid type: floating point `1.5`, expected i64"),
        ([inc("a", 1.0)], "ops[0].by: invalid type: floating point `1.0`, expected i64"),
        ([inc("a", "1")], 'ops[0].by: invalid type: string "1", expected i64'),
        ([inc("a", True)], "ops[0].by: invalid type: boolean `true`, expected i64"),
        ([inc("a", None)], "ops[0].by: invalid type: null, expected i64"),
        ([dec("a", 2**63)], "ops[0].by: invalid value: integer `9223372036854775808`, expected i64"),
        ([dec("a", U64_MAX)], "ops[0].by: invalid value: integer `18446744073709551615`, expected i64"),
        ([inc("a", -(2**63) - 1)],
         "ops[0].by: invalid type: floating point `-9.223372036854776e18`, expected i64"),
        ([inc("a", 2**64)], "ops[0].by: invalid type: floating point `1.8446744073709552e19`, expected i64"),
        ([{"type": "increment", "path": "a"}], "ops[0]: missing field `by`"),
        ([{"type": "increment", "by": 1}], "ops[0]: missing field `path`"),
        ([{"type": "decrement"}], "ops[0]: missing field `path`"),
        ([{"type": "set", "value": 1}], "ops[0]: missing field `path`"),
        ([{"type": "remove"}], "ops[0]: missing field `path`"),
        ([{"type": "merge", "path": "a"}], "ops[0]: missing field `value`"),
        ([{"type": "append"}], "ops[0]: missing field `value`"),
        ([set_(["a"], 1)], "ops[0].path: invalid type: sequence, expected a string"),
        ([inc(["a"], 1)], "ops[0].path: invalid type: sequence, expected a string"),
        ([dec(["a"], 1)], "ops[0].path: invalid type: sequence, expected a string"),
        ([remove(["a"])], "ops[0].path: invalid type: sequence, expected a string"),
        ([remove(None)], "ops[0].path: invalid type: null, expected a string"),
        ([set_(1, 1)], "ops[0].path: invalid type: integer `1`, expected a string"),
        ([merge(["a", 1], {})], "ops[0].path: data did not match any variant of untagged enum MergePath"),
        ([append([None], 1)], "ops[0].path: data did not match any variant of untagged enum MergePath"),
        ([merge(1, {})], "ops[0].path: data did not match any variant of untagged enum MergePath"),
        ([append({"a": 1}, 1)], "ops[0].path: data did not match any variant of untagged enum MergePath"),
        (["x"], 'ops[0]: invalid type: string "x", expected internally tagged enum UpdateOp'),
        ([None], "ops[0]: invalid type: null, expected internally tagged enum UpdateOp"),
        ([[]], "ops[0]: invalid type: sequence, expected internally tagged enum UpdateOp"),
        ([{"type": 1}], "ops[0]: invalid type: integer `1`, expected variant identifier"),
        ([set_("a", 1), set_("b", 2), inc("c", 0.5)],
         "ops[2].by: invalid type: floating point `0.5`, expected i64"),
    ],
)  # fmt: skip
def test_decode_errors(raw: Any, detail: str) -> None:
    """§3.2 table: serde-style details, with the location of the offending element."""
    assert decode_error(raw) == detail


def test_decode_error_full_message() -> None:
    """§3.2: the message is `Failed to deserialize input for <function id>: <detail>`."""
    with pytest.raises(OpsDecodeError) as info:
        decode_ops([{"type": "increment", "path": "count", "by": 1.5}])
    assert info.value.message("state::update") == (
        "Failed to deserialize input for state::update: "
        "ops[0].by: invalid type: floating point `1.5`, expected i64"
    )


def test_bad_present_field_reported_before_missing_field() -> None:
    """serde order: a wrongly typed field present in the op comes before a missing one."""
    assert decode_error([{"type": "increment", "by": 1.5}]) == (
        "ops[0].by: invalid type: floating point `1.5`, expected i64"
    )


def test_i64_bounds_of_by_accepted() -> None:
    """§3.2: by in [-2^63, 2^63-1] decodes."""
    ops = decode_ops([inc("a", I64_MIN), dec("a", I64_MAX), inc("b", 0)])
    assert [op.by for op in ops] == [I64_MIN, I64_MAX, 0]


def test_unknown_fields_ignored() -> None:
    """A6: unknown fields in ops (and fields of other op types) are ignored."""
    ops = decode_ops(
        [
            {"type": "set", "path": "a", "value": 1, "_caller_worker_id": "w", "by": "junk"},
            {"type": "remove", "path": "b", "value": {"x": 1}, "extra": None},
            {"type": "increment", "path": "c", "by": 2, "value": "ignored"},
        ]
    )
    assert ops == (Op("set", ("a",), 1), Op("remove", ("b",)), Op("increment", ("c",), None, 2))


def test_decoded_path_forms() -> None:
    """§6.3: field path "" is the root; segment paths absent/null/""/[] are the root; "k" is ["k"]."""
    assert decode_ops([set_("", 1)])[0].path == ()
    assert decode_ops([set_("a.b", 1)])[0].path == ("a.b",)
    for path in (ROOT, None, "", []):
        assert decode_ops([merge(path, {})])[0].path == ()
    assert decode_ops([append("k", 1)])[0].path == ("k",)
    assert decode_ops([append(["a", "b"], 1)])[0].path == ("a", "b")
    assert decode_ops([append([""], 1)])[0].path == ("",)


def test_apply_ops_with_undecodable_raw_ops_raises_before_any_op() -> None:
    """A8, §3.2 rule 3: one bad op (even the last) rejects the whole request."""
    with pytest.raises(OpsDecodeError, match=r"^ops\[1\]: unknown variant `push`"):
        apply_ops({}, [set_("a", 1), {"type": "push", "value": 1}])


def test_apply_ops_accepts_decoded_and_raw_ops_alike() -> None:
    """apply_ops takes decode_ops output or the raw wire array, with the same result."""
    raw = [set_("a", 1), merge("b", {"c": 2}), inc("n", 3), append(ROOT, 1)]
    assert apply_ops({}, raw) == apply_ops({}, decode_ops(raw))
    assert apply_ops({}, tuple(decode_ops(raw))) == apply_ops({}, list(decode_ops(raw)))


def test_serde_unexpected_names() -> None:
    """§3.2: serde_json's names of unexpected values."""
    assert serde_unexpected(None) == "null"
    assert serde_unexpected(False) == "boolean `false`"
    assert serde_unexpected(-3) == "integer `-3`"
    assert serde_unexpected(1e100) == "floating point `1e100`"
    assert serde_unexpected('a"b') == 'string "a\\"b"'
    assert serde_unexpected([1]) == "sequence"
    assert serde_unexpected({"a": 1}) == "map"
    assert invalid_type(1, "a string") == "invalid type: integer `1`, expected a string"


def test_json_type_and_depth() -> None:
    """§3.4 rule 4 type names; §6.6.2 depth: scalar 0, {} 1, {"a":{"b":1}} 2."""
    assert [json_type(v) for v in (None, True, 0, 1.5, "", [], {})] == [
        "null", "boolean", "number", "number", "string", "array", "object",
    ]  # fmt: skip
    assert [json_depth(v) for v in (1, {}, [], {"a": {"b": 1}}, [[], [[{}]]])] == [0, 1, 1, 2, 4]


def test_json_depth_handles_hostile_depth() -> None:
    """json_depth is iterative: a 100000-deep value does not hit the recursion limit."""
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert json_depth({"a": value}) == 100_001
    result = apply_ops({}, [merge(ROOT, {"a": value})])
    assert result.errors[0]["message"] == "Merge value JSON nesting depth 100001 exceeds maximum of 16"


# -- properties (hypothesis) ------------------------------------------------------------------------

DOCUMENTED_CODES = (
    {
        "set.target_not_object",
        "increment.target_not_object",
        "decrement.target_not_object",
        "increment.not_number",
        "decrement.not_number",
        "append.target_not_object",
        "append.type_mismatch",
        "remove.target_not_object",
        "merge.value.not_an_object",
        "merge.value.too_many_keys",
        "merge.value.proto_polluted",
        "merge.value.too_deep",
    }
    | {
        f"{op}.path.{c}"
        for op in ("set", "increment", "decrement", "remove")
        for c in ("segment_too_long", "proto_polluted")
    }
    | {
        f"{op}.path.{c}"
        for op in ("merge", "append")
        for c in ("too_deep", "empty_segment", "segment_too_long", "proto_polluted")
    }
)  # fmt: skip

keys = st.one_of(
    st.sampled_from(["a", "b", "", "__proto__", "constructor", "prototype", "a.b", "x" * 257]),
    st.text(max_size=5),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=I64_MIN, max_value=U64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=20,
)
segment_paths = st.one_of(
    st.none(), keys, st.lists(keys, max_size=4), st.lists(keys, min_size=33, max_size=34)
)
bys = st.one_of(
    st.integers(min_value=I64_MIN, max_value=I64_MAX),
    st.sampled_from([0, 1, -1, I64_MIN, I64_MAX]),
)


@st.composite
def valid_ops(draw: st.DrawFn) -> dict[str, Any]:
    op_type = draw(st.sampled_from(["set", "merge", "increment", "decrement", "append", "remove"]))
    op: dict[str, Any] = {"type": op_type}
    if op_type in ("merge", "append"):
        path = draw(st.one_of(st.just(_ABSENT), segment_paths))
        if path is not _ABSENT:
            op["path"] = path
        op["value"] = draw(
            st.one_of(json_values, st.dictionaries(keys, json_values, max_size=3))
            if op_type == "merge"
            else json_values
        )
    else:
        op["path"] = draw(keys)
        if op_type in ("increment", "decrement"):
            op["by"] = draw(bys)
        elif op_type == "set" and draw(st.booleans()):
            op["value"] = draw(json_values)
    if draw(st.booleans()):
        op["_caller_worker_id"] = draw(scalars)
    return op


garbage_ops = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["type", "path", "value", "by", "extra"]),
        st.one_of(json_values, st.sampled_from(["set", "merge", "increment", "append", "remove", "x"])),
    ),
)
op_lists = st.lists(st.one_of(valid_ops(), valid_ops(), valid_ops(), garbage_ops), max_size=8)


def is_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    return False


@settings(max_examples=400)
@given(st.one_of(st.just(MISSING), json_values), st.one_of(op_lists, json_values))
def test_only_documented_outcomes(start: Any, ops: Any) -> None:
    """Arbitrary values and op lists: a decode error, or a result with documented codes only."""
    snapshot = exact(start) if start is not MISSING else None
    ops_snapshot = exact(ops)
    try:
        result = apply_ops(start, ops)
    except OpsDecodeError as exc:
        assert exc.detail and exc.code == "deserialization_error"
        assert exact(ops) == ops_snapshot
        return
    assert exact(ops) == ops_snapshot
    if start is not MISSING:
        assert exact(start) == snapshot
    assert is_json(result.new_value)
    indexes = [e["op_index"] for e in result.errors]
    assert indexes == sorted(set(indexes)) and all(0 <= i < len(ops) for i in indexes)
    for error in result.errors:
        assert set(error) == {"op_index", "code", "message", "doc_url"}
        assert error["code"] in DOCUMENTED_CODES and error["doc_url"] == DOC_URL
        assert isinstance(error["message"], str) and error["message"]
    if not result.changed:
        assert result.new_value is start or (start is MISSING and result.new_value == {})
    # Deterministic: a re-run (optimistic-concurrency retry, §6.1) gives the same outcome.
    again = apply_ops(start, ops)
    assert exact(again.new_value) == exact(result.new_value) and again.errors == result.errors


@given(st.one_of(st.just(MISSING), json_values), st.lists(valid_ops(), max_size=8))
def test_valid_ops_always_decode_and_never_raise(start: Any, ops: list[dict[str, Any]]) -> None:
    """Well-formed ops never raise, whatever the value; raw and decoded ops agree."""
    result = apply_ops(start, ops)
    assert result == apply_ops(start, decode_ops(ops))


@given(
    st.dictionaries(keys, json_values, max_size=4),
    st.text(min_size=1, max_size=10),
    st.integers(min_value=I64_MIN, max_value=U64_MAX),
    bys,
)
def test_increment_then_decrement_is_identity(start: dict[str, Any], key: str, n: int, by: int) -> None:
    """increment then decrement by the same int restores an integer field (when both stay in range)."""
    assume(key not in ("__proto__", "constructor", "prototype") and len(key.encode()) <= 256)
    assume(I64_MIN <= n + by <= U64_MAX)
    value = {**start, key: n}
    result = apply_ops(value, [inc(key, by), dec(key, by)])
    assert result.errors == []
    assert exact(result.new_value) == exact(value)


@given(json_values, st.text(max_size=10), json_values)
def test_set_then_get(start: Any, key: str, value: Any) -> None:
    """set p v then reading p gives v, other keys unchanged; on a non-object root the op fails."""
    assume(key not in ("__proto__", "constructor", "prototype"))
    result = apply_ops(start, [set_(key, value)])
    if key == "":
        assert result.new_value is value
    elif isinstance(start, dict):
        assert result.errors == []
        assert result.new_value[key] is value
        assert {k: v for k, v in result.new_value.items() if k != key} == {
            k: v for k, v in start.items() if k != key
        }
    else:
        assert codes(result) == [(0, "set.target_not_object")]


@given(
    json_values,
    st.lists(st.text(min_size=1, max_size=5), max_size=5),
    st.dictionaries(keys, json_values, max_size=3),
)
def test_merge_then_walk(start: Any, path: list[str], value: dict[str, Any]) -> None:
    """After a valid merge at a path, walking the path reaches an object holding the merged keys."""
    assume(not any(s in ("__proto__", "constructor", "prototype") for s in path))
    assume(not any(k in ("__proto__", "constructor", "prototype") for k in value))
    result = apply_ops(start, [merge(path, value)])
    assert result.errors == []
    if not path and not isinstance(start, dict):
        assert result.new_value is start  # the silent no-op
        return
    node = result.new_value
    for segment in path:
        node = node[segment]
    assert isinstance(node, dict)
    assert all(node[k] is v for k, v in value.items())


@given(st.lists(json_values, min_size=1, max_size=6), st.text(min_size=1, max_size=5))
def test_appends_to_missing_field_collect_in_order(values: list[Any], key: str) -> None:
    """Appending non-string values to a missing field collects them in order."""
    assume(key not in ("__proto__", "constructor", "prototype"))
    assume(not isinstance(values[0], str))
    result = apply_ops({}, [append(key, v) for v in values])
    if all(not isinstance(v, str) for v in values):
        assert result.errors == [] and result.new_value == {key: values}
