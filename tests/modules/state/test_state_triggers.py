"""State triggers on every adapter (spec/state.md §7; checklist K).

Handlers are in-process SDK workers (a :class:`Recorder`), raw WebSocket workers where the wire
matters (registration errors, trigger ids). Slow handlers block on events the test releases, never on
sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from state_harness import Recorder, StateHarness, watch

from helpers import NO_REPLY, RawWorker
from pyiii import III, InitOptions, register_worker
from pyiii.errors import InvocationError

EVENT_FIELDS = ["event_type", "key", "new_value", "old_value", "scope", "type"]


async def stats_of(state: StateHarness, trigger_id: str) -> dict[str, Any]:
    """``delivery_stats`` of a trigger, as ``engine::registered-triggers::list`` shows it (§7.6)."""
    listed = await state.call("engine::registered-triggers::list", {"type": "state"})
    (row,) = [row for row in listed["triggers"] if row["id"] == trigger_id]
    stats: dict[str, Any] = row["delivery_stats"]
    return stats


@pytest.fixture
async def raw(state: StateHarness) -> AsyncIterator[RawWorker]:
    """A raw WebSocket worker on the ``state`` engine."""
    w = await RawWorker.connect(state.url)
    await w.register("raw-state-tests")
    try:
        yield w
    finally:
        await w.close()


# ------------------------------------------------------------------------------ matching


async def test_matching(state: StateHarness, worker: III) -> None:
    """K102-K103: {} matches all; scope only; key only (any scope); scope and key; others nothing."""
    everything, _ = watch(worker, {})
    scope_only, _ = watch(worker, {"scope": "a"})
    key_only, _ = watch(worker, {"key": "k1"})
    both, _ = watch(worker, {"scope": "a", "key": "k1", "condition_function_id": None})
    nothing, _ = watch(worker, {"scope": "zz", "key": "k1"})
    for scope, key in [("a", "k1"), ("a", "k2"), ("b", "k1"), ("b", "k2"), ("A", "K1")]:
        await state.set(scope, key, 1)
    await state.idle()
    seen = {
        name: [(e["scope"], e["key"]) for e in recorder.events]
        for name, recorder in [("all", everything), ("scope", scope_only), ("key", key_only), ("both", both)]
    }
    assert seen == {
        "all": [("a", "k1"), ("a", "k2"), ("b", "k1"), ("b", "k2"), ("A", "K1")],
        "scope": [("a", "k1"), ("a", "k2")],
        "key": [("a", "k1"), ("b", "k1")],
        "both": [("a", "k1")],
    }
    assert nothing.events == []


@pytest.mark.parametrize("config", [{"scope": 123}, {"key": ["k"]}, None, "absent", "text"])
async def test_bad_config_is_rejected(state: StateHarness, raw: RawWorker, config: Any) -> None:
    """K104: {"scope": 123}, a null or absent config → trigger_registration_failed "Failed to parse"."""
    frame: dict[str, Any] = {
        "type": "registertrigger",
        "id": "t1",
        "trigger_type": "state",
        "function_id": "f",
    }
    if config != "absent":
        frame["config"] = config
    await raw.send(frame)
    reply = await raw.expect("triggerregistrationresult")
    assert reply["id"] == "t1"
    assert reply["error"]["code"] == "trigger_registration_failed"
    assert reply["error"]["message"].startswith("Failed to parse trigger config: ")
    listed = await raw.result("engine::registered-triggers::list", {"type": "state"})
    assert listed["triggers"] == []


async def test_good_config_is_not_acknowledged(state: StateHarness, raw: RawWorker) -> None:
    """§7.1 rule 2: a successful registration sends nothing back; unknown config fields are ignored."""
    await raw.send(
        {"type": "registertrigger", "id": "t1", "trigger_type": "state", "function_id": "f",
         "config": {"scope": "s", "other": 1}}
    )  # fmt: skip
    await raw.barrier()
    assert raw.received("triggerregistrationresult") == []


# ------------------------------------------------------------------------------ events


async def test_event_payloads(state: StateHarness, worker: III) -> None:
    """K105-K108: six fields; created/updated/deleted; identical set and all-failing update still fire."""
    recorder, _ = watch(worker, {"scope": "s"})
    await state.set("s", "k", {"v": 1})
    await state.set("s", "k", {"v": 1})  # identical
    await state.update("s", "k", [{"type": "increment", "path": "v", "by": 1}])
    await state.update("s", "k", [{"type": "append", "path": "v", "value": 1}])  # fails, still fires
    await state.delete("s", "k")
    await state.update("s", "u", [])  # update on a missing key
    await state.set("s", "n", None)
    await state.set("s", "n", 1)  # over a stored null
    events = await recorder.wait(8)
    assert all(list(e) == EVENT_FIELDS and e["type"] == "state" and e["scope"] == "s" for e in events)
    by_key: dict[str, list[tuple[str, Any, Any]]] = {}
    for e in events:  # order is per key (§7.5); keys are delivered independently
        by_key.setdefault(e["key"], []).append((e["event_type"], e["old_value"], e["new_value"]))
    assert by_key == {
        "k": [
            ("state:created", None, {"v": 1}),
            ("state:updated", {"v": 1}, {"v": 1}),
            ("state:updated", {"v": 1}, {"v": 2}),
            ("state:updated", {"v": 2}, {"v": 2}),
            ("state:deleted", {"v": 2}, None),
        ],
        "u": [("state:created", None, {})],
        "n": [("state:created", None, None), ("state:updated", None, 1)],
    }


async def test_failed_calls_never_fire(state: StateHarness, worker: III) -> None:
    """K110: VALUE_TOO_LARGE and decode errors never fire."""
    recorder, _ = watch(worker, {})
    state.state.live.max_value_bytes = 5
    for payload in (
        {"scope": "s", "key": "k", "value": "too long"},
        {"scope": "s", "key": 1, "value": 1},
        {"scope": "s", "key": "k"},
    ):
        with pytest.raises(InvocationError):
            await state.call("state::set", payload)
    with pytest.raises(InvocationError):
        await state.update("s", "k", [{"type": "set", "path": "a", "value": "too long"}])
    with pytest.raises(InvocationError):
        await state.update("s", "k", [{"type": "nope"}])
    with pytest.raises(InvocationError):
        await state.call("state::delete", {"scope": "s"})
    await state.idle()
    assert recorder.events == []


async def test_triggers_disabled(state: StateHarness, worker: III) -> None:
    """K111: triggers_enabled false skips handlers and counts the drops; turning it on does not replay."""
    recorder, _ = watch(worker, {})
    state.state.live.triggers_enabled = False
    await state.set("s", "a", 1)
    await state.delete("s", "a")
    await state.idle()  # a shared store (Redis) hands its events over asynchronously
    assert state.state.triggers is not None and state.state.triggers.events_dropped_disabled == 2
    state.state.live.triggers_enabled = True
    await state.set("s", "b", 2)
    (event,) = await recorder.wait(1)
    await state.idle()
    assert event["key"] == "b" and len(recorder.events) == 1


async def test_triggers_enabled_false_in_settings(make_state: Any) -> None:
    """§9.1: triggers_enabled: false in the settings drops events from the start."""
    state = await make_state("memory").start(triggers_enabled=False)
    client = register_worker(state.engine, InitOptions(worker_name="w"))
    recorder, _ = watch(client, {})
    await state.set("s", "k", 1)
    await state.idle()
    assert recorder.events == []
    await client.shutdown_async()


# ------------------------------------------------------------------------------ conditions


async def test_condition_false_skips(state: StateHarness, worker: III) -> None:
    """K112: a condition returning false skips the handler and counts condition_skipped."""

    async def condition(data: Any) -> Any:
        return data["new_value"] != "skip"

    worker.register_function("test::cond", condition)
    recorder, trigger = watch(worker, {"condition_function_id": "test::cond"})
    await state.set("s", "a", "skip")
    await state.set("s", "b", "run")
    await recorder.wait(1)
    await state.idle()
    assert [e["key"] for e in recorder.events] == ["b"]
    stats = await stats_of(state, trigger.id)
    assert (stats["condition_skipped"], stats["delivered"]) == (1, 1)


@pytest.mark.parametrize("verdict", [True, None, 0, "", "hello", {}, []])
async def test_condition_truthiness(state: StateHarness, worker: III, verdict: Any) -> None:
    """K113: a condition returning true, null, no result, 0, "", "hello" lets the handler run."""

    async def condition(data: Any) -> Any:
        return verdict

    worker.register_function("test::cond", condition)
    recorder, _ = watch(worker, {"condition_function_id": "test::cond"})
    await state.set("s", "k", 1)
    assert len(await recorder.wait(1)) == 1


async def test_condition_without_result(state: StateHarness, raw: RawWorker) -> None:
    """K113: a condition sending no result at all (no `result` field) lets the handler run."""

    async def condition(frame: Any) -> Any:
        reply = {"type": "invocationresult", "invocation_id": frame["invocation_id"], "function_id": "c"}
        await raw.send(reply)
        return NO_REPLY

    await raw.serve("c", condition)
    await raw.serve("h")
    await raw.send({"type": "registertrigger", "id": "t", "trigger_type": "state", "function_id": "h",
                    "config": {"condition_function_id": "c"}})  # fmt: skip
    await raw.barrier()
    await state.set("s", "k", 1)
    handled = await raw.expect({"type": "invokefunction", "function_id": "h"})
    assert handled["data"]["key"] == "k"


async def test_failing_or_unknown_condition(state: StateHarness, worker: III) -> None:
    """K114: a failing or unknown condition skips the handler (condition_failed); the write succeeds."""

    async def broken(data: Any) -> Any:
        raise RuntimeError("condition exploded")

    worker.register_function("test::broken", broken)
    failing, t1 = watch(worker, {"condition_function_id": "test::broken"})
    unknown, t2 = watch(worker, {"condition_function_id": "test::missing"})
    assert (await state.set("s", "k", 1))["new_value"] == 1
    await state.idle()
    assert failing.events == unknown.events == []
    assert (await stats_of(state, t1.id))["condition_failed"] == 1
    assert (await stats_of(state, t2.id))["condition_failed"] == 1


# ------------------------------------------------------------------------------ handlers


async def test_handler_error_is_counted(state: StateHarness, worker: III) -> None:
    """K115: a handler error leaves the write alone, is not retried, and counts failed + last_error."""

    async def explode(data: Any) -> Any:
        raise RuntimeError("handler exploded")

    recorder, trigger = watch(worker, {}, Recorder(explode))
    assert (await state.set("s", "k", 1)) == {"old_value": None, "new_value": 1}
    await recorder.wait(1)
    await state.idle()
    assert len(recorder.events) == 1
    stats = await stats_of(state, trigger.id)
    assert (stats["failed"], stats["delivered"], stats["pending"]) == (1, 0, 0)
    assert "handler exploded" in stats["last_error"]["message"]
    assert isinstance(stats["last_error"]["code"], str) and isinstance(stats["last_error"]["at"], int)
    assert await state.get("s", "k") == 1


async def test_metadata(state: StateHarness, worker: III) -> None:
    """K116: the handler receives the trigger's metadata; the condition receives none."""
    condition_metadata: list[Any] = []

    async def condition(data: Any, metadata: Any = None) -> Any:
        condition_metadata.append(metadata)
        return True

    worker.register_function("test::cond", condition)
    recorder, _ = watch(worker, {"condition_function_id": "test::cond"}, metadata={"team": "a"})
    await state.set("s", "k", 1)
    await recorder.wait(1)
    assert recorder.metadata == [{"team": "a"}]
    assert condition_metadata == [None]


async def test_namespace(state: StateHarness) -> None:
    """K117: the handler and the condition are resolved in the trigger's namespace."""
    default = register_worker(state.engine, InitOptions(worker_name="default-ns"))
    spaced = register_worker(state.engine, InitOptions(worker_name="ns-worker", namespace="ns1"))
    try:
        wrong = Recorder()
        default.register_function("test::handler", wrong)
        default.register_function("test::cond", lambda data: False)

        async def allow(data: Any) -> Any:
            return True

        spaced.register_function("test::cond", allow)
        right, _ = watch(spaced, {"condition_function_id": "test::cond"}, function_id="test::handler")
        await state.set("s", "k", 1)
        await right.wait(1)
        await state.idle()
        assert wrong.events == []
    finally:
        await default.shutdown_async()
        await spaced.shutdown_async()


async def test_replace_and_unregister(state: StateHarness, raw: RawWorker) -> None:
    """K118: re-registering an id replaces the registration; unregister stops delivery."""
    await raw.serve("h1", lambda frame: None)
    await raw.serve("h2", lambda frame: None)
    trigger = {"type": "registertrigger", "id": "t", "trigger_type": "state", "config": {}}
    await raw.send({**trigger, "function_id": "h1"})
    await raw.send({**trigger, "function_id": "h2", "config": {"scope": "s"}})
    await raw.barrier()
    await state.set("s", "k", 1)
    await state.set("other", "k", 1)
    first = await raw.expect({"type": "invokefunction"})
    assert (first["function_id"], first["data"]["scope"]) == ("h2", "s")
    await state.idle()
    await raw.barrier()
    assert raw.received({"type": "invokefunction"}) == []
    await raw.send({"type": "unregistertrigger", "id": "t", "trigger_type": "state"})
    await raw.barrier()
    await state.set("s", "k", 2)
    await state.idle()
    await raw.barrier()
    assert raw.received({"type": "invokefunction"}) == []


async def test_two_triggers_are_independent(state: StateHarness, worker: III) -> None:
    """K119-K120: two triggers both fire once; a stuck A delays neither B nor the write's reply."""
    release = asyncio.Event()

    async def stuck(data: Any) -> Any:
        await release.wait()

    a, trigger_a = watch(worker, {}, Recorder(stuck))
    b, _ = watch(worker, {})
    reply = await state.set("s", "k", 1)  # returns while A's handler is still blocked
    assert reply["new_value"] == 1
    await a.wait(1)
    await b.wait(1)
    assert (await stats_of(state, trigger_a.id))["pending"] == 1
    await state.set("s", "k", 2)
    await b.wait(2)
    assert len(a.events) == 1  # A's second event waits behind its first (same key)
    release.set()
    await a.wait(2)
    await state.idle()
    assert [e["new_value"] for e in a.events] == [e["new_value"] for e in b.events] == [1, 2]


async def test_per_key_order(state: StateHarness, worker: III) -> None:
    """K121: 200 writes to one key reach a randomly slow handler in order, never two at once."""
    running = 0
    overlaps = 0

    async def slow(data: Any) -> Any:
        nonlocal running, overlaps
        running += 1
        overlaps += running > 1
        await asyncio.sleep(random.random() / 2000)
        running -= 1

    recorder, _ = watch(worker, {"key": "k"}, Recorder(slow))
    for i in range(1, 201):
        await state.set("s", "k", i)
    events = await recorder.wait(200)
    await state.idle()
    assert [e["new_value"] for e in events] == list(range(1, 201))
    assert overlaps == 0


async def test_chain_of_writing_handlers(state: StateHarness, worker: III) -> None:
    """A handler that writes the next key on every event: a chain of 300 writes, each one's delivery
    started by the write before it (deliveries start eagerly, up to a bounded depth, then as tasks),
    reaches every key once and in order, and the engine keeps serving."""

    async def next_link(event: Any) -> None:
        n = event["new_value"]
        if n < 300:
            await worker.trigger_async(
                {
                    "function_id": "state::set",
                    "payload": {"scope": "chain", "key": f"k{n + 1}", "value": n + 1},
                }
            )

    recorder, _ = watch(worker, {"scope": "chain"}, Recorder(next_link))
    await state.set("chain", "k1", 1)
    events = await recorder.wait(300)
    await state.idle()
    assert [(e["key"], e["new_value"]) for e in events] == [(f"k{n}", n) for n in range(1, 301)]
    assert await state.get("chain", "k300") == 300


async def test_per_key_order_with_concurrent_writes(state: StateHarness, worker: III) -> None:
    """§7.5 rule 1: with concurrent writers, each key's events arrive in commit order (old = previous new)."""
    recorder, _ = watch(worker, {})
    await asyncio.gather(
        *(state.update("s", f"k{i % 4}", [{"type": "increment", "path": "n", "by": 1}]) for i in range(200))
    )
    events = await recorder.wait(200)
    for key in ("k0", "k1", "k2", "k3"):
        values = [e["new_value"]["n"] for e in events if e["key"] == key]
        assert values == list(range(1, 51))


async def test_stuck_key_does_not_block_other_keys(state: StateHarness, worker: III) -> None:
    """K122: a handler stuck on key A does not delay events for key B of the same trigger."""
    release = asyncio.Event()

    async def stuck_on_a(data: Any) -> Any:
        if data["key"] == "a":
            await release.wait()

    recorder, _ = watch(worker, {}, Recorder(stuck_on_a))
    await state.set("s", "a", 1)
    await state.set("s", "a", 2)
    await state.set("s", "b", 1)
    await state.set("s", "b", 2)
    events = await recorder.wait(3)
    assert [(e["key"], e["new_value"]) for e in events] == [("a", 1), ("b", 1), ("b", 2)]
    release.set()
    await recorder.wait(4)


async def test_handler_timeout(state: StateHarness, worker: III) -> None:
    """K123: a handler over trigger_timeout_ms counts timed_out and the key's next event is delivered."""
    state.state.live.trigger_timeout_ms = 300  # the second delivery must fit in it, even when busy
    never = asyncio.Event()

    async def hang_first(data: Any) -> Any:
        if data["new_value"] == 1:
            await never.wait()

    recorder, trigger = watch(worker, {}, Recorder(hang_first))
    await state.set("s", "k", 1)
    await state.set("s", "k", 2)
    await recorder.wait(2)
    await state.idle()
    stats = await stats_of(state, trigger.id)
    assert (stats["timed_out"], stats["delivered"], stats["pending"]) == (1, 1, 0)
    assert stats["last_error"]["code"] == "timeout"
    never.set()


async def test_condition_timeout(state: StateHarness, worker: III) -> None:
    """§7.5: a condition over trigger_timeout_ms counts condition_failed and skips the handler."""
    state.state.live.trigger_timeout_ms = 50
    never = asyncio.Event()

    async def hang(data: Any) -> Any:
        await never.wait()

    worker.register_function("test::hang", hang)
    recorder, trigger = watch(worker, {"condition_function_id": "test::hang"})
    await state.set("s", "k", 1)
    await state.idle()
    assert recorder.events == []
    assert (await stats_of(state, trigger.id))["condition_failed"] == 1
    never.set()


async def test_unregister_discards_queued(state: StateHarness, worker: III) -> None:
    """§7.5: unregistering discards queued deliveries (counted); the running one completes."""
    release = asyncio.Event()

    async def stuck(data: Any) -> Any:
        await release.wait()

    recorder, trigger = watch(worker, {}, Recorder(stuck))
    for i in range(5):
        await state.set("s", "k", i)
    await recorder.wait(1)
    await state.state.adapter.events_delivered()  # all five queued (Redis hands them over asynchronously)
    binding = state.engine.triggers.bindings[trigger.id]
    trigger.unregister()
    assert binding.state.stats.discarded == 4
    release.set()
    await state.idle()
    assert len(recorder.events) == 1 and binding.state.stats.delivered == 1


async def test_shutdown_discards_what_is_left(make_state: Any) -> None:
    """§7.5: a graceful stop waits (bounded) for deliveries, then discards the rest."""
    state = await make_state("memory").start()
    module = state.state
    client = register_worker(state.engine, InitOptions(worker_name="w"))
    never = asyncio.Event()
    gate = asyncio.Event()

    async def stuck(data: Any) -> Any:
        gate.set()
        await never.wait()

    # A built-in style handler that never returns: stop must not wait for it forever.
    _, trigger = watch(client, {}, Recorder(stuck))
    for i in range(3):
        await state.set("s", "k", i)
    await gate.wait()
    binding = state.engine.triggers.bindings[trigger.id]
    assert module.triggers is not None
    await module.triggers.close(wait_s=0.05)
    assert binding.state.stats.discarded == 3 and binding.state.stats.pending == 0
    await client.shutdown_async()


# ------------------------------------------------------------------------------ channel refs in values


async def test_channel_refs_in_values_reach_in_process_handlers_as_readers(
    state: StateHarness, worker: III
) -> None:
    """An in-process handler gets an event as an SDK over the wire would (protocol.md §9): a channel ref
    in a stored value, new or old, becomes a reader or writer; other values stay plain dicts. The
    engine tells the in-process SDK which events hold no refs (``PayloadHint``): a wrong "none" fails
    here."""
    from pyiii.sdk.channels import ChannelReader, ChannelWriter

    recorder, _ = watch(worker, {"scope": "refs"})
    reader = {"channel_id": "c1", "access_key": "k1", "direction": "read"}
    writer = {"channel_id": "c2", "access_key": "k2", "direction": "write"}
    await state.set("refs", "a", {"n": 1, "streams": [{"in": reader}]})
    await state.set("refs", "b", {"n": 2})
    await state.set("refs", "a", writer)  # old value with a ref, new value a ref itself
    await state.idle()
    first, plain, last = await recorder.wait(3)
    assert isinstance(first["new_value"]["streams"][0]["in"], ChannelReader)
    assert first["new_value"]["n"] == 1 and first["old_value"] is None
    assert first["new_value"]["streams"][0]["in"].ref == reader
    assert plain["new_value"] == {"n": 2} and type(plain["new_value"]) is dict
    assert isinstance(last["old_value"]["streams"][0]["in"], ChannelReader)
    assert isinstance(last["new_value"], ChannelWriter) and last["new_value"].ref == writer
