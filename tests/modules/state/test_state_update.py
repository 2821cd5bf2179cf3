"""state::update through the engine on every adapter (spec/state.md §5.4, §6; checklist D-I).

The interpreter itself is unit-tested in ``test_ops.py``; here every case goes through the function,
the adapter's atomic read-compute-write and the event, so the adapters cannot drift (D4).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from state_harness import NO_RESULT, StateHarness, watch

from pyiii import III

DOC_URL = "https://iii.dev/docs/workers/iii-state#error-codes"
MISSING: Any = object()


def inc(path: str, by: int) -> dict[str, Any]:
    return {"type": "increment", "path": path, "by": by}


def dec(path: str, by: int) -> dict[str, Any]:
    return {"type": "decrement", "path": path, "by": by}


def set_(path: str, *value: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "set", "path": path}
    if value:
        op["value"] = value[0]
    return op


def merge(path: Any, value: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "merge", "value": value}
    if path is not MISSING:
        op["path"] = path
    return op


def append(path: Any, value: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "append", "value": value}
    if path is not MISSING:
        op["path"] = path
    return op


def remove(path: str) -> dict[str, Any]:
    return {"type": "remove", "path": path}


async def run(state: StateHarness, start: Any, ops: list[dict[str, Any]], key: str = "k") -> dict[str, Any]:
    """Store ``start`` (unless MISSING), apply ``ops``; the update result."""
    if start is not MISSING:
        await state.set("s", key, start)
    result: dict[str, Any] = await state.update("s", key, ops)
    stored = await state.get("s", key)
    assert stored == result["new_value"]
    assert json.dumps(stored, sort_keys=True) == json.dumps(result["new_value"], sort_keys=True)
    return result


def codes(result: dict[str, Any]) -> list[tuple[int, str]]:
    return [(e["op_index"], e["code"]) for e in result.get("errors", [])]


# §6.8 worked examples: (start, ops, new_value, [(op_index, code, message fragment)])
WORKED_EXAMPLES: list[tuple[Any, list[dict[str, Any]], Any, list[tuple[int, str, str]]]] = [
    (MISSING, [], {}, []),
    (MISSING, [inc("counter", 1)], {"counter": 1}, []),
    (MISSING, [inc("", 3)], 3, []),
    (MISSING, [dec("n", 3)], {"n": -3}, []),
    (MISSING, [append(MISSING, "hello")], "hello", []),
    (MISSING, [append(MISSING, {"k": 1})], [{"k": 1}], []),
    (
        MISSING,
        [remove("x"), inc("", 3)],
        {},
        [(1, "increment.not_number", "Expected number at path 'root', got object.")],
    ),
    (MISSING, [set_("a", 1), inc("", 1)], {"a": 1}, [(1, "increment.not_number", "")]),
    (MISSING, [remove("")], None, []),
    (
        {"count": 2, "bad": "value"},
        [inc("count", 3), inc("bad", 3), inc("missing", 3)],
        {"bad": "value", "count": 5, "missing": 3},
        [(1, "increment.not_number", "Expected number at path 'bad', got string.")],
    ),
    (
        {"bad": "value", "events": {}},
        [inc("bad", 1), set_("__proto__", 1), append("events", "chunk"), set_("ok", True)],
        {"bad": "value", "events": {}, "ok": True},
        [
            (0, "increment.not_number", ""),
            (1, "set.path.proto_polluted", "Path segment '__proto__' is not allowed (prototype pollution)."),
            (
                2,
                "append.type_mismatch",
                "Cannot append at path 'events': target is object, "
                "expected array, string, null, or missing field.",
            ),
        ],
    ),
    ({"n": 10}, [inc("n", 5), dec("n", 3)], {"n": 12}, []),
    ({"n": 1.5}, [inc("n", 2), dec("n", 1)], {"n": 2.5}, []),
    (
        {"n": None},
        [inc("n", 1)],
        {"n": None},
        [(0, "increment.not_number", "Expected number at path 'n', got null.")],
    ),
    ({"n": 2**63 - 1}, [inc("n", 1)], {"n": 2**63}, []),
    (
        {"n": 2**64 - 1},
        [inc("n", 1)],
        {"n": 2**64 - 1},
        [(0, "increment.not_number", "Expected number at path 'n', got number.")],
    ),
    ({"n": -(2**63)}, [dec("n", 1)], {"n": -(2**63)}, [(0, "decrement.not_number", "")]),
    (
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
        None,
        [set_("a", 1)],
        None,
        [(0, "set.target_not_object", "Cannot set at path 'a': target is null, expected object.")],
    ),
    ({"": "empty-field", "keep": True}, [set_("")], None, []),
    ({"a": 1}, [set_("a.b", 2)], {"a": 1, "a.b": 2}, []),
    ({"a": 1}, [merge(MISSING, {"b": {"c": 1}, "a": 2})], {"a": 2, "b": {"c": 1}}, []),
    ("leaf", [merge(MISSING, {"a": 1})], "leaf", []),
    ("leaf", [merge("a", {"x": 1})], {"a": {"x": 1}}, []),
    (
        {"sessions": {"abc": "garbage"}},
        [merge(["sessions", "abc"], {"author": "alice"})],
        {"sessions": {"abc": {"author": "alice"}}},
        [],
    ),
    ({"a": {"x": 1}}, [merge("a", {"y": 2}), merge("a", {"z": 3})], {"a": {"x": 1, "y": 2, "z": 3}}, []),
    ({}, [merge(MISSING, [])], {}, [(0, "merge.value.not_an_object", "Merge value must be a JSON object")]),
    ({}, [merge(["a", "__proto__"], {"x": 1})], {}, [(0, "merge.path.proto_polluted", "")]),
    ({}, [merge(["a", ""], [1])], {}, [(0, "merge.path.empty_segment", "Path contains an empty segment")]),
    ({"buffer": []}, [append("buffer", "x")], {"buffer": ["x"]}, []),
    ({"l": [1]}, [append("l", [2, 3])], {"l": [1, [2, 3]]}, []),
    ({"t": "hello"}, [append("t", " world")], {"t": "hello world"}, []),
    (
        {"transcript": "hello"},
        [append("transcript", {"not": "string"})],
        {"transcript": "hello"},
        [(0, "append.type_mismatch", "Expected string append value at path 'transcript', got object.")],
    ),
    ({}, [append("buf", "x")], {"buf": "x"}, []),
    ({"e": {}}, [append(["e", "buf"], "x")], {"e": {"buf": ["x"]}}, []),
    ({"e": {"buf": None}}, [append(["e", "buf"], "x")], {"e": {"buf": "x"}}, []),
    (
        {"e": {"b": {"x": 1}}},
        [append(["e", "b"], "z")],
        {"e": {"b": {"x": 1}}},
        [(0, "append.type_mismatch", "Cannot append at path 'b': target is object")],
    ),
    ({"a": [1, 2, 3]}, [append(["a", "b"], 42)], {"a": {"b": [42]}}, []),
    (
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
        {"user.name": ["A"], "user": {"name": ["B"]}},
        [append("user.name", "C")],
        {"user": {"name": ["B"]}, "user.name": ["A", "C"]},
        [],
    ),
    ({"a": 1}, [remove("a"), remove("a")], {}, []),
    (
        5,
        [remove("a")],
        5,
        [(0, "remove.target_not_object", "Cannot remove at path 'a': target is number, expected object.")],
    ),
    ({"a": 1}, [remove("")], None, []),
]


@pytest.mark.parametrize(
    "start, ops, new_value, errors",
    WORKED_EXAMPLES,
    ids=[f"ex{i}" for i in range(1, len(WORKED_EXAMPLES) + 1)],
)
async def test_worked_examples(
    state: StateHarness,
    start: Any,
    ops: list[dict[str, Any]],
    new_value: Any,
    errors: list[tuple[int, str, str]],
) -> None:
    """D45: the §6.8 worked examples 1-43 give exactly the listed value and errors."""
    result = await run(state, start, ops)
    assert result["new_value"] == new_value
    assert json.dumps(result["new_value"], sort_keys=True) == json.dumps(new_value, sort_keys=True)
    assert result["old_value"] == (None if start is MISSING else start)
    assert codes(result) == [(index, code) for index, code, _ in errors]
    for error, (_, _, fragment) in zip(result.get("errors", []), errors, strict=True):
        assert fragment in error["message"]
        assert error["doc_url"] == DOC_URL
    if not errors:
        assert "errors" not in result


# ------------------------------------------------------------------------------ D. batch rules


async def test_empty_ops_on_missing_key(state: StateHarness, worker: III) -> None:
    """D39: [] on a missing key stores {}, fires created, and has no errors key."""
    recorder, _ = watch(worker, {})
    result = await state.update("s", "k", [])
    assert result == {"old_value": None, "new_value": {}}
    (event,) = await recorder.wait(1)
    assert event["event_type"] == "state:created" and event["new_value"] == {}


async def test_all_failing_ops_on_missing_key(state: StateHarness, worker: III) -> None:
    """D40: all ops failing on a missing key store {}, fire created, errors present."""
    recorder, _ = watch(worker, {})
    result = await state.update("s", "k", [set_("__proto__", 1)])
    assert result["new_value"] == {} and codes(result) == [(0, "set.path.proto_polluted")]
    (event,) = await recorder.wait(1)
    assert event["event_type"] == "state:created"


async def test_empty_ops_on_existing_key(state: StateHarness, worker: III) -> None:
    """D41: [] on an existing key leaves it unchanged and fires updated."""
    await state.set("s", "k", {"a": [1]})
    recorder, _ = watch(worker, {})
    result = await state.update("s", "k", [])
    assert result == {"old_value": {"a": [1]}, "new_value": {"a": [1]}}
    (event,) = await recorder.wait(1)
    assert event["event_type"] == "state:updated"


async def test_partial_failure(state: StateHarness) -> None:
    """D42-44: earlier and later successes are kept; op_index is the original index; doc_url is set."""
    result = await run(state, {"n": 1}, [inc("n", 1), set_("__proto__", 1), inc("n", 1), append("n", "x")])
    assert result["new_value"] == {"n": 3}
    assert codes(result) == [(1, "set.path.proto_polluted"), (3, "append.type_mismatch")]
    assert all(e["doc_url"] == DOC_URL for e in result["errors"])
    result = await run(state, MISSING, [inc("m", 1)], key="k2")
    assert "errors" not in result


# ------------------------------------------------------------------------------ E. set


async def test_set_root(state: StateHarness) -> None:
    """E46: set "" replaces the root; without a value it gives null."""
    assert (await run(state, {"a": 1}, [set_("", [1, {}])]))["new_value"] == [1, {}]
    assert (await run(state, {"a": 1}, [set_("")]))["new_value"] is None


async def test_set_dotted_key(state: StateHarness) -> None:
    """E47: set "a.b" creates the literal top-level key a.b."""
    assert (await run(state, MISSING, [set_("a.b", 1)]))["new_value"] == {"a.b": 1}


async def test_set_on_a_string_root(state: StateHarness) -> None:
    """E48: set on a string root → set.target_not_object with the exact message."""
    result = await run(state, "str", [set_("field", 1)])
    assert result["errors"][0]["message"] == "Cannot set at path 'field': target is string, expected object."


@pytest.mark.parametrize("name", ["__proto__", "constructor", "prototype"])
async def test_set_proto_paths(state: StateHarness, name: str) -> None:
    """E49: set with path __proto__, constructor, prototype → set.path.proto_polluted."""
    result = await run(state, {}, [set_(name, 1)])
    assert codes(result) == [(0, "set.path.proto_polluted")]
    assert result["new_value"] == {}


async def test_set_segment_length(state: StateHarness) -> None:
    """E50: a 257-byte path → set.path.segment_too_long; 256 bytes (multibyte) is accepted."""
    ok = "é" * 128  # 256 bytes
    too_long = "é" * 128 + "a"
    result = await run(state, {}, [set_(ok, 1), set_(too_long, 2)])
    assert result["new_value"] == {ok: 1}
    assert result["errors"][0]["code"] == "set.path.segment_too_long"
    assert result["errors"][0]["message"] == "Path segment of 257 bytes exceeds maximum of 256"


async def test_set_value_with_proto_keys(state: StateHarness) -> None:
    """E51: a set value containing __proto__ keys is accepted."""
    result = await run(state, {}, [set_("a", {"__proto__": 1, "constructor": {"prototype": 2}})])
    assert result["new_value"] == {"a": {"__proto__": 1, "constructor": {"prototype": 2}}}


async def test_set_on_null_and_missing(state: StateHarness) -> None:
    """E52: set on a stored-null root → target_not_object "target is null"; on a missing key it works."""
    result = await run(state, None, [set_("a", 1)])
    assert "target is null" in result["errors"][0]["message"]
    assert (await run(state, MISSING, [set_("a", 1)], key="k2"))["new_value"] == {"a": 1}


# ------------------------------------------------------------------------------ F. merge


async def test_root_merge(state: StateHarness) -> None:
    """F53: a root merge is shallow and overwrites same-named keys."""
    result = await run(state, {"a": {"x": 1}, "b": 1}, [merge(MISSING, {"a": {"y": 2}, "c": 3})])
    assert result["new_value"] == {"a": {"y": 2}, "b": 1, "c": 3}


@pytest.mark.parametrize("root", [5, "s", [1], None, True])
async def test_root_merge_on_non_objects(state: StateHarness, root: Any) -> None:
    """F54: a root merge on a scalar, array or null root is a silent no-op."""
    result = await run(state, root, [merge(MISSING, {"a": 1})])
    assert result["new_value"] == root and "errors" not in result


async def test_string_path_equals_one_segment(state: StateHarness) -> None:
    """F55: merge "x" equals merge ["x"]."""
    a = await run(state, {"x": {"a": 1}}, [merge("x", {"b": 2})], key="a")
    b = await run(state, {"x": {"a": 1}}, [merge(["x"], {"b": 2})], key="b")
    assert a["new_value"] == b["new_value"] == {"x": {"a": 1, "b": 2}}


async def test_nested_merge(state: StateHarness) -> None:
    """F56-F58: nested merge creates intermediates, replaces non-object ones, replaces a scalar root."""
    assert (await run(state, {}, [merge(["a", "b", "c"], {"v": 1})]))["new_value"] == {
        "a": {"b": {"c": {"v": 1}}}
    }
    for bad in ("s", None, [1]):
        result = await run(state, {"a": bad}, [merge(["a", "b"], {"v": 1})], key="k2")
        assert result["new_value"] == {"a": {"b": {"v": 1}}}
    assert (await run(state, 7, [merge(["a"], {"v": 1})], key="k3"))["new_value"] == {"a": {"v": 1}}


async def test_merge_literal_dotted_segment(state: StateHarness) -> None:
    """F59: ["a.b"] is one literal key."""
    assert (await run(state, {}, [merge(["a.b"], {"v": 1})]))["new_value"] == {"a.b": {"v": 1}}


async def test_merges_accumulate_across_calls(state: StateHarness) -> None:
    """F60: two merges into the same first-level key accumulate sibling keys across calls."""
    await state.update("s", "k", [merge("a", {"x": 1})])
    result = await state.update("s", "k", [merge("a", {"y": 2})])
    assert result["new_value"] == {"a": {"x": 1, "y": 2}}


async def test_merge_remove_merge(state: StateHarness) -> None:
    """F61: merge, remove, merge on the same key recreates it cleanly."""
    result = await run(state, {}, [merge("a", {"x": 1}), remove("a"), merge("a", {"y": 2})])
    assert result["new_value"] == {"a": {"y": 2}}


@pytest.mark.parametrize("value", [[], [1], "s", 1, None])
async def test_merge_non_object_value(state: StateHarness, value: Any) -> None:
    """F62: a non-object value, including an array → merge.value.not_an_object."""
    assert codes(await run(state, {}, [merge("a", value)])) == [(0, "merge.value.not_an_object")]


async def test_merge_key_count(state: StateHarness) -> None:
    """F63: 1025 top-level keys → merge.value.too_many_keys; 1024 are accepted."""
    big = {f"k{i}": i for i in range(1025)}
    result = await run(state, {}, [merge(MISSING, big)])
    assert result["errors"][0]["message"] == "Merge value has 1025 top-level keys, exceeds maximum of 1024"
    del big["k0"]
    assert len((await run(state, {}, [merge(MISSING, big)], key="k2"))["new_value"]) == 1024


async def test_merge_proto_keys(state: StateHarness) -> None:
    """F64: a top-level __proto__ → merge.value.proto_polluted (quoted); a nested one is accepted."""
    result = await run(state, {}, [merge(MISSING, {"ok": 1, "__proto__": 1})])
    assert result["errors"][0]["code"] == "merge.value.proto_polluted"
    assert '"__proto__"' in result["errors"][0]["message"]
    assert (await run(state, {}, [merge(MISSING, {"a": {"__proto__": 1}})], key="k2"))["new_value"] == {
        "a": {"__proto__": 1}
    }


def nested(depth: int) -> Any:
    """An object of nesting ``depth`` made of alternating objects and arrays (§6.6.2: arrays count)."""
    value: Any = {}
    for level in range(depth - 1):
        value = {"a": value} if (depth - level) % 2 == 0 else [value]
    assert isinstance(value, dict) and _depth(value) == depth
    return value


async def test_merge_depth(state: StateHarness) -> None:
    """F65: depth 17 → merge.value.too_deep (message shows 17); depth 16 passes; arrays count."""
    result = await run(state, {}, [merge(MISSING, nested(17))])
    assert result["errors"][0]["code"] == "merge.value.too_deep"
    assert result["errors"][0]["message"] == "Merge value JSON nesting depth 17 exceeds maximum of 16"
    assert "errors" not in await run(state, {}, [merge(MISSING, nested(16))], key="k2")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


async def test_merge_path_depth(state: StateHarness) -> None:
    """F66: 33 segments → merge.path.too_deep; 32 are accepted."""
    result = await run(state, {}, [merge([f"s{i}" for i in range(33)], {"v": 1})])
    assert result["errors"][0]["message"] == "Path depth 33 exceeds maximum of 32"
    assert "errors" not in await run(state, {}, [merge([f"s{i}" for i in range(32)], {"v": 1})], key="k2")


async def test_merge_empty_segments(state: StateHarness) -> None:
    """F67: ["a", ""] and [""] → merge.path.empty_segment; "" means root."""
    result = await run(state, {}, [merge(["a", ""], {"v": 1}), merge([""], {"v": 1}), merge("", {"v": 1})])
    assert codes(result) == [(0, "merge.path.empty_segment"), (1, "merge.path.empty_segment")]
    assert result["new_value"] == {"v": 1}


@pytest.mark.parametrize("path", [["__proto__", "a"], ["a", "constructor", "b"], ["a", "prototype"]])
async def test_merge_proto_segments(state: StateHarness, path: list[str]) -> None:
    """F68: __proto__ as first, middle or last segment → error and no intermediates created."""
    result = await run(state, {}, [merge(path, {"v": 1})])
    assert codes(result) == [(0, "merge.path.proto_polluted")] and result["new_value"] == {}


async def test_merge_path_error_wins(state: StateHarness) -> None:
    """F69: an invalid path and an invalid value together report only the path error."""
    assert codes(await run(state, {}, [merge(["a", "__proto__"], [1])])) == [(0, "merge.path.proto_polluted")]


# ------------------------------------------------------------------------------ G. increment/decrement


async def test_increment_rules(state: StateHarness) -> None:
    """G70-G72: missing field → by / -by; integers add and subtract; a float field stays float."""
    result = await run(
        state, {"f": 1.5, "i": 10}, [inc("a", 4), dec("b", 4), inc("i", 2), dec("i", 5), inc("f", 2)]
    )
    assert result["new_value"] == {"a": 4, "b": -4, "f": 3.5, "i": 7}
    result = await run(state, {"f": 1.5}, [inc("f", 2), dec("f", 1)], key="k2")
    assert result["new_value"] == {"f": 2.5} and type(result["new_value"]["f"]) is float


@pytest.mark.parametrize(
    "value, type_name", [("s", "string"), (None, "null"), (True, "boolean"), ({}, "object"), ([], "array")]
)
@pytest.mark.parametrize("by", [1, 0])
async def test_increment_non_numbers(state: StateHarness, value: Any, type_name: str, by: int) -> None:
    """G73-G74: a non-number field → not_number "got {type}" (null is not missing; by 0 still checks)."""
    result = await run(state, {"x": value}, [inc("x", by), dec("x", by)])
    assert codes(result) == [(0, "increment.not_number"), (1, "decrement.not_number")]
    assert result["errors"][0]["message"] == f"Expected number at path 'x', got {type_name}."


async def test_increment_range(state: StateHarness) -> None:
    """G75-G76: i64 max+1 is exact; u64 max+1 and i64 min-1 fail; decrement of missing by i64 min."""
    result = await run(
        state,
        {"a": 2**63 - 1, "b": 2**64 - 1, "c": -(2**63)},
        [inc("a", 1), inc("b", 1), dec("c", 1), dec("d", -(2**63))],
    )
    assert result["new_value"] == {"a": 2**63, "b": 2**64 - 1, "c": -(2**63), "d": 2**63}
    assert codes(result) == [(1, "increment.not_number"), (2, "decrement.not_number")]
    assert result["errors"][0]["message"] == "Expected number at path 'b', got number."


async def test_root_increment(state: StateHarness) -> None:
    """G77-G78: root increment: missing → by; number → sum; object → not_number; set then root fails."""
    assert (await run(state, MISSING, [inc("", 5)]))["new_value"] == 5
    assert (await run(state, 5, [inc("", 5)], key="k2"))["new_value"] == 10
    result = await run(state, {"a": 1}, [inc("", 1)], key="k3")
    assert result["errors"][0]["message"] == "Expected number at path 'root', got object."
    assert codes(await run(state, MISSING, [set_("a", 1), inc("", 1)], key="k4")) == [
        (1, "increment.not_number")
    ]


async def test_increment_on_string_root(state: StateHarness) -> None:
    """G79: increment / decrement of a field on a string root → *.target_not_object."""
    result = await run(state, "s", [inc("a", 1), dec("a", 1)])
    assert codes(result) == [(0, "increment.target_not_object"), (1, "decrement.target_not_object")]
    assert (
        result["errors"][1]["message"] == "Cannot decrement at path 'a': target is string, expected object."
    )


async def test_increment_order_and_proto(state: StateHarness) -> None:
    """G80-G81: +5 then -3 apply in order (10 → 12); path __proto__ → increment.path.proto_polluted."""
    result = await run(state, {"n": 10}, [inc("n", 5), dec("n", 3), inc("__proto__", 1)])
    assert result["new_value"] == {"n": 12}
    assert codes(result) == [(2, "increment.path.proto_polluted")]


# ------------------------------------------------------------------------------ H. append


async def test_append_rules(state: StateHarness) -> None:
    """H82-H85: push (an array value nests), string concat, mismatches, missing and null fields."""
    result = await run(
        state,
        {"arr": [1], "str": "a", "nul": None},
        [
            append("arr", [2]),
            append("str", "b"),
            append("str", {"x": 1}),
            append("new_s", "s"),
            append("new_o", {"o": 1}),
            append("nul", "t"),
        ],
    )
    assert result["new_value"] == {
        "arr": [1, [2]],
        "new_o": [{"o": 1}],
        "new_s": "s",
        "nul": "t",
        "str": "ab",
    }
    assert result["errors"] == [
        {
            "code": "append.type_mismatch",
            "doc_url": DOC_URL,
            "message": "Expected string append value at path 'str', got object.",
            "op_index": 2,
        }
    ]
    result = await run(state, {"nul": None}, [append("nul", 5)], key="k2")
    assert result["new_value"] == {"nul": [5]}


@pytest.mark.parametrize("target, type_name", [({}, "object"), (3, "number"), (False, "boolean")])
async def test_append_to_bad_fields(state: StateHarness, target: Any, type_name: str) -> None:
    """H86: an object, number or boolean field → type_mismatch naming what append accepts."""
    result = await run(state, {"f": target}, [append("f", "x")])
    assert result["errors"][0]["message"] == (
        f"Cannot append at path 'f': target is {type_name}, expected array, string, null, or missing field."
    )


async def test_root_append(state: StateHarness) -> None:
    """H87: root append: missing+string → string, missing+object → [obj], [] → ["x"], object root fails."""
    assert (await run(state, MISSING, [append(MISSING, "s")]))["new_value"] == "s"
    assert (await run(state, MISSING, [append(None, {"a": 1})], key="k2"))["new_value"] == [{"a": 1}]
    assert (await run(state, [], [append([], "x")], key="k3"))["new_value"] == ["x"]
    result = await run(state, {"a": 1}, [append("", "x")], key="k4")
    assert "path 'root'" in result["errors"][0]["message"]
    assert result["errors"][0]["code"] == "append.type_mismatch"


async def test_append_on_non_object_root(state: StateHarness) -> None:
    """H88: a non-root append on a non-object root → append.target_not_object "[events]", root unchanged."""
    result = await run(state, "s", [append("events", 1)])
    assert (
        result["errors"][0]["message"]
        == "Cannot append at path '[events]': target is string, expected object."
    )
    assert result["new_value"] == "s"


async def test_nested_append(state: StateHarness) -> None:
    """H89-H91: nested append creates intermediates (leaf always an array) and pushes onto arrays."""
    assert (await run(state, {}, [append(["a", "b"], "s")]))["new_value"] == {"a": {"b": ["s"]}}
    result = await run(state, {"a": {"b": [1], "o": {"x": 1}, "n": None}}, [append(["a", "b"], 2)], key="k2")
    assert result["new_value"]["a"]["b"] == [1, 2]
    result = await run(state, {"a": {"o": {"x": 1}}}, [append(["a", "o"], 2)], key="k3")
    assert "path 'o'" in result["errors"][0]["message"]
    assert (await run(state, {"a": {"n": None}}, [append(["a", "n"], "s")], key="k4"))["new_value"] == {
        "a": {"n": "s"}
    }
    assert (await run(state, {"a": [1]}, [append(["a", "b"], 1)], key="k5"))["new_value"] == {"a": {"b": [1]}}


async def test_dotted_append_path(state: StateHarness) -> None:
    """H92: a dotted string path is a literal key; the nested structure is untouched."""
    result = await run(state, {"a": {"b": []}}, [append("a.b", 1)])
    assert result["new_value"] == {"a": {"b": []}, "a.b": [1]}


@pytest.mark.parametrize("path", ["__proto__", ["a", "constructor"], ["__proto__", "x"]])
async def test_append_proto_paths(state: StateHarness, path: Any) -> None:
    """H93: __proto__ or constructor at any segment → append.path.proto_polluted, nothing created."""
    result = await run(state, {}, [append(path, 1)])
    assert codes(result) == [(0, "append.path.proto_polluted")] and result["new_value"] == {}


async def test_two_appends_keep_order(state: StateHarness) -> None:
    """H94: two appends in one call keep their order."""
    assert (await run(state, {"l": []}, [append("l", 1), append("l", 2)]))["new_value"] == {"l": [1, 2]}


async def test_concurrent_appends(state: StateHarness) -> None:
    """H95: 100 concurrent appends to one key all land."""
    await asyncio.gather(*(state.update("s", "k", [append("log", i)]) for i in range(100)))
    assert sorted((await state.get("s", "k"))["log"]) == list(range(100))


# ------------------------------------------------------------------------------ I. remove


async def test_remove(state: StateHarness, worker: III) -> None:
    """I96-I98: remove a field (absent is fine); remove "" keeps the key as null; scalar roots fail."""
    assert (await run(state, {"a": 1, "b": 2}, [remove("a"), remove("zz")]))["new_value"] == {"b": 2}
    recorder, _ = watch(worker, {"key": "k2"})
    await state.set("s", "k2", {"a": 1})
    result = await state.update("s", "k2", [remove("")])
    assert result["new_value"] is None and await state.get("s", "k2") is None
    events = await recorder.wait(2)
    assert events[1]["event_type"] == "state:updated"
    assert await state.keys("s") == ["k", "k2"]
    result = await run(state, 1, [remove("a"), remove("__proto__")], key="k3")
    assert codes(result) == [(0, "remove.target_not_object"), (1, "remove.path.proto_polluted")]


# ------------------------------------------------------------------------------ M. parity details


async def test_empty_arrays_survive_updates(state: StateHarness) -> None:
    """M136: after any update, empty arrays anywhere in the value are still arrays."""
    start = {"a": [], "b": {"c": [], "d": [[]]}, "n": 0}
    result = await run(state, start, [inc("n", 1), merge("b", {"e": []}), append(["x", "y"], [])])
    assert result["new_value"] == {"a": [], "b": {"c": [], "d": [[]], "e": []}, "n": 1, "x": {"y": [[]]}}
    assert json.dumps(await state.get("s", "k"), sort_keys=True).count("[]") == 5


@pytest.mark.parametrize("number", [2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1])
async def test_big_integers_through_update(state: StateHarness, number: int) -> None:
    """M137: 2^53+1, 2^63-1, 2^63 and 2^64-1 stay exact through set and update."""
    result = await run(state, {"n": number, "m": 0}, [inc("m", 1)])
    assert result["new_value"] == {"m": 1, "n": number} and type(result["new_value"]["n"]) is int
    assert (await state.get("s", "k"))["n"] == number


async def test_parity_edge_cases(state: StateHarness) -> None:
    """M138: merge value [] → not_an_object; append onto an empty-object leaf → type_mismatch."""
    assert codes(await run(state, {}, [merge(MISSING, [])])) == [(0, "merge.value.not_an_object")]
    assert codes(await run(state, {"e": {}}, [append("e", 1)], key="k2")) == [(0, "append.type_mismatch")]


async def test_update_of_a_missing_key_reports_no_old_value(state: StateHarness) -> None:
    """§3.3 rule 3: old_value is always present (null for a missing key)."""
    result = await state.update("s", "new", [set_("a", 1)])
    assert "old_value" in result and result["old_value"] is None
    assert await state.get("s", "other") is NO_RESULT
