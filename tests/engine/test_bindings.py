"""Triggers and trigger types (spec/protocol.md §5.2, §5.3): delivery, verdicts, parking, redelivery.

Raw WebSocket workers: P is the provider of a custom trigger type, W the worker registering bindings.
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers import RawWorker, detached

Connect = Any

BINDING_ID = "33e80e75-8752-4850-9f44-a0e0d485c653"


async def worker(url: str, connect: Connect, name: str, **register: Any) -> RawWorker:
    w = await connect(url)
    await w.register(name, **register)
    return w


async def provide(provider: RawWorker, type_id: str, **fields: Any) -> None:
    await provider.send(
        {"type": "registertriggertype", "id": type_id, "description": f"{type_id} type", **fields}
    )
    await provider.barrier()


async def bind(w: RawWorker, binding_id: str, type_id: str, function_id: str, **fields: Any) -> None:
    await w.send(
        {
            "type": "registertrigger",
            "id": binding_id,
            "trigger_type": type_id,
            "function_id": function_id,
            **fields,
        }
    )
    await w.barrier()


async def binding_rows(w: RawWorker, **filters: Any) -> dict[str, dict[str, Any]]:
    listed = await w.result("engine::registered-triggers::list", filters)
    return {row["id"]: row for row in listed["triggers"]}


# --------------------------------------------------------------------------------------------
# §5.3: delivery and verdicts (checklist item 18)


async def test_spec_sequence_with_a_custom_trigger_type(engine_url: str, connect: Connect) -> None:
    """§5.3 (item 18): the spec's provider sequence, byte for byte; a success verdict sends nothing back."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant", runtime="node", features=None)
    await w.serve("node::echo", lambda f: {"data": f["data"], "metadata": f.get("metadata")})
    await p.send('{"type":"registertriggertype","id":"nodetype","description":"node custom type"}')
    await w.send(
        '{"type":"registertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype",'
        '"function_id":"node::echo","config":{"y":1},"metadata":{"m":1}}'
    )
    delivered = await p.expect("registertrigger")
    assert delivered.raw == (
        '{"type":"registertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype",'
        '"function_id":"node::echo","config":{"y":1},"metadata":{"m":1}}'
    )
    await p.send(
        '{"type":"triggerregistrationresult","id":"33e80e75-8752-4850-9f44-a0e0d485c653",'
        '"function_id":"node::echo","trigger_type":"nodetype"}'
    )
    await p.barrier()
    await w.barrier()
    assert w.received("triggerregistrationresult") == []
    assert p.received("triggerregistrationresult") == []
    fired = await p.call("node::echo", {"a": 1}, metadata={"s": 1})
    assert fired["result"] == {"data": {"a": 1}, "metadata": {"s": 1}}
    assert (await binding_rows(p))[BINDING_ID]["state"] == "active"
    await w.send(
        '{"type":"unregistertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype"}'
    )
    removed = await p.expect("unregistertrigger")
    assert removed.raw == (
        '{"type":"unregistertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype"}'
    )
    assert await binding_rows(p) == {}


async def test_error_verdict_is_forwarded_and_parks_the_binding(engine_url: str, connect: Connect) -> None:
    """§3.7 (item 18): a provider's error verdict is forwarded to the registrant; the binding is parked."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    await bind(w, "d4d8d815-3b93-403d-ae02-1c3145315513", "pytype", "py::echo", config={"bad": True})
    await p.expect("registertrigger")
    await p.send(
        {
            "type": "triggerregistrationresult",
            "id": "d4d8d815-3b93-403d-ae02-1c3145315513",
            "trigger_type": "pytype",
            "function_id": "py::echo",
            "error": {"code": "trigger_registration_failed", "message": "bad config"},
        }
    )
    forwarded = await w.expect("triggerregistrationresult")
    assert forwarded.raw == (
        '{"type":"triggerregistrationresult","id":"d4d8d815-3b93-403d-ae02-1c3145315513","trigger_type":"pytype",'
        '"function_id":"py::echo","error":{"code":"trigger_registration_failed","message":"bad config"}}'
    )
    assert (await binding_rows(w))["d4d8d815-3b93-403d-ae02-1c3145315513"]["state"] == "pending"


async def test_verdict_from_a_non_provider_is_ignored(engine_url: str, connect: Connect) -> None:
    """§3.7: a verdict is accepted only from the connection that provides the type."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    await bind(w, "b-1", "pytype", "py::echo")
    await p.expect("registertrigger")
    await w.send(
        {
            "type": "triggerregistrationresult",
            "id": "b-1",
            "trigger_type": "pytype",
            "function_id": "py::echo",
            "error": {"code": "trigger_registration_failed", "message": "forged"},
        }
    )
    await w.barrier()
    assert w.received("triggerregistrationresult") == []
    assert (await binding_rows(w))["b-1"]["state"] == "active"


async def test_binding_without_config_reaches_the_provider_with_null_config(
    engine_url: str, connect: Connect
) -> None:
    """D2 (item 5): a registertrigger without ``config`` reaches the provider with ``"config":null``."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    await w.send(
        '{"id":"52865ba6-fa72-4ba1-804c-837fd551bc49","trigger_type":"pytype","function_id":"py::echo",'
        '"type":"registertrigger"}'
    )
    delivered = await p.expect("registertrigger")
    assert delivered.raw == (
        '{"type":"registertrigger","id":"52865ba6-fa72-4ba1-804c-837fd551bc49","trigger_type":"pytype",'
        '"function_id":"py::echo","config":null}'
    )


async def test_binding_namespaces_are_forwarded_when_not_default(engine_url: str, connect: Connect) -> None:
    """§3.5: ``namespace`` and ``trigger_namespace`` reach the provider only when set and not ``default``."""
    p = await worker(engine_url, connect, "provider", namespace="infra")
    w = await worker(engine_url, connect, "registrant", namespace="orders")
    await provide(p, "nstype")
    await bind(w, "b-ns", "nstype", "orders::fn", config={}, namespace="orders", trigger_namespace="infra")
    delivered = await p.expect("registertrigger")
    assert delivered == {
        "type": "registertrigger",
        "id": "b-ns",
        "trigger_type": "nstype",
        "function_id": "orders::fn",
        "config": {},
        "namespace": "orders",
        "trigger_namespace": "infra",
    }
    await bind(w, "b-def", "nstype", "d::fn", namespace="default", trigger_namespace="infra")
    plain = await p.expect({"id": "b-def"})
    assert set(plain) == {"type", "id", "trigger_type", "function_id", "config", "trigger_namespace"}


async def test_registering_a_binding_id_again_replaces_it(engine_url: str, connect: Connect) -> None:
    """§5.2 step 3: an existing binding with the same id is uninstalled and replaced."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    await bind(w, "b-1", "pytype", "py::one", config={"v": 1})
    await p.expect("registertrigger")
    await bind(w, "b-1", "pytype", "py::two", config={"v": 2})
    assert await p.expect("unregistertrigger") == {
        "type": "unregistertrigger",
        "id": "b-1",
        "trigger_type": "pytype",
    }
    replaced = await p.expect("registertrigger")
    assert (replaced["function_id"], replaced["config"]) == ("py::two", {"v": 2})
    assert (await binding_rows(w))["b-1"]["function_id"] == "py::two"


async def test_unregistertrigger_from_any_worker_removes_the_binding(
    engine_url: str, connect: Connect
) -> None:
    """§3.6: ``unregistertrigger`` removes the binding with that id, whoever registered it."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    other = await worker(engine_url, connect, "other")
    await provide(p, "pytype")
    await bind(w, "b-1", "pytype", "py::echo")
    await p.expect("registertrigger")
    await other.send({"type": "unregistertrigger", "id": "b-1"})
    assert (await p.expect("unregistertrigger"))["id"] == "b-1"
    assert await binding_rows(w) == {}


# --------------------------------------------------------------------------------------------
# §5.2 step 5, §5.3 rule 3: parking and redelivery (checklist items 19-20)


async def test_binding_before_its_type_is_parked_then_delivered(engine_url: str, connect: Connect) -> None:
    """§5.2 step 5 (item 19): a binding for a missing type is parked, then delivered when the type appears."""
    w = await worker(engine_url, connect, "registrant")
    await bind(w, "early", "latetype", "py::echo", config={"k": "v"}, metadata={"m": 1})
    assert w.inbox == []
    assert (await binding_rows(w))["early"]["state"] == "pending"
    p = await worker(engine_url, connect, "provider")
    await provide(p, "latetype")
    delivered = await p.expect("registertrigger")
    assert delivered == {
        "type": "registertrigger",
        "id": "early",
        "trigger_type": "latetype",
        "function_id": "py::echo",
        "config": {"k": "v"},
        "metadata": {"m": 1},
    }
    assert (await binding_rows(w))["early"]["state"] == "active"


async def test_reconnecting_provider_receives_every_binding_again(
    engine: Any, engine_url: str, connect: Connect
) -> None:
    """§5.3 rule 3 (item 19): a reconnecting provider is sent every binding of its type again."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    for index in range(3):
        await bind(w, f"b-{index}", "pytype", "py::echo", config={"i": index})
    await p.close()
    await detached(engine, p.worker_id)
    assert {row["state"] for row in (await binding_rows(w)).values()} == {"pending"}
    again = await worker(engine_url, connect, "provider")
    await provide(again, "pytype")
    delivered = [await again.expect("registertrigger") for _ in range(3)]
    assert sorted((d["id"], d["config"]["i"]) for d in delivered) == [("b-0", 0), ("b-1", 1), ("b-2", 2)]
    assert {row["state"] for row in (await binding_rows(w)).values()} == {"active"}


async def test_new_provider_takes_over_from_a_live_one(engine_url: str, connect: Connect) -> None:
    """§5.3 rule 2: a new provider replaces the old one, which gets ``unregistertrigger`` per binding."""
    old = await worker(engine_url, connect, "old-provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(old, "pytype")
    await bind(w, "b-1", "pytype", "py::echo")
    await old.expect("registertrigger")
    new = await worker(engine_url, connect, "new-provider")
    await provide(new, "pytype")
    assert await old.expect("unregistertrigger") == {
        "type": "unregistertrigger",
        "id": "b-1",
        "trigger_type": "pytype",
    }
    assert (await new.expect("registertrigger"))["id"] == "b-1"


async def test_same_provider_registering_its_type_again_is_a_no_op(engine_url: str, connect: Connect) -> None:
    """§6.5 rule 12: a provider re-registering its own type gets no duplicate deliveries."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    await bind(w, "b-1", "pytype", "py::echo")
    await p.expect("registertrigger")
    await provide(p, "pytype")
    assert p.received("registertrigger") == [] and p.received("unregistertrigger") == []


async def test_unregistertriggertype_removes_the_type_and_parks_bindings(
    engine_url: str, connect: Connect
) -> None:
    """D3 (item 20): ``unregistertriggertype`` removes the type; existing and later bindings are parked."""
    p = await worker(engine_url, connect, "provider")
    w = await worker(engine_url, connect, "registrant")
    await provide(p, "pytype")
    await bind(w, "before", "pytype", "py::echo")
    await p.expect("registertrigger")
    await p.send({"type": "unregistertriggertype", "id": "pytype", "description": "node resends it all"})
    await p.barrier()
    await bind(w, "after", "pytype", "py::echo")
    await p.barrier()
    assert p.received("registertrigger") == []
    rows = await binding_rows(w)
    assert (rows["before"]["state"], rows["after"]["state"]) == ("pending", "pending")
    listed = await w.result("engine::triggers::list", {})
    assert "pytype" not in {t["id"] for t in listed["triggers"]}


async def test_unregistertriggertype_from_a_non_provider_is_ignored(
    engine_url: str, connect: Connect
) -> None:
    """§3.6: only the connection providing a type can remove it."""
    p = await worker(engine_url, connect, "provider")
    other = await worker(engine_url, connect, "other")
    await provide(p, "pytype")
    await other.send({"type": "unregistertriggertype", "id": "pytype"})
    await other.barrier()
    listed = await other.result("engine::triggers::list", {})
    assert "pytype" in {t["id"] for t in listed["triggers"]}


@pytest.mark.parametrize(
    "type_id",
    ["http", "cron", "state", "stream", "stream:join", "stream:leave", "subscribe", "log",
     "engine::workers-available", "engine::custom"],
)  # fmt: skip
async def test_builtin_type_ids_cannot_be_taken_over(engine_url: str, connect: Connect, type_id: str) -> None:
    """§5.3 rule 1: registering a built-in type id is ignored (logged)."""
    p = await worker(engine_url, connect, "provider")
    await provide(p, type_id)
    listed = await p.result("engine::triggers::list", {"include_internal": True})
    assert all(t["worker_name"] != "provider" for t in listed["triggers"])


async def test_provider_lookup_falls_back_to_default(engine_url: str, connect: Connect) -> None:
    """§5.2 step 4: providers come from the owner namespace then default, or only trigger_namespace."""
    p = await worker(engine_url, connect, "provider")  # provides in default
    w = await worker(engine_url, connect, "registrant", namespace="orders")
    await provide(p, "pytype")
    await bind(w, "fallback", "pytype", "orders::fn", namespace="orders")
    assert (await p.expect("registertrigger"))["id"] == "fallback"
    await bind(w, "strict", "pytype", "orders::fn", trigger_namespace="elsewhere")
    await p.barrier()
    assert p.received({"id": "strict"}) == []
    assert (await binding_rows(w))["strict"]["state"] == "pending"


@pytest.mark.parametrize(("field", "value"), [("namespace", ""), ("trigger_namespace", "  ")])
async def test_blank_binding_namespace_is_refused(
    engine_url: str, connect: Connect, field: str, value: str
) -> None:
    """§5.2 step 1: a blank namespace gets ``INVALID_NAMESPACE`` and no binding."""
    w = await worker(engine_url, connect, "registrant")
    await bind(w, "blank", "pytype", "py::echo", **{field: value})
    verdict = await w.expect("triggerregistrationresult")
    assert verdict["error"]["code"] == "INVALID_NAMESPACE"
    assert (verdict["id"], verdict["trigger_type"], verdict["function_id"]) == ("blank", "pytype", "py::echo")
    assert await binding_rows(w) == {}


# --------------------------------------------------------------------------------------------
# §5.2 step 6: built-in providers (checklist item 21)


@pytest.mark.parametrize("config", [5, "x", [1]])
async def test_invalid_builtin_trigger_config_is_refused(
    engine_url: str, connect: Connect, config: Any
) -> None:
    """§5.2 step 6 (item 21): a bad built-in trigger config gets trigger_registration_failed, no binding."""
    w = await worker(engine_url, connect, "registrant")
    await bind(w, "bad", "engine::workers-available", "py::on_worker", config=config)
    verdict = await w.expect("triggerregistrationresult")
    assert verdict["error"]["code"] == "trigger_registration_failed"
    assert verdict["error"]["message"]
    assert await binding_rows(w) == {}


async def test_valid_builtin_binding_sends_nothing(engine_url: str, connect: Connect) -> None:
    """§3.7: success and installation send nothing back."""
    w = await worker(engine_url, connect, "registrant")
    await bind(w, "ok", "engine::workers-available", "py::on_worker", config={})
    assert w.inbox == []
    assert (await binding_rows(w))["ok"]["state"] == "active"
