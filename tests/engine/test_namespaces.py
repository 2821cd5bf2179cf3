"""Namespaces (spec/protocol.md §6.4, §7.1): strict resolution, buffering before register, grace period.

Raw WebSocket workers on a real server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import RawWorker

Connect = Any


async def worker(url: str, connect: Connect, name: str, **register: Any) -> RawWorker:
    w = await connect(url)
    await w.register(name, **register)
    return w


async def listing(w: RawWorker) -> list[tuple[str, str]]:
    listed = await w.result("engine::functions::list", {})
    return [(f["namespace"], f["function_id"]) for f in listed["functions"]]


# --------------------------------------------------------------------------------------------
# §6.4 rules 3-4 (checklist item 22)


async def test_namespaced_worker_registers_into_its_namespace(engine_url: str, connect: Connect) -> None:
    """§6.4 (item 22): ``orders`` functions are reached only by calls with ``namespace: orders``."""
    orders = await worker(engine_url, connect, "orders-worker", namespace="orders")
    await orders.serve("orders::create", lambda f: {"created": f["data"]})
    caller = await worker(engine_url, connect, "node-caller", runtime="node", features=None)
    assert await listing(caller) == [("orders", "orders::create")]
    miss = await caller.call("orders::create", {"item": 1})
    assert miss["error"] == {
        "code": "function_not_found",
        "message": "Function orders::create not found in namespace default. "
        "It is registered in namespace(s): orders.",
    }
    hit = await caller.call("orders::create", {"item": 1}, namespace="orders")
    assert hit["result"] == {"created": {"item": 1}}


async def test_namespaced_caller_cannot_reach_default_without_saying_so(
    engine_url: str, connect: Connect
) -> None:
    """§6.4 rule 4: a call resolves strictly in its own ``namespace`` (worker functions never fall back)."""
    node = await worker(engine_url, connect, "node-worker", runtime="node", features=None)
    await node.serve("node::echo")
    py = await worker(engine_url, connect, "py-worker", namespace="orders")
    miss = await py.call("node::echo", 1, namespace="orders")
    assert miss["error"]["code"] == "function_not_found"
    assert miss["error"]["message"] == (
        "Function node::echo not found in namespace orders. It is registered in namespace(s): default."
    )
    assert (await py.call("node::echo", 1, namespace="default"))["result"] == 1


async def test_builtins_resolve_from_every_namespace(engine_url: str, connect: Connect) -> None:
    """D20 (§6.4 rule 5): built-in functions are reachable from any namespace."""
    w = await worker(engine_url, connect, "py-worker", namespace="orders")
    reply = await w.call("engine::functions::list", {}, namespace="orders")
    assert reply["result"] == {"functions": []}
    assert (await w.call("engine::channels::create", {}, namespace="elsewhere"))["result"]["reader"]


async def test_same_id_in_two_namespaces_are_separate_functions(engine_url: str, connect: Connect) -> None:
    """§5.1: functions are keyed by (namespace, id); each call reaches its namespace's owner."""
    a = await worker(engine_url, connect, "a", namespace="ns-a")
    await a.serve("svc::fn", lambda f: "a")
    b = await worker(engine_url, connect, "b", namespace="ns-b")
    await b.serve("svc::fn", lambda f: "b")
    caller = await worker(engine_url, connect, "caller")
    assert (await caller.call("svc::fn", namespace="ns-a"))["result"] == "a"
    assert (await caller.call("svc::fn", namespace="ns-b"))["result"] == "b"
    assert await listing(caller) == [("ns-a", "svc::fn"), ("ns-b", "svc::fn")]


async def test_trigger_types_register_in_the_connection_namespace(engine_url: str, connect: Connect) -> None:
    """§5.3 rule 1: a trigger type registers in the connection's namespace unless ``msg.namespace`` says."""
    p = await worker(engine_url, connect, "provider", namespace="infra")
    await p.send({"type": "registertriggertype", "id": "own-ns", "description": ""})
    await p.send({"type": "registertriggertype", "id": "explicit", "description": "", "namespace": "other"})
    await p.barrier()
    listed = await p.result("engine::triggers::list", {"worker": "provider"})
    assert {t["id"]: t["namespace"] for t in listed["triggers"]} == {"own-ns": "infra", "explicit": "other"}


# --------------------------------------------------------------------------------------------
# §6.4 rules 1-2, §7.1 (checklist item 23)


async def test_registrations_before_register_land_in_the_declared_namespace(
    engine_url: str, connect: Connect
) -> None:
    """§6.4 rule 2 (item 23): registrations before the register call land in the namespace it declares."""
    w = await connect(engine_url)
    await w.send({"type": "registertriggertype", "id": "late-ns-type", "description": ""})
    await w.serve("late::fn", lambda f: "late", register=False)
    await w.send({"type": "registerfunction", "id": "late::fn"})
    await w.send({"type": "registerfunction", "id": "late::gone"})
    await w.send({"type": "unregisterfunction", "id": "late::gone"})
    await w.send(
        {"type": "registertrigger", "id": "b1", "trigger_type": "late-ns-type", "function_id": "late::fn"}
    )
    await w.barrier()
    caller = await worker(engine_url, connect, "caller")
    assert await listing(caller) == []
    await w.register("late-registrant", namespace="orders", wait=False)
    delivered = await w.expect("registertrigger")  # its own binding, delivered once the type exists
    assert (delivered["id"], delivered["function_id"]) == ("b1", "late::fn")
    assert await listing(caller) == [("orders", "late::fn")]
    assert (await caller.call("late::fn", namespace="orders"))["result"] == "late"
    types = await caller.result("engine::triggers::list", {"prefix": "late-ns"})
    assert [(t["id"], t["namespace"]) for t in types["triggers"]] == [("late-ns-type", "orders")]


async def test_without_register_registrations_land_in_default_after_grace(
    make_server: Any, connect: Connect
) -> None:
    """§6.4 rule 2 (item 23): without a register call, registrations land in ``default`` after the grace."""
    server = await make_server(registration_namespace_grace_ms=300)
    caller = await worker(server.url, connect, "caller")
    await caller.serve("watch::fns", lambda f: None)
    await caller.send(
        {"type": "registertrigger", "id": "watch", "trigger_type": "engine::functions-available",
         "function_id": "watch::fns", "config": {}}
    )  # fmt: skip
    await caller.barrier()
    loop = asyncio.get_running_loop()
    connecting = loop.time()  # the grace timer starts after this, when the engine attaches the socket
    w = await connect(server.url)
    await w.serve("grace::fn", lambda f: "graced")
    assert await listing(caller) == [("default", "watch::fns")]
    await caller.expect(
        lambda f: (
            f.get("function_id") == "watch::fns"
            and ("default", "grace::fn")
            in {(x["namespace"], x["function_id"]) for x in f["data"]["functions"]}
        )
    )
    assert loop.time() - connecting >= 0.29
    await w.register("too-late", namespace="orders")
    await w.register_function("grace::other")
    assert await listing(caller) == [
        ("default", "grace::fn"),
        ("default", "grace::other"),
        ("default", "watch::fns"),
    ]
    assert (await caller.call("grace::fn"))["result"] == "graced"


async def test_namespace_is_fixed_by_the_first_register(engine_url: str, connect: Connect) -> None:
    """§6.4 rule 2: once fixed, the namespace never changes; a second register only updates metadata."""
    w = await worker(engine_url, connect, "first", namespace="one")
    await w.register("renamed", namespace="two")
    await w.register_function("fixed::fn")
    caller = await worker(engine_url, connect, "caller")
    assert await listing(caller) == [("one", "fixed::fn")]
    rows = await caller.result("engine::workers::list", {"search": "renamed"})
    assert [(r["name"], r["namespace"]) for r in rows["workers"]] == [("renamed", "one")]


async def test_null_namespace_is_default(engine_url: str, connect: Connect) -> None:
    """§6.4 rule 1: an absent or null namespace in the register payload means ``default``."""
    w = await worker(engine_url, connect, "nulled", namespace=None)
    await w.register_function("null::fn")
    assert await listing(w) == [("default", "null::fn")]


async def test_blank_register_namespace_is_refused_and_changes_nothing(
    engine_url: str, connect: Connect
) -> None:
    """§6.4 rule 1: a blank register namespace gets INVALID_NAMESPACE and leaves registrations buffered."""
    w = await connect(engine_url)
    reply = await w.call("engine::workers::register", {"name": "blank", "pid": 1, "namespace": "  "})
    assert reply["error"]["code"] == "INVALID_NAMESPACE"
    await w.register_function("blank::fn")
    assert await listing(w) == []
    await w.register("fixed", namespace="good")
    assert await listing(w) == [("good", "blank::fn")]


async def test_invocations_are_never_buffered(engine_url: str, connect: Connect) -> None:
    """§6.4 rule 2: calls from a connection that has not registered yet are routed at once."""
    target = await worker(engine_url, connect, "target")
    await target.serve("t::echo")
    fresh = await connect(engine_url)
    assert (await fresh.call("t::echo", "now"))["result"] == "now"
