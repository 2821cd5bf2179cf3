"""The state functions and triggers over a real WebSocket (spec/state.md §3): raw frames where the exact
bytes matter (no ``result`` versus ``"result": null``), the pyiii SDK for the worked CRUD example.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from state_harness import StateHarness

from helpers import RawWorker
from pyiii import III, InitOptions, ReconnectionConfig, register_worker
from pyiii.errors import InvocationError


@pytest_asyncio.fixture
async def raw(state: StateHarness) -> AsyncIterator[RawWorker]:
    w = await RawWorker.connect(state.url)
    await w.register("raw-wire")
    try:
        yield w
    finally:
        await w.close()


@pytest_asyncio.fixture
async def sdk(state: StateHarness) -> AsyncIterator[III]:
    """A pyiii SDK worker connected over WebSocket."""
    options = InitOptions(worker_name="sdk-wire", reconnection_config=ReconnectionConfig(max_retries=0))
    client = await asyncio.to_thread(register_worker, state.url, options)
    try:
        yield client
    finally:
        await asyncio.to_thread(client.shutdown)


async def test_missing_versus_null_on_the_wire(raw: RawWorker) -> None:
    """§3.3, §4: a missing key's get/delete reply has no `result` field; a stored null has `"result":null`."""
    reply = await raw.call("state::get", {"scope": "s", "key": "k"})
    assert "result" not in reply and "error" not in reply
    reply = await raw.call("state::delete", {"scope": "s", "key": "k"})
    assert "result" not in reply and "error" not in reply
    await raw.result("state::set", {"scope": "s", "key": "k", "value": None})
    reply = await raw.call("state::get", {"scope": "s", "key": "k"})
    assert "result" in reply and reply["result"] is None and '"result":null' in reply.raw
    reply = await raw.call("state::delete", {"scope": "s", "key": "k"})
    assert "result" in reply and reply["result"] is None


async def test_exact_bytes_on_the_wire(raw: RawWorker) -> None:
    """§3.3 rule 5, §3.4: results carry sorted keys, exact big integers and empty containers."""
    reply = await raw.call(
        "state::set", {"scope": "s", "key": "k", "value": {"z": [], "a": 18446744073709551615}}
    )
    assert '"result":{"new_value":{"a":18446744073709551615,"z":[]},"old_value":null}' in reply.raw
    await raw.send(
        '{"type":"invokefunction","invocation_id":"i-1","function_id":"state::get",'
        '"data":{"scope":"s","key":"k"}}'
    )
    reply = await raw.expect({"type": "invocationresult", "invocation_id": "i-1"})
    assert '"result":{"a":18446744073709551615,"z":[]}' in reply.raw


async def test_errors_on_the_wire(raw: RawWorker) -> None:
    """§3.5: errors are {code, message} without a stacktrace."""
    reply = await raw.call(
        "state::update", {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n"}]}
    )
    assert reply["error"] == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for state::update: ops[0]: missing field `by`",
    }


async def test_a_trigger_served_over_the_wire(state: StateHarness, raw: RawWorker) -> None:
    """§7.4: a raw worker's trigger function receives the six-field event as its data."""
    await raw.serve("wire::on-change")
    trigger = {
        "type": "registertrigger",
        "id": "t",
        "trigger_type": "state",
        "function_id": "wire::on-change",
    }
    await raw.send({**trigger, "config": {"scope": "orders"}, "metadata": {"m": 1}})
    await raw.barrier()
    await raw.result("state::set", {"scope": "orders", "key": "o1", "value": {"status": "pending"}})
    frame = await raw.expect({"type": "invokefunction", "function_id": "wire::on-change"})
    assert frame["data"] == {
        "type": "state", "event_type": "state:created", "scope": "orders", "key": "o1",
        "old_value": None, "new_value": {"status": "pending"},
    }  # fmt: skip
    assert frame["metadata"] == {"m": 1}
    assert json.loads(frame.raw)["data"] == frame["data"]


async def test_sdk_crud_and_trigger(state: StateHarness, sdk: III) -> None:
    """README example: CRUD with the pyiii SDK over WebSocket and a trigger seeing each change in order."""
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def on_order_change(event: dict[str, Any]) -> None:
        seen.append(event)
        if event["event_type"] == "state:deleted":
            done.set()

    sdk.register_function("orders::on-change", on_order_change)
    sdk.register_trigger({"type": "state", "function_id": "orders::on-change", "config": {"scope": "orders"}})
    await asyncio.to_thread(sdk.trigger, {"function_id": "engine::functions::list", "payload": {}})  # barrier

    def call(function_id: str, payload: Any) -> Any:
        return sdk.trigger({"function_id": function_id, "payload": payload})

    def crud() -> list[Any]:
        return [
            call("state::set", {"scope": "orders", "key": "o1", "value": {"status": "pending", "items": []}}),
            call("state::get", {"scope": "orders", "key": "o1"}),
            call("state::update", {"scope": "orders", "key": "o1", "ops": [
                {"type": "set", "path": "status", "value": "shipped"},
                {"type": "append", "path": "items", "value": "book"}]}),
            call("state::list", {"scope": "orders"}),
            call("state::list_groups", {}),
            call("state::delete", {"scope": "orders", "key": "o1"}),
            call("state::get", {"scope": "orders", "key": "o1"}),
        ]  # fmt: skip

    results = await asyncio.to_thread(crud)
    assert results == [
        {"old_value": None, "new_value": {"items": [], "status": "pending"}},
        {"items": [], "status": "pending"},
        {
            "old_value": {"items": [], "status": "pending"},
            "new_value": {"items": ["book"], "status": "shipped"},
        },
        [{"items": ["book"], "status": "shipped"}],
        {"groups": ["orders"]},
        {"items": ["book"], "status": "shipped"},
        None,
    ]
    assert await asyncio.to_thread(done.wait, 10)
    assert [e["event_type"] for e in seen] == ["state:created", "state:updated", "state:deleted"]
    with pytest.raises(InvocationError) as info:
        await sdk.trigger_async({"function_id": "state::list_groups"})  # the SDK sends no payload: null
    assert info.value.code == "deserialization_error"
