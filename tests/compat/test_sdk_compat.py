"""pyiii driven by the unmodified official iii SDKs (protocol.md §0, checklist §11).

Each test starts real SDK processes (tests/compat/harness.py) against a fresh engine: `engine_url`
(in-process, from the pyiii pytest plugin) or `engine_proc` (a subprocess, for restarts, the console
and hidden settings). A few checks need frames no SDK sends; they use `RawClient`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from harness import (
    ALL_SDKS,
    LEGACY_SDKS,
    NODE_SDKS,
    PYTHON_SDKS,
    SDKS,
    TIME_FACTOR,
    RawClient,
    SdkWorker,
    big,
    echo,
    failing,
    free_port,
    list_workers,
    relay,
    sdk_pairs,
    sleeping,
    wait_worker_gone,
)

pytestmark = pytest.mark.compat

MIB = 1024 * 1024
#: The SDK used for engine queries and as a neutral peer where the SDK under test is not the point.
PROBE = "py-0.25"


def needs_module(name: str) -> pytest.MarkDecorator:
    """Run the test once pyiii ships module ``name``; until then skip it, saying so."""
    from pyiii.server.app import PROVIDED_MODULES

    return pytest.mark.skipif(
        name not in PROVIDED_MODULES, reason=f"pyiii does not ship the {name} module yet (its own issue)"
    )


def is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def both_send_metadata(caller: str, target: str) -> bool:
    return SDKS[caller].sends_metadata and SDKS[target].sends_metadata


def ready_event(worker: SdkWorker) -> dict[str, Any]:
    return worker.find({"event": "ready"})[0]


def dropped_since_ready(worker: SdkWorker) -> list[dict[str, Any]]:
    """Connection-state changes after the worker became ready (there should be none)."""
    since = worker.after(ready_event(worker))
    return worker.find(lambda e: e["event"] == "connection_state" and e["state"] != "connected", since=since)


async def raw_worker(url: str, name: str, *function_ids: str, **connect: object) -> RawClient:
    """A raw connection that registered `function_ids`, once the engine lists them."""
    raw = await RawClient.connect(url, **connect)  # type: ignore[arg-type]
    await raw.hello()
    await raw.register_worker(name)
    for fid in function_ids:
        await raw.send({"type": "registerfunction", "id": fid})
    await raw.wait_listed(*function_ids)
    return raw


async def answer(raw: RawClient, frame: dict[str, object], result: object) -> None:
    await raw.send(
        {
            "type": "invocationresult",
            "invocation_id": frame["invocation_id"],
            "function_id": frame["function_id"],
            "result": result,
        }
    )


# §11.1, §11.2: the socket itself (raw frames)


async def test_workerregistered_ping_and_unknown_path(engine_url: str) -> None:
    """`/` sends workerregistered (UUIDs, no features); pings and JSON pings are answered; other paths 404."""
    raw = await RawClient.connect(engine_url, autoping=False)
    try:
        hello = await raw.hello()
        assert is_uuid(hello["worker_id"]) and is_uuid(hello["reattach_token"])
        assert hello["worker_id"] != hello["reattach_token"]
        assert "features" not in hello
        await raw.ws.ping(b"compat")
        await raw.wait_frame({"_pong": "compat"})
        await raw.send({"type": "ping"})
        await raw.wait_frame({"type": "pong"})
    finally:
        await raw.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(engine_url.replace("ws://", "http://") + "/no/such/path") as response:
            assert response.status == 404


async def test_malformed_and_unknown_frames_are_ignored(engine_url: str, sdk_worker) -> None:
    """Unknown types and fields, message_type, empty and invalid JSON are ignored; the socket works on."""
    raw = await RawClient.connect(engine_url)
    try:
        await raw.hello()
        for junk in ("", "   ", "not json {", "[1, 2, 3]", '"a string"', '{"no_type": 1}'):
            await raw.send(junk)
        await raw.send({"type": "nosuchmessage", "x": 1})
        await raw.register_worker("raw-junk", unknown_field={"a": 1})
        await raw.send(
            {"type": "registerfunction", "id": "raw::fn", "message_type": "registerfunction", "extra": [1]}
        )
        await raw.wait_listed("raw::fn")
        listing = await raw.invoke("engine::functions::list", {"prefix": "raw::"}, unknown_field=True)
        assert [f["function_id"] for f in listing["result"]["functions"]] == ["raw::fn"]
        caller = await sdk_worker(PROBE, engine_url)
        pending = asyncio.create_task(caller.call("raw::fn", {"k": 1}))
        frame = await raw.wait_frame({"type": "invokefunction", "function_id": "raw::fn"})
        await answer(raw, frame, {"raw": True})
        result = await pending
        assert result["ok"] and result["result"] == {"raw": True}, result
        assert not any("_closed" in f for f in raw.frames)
    finally:
        await raw.close()


# §11.3: message sizes


@pytest.mark.parametrize("target_sdk", ["py-0.25", *NODE_SDKS])
async def test_20mib_payload_round_trips(engine_url: str, sdk_worker, target_sdk: str) -> None:
    """A 20 MiB payload from the Python SDK (sent fragmented) reaches the handler and comes back whole."""
    target = await sdk_worker(target_sdk, engine_url, functions=[echo("big::echo", quiet=True)])
    caller = await sdk_worker("py-0.25", engine_url)
    result = await caller.call("big::echo", payload_blob_bytes=20 * MIB, quiet=True, timeout_ms=60000)
    assert result["ok"], result
    assert result["result_len"] > 20 * MIB
    invoked = await target.wait_event({"event": "invoked", "function_id": "big::echo"})
    assert invoked["data_len"] == len('{"blob":""}') + 20 * MIB


async def test_oversized_message_closes_1009_and_stops_calls_routed_to_it(
    engine_url: str, sdk_worker
) -> None:
    """A 65 MiB message closes its socket with 1009; a call routed to that socket ends invocation_stopped."""
    # Deflated, so the engine reads the whole message (and answers with a close frame) before the
    # client has finished writing; uncompressed, the write may die of a reset first.
    raw = await raw_worker(engine_url, "raw-huge", "raw::hold", compress=15)
    try:
        caller = await sdk_worker(PROBE, engine_url)
        pending = asyncio.create_task(caller.call("raw::hold", {"x": 1}, timeout_ms=30000))
        await raw.wait_frame({"type": "invokefunction", "function_id": "raw::hold"})
        sending = asyncio.create_task(raw.send('{"type":"ping","pad":"' + "x" * (65 * MIB) + '"}'))
        assert await raw.wait_closed() == 1009
        await asyncio.gather(sending, return_exceptions=True)
        result = await pending
        assert not result["ok"] and result["code"] == "invocation_stopped", result
        assert result["message"] == "Invocation stopped"
    finally:
        await raw.close()


# §11.4 and the issue list: calls between SDKs


@pytest.mark.parametrize(("caller_sdk", "target_sdk"), sdk_pairs())
async def test_call_across_sdks_round_trips_result_and_metadata(
    engine_url: str, sdk_worker, caller_sdk: str, target_sdk: str
) -> None:
    """A function of one SDK called from another: payload, result and metadata arrive unchanged."""
    target = await sdk_worker(
        target_sdk, engine_url, functions=[echo("target::echo", description="echo", metadata={"team": "lab"})]
    )
    caller = await sdk_worker(caller_sdk, engine_url)
    payload = {"a": 1, "nested": {"list": [1, "two", None, True, 2.5]}, "text": "héllo ✓"}
    result = await caller.call("target::echo", payload, metadata={"sess": "s1"})
    assert result["ok"], result
    assert result["result"]["got"] == payload  # nothing added, no _caller_worker_id (D7)
    assert result["result"]["worker"] == target.name
    assert result["result"]["meta"] == (
        {"sess": "s1"} if both_send_metadata(caller_sdk, target_sdk) else None
    )
    invoked = await target.wait_event({"event": "invoked", "function_id": "target::echo"})
    assert invoked["data"] == payload


@pytest.mark.parametrize(
    ("py_sdk", "node_sdk"), [pytest.param(p, n, id=f"{p}+{n}") for p in PYTHON_SDKS for n in NODE_SDKS]
)
async def test_python_calls_node_and_node_calls_python_back(
    engine_url: str, sdk_worker, py_sdk: str, node_sdk: str
) -> None:
    """Python calls a Node function that calls back into Python, and the reverse; nested results arrive."""
    py = await sdk_worker(py_sdk, engine_url, functions=[echo("py::echo"), relay("py::relay", "node::echo")])
    node = await sdk_worker(
        node_sdk, engine_url, functions=[echo("node::echo"), relay("node::relay", "py::echo")]
    )
    via_node = await py.call_ok("node::relay", {"from": "py"})
    assert via_node["worker"] == node.name
    assert via_node["relayed"]["worker"] == py.name and via_node["relayed"]["got"] == {"from": "py"}
    via_py = await node.call_ok("py::relay", {"from": "node"})
    assert via_py["worker"] == py.name
    assert via_py["relayed"]["worker"] == node.name and via_py["relayed"]["got"] == {"from": "node"}


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_call_without_payload_reaches_handler_as_null(
    engine_url: str, sdk_worker, caller_sdk: str
) -> None:
    """A call without a payload (the SDKs then send no `data`) reaches the handler as null (D1)."""
    await sdk_worker(PROBE, engine_url, functions=[echo("t::echo")])
    caller = await sdk_worker(caller_sdk, engine_url)
    result = await caller.call("t::echo")
    assert result["ok"], result
    assert result["result"]["got"] is None


# §11.5: bindings without config


@pytest.mark.parametrize("binder_sdk", ALL_SDKS)
async def test_binding_without_config_reaches_provider_with_null(
    engine_url: str, sdk_worker, binder_sdk: str
) -> None:
    """A binding registered without config is delivered to its worker provider with config null (D2)."""
    provider = await sdk_worker(PROBE, engine_url, trigger_types=[{"id": "noconf"}])
    binder = await sdk_worker(binder_sdk, engine_url, functions=[echo("b::fn")])
    await binder.command("register_trigger", key="k", trigger={"type": "noconf", "function_id": "b::fn"})
    delivered = await provider.wait_event({"event": "trigger_register", "trigger_type": "noconf"})
    assert delivered["config"] is None and delivered["function_id"] == "b::fn"


@needs_module("iii-http")
@pytest.mark.parametrize("binder_sdk", ["py-0.25", "node-0.22.1"])
async def test_http_binding_without_config_is_rejected(engine_proc, sdk_worker, binder_sdk: str) -> None:
    """An http binding without config is rejected: "api_path is required" (logged by the SDK)."""
    engine = await engine_proc(modules=[{"name": "iii-http", "config": {"port": free_port()}}])
    binder = await sdk_worker(binder_sdk, engine.url, functions=[echo("b::fn")])
    await binder.command("register_trigger", key="k", trigger={"type": "http", "function_id": "b::fn"})
    logged = await binder.wait_event(
        lambda e: e["event"] == "sdk_log" and "api_path is required for http triggers" in e["message"]
    )
    assert "http" in logged["message"]


# §11.6: Void


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_void_call_returns_at_once_while_target_runs(
    engine_url: str, sdk_worker, caller_sdk: str
) -> None:
    """Void returns None without waiting; the target still runs the handler."""
    target = await sdk_worker(PROBE, engine_url, functions=[sleeping("t::slow", 1500)])
    caller = await sdk_worker(caller_sdk, engine_url)
    result = await caller.call("t::slow", {"v": 1}, action="void")
    assert result["ok"] and result["result"] is None, result
    assert result["elapsed_ms"] < 1000
    invoked = await target.wait_event({"event": "invoked", "function_id": "t::slow"})
    assert invoked["data"] == {"v": 1}
    await target.wait_event({"event": "returned", "function_id": "t::slow"})


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_void_target_gets_an_invocation_id_and_its_result_is_dropped(
    engine_url: str, sdk_worker, caller_sdk: str
) -> None:
    """Void reaches the target with a UUID invocation_id, data, no action/namespace; its result is dropped."""
    raw = await raw_worker(engine_url, "raw-void", "raw::void")
    try:
        caller = await sdk_worker(caller_sdk, engine_url, functions=[echo("c::echo")])
        result = await caller.call("raw::void", {"v": 2}, action="void")
        assert result["ok"] and result["result"] is None
        frame = await raw.wait_frame({"type": "invokefunction", "function_id": "raw::void"})
        assert is_uuid(frame["invocation_id"]) and frame["data"] == {"v": 2}
        assert "action" not in frame and "namespace" not in frame
        await answer(raw, frame, {"discarded": True})
        # The caller's connection is unaffected by the dropped result.
        assert (await caller.call_ok("c::echo", {"after": 1}))["got"] == {"after": 1}
    finally:
        await raw.close()


# §11.7, §11.8: Enqueue


@needs_module("iii-queue")
@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_enqueue_returns_receipt_and_runs_the_function(
    engine_proc, sdk_worker, caller_sdk: str
) -> None:
    """Enqueue (queue module on) returns {messageReceiptId: <uuid>}; the function then runs with the data."""
    engine = await engine_proc(modules=[{"name": "iii-queue"}])
    target = await sdk_worker(PROBE, engine.url, functions=[echo("q::job")])
    caller = await sdk_worker(caller_sdk, engine.url)
    result = await caller.call("q::job", {"job": 1}, action="enqueue", queue="default")
    assert result["ok"], result
    assert list(result["result"]) == ["messageReceiptId"] and is_uuid(result["result"]["messageReceiptId"])
    invoked = await target.wait_event({"event": "invoked", "function_id": "q::job"})
    assert invoked["data"] == {"job": 1}
    unknown = await caller.call("q::job", {"job": 2}, action="enqueue", queue="nope")
    assert not unknown["ok"] and unknown["code"] == "enqueue_error"
    assert unknown["message"] == "Queue 'nope' not found"


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_enqueue_without_queue_module_is_enqueue_error(
    engine_url: str, sdk_worker, caller_sdk: str
) -> None:
    """Enqueue with the queue module disabled fails with enqueue_error and says how to enable it."""
    await sdk_worker(PROBE, engine_url, functions=[echo("q::job")])
    caller = await sdk_worker(caller_sdk, engine_url)
    result = await caller.call("q::job", {"job": 1}, action="enqueue", queue="default")
    assert not result["ok"] and result["code"] == "enqueue_error", result
    assert result["message"] == (
        "Cannot enqueue to queue 'default': the queue module is not enabled. "
        'Add "- name: queue" to "workers:" in the config file.'
    )


# §11.9: invalid invocations (raw frames)


async def test_invalid_action_and_missing_function_id_get_error_replies(engine_url: str) -> None:
    """An unknown action gets invalid_action; a call with an id but no function_id gets invalid_message."""
    raw = await RawClient.connect(engine_url)
    try:
        await raw.hello()
        bogus = await raw.invoke("engine::functions::list", {}, action={"type": "bogus"})
        assert bogus["error"]["code"] == "invalid_action", bogus
        no_queue = await raw.invoke("engine::functions::list", {}, action={"type": "enqueue"})
        assert no_queue["error"]["code"] == "invalid_action", no_queue
        await raw.send({"type": "invokefunction", "invocation_id": "raw-nofn", "data": {}})
        reply = await raw.wait_frame({"type": "invocationresult", "invocation_id": "raw-nofn"})
        assert reply["error"]["code"] == "invalid_message", reply
    finally:
        await raw.close()


# §11.10: unknown functions and handler errors


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_unknown_function_is_function_not_found(engine_url: str, sdk_worker, caller_sdk: str) -> None:
    """A call to an unknown function fails with function_not_found and the exact message."""
    caller = await sdk_worker(caller_sdk, engine_url)
    result = await caller.call("nope::x", {})
    assert not result["ok"] and result["code"] == "function_not_found", result
    assert result["message"] == "Function nope::x not found in namespace default."


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_function_not_found_names_the_namespaces_that_have_it(
    engine_url: str, sdk_worker, caller_sdk: str
) -> None:
    """A miss in `default` names the namespaces that have the id; a call naming one reaches it."""
    owner = await sdk_worker("py-0.25", engine_url, namespace="orders", functions=[echo("orders::create")])
    caller = await sdk_worker(caller_sdk, engine_url)
    result = await caller.call("orders::create", {})
    assert not result["ok"] and result["code"] == "function_not_found", result
    assert result["message"] == (
        "Function orders::create not found in namespace default. It is registered in namespace(s): orders."
    )
    if SDKS[caller_sdk].has_namespaces:
        reached = await caller.call_ok("orders::create", {"n": 1}, namespace="orders")
        assert reached["worker"] == owner.name


@pytest.mark.parametrize(("caller_sdk", "target_sdk"), sdk_pairs())
async def test_raising_handler_is_invocation_failed(
    engine_url: str, sdk_worker, caller_sdk: str, target_sdk: str
) -> None:
    """A handler that raises gives the caller invocation_failed with the error text and a stacktrace."""
    await sdk_worker(target_sdk, engine_url, functions=[failing("t::fail", "kaboom 42")])
    caller = await sdk_worker(caller_sdk, engine_url)
    result = await caller.call("t::fail", {})
    assert not result["ok"] and result["code"] == "invocation_failed", result
    assert result["message"] == "kaboom 42"
    assert "kaboom 42" in (result["stacktrace"] or "")


# §11.11, §11.12: timeouts and disconnects mid-call


@pytest.mark.parametrize("caller_sdk", ALL_SDKS)
async def test_unanswered_call_times_out_in_the_engine(engine_proc, sdk_worker, caller_sdk: str) -> None:
    """A target silent for invocation_timeout_ms (500 ms here) fails the call with invocation_timeout."""
    engine = await engine_proc(top_level={"invocation_timeout_ms": 500})
    await sdk_worker(PROBE, engine.url, functions=[sleeping("t::slow", 5000)])
    caller = await sdk_worker(caller_sdk, engine.url)
    result = await caller.call("t::slow", {}, timeout_ms=10000)
    assert not result["ok"] and result["code"] == "invocation_timeout", result
    assert result["message"] == "Invocation of t::slow timed out after 500 ms"
    assert result["elapsed_ms"] < 4000


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_killed_target_stops_the_pending_call(engine_url: str, sdk_worker, sdk: str) -> None:
    """Killing the target mid-call gives the caller invocation_stopped at once."""
    target = await sdk_worker(sdk, engine_url, functions=[sleeping("t::slow", 20000)])
    caller = await sdk_worker(sdk, engine_url)
    pending = asyncio.create_task(caller.call("t::slow", {}, timeout_ms=25000))
    await target.wait_event({"event": "invoked", "function_id": "t::slow"})
    target.kill()
    result = await pending
    assert not result["ok"] and result["code"] == "invocation_stopped", result
    assert result["message"] == "Invocation stopped"
    assert result["elapsed_ms"] < 10000


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_killed_caller_result_is_dropped_quietly(engine_url: str, sdk_worker, sdk: str) -> None:
    """When the caller dies mid-call, the target's later result is dropped and everyone else carries on."""
    target = await sdk_worker(sdk, engine_url, functions=[sleeping("t::slow", 1000), echo("t::echo")])
    caller = await sdk_worker(sdk, engine_url)
    caller.send("call", function_id="t::slow", payload={}, timeout_ms=20000)
    await target.wait_event({"event": "invoked", "function_id": "t::slow"})
    caller.kill()
    await target.wait_event({"event": "returned", "function_id": "t::slow"})
    # The orphan result went out on the target's socket before this call's result can.
    other = await sdk_worker(PROBE, engine_url)
    assert (await other.call_ok("t::echo", {"after": True}))["got"] == {"after": True}
    assert not dropped_since_ready(target)


# §11.13 and the issue list: replicas


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_replicas_share_calls_and_fail_over(engine_url: str, sdk_worker, sdk: str) -> None:
    """Two workers serving one id share 100 calls; after one is killed the other serves every call."""
    first = await sdk_worker(sdk, engine_url, name="replica-a", functions=[echo("rep::echo")])
    second = await sdk_worker(sdk, engine_url, name="replica-b", functions=[echo("rep::echo")])
    caller = await sdk_worker(PROBE, engine_url)
    results = await asyncio.gather(*(caller.call("rep::echo", {"i": i}) for i in range(100)))
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
    served = [r["result"]["worker"] for r in results]
    assert served.count("replica-a") >= 25 and served.count("replica-b") >= 25, served
    gone_id = ready_event(first)["worker_id"]
    first.kill()
    await wait_worker_gone(caller, gone_id)
    after = await asyncio.gather(*(caller.call("rep::echo", {"i": i}) for i in range(20)))
    assert all(r["ok"] and r["result"]["worker"] == "replica-b" for r in after), after
    assert not dropped_since_ready(second)


# §11.14: reserved ids


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_reserved_function_ids_are_rejected(engine_url: str, sdk_worker, sdk: str) -> None:
    """Registering a built-in id is refused; the built-in keeps answering and the worker keeps working."""
    worker = await sdk_worker(
        sdk,
        engine_url,
        functions=[echo("engine::functions::list", expect_registered=False), echo("own::echo")],
    )
    listing = await worker.call_ok("engine::functions::list", {})
    assert "functions" in listing and "got" not in listing
    assert any(f["function_id"] == "own::echo" for f in listing["functions"])
    assert (await worker.call_ok("own::echo", {"still": "works"}))["got"] == {"still": "works"}
    if sdk == "py-0.25":  # the only SDK that reports registrationrejected
        logged = await worker.wait_event(
            lambda e: e["event"] == "sdk_log" and "FUNCTION_NAMESPACE_CONFLICT" in e["message"]
        )
        assert "engine::functions::list" in logged["message"] and "worker ''" in logged["message"]
    assert not worker.find({"event": "connection_state", "state": "failed"})


@needs_module("iii-state")
@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_reserved_state_function_is_rejected(engine_proc, sdk_worker, sdk: str) -> None:
    """A worker registering state::set (state module on) is refused; calls still reach the built-in."""
    engine = await engine_proc(modules=[{"name": "iii-state"}])
    worker = await sdk_worker(sdk, engine.url, functions=[echo("state::set", expect_registered=False)])
    result = await worker.call_ok("state::set", {"scope": "compat", "key": "k", "value": {"v": 1}})
    assert "got" not in result, f"the worker's state::set answered: {result}"
    assert result["new_value"] == {"v": 1}
    if sdk == "py-0.25":
        logged = await worker.wait_event(
            lambda e: e["event"] == "sdk_log" and "FUNCTION_NAMESPACE_CONFLICT" in e["message"]
        )
        assert "state::set" in logged["message"] and "worker ''" in logged["message"]
    assert not worker.find({"event": "connection_state", "state": "failed"})


# §11.15: reattach (raw frames; the SDKs send reattach only on a real reconnect)


async def test_reattach_with_valid_token_evicts_the_old_connection(engine_url: str, sdk_worker) -> None:
    """reattach with the right token closes the old connection (1001); the new one serves the function."""
    old = await raw_worker(engine_url, "reattacher", "ra::fn", autoping=False)
    new = await RawClient.connect(engine_url)
    try:
        hello = old.frames[0]
        await new.hello()
        await new.send(
            {
                "type": "reattach",
                "previous_worker_id": hello["worker_id"],
                "reattach_token": hello["reattach_token"],
            }
        )
        await new.register_worker("reattacher")
        await new.send({"type": "registerfunction", "id": "ra::fn"})
        assert await old.wait_closed() == 1001
        await new.wait_listed("ra::fn")
        caller = await sdk_worker(PROBE, engine_url)
        for i in range(3):
            pending = asyncio.create_task(caller.call("ra::fn", {"i": i}))
            frame = await new.wait_frame(
                {"type": "invokefunction", "function_id": "ra::fn", "data": {"i": i}}
            )
            await answer(new, frame, {"served_by": "new"})
            assert (await pending)["result"] == {"served_by": "new"}
    finally:
        await old.close()
        await new.close()


async def test_reattach_with_wrong_token_is_ignored(engine_url: str, sdk_worker) -> None:
    """A reattach with a wrong token changes nothing: the old connection stays open and keeps its function."""
    old = await raw_worker(engine_url, "keeper", "keep::fn")
    forger = await RawClient.connect(engine_url)
    try:
        await forger.hello()
        await forger.send(
            {
                "type": "reattach",
                "previous_worker_id": old.frames[0]["worker_id"],
                "reattach_token": str(uuid.uuid4()),
            }
        )
        await forger.invoke("engine::functions::list", {})
        caller = await sdk_worker(PROBE, engine_url)
        pending = asyncio.create_task(caller.call("keep::fn", {"k": 1}))
        frame = await old.wait_frame({"type": "invokefunction", "function_id": "keep::fn"})
        await answer(old, frame, {"served_by": "old"})
        assert (await pending)["result"] == {"served_by": "old"}
        assert not any("_closed" in f for f in old.frames)
    finally:
        await old.close()
        await forger.close()


# §11.16, §11.25: worker names and the worker list


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_two_workers_with_one_name_both_stay_connected(engine_url: str, sdk_worker, sdk: str) -> None:
    """Two workers with one worker_name both register and serve; WORKER_NAMESPACE_CONFLICT is never sent."""
    one = await sdk_worker(sdk, engine_url, name="same-name", functions=[echo("same::one")])
    two = await sdk_worker(sdk, engine_url, name="same-name", functions=[echo("same::two")])
    probe = await sdk_worker(PROBE, engine_url)
    assert (await probe.call_ok("same::one", {}))["pid"] == one.pid
    assert (await probe.call_ok("same::two", {}))["pid"] == two.pid
    named = [w for w in await list_workers(probe) if w["name"] == "same-name"]
    assert len(named) == 2
    for worker in (one, two):
        assert not worker.find({"event": "connection_state", "state": "failed"})
        assert not worker.find(
            lambda e: e["event"] == "sdk_log" and "WORKER_NAMESPACE_CONFLICT" in e["message"]
        )


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_workers_list_shows_sdk_workers_and_builtins(engine_url: str, sdk_worker, sdk: str) -> None:
    """engine::workers::list shows SDK workers (name, runtime, version, namespace, count) and built-ins."""
    worker = await sdk_worker(
        sdk, engine_url, name=f"listed-{sdk}", functions=[echo("l::one"), echo("l::two")]
    )
    probe = await sdk_worker(PROBE, engine_url, name="probe")
    workers = await list_workers(probe)
    entry = next(w for w in workers if w["name"] == f"listed-{sdk}")
    assert entry["id"] == ready_event(worker)["worker_id"]
    assert entry["runtime"] == SDKS[sdk].language
    assert entry["version"] == SDKS[sdk].version
    assert entry["namespace"] == "default"
    assert entry["function_count"] == 2
    assert entry["status"] == "connected"
    assert any(w["runtime"] == "engine" and w["status"] == "available" for w in workers)
    # Exactly the two SDK workers: their /otel sockets are not workers.
    assert sorted(w["name"] for w in workers if w["runtime"] != "engine") == sorted(
        [f"listed-{sdk}", "probe"]
    )


# The issue list: custom trigger types across workers


@pytest.mark.parametrize(("provider_sdk", "binder_sdk"), sdk_pairs())
async def test_custom_trigger_type_provided_by_one_worker_bound_by_another(
    engine_url: str, sdk_worker, provider_sdk: str, binder_sdk: str
) -> None:
    """A binding on a worker-provided type reaches its provider, fires into the binder, and unregisters."""
    provider = await sdk_worker(provider_sdk, engine_url, trigger_types=[{"id": "webhook"}])
    binder = await sdk_worker(binder_sdk, engine_url, functions=[echo("b::on_hook")])
    binding = {
        "type": "webhook",
        "function_id": "b::on_hook",
        "config": {"path": "/hook"},
        "metadata": {"m": 1},
    }
    await binder.command("register_trigger", key="hook", trigger=binding)
    delivered = await provider.wait_event({"event": "trigger_register", "trigger_type": "webhook"})
    assert delivered["function_id"] == "b::on_hook" and delivered["config"] == {"path": "/hook"}
    assert delivered["metadata"] == {"m": 1} and is_uuid(delivered["id"])

    reply = await provider.command("fire", trigger_type="webhook", payload={"event": 1})
    assert reply["fired"] == 1
    fired = await provider.wait_event({"event": "fired", "trigger_type": "webhook"})
    assert fired["ok"], fired
    invoked = await binder.wait_event({"event": "invoked", "function_id": "b::on_hook"})
    assert invoked["data"] == {"event": 1}
    assert invoked["metadata"] == ({"m": 1} if both_send_metadata(provider_sdk, binder_sdk) else None)

    await binder.command("unregister_trigger", key="hook")
    if SDKS[provider_sdk].handles_unregister_trigger:
        removed = await provider.wait_event({"event": "trigger_unregister", "trigger_type": "webhook"})
        assert removed["id"] == delivered["id"]


# §11.37 and the issue list: engine restarts


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_engine_restart_reconnects_and_replays(engine_proc, sdk_worker, sdk: str) -> None:
    """After an engine restart (1012) the worker reconnects and replays; calls work again within 5 s."""
    engine = await engine_proc()
    worker = await sdk_worker(
        sdk,
        engine.url,
        functions=[echo("rs::echo")],
        trigger_types=[{"id": "rstype"}],
        triggers=[{"type": "rstype", "function_id": "rs::echo", "config": {"c": 1}}],
    )
    await worker.wait_event({"event": "trigger_register", "trigger_type": "rstype"})
    mark = worker.mark()
    loop = asyncio.get_running_loop()
    await engine.stop()
    dropped = await worker.wait_event(
        lambda e: e["event"] == "connection_state" and e["state"] != "connected", since=mark
    )
    await engine.start()
    restarted = loop.time()
    await worker.wait_state("connected", since=worker.after(dropped), timeout_s=10)
    await worker.sync()
    assert (await worker.call_ok("rs::echo", {"after": "restart"}))["got"] == {"after": "restart"}
    assert loop.time() - restarted < 5 * TIME_FACTOR
    replayed = await worker.wait_event({"event": "trigger_register", "trigger_type": "rstype"}, since=mark)
    assert replayed["config"] == {"c": 1}
    other = await sdk_worker(PROBE, engine.url)
    assert (await other.call_ok("rs::echo", {"from": "other"}))["worker"] == worker.name
    if sdk == "py-0.25":  # the only SDK that logs the close code
        closed = worker.find(lambda e: e["event"] == "sdk_log" and "Connection closed (code=" in e["message"])
        assert closed and "code=1012" in closed[0]["message"], closed


# §11.38 and the issue list: dead workers


@pytest.mark.parametrize("how", ["kill", "freeze"])
@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_dead_worker_releases_its_functions(engine_proc, sdk_worker, sdk: str, how: str) -> None:
    """A killed or frozen (no pongs) worker is dropped, by engine pings if need be; the other owner serves."""
    engine = await engine_proc(ping_interval_ms=300)
    doomed = await sdk_worker(sdk, engine.url, name="doomed", functions=[echo("d::echo")])
    survivor = await sdk_worker(PROBE, engine.url, name="survivor", functions=[echo("d::echo")])
    doomed_id = ready_event(doomed)["worker_id"]
    if how == "kill":
        doomed.kill()
    else:
        doomed.freeze()
    took = await wait_worker_gone(survivor, doomed_id, timeout_s=60)
    assert took < 10 * TIME_FACTOR  # 2 missed pongs at 300 ms
    results = await asyncio.gather(*(survivor.call("d::echo", {"i": i}) for i in range(10)))
    assert all(r["ok"] and r["result"]["worker"] == "survivor" for r in results), results


# §11.39 - §11.41: the 0.11 generation


async def test_legacy_python_is_never_sent_more_than_1mib(engine_url: str, sdk_worker) -> None:
    """2 MiB frames for a 0.11 Python worker fail the caller with payload_too_large; the worker carries on."""
    legacy = await sdk_worker("py-0.11.6", engine_url, functions=[echo("legacy::echo", quiet=True)])
    modern = await sdk_worker(
        "py-0.25", engine_url, functions=[big("modern::big", 2 * MIB), echo("modern::echo")]
    )
    too_big_result = await legacy.call("modern::big", {})
    assert not too_big_result["ok"] and too_big_result["code"] == "payload_too_large", too_big_result
    too_big_payload = await modern.call("legacy::echo", payload_blob_bytes=2 * MIB, quiet=True)
    assert not too_big_payload["ok"] and too_big_payload["code"] == "payload_too_large", too_big_payload
    assert not legacy.find({"event": "invoked", "function_id": "legacy::echo"})
    assert (await legacy.call_ok("modern::echo", {"small": 1}))["got"] == {"small": 1}
    assert (await modern.call_ok("legacy::echo", {"small": 2}))["function_id"] == "legacy::echo"
    assert legacy.find({"event": "invoked", "function_id": "legacy::echo"})
    assert not dropped_since_ready(legacy)


@pytest.mark.parametrize("sdk", LEGACY_SDKS)
async def test_legacy_reconnect_evicts_stale_connection_by_identity(
    engine_url: str, sdk_worker, sdk: str
) -> None:
    """A 0.11 worker connecting beside its half-open old socket evicts it by identity; calls reach it."""
    worker = await sdk_worker(
        sdk, engine_url, name="ident", connect="on_command", functions=[echo("ident::echo")]
    )
    started = worker.find({"event": "started"})[0]
    # The "old connection": same name, pid and os as the worker, and it never answers pings.
    stale = await RawClient.connect(engine_url, autoping=False)
    try:
        await stale.hello()
        await stale.register_worker("ident", pid=started["pid"], os=started["os"], runtime=SDKS[sdk].language)
        await stale.send({"type": "registerfunction", "id": "ident::echo"})
        await stale.wait_listed("ident::echo")
        await worker.command("connect")
        await worker.wait_ready()
        assert await stale.wait_closed(timeout_s=10) == 1001
        caller = await sdk_worker(PROBE, engine_url)
        results = await asyncio.gather(*(caller.call("ident::echo", {"i": i}) for i in range(10)))
        assert all(r["ok"] and r["result"]["pid"] == worker.pid for r in results), results
    finally:
        await stale.close()


@pytest.mark.parametrize("sdk", LEGACY_SDKS)
async def test_legacy_registerservice_is_accepted(engine_url: str, sdk_worker, sdk: str) -> None:
    """registerservice from a 0.11 worker (at start and live) is accepted silently; the worker serves."""
    worker = await sdk_worker(
        sdk, engine_url, services=[{"id": "billing", "description": "Billing"}], functions=[echo("svc::echo")]
    )
    await worker.command(
        "register_service", service={"id": "billing::refunds", "parent_service_id": "billing"}
    )
    probe = await sdk_worker(PROBE, engine_url)
    assert (await probe.call_ok("svc::echo", {"s": 1}))["got"] == {"s": 1}
    assert not dropped_since_ready(worker)


@pytest.mark.parametrize("sdk", LEGACY_SDKS)
async def test_legacy_token_in_query_is_accepted(engine_proc, sdk_worker, sdk: str) -> None:
    """With auth_token set, a 0.11 worker that appends ?token=<token> to the address connects and serves."""
    engine = await engine_proc(worker_manager={"auth_token": "s3cret-token"})
    worker = await sdk_worker(sdk, f"{engine.url}/?token=s3cret-token", functions=[echo("tok::echo")])
    assert (await worker.call_ok("tok::echo", {"t": 1}))["got"] == {"t": 1}


# The issue list: Logger


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_logger_lines_reach_the_engine_console(engine_proc, sdk_worker, sdk: str) -> None:
    """Logger().info/.warn from every SDK arrive over /otel and print on the engine console with data."""
    engine = await engine_proc()
    tag = uuid.uuid4().hex[:8]
    await sdk_worker(
        sdk,
        engine.url,
        logs=[
            {"level": "info", "message": f"compat-info-{tag}", "data": {"who": sdk}},
            {"level": "warn", "message": f"compat-warn-{tag}", "data": {"n": 7}},
        ],
    )
    info = await engine.wait_stderr(f"compat-info-{tag}")
    warn = await engine.wait_stderr(f"compat-warn-{tag}")
    assert f'"who":"{sdk}"' in info and '"n":7' in warn
    if SDKS[sdk].language == "python":  # the Node SDKs send no severityText (SDK_NOTES.md §0.5)
        assert "[INFO]" in info and "[WARN]" in warn
