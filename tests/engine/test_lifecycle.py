"""Connection lifecycle (spec/protocol.md §5.1 rule 4, §6.1-§6.3): reserved ids, reattach, cleanup.

Raw WebSocket workers on a real server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers import RawWorker, detached

Connect = Any


async def worker(url: str, connect: Connect, name: str, **register: Any) -> RawWorker:
    w = await connect(url)
    await w.register(name, **register)
    return w


async def function_ids(w: RawWorker) -> set[str]:
    listed = await w.result("engine::functions::list", {"include_internal": True})
    return {f["function_id"] for f in listed["functions"]}


# --------------------------------------------------------------------------------------------
# §5.1 rule 4: reserved ids (checklist item 14)


@pytest.mark.parametrize(
    "function_id", ["engine::functions::list", "engine::workers::register", "engine::channels::create"]
)
async def test_builtin_ids_are_rejected_in_default(
    engine_url: str, connect: Connect, function_id: str
) -> None:
    """§5.1 rule 4 (item 14): a built-in's id is rejected with ``owner_worker_id: ""``; the built-in works."""
    w = await worker(engine_url, connect, "squatter")
    await w.send({"type": "registerfunction", "id": function_id})
    rejected = await w.expect("registrationrejected")
    assert rejected.raw == (
        '{"type":"registrationrejected","code":"FUNCTION_NAMESPACE_CONFLICT","namespace":"default",'
        f'"function_id":"{function_id}","owner_worker_id":""}}'
    )
    assert (await w.call("engine::functions::list", {}))["result"] == {"functions": []}


async def test_engine_ids_are_rejected_in_other_namespaces(engine_url: str, connect: Connect) -> None:
    """§5.1 rule 4: in a namespace other than ``default`` every ``engine::*`` id is reserved."""
    w = await worker(engine_url, connect, "namespaced", namespace="orders")
    await w.send({"type": "registerfunction", "id": "engine::mine"})
    rejected = await w.expect("registrationrejected")
    assert rejected == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "orders",
        "function_id": "engine::mine",
        "owner_worker_id": "",
    }


async def test_other_engine_ids_are_allowed_in_default(engine_url: str, connect: Connect) -> None:
    """§5.1 rule 4: workers may register other ``engine::*`` ids in ``default``."""
    w = await worker(engine_url, connect, "extender")
    await w.serve("engine::custom::thing", lambda f: "mine")
    assert w.received("registrationrejected") == []
    assert (await w.call("engine::custom::thing"))["result"] == "mine"


async def test_http_invoked_function_is_not_registered(engine_url: str, connect: Connect) -> None:
    """D15: a ``registerfunction`` with ``invocation`` is not registered (logged), and nothing is sent."""
    w = await worker(engine_url, connect, "http-fn")
    await w.register_function("http::fn", invocation={"url": "https://example.com", "method": "POST"})
    assert w.inbox == []
    assert "http::fn" not in await function_ids(w)


# --------------------------------------------------------------------------------------------
# §6.2: reattach (checklist item 15)


async def test_reattach_with_the_right_token_evicts_the_old_connection(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§6.2 rule 1 (item 15): a valid reattach evicts the half-open old connection; the replay registers."""
    caller = await worker(engine_url, connect, "caller")
    old = await worker(engine_url, connect, "reconnecting")
    await old.serve("re::a", lambda f: "old")
    await old.serve("re::b", lambda f: "old")
    await old.send({"type": "registertriggertype", "id": "retype", "description": ""})
    await old.barrier()
    await old.freeze()  # half-open: it will never answer again
    new = await connect(engine_url)
    await new.serve("re::a", lambda f: "new", register=False)
    await new.serve("re::b", lambda f: "new", register=False)
    await new.send(
        {"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": old.reattach_token}
    )
    await new.barrier()
    assert old.worker_id not in engine.peers  # cleanup finished before the next message was read
    await new.send({"type": "registertriggertype", "id": "retype", "description": ""})
    await new.send({"type": "registerfunction", "id": "re::a"})
    await new.send({"type": "registerfunction", "id": "re::b"})
    await new.register("reconnecting")
    assert {(await caller.call(fid))["result"] for fid in ("re::a", "re::b", "re::a", "re::b")} == {"new"}
    types = await caller.result("engine::triggers::list", {})
    assert [t["worker_name"] for t in types["triggers"] if t["id"] == "retype"] == ["reconnecting"]


async def test_evicted_connection_gets_close_1001(engine_url: str, connect: Connect) -> None:
    """§6.5 rule 1: a stale connection evicted by ``reattach`` is closed with 1001."""
    old = await worker(engine_url, connect, "reconnecting")
    new = await connect(engine_url)
    await new.send(
        {"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": old.reattach_token}
    )
    assert await old.wait_closed() == 1001


@pytest.mark.parametrize("token", ["wrong", None, ""])
async def test_reattach_with_a_wrong_token_is_ignored(
    engine_url: str, connect: Connect, token: str | None
) -> None:
    """§6.2 rule 2 (item 15): a wrong or missing token is ignored; the old connection keeps its functions."""
    caller = await worker(engine_url, connect, "caller")
    old = await worker(engine_url, connect, "victim")
    await old.serve("v::fn", lambda f: "old")
    forger = await connect(engine_url)
    frame: dict[str, Any] = {"type": "reattach", "previous_worker_id": old.worker_id}
    if token is not None:
        frame["reattach_token"] = token
    await forger.send(frame)
    await forger.barrier()
    assert forger.inbox == []
    assert (await caller.call("v::fn"))["result"] == "old"
    await old.barrier()
    assert not old.closed.is_set()


async def test_reattach_to_itself_or_unknown_id_is_ignored(engine_url: str, connect: Connect) -> None:
    """§6.2 rule 2: reattach naming this very connection or an unknown id does nothing."""
    w = await worker(engine_url, connect, "self")
    await w.serve("s::fn", lambda f: "ok")
    await w.send({"type": "reattach", "previous_worker_id": w.worker_id, "reattach_token": w.reattach_token})
    await w.send({"type": "reattach", "previous_worker_id": "00000000-0000-4000-8000-000000000000"})
    await w.barrier()
    assert (await w.call("s::fn"))["result"] == "ok"


async def test_reattach_token_of_another_connection_does_not_evict(engine_url: str, connect: Connect) -> None:
    """§6.2: the token must be the named connection's own."""
    a = await worker(engine_url, connect, "a")
    b = await worker(engine_url, connect, "b")
    forger = await connect(engine_url)
    await forger.send(
        {"type": "reattach", "previous_worker_id": a.worker_id, "reattach_token": b.reattach_token}
    )
    await forger.barrier()
    await a.barrier()
    assert not a.closed.is_set()


# --------------------------------------------------------------------------------------------
# D9 (checklist item 16)


async def test_two_workers_with_the_same_name_both_stay(engine_url: str, connect: Connect) -> None:
    """D9 (item 16): duplicate worker names are allowed; ``WORKER_NAMESPACE_CONFLICT`` is never sent."""
    first = await worker(engine_url, connect, "same-name")
    second = await worker(engine_url, connect, "same-name")
    await first.serve("same::a", lambda f: "a")
    await second.serve("same::b", lambda f: "b")
    assert (await first.call("same::b"))["result"] == "b"
    assert (await second.call("same::a"))["result"] == "a"
    listed = await first.result("engine::workers::list", {"search": "same-name"})
    assert sorted(w["id"] for w in listed["workers"]) == sorted([first.worker_id, second.worker_id])
    for w in (first, second):
        assert all("WORKER_NAMESPACE_CONFLICT" not in f.raw for f in w.history)
        assert not w.closed.is_set()


# --------------------------------------------------------------------------------------------
# §6.3: disconnect cleanup (checklist item 17)


async def test_disconnect_cleanup(engine: Any, engine_url: str, connect: Connect) -> None:
    """§6.3 (item 17): cleanup removes sole-owned functions, bindings (provider told) and trigger types."""
    observer = await worker(engine_url, connect, "observer")
    provider = await worker(engine_url, connect, "provider")
    await provider.send({"type": "registertriggertype", "id": "ptype", "description": ""})
    await provider.barrier()
    leaving = await worker(engine_url, connect, "leaving")
    await leaving.serve("leaving::own", lambda f: "own")
    await leaving.serve("shared::fn", lambda f: "leaving")
    await observer.serve("shared::fn", lambda f: "observer")
    await leaving.send({"type": "registertriggertype", "id": "ltype", "description": ""})
    await leaving.send(
        {
            "type": "registertrigger",
            "id": "leaving-binding",
            "trigger_type": "ptype",
            "function_id": "leaving::own",
        }
    )
    await provider.expect({"type": "registertrigger", "id": "leaving-binding"})
    await observer.send(
        {
            "type": "registertrigger",
            "id": "observer-binding",
            "trigger_type": "ltype",
            "function_id": "shared::fn",
        }
    )
    await leaving.expect({"type": "registertrigger", "id": "observer-binding"})
    await leaving.close()
    await detached(engine, leaving.worker_id)
    assert await provider.expect("unregistertrigger") == {
        "type": "unregistertrigger",
        "id": "leaving-binding",
        "trigger_type": "ptype",
    }
    ids = await function_ids(observer)
    assert "leaving::own" not in ids and "shared::fn" in ids
    assert (await observer.call("leaving::own"))["error"]["code"] == "function_not_found"
    assert {(await observer.call("shared::fn"))["result"] for _ in range(4)} == {"observer"}
    bindings = await observer.result("engine::registered-triggers::list", {})
    assert [(b["id"], b["state"]) for b in bindings["triggers"]] == [("observer-binding", "pending")]
    types = await observer.result("engine::triggers::list", {})
    assert "ltype" not in {t["id"] for t in types["triggers"]}
    workers = await observer.result("engine::workers::list", {})
    assert leaving.worker_id not in {w["id"] for w in workers["workers"]}


async def test_cleanup_of_an_old_connection_never_touches_a_successor(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§5.1 rule 5: a dead connection's cleanup leaves a successor's registration of the same id alone."""
    caller = await worker(engine_url, connect, "caller")
    old = await worker(engine_url, connect, "svc")
    await old.serve("svc::fn", lambda f: "old")
    new = await worker(engine_url, connect, "svc")
    await new.serve("svc::fn", lambda f: "new")
    await old.close()
    await detached(engine, old.worker_id)
    assert {(await caller.call("svc::fn"))["result"] for _ in range(4)} == {"new"}


async def test_engine_shutdown_closes_workers_with_1012(make_server: Any, connect: Connect) -> None:
    """D19, cli §3.1: on shutdown pending callers get invocation_stopped, then sockets close with 1012."""
    server = await make_server()
    caller = await worker(server.url, connect, "caller")
    target = await worker(server.url, connect, "target")
    await target.serve("t::never", lambda f: asyncio.Event().wait())
    inv_id = await caller.invoke("t::never")
    await target.expect("invokefunction")
    await server.stop()
    reply = await caller.expect({"type": "invocationresult", "invocation_id": inv_id})
    assert reply["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"}
    assert await target.wait_closed() == 1012
    assert await caller.wait_closed() == 1012
