"""The built-in ``engine::`` functions and event trigger types (spec/protocol.md §5.4, §7), called by
raw WebSocket workers on a real server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from helpers import RawWorker, detached

Connect = Any


async def worker(url: str, connect: Connect, name: str, **register: Any) -> RawWorker:
    w = await connect(url)
    await w.register(name, **register)
    return w


async def subscribe(w: RawWorker, trigger_type: str, function_id: str) -> None:
    """Bind ``function_id`` (served by ``w``, recording every event) to an engine event type."""
    await w.serve(function_id, lambda f: None)
    await w.send(
        {"type": "registertrigger", "id": f"sub-{function_id}", "trigger_type": trigger_type,
         "function_id": function_id, "config": {}}
    )  # fmt: skip
    await w.barrier()


def event_of(function_id: str, **fields: Any) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        data = frame.get("data")
        return (
            frame.get("type") == "invokefunction"
            and frame.get("function_id") == function_id
            and isinstance(data, dict)
            and all(data.get(k) == v for k, v in fields.items())
        )

    return match


# --------------------------------------------------------------------------------------------
# §7.2 engine::functions::list (checklist item 24)


@pytest.fixture
async def catalogue(engine_url: str, connect: Connect) -> RawWorker:
    """Three workers with a mix of functions; returns a caller."""
    lab = await worker(engine_url, connect, "py-lab")
    await lab.register_function("py::echo", description="echo", metadata={"team": "lab"})
    await lab.register_function("py::hidden", metadata={"internal": True})
    await lab.register_function("engine::custom", description="worker-provided engine id")
    node = await worker(engine_url, connect, "node-lab", runtime="node", features=None)
    await node.register_function("node::echo")
    await node.register_function("zeta::last", description="Searchable THING")
    await node.register_function("alpha::first")
    ns = await worker(engine_url, connect, "ns-worker", namespace="orders")
    await ns.register_function("py::echo", description="orders echo")
    return await worker(engine_url, connect, "caller")


async def functions(caller: RawWorker, **args: Any) -> list[dict[str, Any]]:
    return (await caller.result("engine::functions::list", args))["functions"]


async def test_functions_list_is_sorted_and_hides_engine_and_internal(catalogue: RawWorker) -> None:
    """§7.2 (item 24): sorted, engine::* and internal hidden, description/metadata only when set."""
    assert await functions(catalogue) == [
        {"function_id": "alpha::first", "namespace": "default", "worker_name": "node-lab"},
        {"function_id": "node::echo", "namespace": "default", "worker_name": "node-lab"},
        {
            "function_id": "py::echo",
            "namespace": "default",
            "worker_name": "py-lab",
            "description": "echo",
            "metadata": {"team": "lab"},
        },
        {
            "function_id": "py::echo",
            "namespace": "orders",
            "worker_name": "ns-worker",
            "description": "orders echo",
        },
        {
            "function_id": "zeta::last",
            "namespace": "default",
            "worker_name": "node-lab",
            "description": "Searchable THING",
        },
    ]


async def test_functions_list_include_internal(catalogue: RawWorker) -> None:
    """§7.2 rule 2: ``include_internal`` also lists engine::* (named by their first segment) and internals."""
    listed = {
        (f["namespace"], f["function_id"]): f for f in await functions(catalogue, include_internal=True)
    }
    assert listed[("default", "py::hidden")]["metadata"] == {"internal": True}
    assert listed[("default", "engine::custom")]["worker_name"] == "py-lab"
    builtin = listed[("default", "engine::functions::list")]
    assert builtin["worker_name"] == "engine"
    assert {"engine::workers::register", "engine::channels::create", "engine::triggers::list"} <= {
        fid for _, fid in listed
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"prefix": "py::"}, [("default", "py::echo"), ("orders", "py::echo")]),
        ({"worker": "node-lab"},
         [("default", "alpha::first"), ("default", "node::echo"), ("default", "zeta::last")]),
        ({"workers": ["ns-worker", "py-lab"]}, [("default", "py::echo"), ("orders", "py::echo")]),
        ({"search": "thing"}, [("default", "zeta::last")]),
        ({"search": "ECHO"}, [("default", "node::echo"), ("default", "py::echo"), ("orders", "py::echo")]),
        ({"prefix": "py::", "worker": "ns-worker"}, [("orders", "py::echo")]),
        ({"prefix": "nothing::"}, []),
        ({"unknown_key": 1}, None),
    ],
)  # fmt: skip
async def test_functions_list_filters(catalogue: RawWorker, args: dict[str, Any], expected: Any) -> None:
    """§7.2 rule 3 (item 24): prefix, worker/workers and case-insensitive search; unknown keys ignored."""
    listed = [(f["namespace"], f["function_id"]) for f in await functions(catalogue, **args)]
    if expected is None:
        expected = [(f["namespace"], f["function_id"]) for f in await functions(catalogue)]
    assert listed == expected


@pytest.mark.parametrize("data", [None, {}, {"prefix": None}])
async def test_functions_list_null_input_is_empty_input(catalogue: RawWorker, data: Any) -> None:
    """§7: input ``null`` (and null fields) count as ``{}``."""
    assert (await catalogue.result("engine::functions::list", data)) == {
        "functions": await functions(catalogue)
    }


@pytest.mark.parametrize(
    "data", [{"prefix": 5}, {"search": ["x"]}, {"include_internal": "yes"}, {"worker": {}}, [1], "text"]
)
async def test_functions_list_wrong_types_are_deserialization_errors(
    engine_url: str, connect: Connect, data: Any
) -> None:
    """§7: a wrongly typed field gives ``deserialization_error`` with the function id in the message."""
    caller = await connect(engine_url)
    reply = await caller.call("engine::functions::list", data)
    assert reply["error"]["code"] == "deserialization_error"
    assert reply["error"]["message"].startswith("Failed to deserialize input for engine::functions::list: ")


async def test_worker_name_is_the_longest_standing_owner(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§7.2 rule 4: worker_name is the oldest live owner's name, else the id's first segment."""
    first = await worker(engine_url, connect, "first")
    await first.register_function("shared::fn")
    second = await worker(engine_url, connect, "second")
    await second.register_function("shared::fn")
    caller = await worker(engine_url, connect, "caller")
    assert [f["worker_name"] for f in await functions(caller, prefix="shared::")] == ["first"]
    await first.close()
    await detached(engine, first.worker_id)
    assert [f["worker_name"] for f in await functions(caller, prefix="shared::")] == ["second"]
    anonymous = await connect(engine_url)
    assert (await anonymous.call("engine::workers::register", {"pid": 5}))["result"] == {"success": True}
    await anonymous.register_function("anon::fn")
    assert [f["worker_name"] for f in await functions(caller, prefix="anon::")] == ["anon"]


# --------------------------------------------------------------------------------------------
# §7.3 engine::workers::list (checklist item 25, raw equivalent)


async def test_workers_list_shows_workers_and_builtin_modules(engine_url: str, connect: Connect) -> None:
    """§7.3: workers with metadata and counts, built-in modules; no /otel socket, no worker without pid."""
    a = await worker(engine_url, connect, "zz-worker", namespace="orders", description="desc")
    await a.register_function("a::one")
    await a.register_function("a::two")
    await connect(engine_url)  # never registers: no pid, not listed
    otel = await connect(engine_url, path="/otel", hello=False)
    caller = await worker(engine_url, connect, "aa-caller", runtime="node", features=None)
    rows = (await caller.result("engine::workers::list", {}))["workers"]
    names = [r["name"] for r in rows]
    assert names == sorted(names)
    by_name = {r["name"]: r for r in rows}
    row = by_name["zz-worker"]
    assert row["id"] == a.worker_id
    assert (row["runtime"], row["version"], row["os"], row["isolation"]) == (
        "python",
        "0.0-test",
        "Linux 6.8.0 (x86_64)",
        None,
    )
    assert (row["namespace"], row["status"], row["description"]) == ("orders", "connected", "desc")
    assert (row["function_count"], row["active_invocations"]) == (2, 0)
    assert row["ip_address"] == "127.0.0.1"
    assert isinstance(row["connected_at_ms"], int) and row["connected_at_ms"] > 1_600_000_000_000
    assert by_name["aa-caller"]["runtime"] == "node"
    builtins = {r["name"]: r for r in rows if r["status"] == "available"}
    assert {"iii-engine-functions", "iii-observability"} <= set(builtins)
    for module in builtins.values():
        assert (module["runtime"], module["isolation"]) == ("engine", "in-process")
        assert module["id"] == module["name"]
    assert len([r for r in rows if r["status"] == "connected"]) == 2
    assert not otel.closed.is_set()


async def test_workers_list_counts_active_invocations(engine_url: str, connect: Connect) -> None:
    """§7.3: ``active_invocations`` counts invocations currently routed to the worker."""
    target = await worker(engine_url, connect, "busy")
    await target.serve("busy::fn", lambda f: asyncio.Event().wait())
    caller = await worker(engine_url, connect, "caller")
    await caller.invoke("busy::fn")
    await target.expect("invokefunction")
    rows = (await caller.result("engine::workers::list", {"search": "BUSY"}))["workers"]
    assert [(r["name"], r["active_invocations"]) for r in rows] == [("busy", 1)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"runtime": "node"}, ["node-one"]),
        ({"status": "connected"}, ["node-one", "py-two"]),
        ({"search": "TWO"}, ["py-two"]),
        ({"runtime": "engine", "search": "engine-functions"}, ["iii-engine-functions"]),
    ],
)
async def test_workers_list_filters(
    engine_url: str, connect: Connect, args: dict[str, Any], expected: list[str]
) -> None:
    """§7.3 rule 3: ``runtime`` and ``status`` by equality, ``search`` by case-insensitive name substring."""
    await worker(engine_url, connect, "node-one", runtime="node", features=None)
    caller = await worker(engine_url, connect, "py-two")
    rows = (await caller.result("engine::workers::list", args))["workers"]
    assert [r["name"] for r in rows] == expected


async def test_register_updates_the_calling_connection(engine_url: str, connect: Connect) -> None:
    """§7.1: the register payload updates only the caller; the name is truncated to 280 characters."""
    w = await connect(engine_url)
    reply = await w.call(
        "engine::workers::register",
        {"name": "n" * 300, "pid": 9, "runtime": None, "unknown": {"ignored": True}, "isolation": "docker"},
    )
    assert reply["result"] == {"success": True}
    rows = (await w.result("engine::workers::list", {}))["workers"]
    mine = [r for r in rows if r["id"] == w.worker_id]
    assert len(mine) == 1
    assert mine[0]["name"] == "n" * 280
    assert (mine[0]["runtime"], mine[0]["isolation"]) == ("unknown", "docker")


@pytest.mark.parametrize(
    "data",
    [
        [1],
        "x",
        {"name": 5},
        {"pid": "123"},
        {"runtime": ["python"]},
        {"namespace": 7},
        {"telemetry": "x"},
        {"features": "large-messages.v1"},
    ],
)
async def test_register_with_wrong_types_is_a_deserialization_error(
    engine_url: str, connect: Connect, data: Any
) -> None:
    """§7: a wrongly typed field of ``engine::workers::register`` gives ``deserialization_error``."""
    w = await connect(engine_url)
    reply = await w.call("engine::workers::register", data)
    assert reply["error"]["code"] == "deserialization_error"


# --------------------------------------------------------------------------------------------
# §7.4 engine::triggers::list (checklist item 26)


async def test_triggers_list_shows_builtin_and_custom_types(engine_url: str, connect: Connect) -> None:
    """§7.4 (item 26): built-in and custom types with provider names, sorted; engine::* only if internal."""
    p = await worker(engine_url, connect, "custom-provider")
    await p.send({"type": "registertriggertype", "id": "webhook", "description": "Webhooks"})
    await p.send({"type": "registertriggertype", "id": "aaa-first", "description": ""})
    await p.barrier()
    listed = (await p.result("engine::triggers::list", {}))["triggers"]
    assert [t["id"] for t in listed] == sorted(t["id"] for t in listed)
    by_id = {t["id"]: t for t in listed}
    assert by_id["webhook"] == {
        "id": "webhook",
        "namespace": "default",
        "worker_name": "custom-provider",
        "description": "Webhooks",
    }
    assert by_id["log"]["worker_name"] == "iii-observability"
    assert not any(t.startswith("engine::") for t in by_id)
    internal = {
        t["id"]: t for t in (await p.result("engine::triggers::list", {"include_internal": True}))["triggers"]
    }
    assert internal["engine::workers-available"]["worker_name"] == "iii-engine-functions"
    assert internal["engine::functions-available"]["worker_name"] == "iii-engine-functions"
    only = (await p.result("engine::triggers::list", {"worker": "custom-provider", "search": "HOOK"}))[
        "triggers"
    ]
    assert [t["id"] for t in only] == ["webhook"]
    assert [t["id"] for t in (await p.result("engine::triggers::list", {"prefix": "aaa"}))["triggers"]] == [
        "aaa-first"
    ]


# --------------------------------------------------------------------------------------------
# §7.7 engine::registered-triggers::*


async def test_registered_triggers_list_and_info(engine_url: str, connect: Connect) -> None:
    """§7.7: bindings with their state, filters ANDed; ``info`` of an unknown id is ``NOT_FOUND``."""
    p = await worker(engine_url, connect, "provider")
    await p.send({"type": "registertriggertype", "id": "t1", "description": ""})
    await p.barrier()
    w = await worker(engine_url, connect, "registrant")
    for binding_id, type_id, fid in (("b2", "t1", "f::a"), ("b1", "t2", "f::a"), ("b3", "t1", "f::b")):
        await w.send(
            {"type": "registertrigger", "id": binding_id, "trigger_type": type_id, "function_id": fid,
             "config": {"c": binding_id}, "metadata": {"m": 1}}
        )  # fmt: skip
    await w.barrier()
    rows = (await w.result("engine::registered-triggers::list", {}))["triggers"]
    assert [r["id"] for r in rows] == ["b1", "b2", "b3"]
    assert rows[0] == {
        "id": "b1",
        "trigger_type": "t2",
        "function_id": "f::a",
        "config": {"c": "b1"},
        "metadata": {"m": 1},
        "namespace": "default",
        "worker_id": w.worker_id,
        "worker_name": "registrant",
        "state": "pending",
    }
    assert rows[1]["state"] == "active"
    both = await w.result("engine::registered-triggers::list", {"type": "t1", "function_id": "f::a"})
    assert [r["id"] for r in both["triggers"]] == ["b2"]
    by_worker = await w.result("engine::registered-triggers::list", {"worker": "provider"})
    assert by_worker["triggers"] == []
    assert (await w.result("engine::registered-triggers::info", {"id": "b3"}))["function_id"] == "f::b"
    missing = await w.call("engine::registered-triggers::info", {"id": "nope"})
    assert missing["error"]["code"] == "NOT_FOUND"


# --------------------------------------------------------------------------------------------
# §7.5 engine::channels::create


async def test_channels_create_returns_two_refs(engine_url: str, connect: Connect) -> None:
    """§7.5: a writer and a reader ref for one channel, UUID v4 ids and distinct keys."""
    w = await connect(engine_url)
    refs = await w.result("engine::channels::create", {"buffer_size": 5000})
    writer, reader = refs["writer"], refs["reader"]
    assert (writer["direction"], reader["direction"]) == ("write", "read")
    assert writer["channel_id"] == reader["channel_id"]
    assert writer["access_key"] != reader["access_key"]
    for value in (writer["channel_id"], writer["access_key"], reader["access_key"]):
        assert uuid.UUID(value).version == 4
    bad = await w.call("engine::channels::create", {"buffer_size": "big"})
    assert bad["error"]["code"] == "deserialization_error"


# --------------------------------------------------------------------------------------------
# §5.4 engine event trigger types (checklist item 27)


async def test_workers_available_events(engine: Any, engine_url: str, connect: Connect) -> None:
    """§5.4 (item 27): worker_connected, worker_metadata_updated and worker_disconnected fire."""
    watcher = await worker(engine_url, connect, "watcher")
    await subscribe(watcher, "engine::workers-available", "watch::workers")
    other = await connect(engine_url)
    connected = await watcher.expect(event_of("watch::workers", worker_id=other.worker_id))
    assert connected["data"] == {"event": "worker_connected", "worker_id": other.worker_id}
    await other.register("other")
    updated = await watcher.expect(event_of("watch::workers", worker_id=other.worker_id))
    assert updated["data"] == {"event": "worker_metadata_updated", "worker_id": other.worker_id}
    await other.close()
    gone = await watcher.expect(event_of("watch::workers", worker_id=other.worker_id))
    assert gone["data"] == {"event": "worker_disconnected", "worker_id": other.worker_id}
    assert other.worker_id not in engine.peers  # fired after the cleanup


async def test_functions_available_fires_within_a_second(engine_url: str, connect: Connect) -> None:
    """§5.4 (item 27): functions-available fires within 1 s with the default listing; bursts coalesce."""
    watcher = await worker(engine_url, connect, "watcher")
    await subscribe(watcher, "engine::functions-available", "watch::fns")
    await watcher.barrier()
    w = await worker(engine_url, connect, "registrant")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index in range(5):
        await w.send({"type": "registerfunction", "id": f"burst::f{index}"})
    await w.barrier()

    def has_burst(frame: dict[str, Any]) -> bool:
        fns = frame.get("data", {}).get("functions", []) if frame.get("function_id") == "watch::fns" else []
        return {f["function_id"] for f in fns} >= {f"burst::f{i}" for i in range(5)}

    event = await watcher.expect(has_burst, timeout_s=1.0)
    assert loop.time() - started < 1.0
    assert event["data"]["event"] == "functions_changed"
    assert event["data"]["functions"] == await functions(watcher)
    await watcher.barrier()
    bursts = [f for f in watcher.received(event_of("watch::fns")) if has_burst(f)]
    assert bursts == []  # one event for the whole burst


async def test_functions_available_fires_on_removal(engine: Any, engine_url: str, connect: Connect) -> None:
    """§5.4, §6.3 step 8: a disconnect that changes the function registry fires the event too."""
    leaving = await worker(engine_url, connect, "leaving")
    await leaving.register_function("leaving::fn")
    watcher = await worker(engine_url, connect, "watcher")
    await subscribe(watcher, "engine::functions-available", "watch::fns")
    await leaving.close()
    await detached(engine, leaving.worker_id)
    event = await watcher.expect(
        lambda f: (
            f.get("function_id") == "watch::fns"
            and "leaving::fn" not in {x["function_id"] for x in f["data"]["functions"]}
        ),
        timeout_s=1.0,
    )
    assert event["data"]["event"] == "functions_changed"


async def test_event_binding_metadata_is_delivered(engine_url: str, connect: Connect) -> None:
    """§4.4: an engine-initiated call carries the binding's metadata."""
    watcher = await worker(engine_url, connect, "watcher")
    await watcher.serve("watch::meta", lambda f: None)
    await watcher.send(
        {"type": "registertrigger", "id": "m", "trigger_type": "engine::workers-available",
         "function_id": "watch::meta", "config": {}, "metadata": {"source": "test"}}
    )  # fmt: skip
    await watcher.barrier()
    other = await connect(engine_url)
    event = await watcher.expect(event_of("watch::meta", worker_id=other.worker_id))
    assert event["metadata"] == {"source": "test"}
