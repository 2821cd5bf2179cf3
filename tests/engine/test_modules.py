"""The module seam (pyiii.engine.modules): a tiny built-in module registered through ModuleHost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyiii import III, InitOptions, TriggerAction, register_worker
from pyiii.engine.core import Engine
from pyiii.engine.invocations import CallContext
from pyiii.engine.modules import Module, ModuleHost
from pyiii.engine.registry import Binding
from pyiii.errors import InvocationError
from pyiii.modules.engine_functions import EngineFunctionsModule
from pyiii.protocol.errors import TriggerRegistrationError


class Ticker(Module):
    """Provides `ticker::hello`, `ticker::ask` (which calls a worker function) and a `tick` trigger type."""

    name = "iii-ticker"

    def __init__(self) -> None:
        self.bindings: dict[str, Binding] = {}
        self.host: ModuleHost | None = None
        self.stopped = False

    async def start(self, host: ModuleHost) -> None:
        self.host = host

        async def hello(data: Any, ctx: CallContext) -> Any:
            return {"hello": data["name"], "namespace": ctx.namespace, "meta": ctx.metadata}

        async def ask(data: Any, ctx: CallContext) -> Any:
            return await host.trigger(data["function_id"], data.get("payload"))

        host.register_function("ticker::hello", hello, description="Say hello", taskless=True)
        host.register_function("ticker::ask", ask)
        host.register_trigger_type("tick", self, description="Fires on demand")

    async def stop(self) -> None:
        self.stopped = True

    # TriggerProvider
    def register_trigger(self, binding: Binding) -> None:
        if not isinstance(binding.config, dict) or "every" not in binding.config:
            raise TriggerRegistrationError("tick triggers need `every`")
        self.bindings[binding.id] = binding

    def unregister_trigger(self, binding: Binding) -> None:
        self.bindings.pop(binding.id, None)

    def fire(self, payload: Any) -> None:
        assert self.host is not None
        for b in self.bindings.values():
            self.host.engine.invoke_void(b.function_id, payload, namespace=b.namespace, metadata=b.metadata)


@pytest.fixture
async def seam() -> Any:
    engine = Engine()
    ticker = Ticker()
    engine.add_module(EngineFunctionsModule())
    engine.add_module(ticker)
    await engine.start()
    yield engine, ticker
    await engine.stop()


async def test_module_function_called_by_an_in_process_worker(seam: Any) -> None:
    """A worker calls a module's function; the call runs in-process and returns its result."""
    engine, _ = seam
    iii = register_worker(engine, InitOptions(worker_name="w"))
    result = await iii.trigger_async({"function_id": "ticker::hello", "payload": {"name": "ada"}})
    assert result == {"hello": "ada", "namespace": "default", "meta": None}
    iii.shutdown()


async def test_module_function_resolves_from_every_namespace(seam: Any) -> None:
    """D20: a namespaced worker reaches a built-in module's function without naming `default`."""
    engine, _ = seam
    iii = register_worker(engine, InitOptions(worker_name="ns-worker", namespace="orders"))
    result = await iii.trigger_async({"function_id": "ticker::hello", "payload": {"name": "bo"}})
    assert result["hello"] == "bo"
    iii.shutdown()


async def test_module_calls_a_worker_function(seam: Any) -> None:
    """ModuleHost.trigger routes to a worker function like any engine-initiated call."""
    engine, _ = seam
    iii = register_worker(engine, InitOptions(worker_name="w"))
    iii.register_function("w::double", lambda data: data * 2)
    assert await engine.invoke("ticker::ask", {"function_id": "w::double", "payload": 21}) == 42
    iii.shutdown()


async def test_module_function_that_never_suspends_answers_within_the_call(seam: Any) -> None:
    """A taskless built-in that finishes without suspending runs eagerly: its result is in before the
    worker's call returns control to the loop (no task per call); a built-in that suspends is still
    answered."""
    engine, _ = seam
    iii = register_worker(engine, InitOptions(worker_name="w"))
    iii.register_function("w::double", lambda data: data * 2)
    future = iii._start_call({"function_id": "ticker::hello", "payload": {"name": "eager"}})
    assert future is not None and future.done()
    assert future.result()["hello"] == "eager"
    suspending = iii._start_call(
        {"function_id": "ticker::ask", "payload": {"function_id": "w::double", "payload": 4}}
    )
    assert suspending is not None and not suspending.done()
    assert await suspending == 8
    iii.shutdown()


async def test_module_function_id_is_reserved(seam: Any) -> None:
    """A worker cannot take over a module's function id (§5.1 rule 4): the module keeps serving it."""
    engine, _ = seam
    iii = register_worker(engine, InitOptions(worker_name="thief"))
    iii.register_function("ticker::hello", lambda data: "stolen")
    result = await iii.trigger_async({"function_id": "ticker::hello", "payload": {"name": "x"}})
    assert result["hello"] == "x"
    assert engine.functions.get("default", "ticker::hello").owners == [engine.module_peers["iii-ticker"]]
    iii.shutdown()


async def test_module_trigger_type_binds_validates_and_fires(seam: Any) -> None:
    """A module trigger type validates configs synchronously and fires bound functions with metadata."""
    engine, ticker = seam
    iii = register_worker(engine, InitOptions(worker_name="w"))
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def on_tick(data: Any, metadata: Any = None) -> None:
        await got.put((data, metadata))

    iii.register_function("w::on_tick", on_tick)
    bad = iii.register_trigger({"type": "tick", "function_id": "w::on_tick", "config": {}})
    good = iii.register_trigger(
        {"type": "tick", "function_id": "w::on_tick", "config": {"every": 1}, "metadata": {"m": 1}}
    )
    assert bad.id not in engine.triggers.bindings  # rejected config: the binding is dropped
    assert set(ticker.bindings) == {good.id}
    ticker.fire({"n": 1})
    assert await asyncio.wait_for(got.get(), 5) == ({"n": 1}, {"m": 1})
    good.unregister()
    assert ticker.bindings == {}
    iii.shutdown()


async def test_module_listed_as_a_built_in_worker(seam: Any) -> None:
    """engine::workers::list shows the module under its name with runtime engine and its function count."""
    engine, _ = seam
    listing = await engine.invoke("engine::workers::list", {})
    row = next(w for w in listing["workers"] if w["id"] == "iii-ticker")
    assert (row["runtime"], row["status"], row["isolation"], row["function_count"]) == (
        "engine",
        "available",
        "in-process",
        2,
    )
    types = await engine.invoke("engine::triggers::list", {})
    assert {
        "id": "tick",
        "namespace": "default",
        "worker_name": "iii-ticker",
        "description": "Fires on demand",
    } in (types["triggers"])


async def test_module_errors_reach_the_caller_with_their_code(seam: Any) -> None:
    """A module handler raising InvocationError answers the caller with that code."""
    engine, _ = seam
    iii = register_worker(engine, InitOptions(worker_name="w"))
    with pytest.raises(InvocationError) as info:
        await iii.trigger_async({"function_id": "ticker::ask", "payload": {"function_id": "nope::x"}})
    assert info.value.code == "function_not_found"
    iii.shutdown()


async def test_module_stopped_with_the_engine() -> None:
    """Engine.stop stops every module."""
    engine = Engine()
    ticker = Ticker()
    engine.add_module(ticker)
    await engine.start()
    await engine.stop()
    assert ticker.stopped


@contextlib.asynccontextmanager
async def engine_and_worker(
    *modules: Module, invocation_timeout_ms: int = 300_000
) -> AsyncIterator[tuple[Engine, III]]:
    """A started engine with ``modules`` and an in-process worker ``w`` on it; both stopped after."""
    from pyiii.engine.core import EngineSettings

    engine = Engine(EngineSettings(invocation_timeout_ms=invocation_timeout_ms))
    for module in modules:
        engine.add_module(module)
    await engine.start()
    iii = register_worker(engine, InitOptions(worker_name="w"))
    try:
        yield engine, iii
    finally:
        iii.shutdown()
        await engine.stop()


class Stalled(Module):
    """A module whose ``stalled::wait`` suspends until the test releases it."""

    name = "stalled"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.finished = 0
        self.both_finished = asyncio.Event()

    async def start(self, host: ModuleHost) -> None:
        async def wait(data: Any, ctx: CallContext) -> Any:
            await self.release.wait()
            self.finished += 1
            if self.finished == 2:
                self.both_finished.set()
            return "late"

        async def quick(data: Any, ctx: CallContext) -> Any:
            await asyncio.sleep(0)
            return "in time"

        async def fail(data: Any, ctx: CallContext) -> Any:
            if data.get("later"):
                await asyncio.sleep(0)
            raise InvocationError(
                "stalled_failed", f"failed for {ctx.caller.display_name if ctx.caller else '?'}"
            )

        async def record(data: Any, ctx: CallContext) -> Any:
            self.recorded.append((data, ctx.caller is not None, ctx.traceparent))
            return None

        self.recorded: list[Any] = []
        host.register_function("stalled::wait", wait)
        host.register_function("stalled::quick", quick)
        host.register_function("stalled::fail", fail)
        host.register_function("stalled::record", record)


async def test_built_in_call_is_under_invocation_timeout() -> None:
    """§4.5 rule 1: a worker's call of a built-in that suspends longer than invocation_timeout_ms is
    answered `invocation_timeout`; the built-in's late result is dropped; a call that finishes in time
    leaves no deadline behind. (Engine-side callers of built-ins, such as HTTP routes and state
    triggers, are bounded by their own deadlines.)"""
    stalled = Stalled()
    async with engine_and_worker(stalled, invocation_timeout_ms=100) as (engine, iii):
        with pytest.raises(InvocationError) as from_worker:
            await iii.trigger_async({"function_id": "stalled::wait", "payload": {}, "timeout_ms": 10_000})
        assert from_worker.value.code == "invocation_timeout"
        assert from_worker.value.message == "Invocation of stalled::wait timed out after 100 ms"
        second = iii._start_call({"function_id": "stalled::wait", "payload": {}, "timeout_ms": 10_000})
        assert second is not None
        with pytest.raises(InvocationError) as again:
            await second
        assert again.value.code == "invocation_timeout"

        stalled.release.set()  # both late results arrive now and go nowhere
        await asyncio.wait_for(stalled.both_finished.wait(), 5)
        assert await iii.trigger_async({"function_id": "stalled::quick", "payload": {}}) == "in time"
        assert len(engine._deadlines) == 0
        assert iii._pending == {}


async def test_in_process_calls_of_built_ins() -> None:
    """An in-process worker's call of a built-in goes straight into the engine
    (``InProcessTransport.direct_call``) and behaves as the message path does: the client's own
    ``timeout_ms`` bounds a built-in that suspends (TIMEOUT, late result dropped, nothing left
    pending); failures carry the built-in's code and message with the call's function and a fresh
    invocation id, whether the built-in failed at once or after suspending; a Void call returns None
    and runs with the caller's identity and trace context."""
    from pyiii.sdk.logger import current_traceparent

    stalled = Stalled()
    async with engine_and_worker(stalled, invocation_timeout_ms=30_000) as (engine, iii):
        with pytest.raises(InvocationError) as timed_out:
            await iii.trigger_async({"function_id": "stalled::wait", "payload": {}, "timeout_ms": 50})
        assert (timed_out.value.code, timed_out.value.function_id) == ("TIMEOUT", "stalled::wait")
        assert timed_out.value.invocation_id and iii._pending == {}

        for later in (False, True):
            with pytest.raises(InvocationError) as failed:
                await iii.trigger_async({"function_id": "stalled::fail", "payload": {"later": later}})
            error = failed.value
            assert (error.code, error.message, error.function_id) == (
                "stalled_failed",
                "failed for w",
                "stalled::fail",
            )
            assert error.invocation_id, later

        token = current_traceparent.set("00-" + "a" * 32 + "-" + "b" * 16 + "-01")
        try:
            void = {"function_id": "stalled::record", "payload": {"n": 1}, "action": TriggerAction.Void()}
            assert await iii.trigger_async(void) is None
        finally:
            current_traceparent.reset(token)
        for _ in range(3):  # not taskless: the Void call runs as its own task
            await asyncio.sleep(0)
        assert stalled.recorded == [({"n": 1}, True, "00-" + "a" * 32 + "-" + "b" * 16 + "-01")]

        stalled.release.set()  # the timed-out call's late result arrives now and goes nowhere
        await asyncio.sleep(0.05)
        assert iii._pending == {} and len(engine._deadlines) == 0


async def test_in_process_caller_with_the_shorter_deadline_is_the_only_one_timing_the_call() -> None:
    """An in-process worker's call of a built-in whose client ``timeout_ms`` expires first keeps no
    engine deadline (it could only fire into the abandoned call): the client's TIMEOUT answers it.
    With a client deadline not shorter than ``invocation_timeout_ms`` the engine keeps its own."""
    stalled = Stalled()
    async with engine_and_worker(stalled, invocation_timeout_ms=30_000) as (engine, iii):
        short = iii._start_call({"function_id": "stalled::wait", "payload": {}, "timeout_ms": 100})
        assert short is not None
        assert len(engine._deadlines) == 0 and len(iii._deadlines) == 1
        with pytest.raises(InvocationError) as timed_out:
            await short
        assert timed_out.value.code == "TIMEOUT"

        long = iii._start_call({"function_id": "stalled::wait", "payload": {}, "timeout_ms": 30_000})
        assert long is not None
        assert len(engine._deadlines) == 1 and len(iii._deadlines) == 1
        stalled.release.set()
        assert await long == "late"
        await asyncio.wait_for(stalled.both_finished.wait(), 5)
        assert len(engine._deadlines) == 0 and len(iii._deadlines) == 0 and iii._pending == {}


class Committing(Module):
    """``commit::write`` waits for a future the test resolves, as a local store's write waits for its
    commit; registered ``taskless``."""

    name = "committing"

    def __init__(self) -> None:
        self.commits: list[asyncio.Future[Any]] = []

    async def start(self, host: ModuleHost) -> None:
        async def write(data: Any, ctx: CallContext) -> Any:
            commit: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.commits.append(commit)
            outcome = await commit
            if outcome == "fail":
                raise InvocationError("commit_failed", "the commit failed")
            return {"written": data, "outcome": outcome}

        host.register_function("commit::write", write, taskless=True)


async def test_taskless_built_in_finishes_from_its_futures_callbacks() -> None:
    """A built-in registered ``taskless`` that suspends is finished without a task (no task exists
    while it waits) and answers as any built-in does: its result, its error after the suspension, and
    invocation_timeout when it waits too long (its late result is dropped)."""
    module = Committing()
    async with engine_and_worker(module, invocation_timeout_ms=200) as (engine, iii):
        tasks_before = len(asyncio.all_tasks())
        call = iii._start_call({"function_id": "commit::write", "payload": {"n": 1}})
        assert call is not None and not call.done() and len(module.commits) == 1
        assert len(asyncio.all_tasks()) == tasks_before
        module.commits[0].set_result("ok")
        assert await call == {"written": {"n": 1}, "outcome": "ok"}

        failing = iii._start_call({"function_id": "commit::write", "payload": {}})
        assert failing is not None
        module.commits[1].set_result("fail")
        with pytest.raises(InvocationError) as failed:
            await failing
        assert (failed.value.code, failed.value.message) == ("commit_failed", "the commit failed")

        # a commit that outlasts invocation_timeout_ms
        with pytest.raises(InvocationError) as timed_out:
            await iii.trigger_async({"function_id": "commit::write", "payload": {}, "timeout_ms": 10_000})
        assert timed_out.value.code == "invocation_timeout"
        module.commits[2].set_result("late")  # goes nowhere
        await asyncio.sleep(0.01)
        assert len(engine._deadlines) == 0 and iii._pending == {}


class Timed(Module):
    """``timed::bounded`` sleeps under ``asyncio.timeout``, as redis-py reads a reply; registered
    without ``taskless``."""

    name = "timed"

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.outcomes: list[str] = []

    async def start(self, host: ModuleHost) -> None:
        async def bounded(data: Any, ctx: CallContext) -> Any:
            self.tasks.append(asyncio.current_task())
            try:
                async with asyncio.timeout(data["timeout_s"]):
                    await asyncio.sleep(data["sleep_s"])
            except TimeoutError:
                self.outcomes.append("timed out")
                raise InvocationError("timed_out", "the bounded wait timed out") from None
            self.outcomes.append("done")
            return "done"

        host.register_function("timed::bounded", bounded)


async def test_built_in_without_taskless_runs_in_its_own_task() -> None:
    """A built-in not registered ``taskless`` runs as a task of its own, never in its caller's
    context: an ``asyncio.timeout`` it enters before its first suspension ends its own wait, not the
    caller's task (which gets the built-in's error, uncancelled), and an engine-initiated call from a
    loop callback, where no task is current, runs it instead of failing."""
    module = Timed()
    async with engine_and_worker(module) as (engine, iii):
        caller = asyncio.current_task()
        assert caller is not None
        with pytest.raises(InvocationError) as timed_out:
            await iii.trigger_async(
                {"function_id": "timed::bounded", "payload": {"timeout_s": 0.02, "sleep_s": 5}}
            )
        assert (timed_out.value.code, timed_out.value.message) == ("timed_out", "the bounded wait timed out")
        assert caller.cancelling() == 0
        assert module.tasks[0] is not None and module.tasks[0] is not caller
        assert (
            await iii.trigger_async(
                {"function_id": "timed::bounded", "payload": {"timeout_s": 5, "sleep_s": 0}}
            )
            == "done"
        )

        # from a callback (a trigger firing outside any task)
        loop = asyncio.get_running_loop()
        loop.call_soon(engine.invoke_void, "timed::bounded", {"timeout_s": 5, "sleep_s": 0.01})
        for _ in range(100):
            if len(module.outcomes) == 3:
                break
            await asyncio.sleep(0.01)
        assert module.outcomes == ["timed out", "done", "done"]
        assert module.tasks[2] is not None


class Relay(Module):
    """``relay::call`` (taskless) calls another function through ``ModuleHost.trigger``."""

    name = "relay"

    async def start(self, host: ModuleHost) -> None:
        async def call(data: Any, ctx: CallContext) -> Any:
            return await host.trigger(data["function_id"], data["payload"])

        host.register_function("relay::call", call, taskless=True)


async def test_engine_side_calls_of_a_built_in_without_taskless_run_it_in_its_own_task() -> None:
    """``Engine.invoke`` (``ModuleHost.trigger``) and ``invoke_future`` run a built-in that is not
    taskless as its own task, as the message path does, even when the caller runs in someone else's
    context (a taskless built-in started by a worker's call): the built-in's ``asyncio.timeout``
    ends its own wait and the worker gets its error, uncancelled."""
    timed = Timed()
    async with engine_and_worker(timed, Relay()) as (engine, iii):
        caller = asyncio.current_task()
        assert caller is not None
        bounded = {"function_id": "timed::bounded", "payload": {"timeout_s": 0.02, "sleep_s": 5}}
        with pytest.raises(InvocationError) as timed_out:
            await iii.trigger_async({"function_id": "relay::call", "payload": bounded})
        assert timed_out.value.code == "timed_out"
        assert caller.cancelling() == 0
        assert timed.tasks[0] is not caller

        future = engine.invoke_future("timed::bounded", {"timeout_s": 5, "sleep_s": 0})
        assert await future == "done"
        assert timed.tasks[1] is not caller and timed.outcomes == ["timed out", "done"]
