"""Invocation routing (spec/protocol.md §4, §5.1): relaying, Void, errors, timeouts, stops, round-robin.

Raw WebSocket workers on a real server, so every assertion is about frames on the wire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from helpers import ABSENT, NO_REPLY, HandlerError, RawWorker, compact, detached

Connect = Any


async def pair(url: str, connect: Connect) -> tuple[RawWorker, RawWorker]:
    """A registered caller and a registered target."""
    caller = await connect(url)
    await caller.register("caller")
    target = await connect(url)
    await target.register("target")
    return caller, target


# --------------------------------------------------------------------------------------------
# §4.1: relaying a call (checklist items 4-5)


async def test_call_is_relayed_with_data_and_metadata_unchanged(engine_url: str, connect: Connect) -> None:
    """§4.1 (item 4): id, data, metadata and result are relayed byte for byte; no _caller_worker_id (D7)."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::echo", lambda f: {"got": f["data"], "meta": f["metadata"]})
    await caller.send(
        '{"function_id":"t::echo","data":{"a":1,"nested":{"b":[1,2.5,null,"x"]}},"metadata":{"sess":"s1"},'
        '"invocation_id":"e8ea8b1b-2261-490d-9269-b056c214ec86","type":"invokefunction"}'
    )
    invocation = await target.expect("invokefunction")
    assert invocation.raw == (
        '{"type":"invokefunction","invocation_id":"e8ea8b1b-2261-490d-9269-b056c214ec86","function_id":"t::echo",'
        '"data":{"a":1,"nested":{"b":[1,2.5,null,"x"]}},"metadata":{"sess":"s1"}}'
    )
    reply = await caller.expect("invocationresult")
    assert reply.raw == (
        '{"type":"invocationresult","invocation_id":"e8ea8b1b-2261-490d-9269-b056c214ec86","function_id":"t::echo",'
        '"result":{"got":{"a":1,"nested":{"b":[1,2.5,null,"x"]}},"meta":{"sess":"s1"}}}'
    )


async def test_call_without_data_reaches_the_target_as_null(engine_url: str, connect: Connect) -> None:
    """D1 (item 5): an invokefunction without ``data`` is delivered with ``"data":null`` written."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::echo")
    reply = await caller.call("t::echo", ABSENT, invocation_id="1f1e0955-5d3c-4b6a-b4ea-971ac240da3d")
    invocation = await target.expect("invokefunction")
    assert invocation.raw == (
        '{"type":"invokefunction","invocation_id":"1f1e0955-5d3c-4b6a-b4ea-971ac240da3d",'
        '"function_id":"t::echo","data":null}'
    )
    assert reply.raw == (
        '{"type":"invocationresult","invocation_id":"1f1e0955-5d3c-4b6a-b4ea-971ac240da3d",'
        '"function_id":"t::echo","result":null}'
    )


async def test_null_optional_fields_of_a_call_count_as_absent(engine_url: str, connect: Connect) -> None:
    """§3.1 rule 3: ``metadata``, ``namespace``, ``action`` and trace fields sent as null are absent."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::echo")
    reply = await caller.call(
        "t::echo", 5, metadata=None, namespace=None, action=None, traceparent=None, baggage=None
    )
    assert reply["result"] == 5
    invocation = await target.expect("invokefunction")
    assert set(invocation) == {"type", "invocation_id", "function_id", "data"}


async def test_result_without_result_field_is_relayed_as_null(engine_url: str, connect: Connect) -> None:
    """§3.9: a worker's success without ``result`` reaches the caller with ``"result":null`` written."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::quiet", lambda f: NO_REPLY)
    invocation_id = await caller.invoke("t::quiet", 1)
    await target.expect("invokefunction")
    await target.send({"type": "invocationresult", "invocation_id": invocation_id, "function_id": "t::quiet"})
    reply = await caller.expect("invocationresult")
    assert reply.raw == compact(
        {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": "t::quiet",
            "result": None,
        }
    )


async def test_trace_context_passes_through_both_ways(engine_url: str, connect: Connect) -> None:
    """§3.8/§3.9: traceparent and baggage reach the target, and the target's come back to the caller."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::trace", lambda f: NO_REPLY)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    invocation_id = await caller.invoke("t::trace", {}, traceparent=tp, baggage="user=1")
    invocation = await target.expect("invokefunction")
    assert (invocation["traceparent"], invocation["baggage"]) == (tp, "user=1")
    await target.send(
        {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": "t::trace",
            "result": "ok",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
            "baggage": "user=2",
        }
    )
    reply = await caller.expect("invocationresult")
    assert reply["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    assert reply["baggage"] == "user=2"


async def test_the_answering_connection_is_not_checked(engine_url: str, connect: Connect) -> None:
    """§4.1 step 7: a result with a pending id settles the call whichever connection sends it."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::fn", lambda f: NO_REPLY)
    invocation_id = await caller.invoke("t::fn", 1)
    await target.expect("invokefunction")
    other = await connect(engine_url)
    await other.send(
        {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": "t::fn",
            "result": "other",
        }
    )
    assert (await caller.expect("invocationresult"))["result"] == "other"


async def test_same_invocation_id_from_two_callers_is_kept_apart(engine_url: str, connect: Connect) -> None:
    """§4.1 step 5: a pending id gets a fresh UUID on the target leg and is mapped back to its caller."""
    first, target = await pair(engine_url, connect)
    second = await connect(engine_url)
    await second.register("second")
    await target.serve("t::slow", lambda f: NO_REPLY)
    await first.invoke("t::slow", "from-first", invocation_id="dup-1")
    await second.invoke("t::slow", "from-second", invocation_id="dup-1")
    legs = [await target.expect("invokefunction"), await target.expect("invokefunction")]
    assert legs[0]["invocation_id"] == "dup-1"
    assert uuid.UUID(legs[1]["invocation_id"]).version == 4
    for leg in reversed(legs):
        await target.send(
            {
                "type": "invocationresult",
                "invocation_id": leg["invocation_id"],
                "function_id": "t::slow",
                "result": leg["data"],
            }
        )
    assert (await first.expect("invocationresult")) == {
        "type": "invocationresult",
        "invocation_id": "dup-1",
        "function_id": "t::slow",
        "result": "from-first",
    }
    assert (await second.expect("invocationresult"))["result"] == "from-second"


async def test_result_for_unknown_or_settled_call_is_dropped(engine_url: str, connect: Connect) -> None:
    """§4.1 step 7: a result for an unknown or already settled id is dropped quietly."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::echo")
    assert (await caller.call("t::echo", 1, invocation_id="once"))["result"] == 1
    await target.send(
        {"type": "invocationresult", "invocation_id": "once", "function_id": "t::echo", "result": 2}
    )
    await target.send({"type": "invocationresult", "invocation_id": "never", "function_id": "x", "result": 3})
    await target.barrier()
    await caller.barrier()
    assert caller.received("invocationresult") == []


async def test_calls_are_dispatched_without_blocking_the_read_loop(engine_url: str, connect: Connect) -> None:
    """§3.1 rule 6: a call to a slow function does not hold up later messages of the same connection."""
    caller, target = await pair(engine_url, connect)
    release = asyncio.Event()

    async def slow(frame: Any) -> str:
        await release.wait()
        return "slow"

    await target.serve("t::slow", slow)
    await target.serve("t::fast", lambda f: "fast")
    slow_id = await caller.invoke("t::slow")
    assert (await caller.call("t::fast"))["result"] == "fast"
    release.set()
    assert (await caller.expect({"invocation_id": slow_id}))["result"] == "slow"


# --------------------------------------------------------------------------------------------
# §4.2: Void (checklist item 6)


async def test_void_call_gets_no_reply_and_the_target_result_is_discarded(
    engine_url: str, connect: Connect
) -> None:
    """§4.2 (item 6): Void gets no reply; the target gets a fresh invocation_id; its result is dropped."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::echo")
    await caller.void("t::echo", {"v": 1})
    invocation = await target.expect("invokefunction")
    assert uuid.UUID(invocation["invocation_id"]).version == 4
    assert set(invocation) == {"type", "invocation_id", "function_id", "data"}
    assert invocation["data"] == {"v": 1}
    await target.barrier()  # the engine has processed the target's result
    await caller.barrier()
    assert caller.inbox == []


async def test_void_call_with_invocation_id_is_answered_null_at_once(
    engine_url: str, connect: Connect
) -> None:
    """§4.2 rule 1: a Void call that carries an invocation_id anyway is answered ``"result":null`` at once."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::never", lambda f: NO_REPLY)
    reply = await caller.call("t::never", 1, action={"type": "void"}, invocation_id="v-1")
    assert (
        reply.raw
        == '{"type":"invocationresult","invocation_id":"v-1","function_id":"t::never","result":null}'
    )
    invocation = await target.expect("invokefunction")
    assert invocation["invocation_id"] != "v-1"


async def test_void_call_to_unknown_function_is_only_logged(engine_url: str, connect: Connect) -> None:
    """§4.2 rule 3: a Void miss sends nothing back."""
    caller = await connect(engine_url)
    await caller.void("nope::x", 1)
    await caller.barrier()
    assert caller.inbox == []


# --------------------------------------------------------------------------------------------
# §4.1 step 1, §4.3: invalid calls and Enqueue (checklist items 8-9)


@pytest.mark.parametrize(
    "action",
    [
        {"type": "bogus"},
        {"type": "VOID"},
        {"type": "enqueue"},
        {"type": "enqueue", "queue": 5},
        {"type": "enqueue", "queue": None},
        {},
        "void",
        ["void"],
        7,
    ],
)
async def test_invalid_action_is_answered_invalid_action(
    engine_url: str, connect: Connect, action: Any
) -> None:
    """D4 (item 9): an unknown or malformed ``action`` is answered with ``invalid_action``."""
    caller = await connect(engine_url)
    reply = await caller.call("engine::functions::list", {}, action=action)
    assert reply["error"]["code"] == "invalid_action"
    assert reply["function_id"] == "engine::functions::list"


async def test_call_without_function_id_is_answered_invalid_message(
    engine_url: str, connect: Connect
) -> None:
    """D5 (item 9): a call without ``function_id`` but with an invocation_id gets ``invalid_message``."""
    caller = await connect(engine_url)
    await caller.send({"type": "invokefunction", "invocation_id": "m-1", "data": {}})
    reply = await caller.expect({"invocation_id": "m-1"})
    assert reply["error"]["code"] == "invalid_message"
    assert set(reply) == {"type", "invocation_id", "function_id", "error"}


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "invokefunction", "invocation_id": "m-2", "function_id": 12},
        {"type": "invokefunction", "invocation_id": "m-2", "function_id": None},
        {"type": "invokefunction", "invocation_id": "m-2", "function_id": "f", "namespace": 3},
        {"type": "invokefunction", "invocation_id": "m-2", "function_id": "f", "traceparent": ["x"]},
    ],
)
async def test_mistyped_call_with_invocation_id_is_answered(
    engine_url: str, connect: Connect, frame: dict[str, Any]
) -> None:
    """D5: a malformed invokefunction with a usable invocation_id is answered ``invalid_message``."""
    caller = await connect(engine_url)
    await caller.send(frame)
    assert (await caller.expect({"invocation_id": "m-2"}))["error"]["code"] == "invalid_message"


async def test_malformed_call_without_invocation_id_is_dropped(engine_url: str, connect: Connect) -> None:
    """§4.1 step 1: a malformed call without a usable invocation_id is logged and dropped."""
    caller = await connect(engine_url)
    await caller.send({"type": "invokefunction", "data": {}})
    await caller.send({"type": "invokefunction", "invocation_id": 5})
    await caller.send({"type": "invokefunction", "invocation_id": ""})
    await caller.barrier()
    assert caller.inbox == []
    assert (await caller.call("engine::functions::list", {}))["result"] == {"functions": []}


@pytest.mark.parametrize("namespace", ["", "   ", "\t"])
async def test_blank_call_namespace_is_invalid(engine_url: str, connect: Connect, namespace: str) -> None:
    """§4.1 step 1: a blank ``namespace`` is answered ``INVALID_NAMESPACE``."""
    caller = await connect(engine_url)
    reply = await caller.call("engine::functions::list", {}, namespace=namespace)
    assert reply["error"]["code"] == "INVALID_NAMESPACE"


async def test_enqueue_without_queue_module_is_enqueue_error(engine_url: str, connect: Connect) -> None:
    """§4.3 rule 4 (item 8): with the queue module off, Enqueue answers ``enqueue_error`` with the hint."""
    caller = await connect(engine_url)
    reply = await caller.call("any::fn", {"q": 1}, action={"type": "enqueue", "queue": "jobs"})
    assert reply["error"] == {
        "code": "enqueue_error",
        "message": "Cannot enqueue to queue 'jobs': the queue module is not enabled. "
        'Add "- name: queue" to "workers:" in the config file.',
    }


# --------------------------------------------------------------------------------------------
# §4.1 step 4, §4.6: errors (checklist item 10)


async def test_unknown_function_is_function_not_found(engine_url: str, connect: Connect) -> None:
    """§4.1 step 4 (item 10): the exact ``function_not_found`` reply."""
    caller = await connect(engine_url)
    reply = await caller.call("nope::x", {}, invocation_id="853f5558-2baf-49d5-ad5e-0a70e31eee47")
    assert reply.raw == (
        '{"type":"invocationresult","invocation_id":"853f5558-2baf-49d5-ad5e-0a70e31eee47","function_id":"nope::x",'
        '"error":{"code":"function_not_found","message":"Function nope::x not found in namespace default."}}'
    )


async def test_function_not_found_names_the_namespaces_holding_it(engine_url: str, connect: Connect) -> None:
    """§4.1 step 4 (item 10): when the id exists elsewhere, the message lists those namespaces."""
    orders = await connect(engine_url)
    await orders.register("orders-worker", namespace="orders")
    await orders.serve("orders::create")
    billing = await connect(engine_url)
    await billing.register("billing-worker", namespace="billing")
    await billing.serve("orders::create")
    caller = await connect(engine_url)
    reply = await caller.call("orders::create", {})
    assert reply["error"] == {
        "code": "function_not_found",
        "message": "Function orders::create not found in namespace default. "
        "It is registered in namespace(s): billing, orders.",
    }


async def test_handler_error_is_relayed_with_stacktrace(engine_url: str, connect: Connect) -> None:
    """§4.6 (item 10): a handler's ``invocation_failed`` reaches the caller with message and stacktrace."""
    caller, target = await pair(engine_url, connect)

    def boom(frame: Any) -> Any:
        raise HandlerError("invocation_failed", "division by zero", "Traceback (most recent call last): ...")

    await target.serve("t::boom", boom)
    reply = await caller.call("t::boom", {})
    assert reply["error"] == {
        "code": "invocation_failed",
        "message": "division by zero",
        "stacktrace": "Traceback (most recent call last): ...",
    }
    assert "result" not in reply


async def test_malformed_result_fails_the_pending_call(engine_url: str, connect: Connect) -> None:
    """Core rule (§4.1): a malformed result for a pending call still answers the caller, once."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::fn", lambda f: NO_REPLY)
    invocation_id = await caller.invoke("t::fn", 1)
    await target.expect("invokefunction")
    await target.send({"type": "invocationresult", "invocation_id": invocation_id, "error": "not an object"})
    reply = await caller.expect({"invocation_id": invocation_id})
    assert reply["error"]["code"] == "invalid_message"
    await target.send({"type": "invocationresult", "invocation_id": invocation_id, "function_id": "t::fn"})
    await target.barrier()
    await caller.barrier()
    assert caller.received("invocationresult") == []


# --------------------------------------------------------------------------------------------
# §4.5, §6.3: timeouts and stops (checklist items 11-12)


async def test_target_that_never_answers_times_out(make_server: Any, connect: Connect) -> None:
    """§4.5 (item 11): after invocation_timeout_ms the caller gets invocation_timeout; late results drop."""
    server = await make_server(invocation_timeout_ms=500)
    caller, target = await pair(server.url, connect)
    await target.serve("t::never", lambda f: NO_REPLY)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await caller.call("t::never", 1, invocation_id="slow-1")
    elapsed = loop.time() - started
    assert reply.raw == (
        '{"type":"invocationresult","invocation_id":"slow-1","function_id":"t::never",'
        '"error":{"code":"invocation_timeout","message":"Invocation of t::never timed out after 500 ms"}}'
    )
    assert elapsed >= 0.45
    await target.send({"type": "invocationresult", "invocation_id": "slow-1", "function_id": "t::never"})
    await target.barrier()
    await caller.barrier()
    assert caller.received("invocationresult") == []


async def test_void_target_leg_times_out_quietly(make_server: Any, connect: Connect) -> None:
    """§4.5 rule 1: a Void call's target leg is tracked under the same timeout and expires without a reply."""
    server = await make_server(invocation_timeout_ms=300)
    engine = server.engine
    expired = asyncio.Event()
    expire = engine._expire

    def spy(target_id: str) -> None:
        expire(target_id)
        expired.set()

    engine._expire = spy
    caller, target = await pair(server.url, connect)
    await target.serve("t::never", lambda f: NO_REPLY)
    await caller.void("t::never", 1)
    invocation = await target.expect("invokefunction")
    assert invocation["invocation_id"] in engine.pending
    await asyncio.wait_for(expired.wait(), 3)
    assert engine.pending == {}
    await caller.barrier()
    assert caller.inbox == []


async def test_target_disconnecting_mid_call_stops_the_call(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§6.3 step 4 (item 12): when the target goes away, the caller gets ``invocation_stopped``."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::fn", lambda f: NO_REPLY)
    invocation_id = await caller.invoke("t::fn", 1)
    await target.expect("invokefunction")
    await target.close()
    reply = await caller.expect({"invocation_id": invocation_id})
    assert reply.raw == compact(
        {
            "type": "invocationresult",
            "invocation_id": invocation_id,
            "function_id": "t::fn",
            "error": {"code": "invocation_stopped", "message": "Invocation stopped"},
        }
    )


async def test_caller_disconnecting_mid_call_drops_the_result(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§6.3 step 5 (item 12): a gone caller's result is dropped quietly; the target keeps serving."""
    caller, target = await pair(engine_url, connect)
    await target.serve("t::fn", lambda f: NO_REPLY)
    invocation_id = await caller.invoke("t::fn", 1)
    await target.expect("invokefunction")
    await caller.close()
    await detached(engine, caller.worker_id)
    await target.send({"type": "invocationresult", "invocation_id": invocation_id, "function_id": "t::fn"})
    await target.barrier()
    assert not target.closed.is_set()
    other = await connect(engine_url)
    await target.serve("t::echo")
    assert (await other.call("t::echo", "still"))["result"] == "still"


# --------------------------------------------------------------------------------------------
# §5.1: several owners (checklist item 13)


async def test_calls_are_spread_round_robin_over_owners(engine_url: str, connect: Connect) -> None:
    """§5.1 rule 2 (item 13): two owners of one id share 100 calls 50/50; no registrationrejected."""
    caller = await connect(engine_url)
    await caller.register("caller")
    owners = []
    for name in ("replica-a", "replica-b"):
        owner = await connect(engine_url)
        await owner.register(name)
        await owner.serve("rr::fn", lambda f, name=name: name)
        owners.append(owner)
    ids = [await caller.invoke("rr::fn", i) for i in range(100)]
    replies = [await caller.expect({"invocation_id": i}) for i in ids]
    counts = Counter(reply["result"] for reply in replies)
    assert counts == {"replica-a": 50, "replica-b": 50}
    for owner in owners:
        assert owner.received("registrationrejected") == []


async def test_remaining_owner_serves_every_call_after_failover(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§5.1 rule 3 (item 13): when one owner leaves, the other serves every call (no function_not_found)."""
    caller = await connect(engine_url)
    await caller.register("caller")
    a = await connect(engine_url)
    await a.register("replica-a")
    await a.serve("rr::fn", lambda f: "a")
    b = await connect(engine_url)
    await b.register("replica-b")
    await b.serve("rr::fn", lambda f: "b")
    await a.close()
    await detached(engine, a.worker_id)
    replies = [await caller.call("rr::fn", i) for i in range(20)]
    assert [r.get("result") for r in replies] == ["b"] * 20


async def test_unregister_removes_only_this_owner(engine_url: str, connect: Connect) -> None:
    """§5.1 rule 5: ``unregisterfunction`` releases only the sending connection; a non-owner's is a no-op."""
    caller = await connect(engine_url)
    a = await connect(engine_url)
    await a.register("a")
    await a.serve("rr::fn", lambda f: "a")
    b = await connect(engine_url)
    await b.register("b")
    await b.serve("rr::fn", lambda f: "b")
    await caller.send({"type": "unregisterfunction", "id": "rr::fn"})  # not an owner
    await caller.barrier()
    await a.send({"type": "unregisterfunction", "id": "rr::fn"})
    await a.barrier()
    assert {(await caller.call("rr::fn"))["result"] for _ in range(6)} == {"b"}
    await b.send({"type": "unregisterfunction", "id": "rr::fn"})
    await b.barrier()
    assert (await caller.call("rr::fn"))["error"]["code"] == "function_not_found"


async def test_duplicate_registration_is_idempotent(engine_url: str, connect: Connect) -> None:
    """§6.5 rule 12, §5.1 rule 1: registering an id twice keeps one owner; the latest description wins."""
    caller = await connect(engine_url)
    a = await connect(engine_url)
    await a.register("a")
    await a.serve("dup::fn", lambda f: "a", description="first")
    await a.register_function("dup::fn", description="second")
    b = await connect(engine_url)
    await b.register("b")
    await b.serve("dup::fn", lambda f: "b")
    counts = Counter([(await caller.call("dup::fn"))["result"] for _ in range(10)])
    assert counts == {"a": 5, "b": 5}
    listed = await caller.result("engine::functions::list", {"prefix": "dup::"})
    assert listed["functions"] == [{"function_id": "dup::fn", "namespace": "default", "worker_name": "a"}]
