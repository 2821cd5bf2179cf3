"""The state functions' inputs and results on every adapter (spec/state.md §3-§5; checklist A, B, C)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from state_harness import NO_RESULT, Recorder, StateHarness, watch

from pyiii import III

DESER = "deserialization_error"

ALL_FUNCTIONS = [
    ("state::set", {"scope": "s", "key": "k", "value": 1}),
    ("state::get", {"scope": "s", "key": "k"}),
    ("state::delete", {"scope": "s", "key": "k"}),
    ("state::update", {"scope": "s", "key": "k", "ops": []}),
    ("state::list", {"scope": "s"}),
    ("state::list_keys", {"scope": "s"}),
    ("state::list_entries", {"scope": "s"}),
]


def encoded_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# ------------------------------------------------------------------------------ A. input and wire


async def test_set_accepts_data_as_value(state: StateHarness) -> None:
    """A1: state::set with `data` instead of `value` stores the value."""
    result = await state.call("state::set", {"scope": "s", "key": "k", "data": {"a": 1}})
    assert result == {"old_value": None, "new_value": {"a": 1}}
    assert await state.get("s", "k") == {"a": 1}


async def test_set_without_value_or_data(state: StateHarness) -> None:
    """A2: neither value nor data → deserialization_error naming `value`, nothing stored."""
    error = await state.error("state::set", {"scope": "s", "key": "k"})
    assert error.code == DESER
    assert error.message == "Failed to deserialize input for state::set: missing field `value`"
    assert await state.get("s", "k") is NO_RESULT


async def test_null_value_is_present(state: StateHarness, worker: III) -> None:
    """A3: value null is stored and present: get null, listed, and a second set fires updated."""
    recorder, _ = watch(worker, {"scope": "s"})
    assert await state.set("s", "k", None) == {"old_value": None, "new_value": None}
    assert await state.get("s", "k") is None
    assert await state.call("state::list", {"scope": "s"}) == [None]
    assert await state.keys("s") == ["k"]
    await state.set("s", "k", 2)
    events = await recorder.wait(2)
    assert [e["event_type"] for e in events] == ["state:created", "state:updated"]
    assert events[1]["old_value"] is None


async def test_set_with_value_and_data(state: StateHarness) -> None:
    """A4: both value and data → deserialization_error (duplicate field)."""
    error = await state.error("state::set", {"scope": "s", "key": "k", "value": 1, "data": 2})
    assert (error.code, error.message) == (
        DESER,
        "Failed to deserialize input for state::set: duplicate field `value`",
    )
    assert await state.get("s", "k") is NO_RESULT


@pytest.mark.parametrize(
    "function_id, payload, field",
    [(f, p, field) for f, p in ALL_FUNCTIONS for field in ("scope", "key") if field in p],
)
async def test_non_string_scope_or_key(
    state: StateHarness, function_id: str, payload: dict[str, Any], field: str
) -> None:
    """A5: a non-string scope or key → deserialization_error with the serde text."""
    error = await state.error(function_id, {**payload, field: 1})
    assert error.code == DESER
    assert error.message == (
        f"Failed to deserialize input for {function_id}: invalid type: integer `1`, expected a string"
    )


@pytest.mark.parametrize("function_id, payload", ALL_FUNCTIONS)
async def test_missing_scope(state: StateHarness, function_id: str, payload: dict[str, Any]) -> None:
    """§3.2: a missing field is named by serde's text."""
    payload = {k: v for k, v in payload.items() if k != "scope"}
    error = await state.error(function_id, payload)
    assert error.message == f"Failed to deserialize input for {function_id}: missing field `scope`"


@pytest.mark.parametrize("function_id, payload", [*ALL_FUNCTIONS, ("state::list_groups", {})])
@pytest.mark.parametrize(
    "data, detail",
    [(None, "invalid type: null"), ("x", 'invalid type: string "x"'), ([1], "invalid type: sequence")],
)
async def test_payload_not_an_object(
    state: StateHarness, function_id: str, payload: Any, data: Any, detail: str
) -> None:
    """§3.2: a null, string or array payload → deserialization_error `expected struct <Name>`."""
    error = await state.error(function_id, data)
    assert error.code == DESER
    prefix = f"Failed to deserialize input for {function_id}: "
    assert error.message.startswith(f"{prefix}{detail}, expected struct ")


async def test_unknown_fields_are_ignored(state: StateHarness) -> None:
    """A6: unknown fields (including _caller_worker_id) in inputs and ops are ignored."""
    extra = {"_caller_worker_id": "w-1", "extra": [1, 2]}
    await state.call("state::set", {"scope": "s", "key": "k", "value": {"n": 1}, **extra})
    assert await state.call("state::get", {"scope": "s", "key": "k", **extra}) == {"n": 1}
    result = await state.call(
        "state::update",
        {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1, "x": 1}], **extra},
    )
    assert result["new_value"] == {"n": 2} and "errors" not in result
    assert await state.call("state::list", {"scope": "s", **extra}) == [{"n": 2}]
    assert await state.call("state::list_keys", {"scope": "s", **extra}) == {"keys": ["k"]}
    assert await state.call("state::list_entries", {"scope": "s", **extra}) == {
        "entries": [{"key": "k", "value": {"n": 2}}]
    }
    assert await state.call("state::list_groups", extra) == {"groups": ["s"]}
    assert await state.call("state::delete", {"scope": "s", "key": "k", **extra}) == {"n": 2}


async def test_list_groups_payloads(state: StateHarness) -> None:
    """A7: list_groups with {} works; a null payload → deserialization_error."""
    assert await state.call("state::list_groups", {}) == {"groups": []}
    error = await state.error("state::list_groups", None)
    assert error.message == (
        "Failed to deserialize input for state::list_groups: "
        "invalid type: null, expected struct StateListGroupsInput"
    )


async def test_unknown_op_rejects_the_whole_update(state: StateHarness, worker: III) -> None:
    """A8: an unknown op type rejects the update: nothing stored, no event."""
    recorder, _ = watch(worker, {})
    ops = [{"type": "set", "path": "a", "value": 1}, {"type": "Set", "path": "b"}]
    error = await state.error("state::update", {"scope": "s", "key": "k", "ops": ops})
    assert error.code == DESER
    assert error.message == (
        "Failed to deserialize input for state::update: ops[1]: unknown variant `Set`, expected one of "
        "`set`, `merge`, `increment`, `decrement`, `append`, `remove`"
    )
    assert await state.get("s", "k") is NO_RESULT
    await state.idle()
    assert recorder.events == []


@pytest.mark.parametrize("by", [1.5, 1.0, True, "1", 2**63, None])
async def test_bad_by(state: StateHarness, by: Any) -> None:
    """A9: `by` of 1.5, 1.0, true, "1", 2**63 or missing → deserialization_error naming `by`."""
    op: dict[str, Any] = {"type": "increment", "path": "n"}
    if by is not None:
        op["by"] = by
    error = await state.error("state::update", {"scope": "s", "key": "k", "ops": [op]})
    assert error.code == DESER
    assert "by" in error.message
    assert error.message.startswith("Failed to deserialize input for state::update: ops[0]")
    assert await state.get("s", "k") is NO_RESULT


@pytest.mark.parametrize("op_type", ["set", "increment", "decrement", "remove"])
async def test_array_path_on_field_path_ops(state: StateHarness, op_type: str) -> None:
    """A10: path ["a"] on set, increment, decrement or remove → deserialization_error."""
    error = await state.error(
        "state::update", {"scope": "s", "key": "k", "ops": [{"type": op_type, "path": ["a"], "by": 1}]}
    )
    assert error.message == (
        "Failed to deserialize input for state::update: "
        "ops[0].path: invalid type: sequence, expected a string"
    )


@pytest.mark.parametrize("path", ["absent", None, "", []])
async def test_root_paths_of_merge_and_append(state: StateHarness, path: Any) -> None:
    """A11: merge/append with path absent, null, "" or [] act on the root."""

    def op(kind: str, value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind, "value": value}
        if path != "absent":
            out["path"] = path
        return out

    result = await state.update("s", "m", [op("merge", {"a": 1})])
    assert result["new_value"] == {"a": 1}
    result = await state.update("s", "a", [op("append", "x")])
    assert result["new_value"] == "x"


async def test_empty_scope_and_key(state: StateHarness) -> None:
    """A12: the empty scope and the empty key are accepted by every function."""
    assert await state.set("", "", 1) == {"old_value": None, "new_value": 1}
    assert await state.get("", "") == 1
    assert (await state.update("", "", [{"type": "increment", "path": "", "by": 1}]))["new_value"] == 2
    assert await state.call("state::list", {"scope": ""}) == [2]
    assert await state.keys("") == [""]
    assert await state.call("state::list_entries", {"scope": ""}) == {"entries": [{"key": "", "value": 2}]}
    assert await state.groups() == [""]
    assert await state.delete("", "") == 2
    assert await state.groups() == []


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63), 2**53 + 1, [], {}, [[], {}], {"a": []}])
async def test_exact_values_round_trip(state: StateHarness, value: Any) -> None:
    """A13: integers 2^63 and 2^64-1, [] and {} round-trip exactly through set/get."""
    assert (await state.set("s", "k", value))["new_value"] == value
    got = await state.get("s", "k")
    assert got == value and type(got) is type(value)
    assert json.dumps(got) == json.dumps(value)


async def test_numbers_outside_the_exact_range_become_doubles(state: StateHarness) -> None:
    """§3.4: an integer beyond 2^64-1 is stored as the nearest double; a double stays a double."""
    await state.set("s", "k", {"big": 2**64, "neg": -(2**63) - 1, "f": 1.0})
    got = await state.get("s", "k")
    assert got == {"big": float(2**64), "f": 1.0, "neg": float(-(2**63) - 1)}
    assert all(type(v) is float for v in got.values())


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), {"a": [float("-inf")]}, 10**400])
async def test_non_finite_numbers_are_rejected(state: StateHarness, bad: Any) -> None:
    """§3.4 rule 3: a number that is not a finite double → deserialization_error, nothing stored."""
    error = await state.error("state::set", {"scope": "s", "key": "k", "value": bad})
    assert error.code == DESER and error.message.startswith("Failed to deserialize input for state::set: ")
    error = await state.error(
        "state::update", {"scope": "s", "key": "k", "ops": [{"type": "set", "path": "a", "value": bad}]}
    )
    assert error.code == DESER
    assert await state.get("s", "k") is NO_RESULT


async def test_objects_have_sorted_keys(state: StateHarness, worker: III) -> None:
    """A14: objects in results and events have their keys in sorted order."""
    recorder, _ = watch(worker, {})
    result = await state.set("s", "k", {"b": 1, "a": {"z": 1, "y": 2}})
    assert list(result) == ["new_value", "old_value"]
    assert list(result["new_value"]) == ["a", "b"] and list(result["new_value"]["a"]) == ["y", "z"]
    result = await state.update("s", "k", [{"type": "set", "path": "0", "value": 1}])
    assert list(result["new_value"]) == ["0", "a", "b"]
    result = await state.update("s", "k", [{"type": "increment", "path": "a", "by": 1}])
    assert list(result) == ["errors", "new_value", "old_value"]
    assert list(result["errors"][0]) == ["code", "doc_url", "message", "op_index"]
    events = await recorder.wait(3)
    assert list(events[0]) == ["event_type", "key", "new_value", "old_value", "scope", "type"]
    assert list((await state.get("s", "k"))["a"]) == ["y", "z"]


# ------------------------------------------------------------------------------ B. set/get/delete/list


async def test_set_results(state: StateHarness) -> None:
    """B15: a new set returns old_value null; an overwrite returns the previous value."""
    first = await state.set("users", "u1", {"name": "Ada"})
    assert first == {"old_value": None, "new_value": {"name": "Ada"}}
    assert await state.call("state::set", {"scope": "users", "key": "u1", "data": {"name": "Bob"}}) == {
        "old_value": {"name": "Ada"},
        "new_value": {"name": "Bob"},
    }


async def test_get_missing_sends_no_result(state: StateHarness) -> None:
    """B16: get of a missing key or scope sends no result (not null)."""
    await state.set("s", "other", 1)
    assert await state.get("s", "k") is NO_RESULT
    assert await state.get("nope", "k") is NO_RESULT


async def test_delete_existing(state: StateHarness) -> None:
    """B17: delete returns the raw value; a following get sends no result."""
    await state.set("s", "k", {"a": [1]})
    assert await state.delete("s", "k") == {"a": [1]}
    assert await state.get("s", "k") is NO_RESULT


async def test_delete_missing(state: StateHarness, worker: III) -> None:
    """B18: delete of a missing key succeeds with no result and emits state:deleted with nulls."""
    recorder, _ = watch(worker, {})
    assert await state.delete("s", "k") is NO_RESULT
    (event,) = await recorder.wait(1)
    assert event == {
        "type": "state", "event_type": "state:deleted", "scope": "s", "key": "k",
        "old_value": None, "new_value": None,
    }  # fmt: skip


async def test_delete_of_stored_null(state: StateHarness) -> None:
    """§4: delete of a stored null returns null (a result), not no result."""
    await state.set("s", "k", None)
    assert await state.delete("s", "k") is None
    assert await state.delete("s", "k") is NO_RESULT


async def test_concurrent_deletes(state: StateHarness, worker: III) -> None:
    """B19: 50 concurrent deletes: one returns the value, the others no result; one event carries it."""
    await state.set("s", "k", {"v": 1})
    recorder, _ = watch(worker, {})
    results = await asyncio.gather(*(state.delete("s", "k") for _ in range(50)))
    assert [r for r in results if r is not NO_RESULT] == [{"v": 1}]
    events = await recorder.wait(50)
    assert [e["old_value"] for e in events if e["old_value"] is not None] == [{"v": 1}]


async def test_concurrent_set_and_delete(state: StateHarness, worker: III) -> None:
    """B20, K124: a delete's result equals its event's old_value and was really stored then."""
    recorder, _ = watch(worker, {"key": "k"})
    calls: list[Any] = []
    for round_ in range(20):
        calls.append(state.set("s", "k", round_))
        calls.append(state.delete("s", "k"))
    results = await asyncio.gather(*calls)
    deleted = [r for r in results[1::2]]
    events = await recorder.wait(40)
    delete_events = [e for e in events if e["event_type"] == "state:deleted"]
    assert [None if r is NO_RESULT else r for r in deleted] == [e["old_value"] for e in delete_events]
    for event_index, event in enumerate(events):
        if event["event_type"] == "state:deleted" and event["old_value"] is not None:
            previous = events[event_index - 1]
            assert previous["event_type"] != "state:deleted"
            assert previous["new_value"] == event["old_value"]


async def test_lists_of_an_unknown_scope(state: StateHarness) -> None:
    """B21: list → [], list_keys → {keys: []}, list_entries → {entries: []} for an unknown scope."""
    assert await state.call("state::list", {"scope": "none"}) == []
    assert await state.call("state::list_keys", {"scope": "none"}) == {"keys": []}
    assert await state.call("state::list_entries", {"scope": "none"}) == {"entries": []}


async def test_insertion_order(state: StateHarness) -> None:
    """B22: overwrite keeps position; delete then re-set moves to the end; all lists agree."""
    for key in ("a", "b", "c"):
        await state.set("s", key, key)
    await state.set("s", "a", "A")
    assert await state.keys("s") == ["a", "b", "c"]
    await state.delete("s", "b")
    await state.set("s", "b", "B")
    await state.update("s", "d", [])
    keys = await state.keys("s")
    assert keys == ["a", "c", "b", "d"]
    assert await state.call("state::list", {"scope": "s"}) == ["A", "c", "B", {}]
    page = await state.call("state::list_entries", {"scope": "s"})
    assert [e["key"] for e in page["entries"]] == keys


async def test_list_includes_nulls(state: StateHarness) -> None:
    """B23: list includes stored nulls."""
    await state.set("s", "a", None)
    await state.set("s", "b", 0)
    assert await state.call("state::list", {"scope": "s"}) == [None, 0]


async def test_list_groups_sorted_and_unique(state: StateHarness) -> None:
    """B24: list_groups is sorted by code point and de-duplicated."""
    for scope in ("b", "a", "B", "é", "😀", "a", "ab"):
        await state.set(scope, "k1", 1)
        await state.set(scope, "k2", 1)
    assert await state.groups() == sorted({"b", "a", "B", "é", "😀", "ab"})


async def test_scope_disappears_with_its_last_key(state: StateHarness) -> None:
    """B25: a scope leaves list_groups when its last key is deleted."""
    await state.set("s", "a", 1)
    await state.set("s", "b", 1)
    await state.set("t", "a", 1)
    await state.delete("s", "a")
    assert await state.groups() == ["s", "t"]
    await state.delete("s", "b")
    assert await state.groups() == ["t"]


async def test_failed_update_still_creates_scope(state: StateHarness) -> None:
    """B26: an update whose ops all failed on a missing key creates {} and lists its scope."""
    ops = [{"type": "remove", "path": "x"}, {"type": "increment", "path": "", "by": 1}]
    result = await state.update("s", "k", ops)
    assert result["new_value"] == {} and len(result["errors"]) == 1
    assert await state.groups() == ["s"]
    assert await state.get("s", "k") == {}


async def test_max_value_bytes_on_set(state: StateHarness) -> None:
    """B27: max_value_bytes 10: 11 bytes → VALUE_TOO_LARGE, no write, no event; 10 bytes (UTF-8) pass."""
    await state.restart(max_value_bytes=10)
    worker = _fresh_worker(state)
    recorder, _ = watch(worker, {})
    eleven = "é" * 4 + "a"  # "éééé" is 8 bytes + 1 + 2 quotes = 11
    assert encoded_size(eleven) == 11
    error = await state.error("state::set", {"scope": "s", "key": "k", "value": eleven})
    assert (error.code, error.message) == (
        "VALUE_TOO_LARGE",
        "value of 11 bytes exceeds the configured max_value_bytes limit of 10",
    )
    assert await state.get("s", "k") is NO_RESULT
    ten = "é" * 4
    assert encoded_size(ten) == 10
    await state.set("s", "k", ten)
    events = await recorder.wait(1)
    assert len(events) == 1 and events[0]["new_value"] == ten
    await worker.shutdown_async()


async def test_max_value_bytes_on_update(state: StateHarness) -> None:
    """B28: an update result over max_value_bytes → VALUE_TOO_LARGE, value unchanged, no event."""
    await state.restart(max_value_bytes=10)
    worker = _fresh_worker(state)
    await state.set("s", "k", {"a": 1})  # 7 bytes
    recorder, _ = watch(worker, {})
    grow = {"type": "set", "path": "bb", "value": 1}
    error = await state.error("state::update", {"scope": "s", "key": "k", "ops": [grow]})
    assert (error.code, error.message) == (
        "VALUE_TOO_LARGE",
        "value of 14 bytes exceeds the configured max_value_bytes limit of 10",
    )
    failing = {"type": "append", "path": "a", "value": 1}  # a per-op error, discarded with the write
    error = await state.error("state::update", {"scope": "s", "key": "k", "ops": [grow, failing]})
    assert error.code == "VALUE_TOO_LARGE" and error.message.startswith("value of 14 bytes")
    assert await state.get("s", "k") == {"a": 1}
    await state.set("s", "z", 1)
    (event,) = await recorder.wait(1)
    assert event["key"] == "z"
    await worker.shutdown_async()


async def test_max_value_bytes_zero_is_unlimited(state: StateHarness) -> None:
    """B29: max_value_bytes 0 behaves as unlimited."""
    await state.restart(max_value_bytes=0)
    await state.set("s", "k", "x" * 100_000)
    assert len(await state.get("s", "k")) == 100_000


async def test_max_value_bytes_applies_to_the_next_call(state: StateHarness) -> None:
    """B30: changing max_value_bytes at runtime applies to the next call."""
    await state.set("s", "k", "x" * 100)
    state.state.live.max_value_bytes = 10
    error = await state.error("state::set", {"scope": "s", "key": "k", "value": "x" * 100})
    assert error.code == "VALUE_TOO_LARGE"
    state.state.live.max_value_bytes = None
    await state.set("s", "k", "x" * 100)


def _fresh_worker(state: StateHarness) -> III:
    from pyiii import InitOptions, register_worker

    return register_worker(state.engine, InitOptions(worker_name="state-tests-2"))


# ------------------------------------------------------------------------------ C. list_entries pages


async def entries(state: StateHarness, scope: str, **args: Any) -> dict[str, Any]:
    result: dict[str, Any] = await state.call("state::list_entries", {"scope": scope, **args})
    return result


async def walk(state: StateHarness, scope: str, **args: Any) -> list[list[dict[str, Any]]]:
    pages = []
    cursor = None
    while True:
        page = await entries(state, scope, cursor=cursor, **args)
        pages.append(page["entries"])
        if "next_cursor" not in page:
            return pages
        cursor = page["next_cursor"]


async def test_pages_of_two(state: StateHarness) -> None:
    """C31: 5 keys, limit 2 → pages 2, 2, 1; the last has no next_cursor; keys equal list_keys."""
    for i in range(5):
        await state.set("s", f"k{i}", i)
    first = await entries(state, "s", limit=2)
    assert len(first["entries"]) == 2 and isinstance(first["next_cursor"], str)
    pages = await walk(state, "s", limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["key"] for p in pages for e in p] == await state.keys("s")
    assert pages[2] == [{"key": "k4", "value": 4}]


async def test_default_limit(state: StateHarness) -> None:
    """C32: the default limit is 100."""
    await asyncio.gather(*(state.set("s", f"k{i:03}", i) for i in range(150)))
    page = await entries(state, "s")
    assert len(page["entries"]) == 100 and "next_cursor" in page
    assert len((await entries(state, "s", cursor=page["next_cursor"]))["entries"]) == 50


async def test_page_limits(state: StateHarness) -> None:
    """C33: limit 0 or 1001 → INVALID_PAGE_LIMITS; 2.5 → deserialization_error; null → default."""
    for limit in (0, 1001):
        error = await state.error("state::list_entries", {"scope": "s", "limit": limit})
        assert error.code == "INVALID_PAGE_LIMITS"
        assert error.message == "limit must be an integer between 1 and 1000"
    error = await state.error("state::list_entries", {"scope": "s", "limit": 2.5})
    assert error.message == (
        "Failed to deserialize input for state::list_entries: "
        "limit: invalid type: floating point `2.5`, expected usize"
    )
    for bad in (-1, True, "1"):
        assert (await state.error("state::list_entries", {"scope": "s", "limit": bad})).code == DESER
    assert (await state.error("state::list_entries", {"scope": "s", "cursor": 1})).code == DESER
    await state.set("s", "k", 1)
    assert await entries(state, "s", limit=None, cursor=None) == {"entries": [{"key": "k", "value": 1}]}
    assert len((await entries(state, "s", limit=1000))["entries"]) == 1


async def test_bad_cursors(state: StateHarness) -> None:
    """C34: a garbage cursor, or one from another scope → INVALID_CURSOR."""
    for scope in ("a", "b"):
        for i in range(3):
            await state.set(scope, f"k{i}", i)
    cursor = (await entries(state, "a", limit=1))["next_cursor"]
    forged = base64.urlsafe_b64encode(json.dumps({"e": "x", "p": 1, "s": "a"}).encode()).decode().rstrip("=")
    bad_cursors = [("garbage!", "a"), ("", "a"), ("e30", "a"), (cursor, "b"), (forged, "a")]
    bad_cursors.append((cursor + "x", "a"))
    for bad, scope in bad_cursors:
        error = await state.error("state::list_entries", {"scope": scope, "cursor": bad})
        assert error.code == "INVALID_CURSOR"
        assert error.message == "invalid cursor; restart the listing without a cursor"


async def test_walk_sees_changes(state: StateHarness) -> None:
    """C35: a key created mid-walk appears later; a deleted one never; an overwrite keeps its place."""
    for key in ("a", "b", "c", "d"):
        await state.set("s", key, key)
    page = await entries(state, "s", limit=1)
    assert page["entries"] == [{"key": "a", "value": "a"}]
    await state.set("s", "e", "e")
    await state.delete("s", "c")
    await state.set("s", "b", "B")
    rest = []
    cursor = page["next_cursor"]
    while cursor:
        page = await entries(state, "s", limit=1, cursor=cursor)
        rest.extend(page["entries"])
        cursor = page.get("next_cursor")
    assert rest == [{"key": "b", "value": "B"}, {"key": "d", "value": "d"}, {"key": "e", "value": "e"}]


async def test_cursor_reuse(state: StateHarness) -> None:
    """C36: reusing a cursor returns the page after the same position again."""
    for i in range(4):
        await state.set("s", f"k{i}", i)
    cursor = (await entries(state, "s", limit=2))["next_cursor"]
    first = await entries(state, "s", limit=2, cursor=cursor)
    await state.set("s", "k2", "changed")
    again = await entries(state, "s", limit=2, cursor=cursor)
    assert [e["key"] for e in first["entries"]] == [e["key"] for e in again["entries"]] == ["k2", "k3"]
    assert again["entries"][0]["value"] == "changed"


async def test_byte_budget(state: StateHarness) -> None:
    """C37: entries over 1 MiB are split by the byte budget; a bigger single entry is alone on a page."""
    chunk = "x" * 300_000
    for i in range(5):
        await state.set("s", f"k{i}", chunk)
    await state.set("s", "huge", "y" * 1_200_000)
    await state.set("s", "tail", 1)
    pages = await walk(state, "s", limit=100)
    assert [len(p) for p in pages] == [3, 2, 1, 1]
    assert pages[2][0]["key"] == "huge"
    assert [e["key"] for p in pages for e in p] == await state.keys("s")


async def test_cursor_after_restart(state: StateHarness) -> None:
    """C38 [R]: persistent cursors survive a restart; in-memory ones become INVALID_CURSOR."""
    for i in range(3):
        await state.set("s", f"k{i}", i)
    cursor = (await entries(state, "s", limit=1))["next_cursor"]
    await state.restart()
    if state.kind == "memory":
        error = await state.error("state::list_entries", {"scope": "s", "cursor": cursor})
        assert error.code == "INVALID_CURSOR"
    else:
        page = await entries(state, "s", cursor=cursor)
        assert [e["key"] for e in page["entries"]] == ["k1", "k2"]


async def test_recorder_is_unused_by_reads(state: StateHarness, worker: III) -> None:
    """K109: get, list, list_keys, list_entries and list_groups never fire."""
    await state.set("s", "k", 1)
    recorder: Recorder
    recorder, _ = watch(worker, {})
    await state.get("s", "k")
    await state.call("state::list", {"scope": "s"})
    await state.keys("s")
    await entries(state, "s")
    await state.groups()
    await state.idle()
    assert recorder.events == []


@pytest.mark.parametrize(
    "payload",
    [
        {"scope": "\ud800", "key": "k", "value": 1},
        {"scope": "s", "key": "k\udfff", "value": 1},
        {"scope": "s", "key": "k", "value": {"bad": "\ud800"}},
        {"scope": "s", "key": "k", "value": object()},
    ],
)
async def test_in_process_values_json_cannot_carry(state: StateHarness, payload: dict[str, Any]) -> None:
    """§3.2, §3.4: lone surrogates and non-JSON objects from an in-process caller → deserialization_error."""
    error = await state.error("state::set", payload)
    assert error.code == DESER
    assert await state.groups() == []
