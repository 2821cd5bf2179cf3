"""The child processes of ``bench/state.py`` (each runs as ``state.py --role NAME``).

======================  ==========================================================================
role                    what it is
======================  ==========================================================================
``engine``              ``python -m pyiii.cli -c CONFIG`` (the config holds a worker listener and an
                        ``iii-state`` entry selecting the adapter)
``worker``              a pyiii SDK worker over WebSocket; targets ``set``, ``get``, ``update``
                        (``state::set`` / ``state::get`` / ``state::update`` with one increment op)
``redis-client``        the baseline: redis-py asyncio + hiredis; targets ``set``, ``get``, ``update``
                        (``SET`` / ``GET`` / ``HINCRBY``)
``inprocess``           engine (from the same config, no listener) and an embedded worker
                        (``register_worker(engine)``) on one uvloop loop; targets as ``worker`` plus
                        ``echo`` (an embedded function call through the engine: the floor)
``fanout-handler``      a pyiii SDK worker serving the trigger handlers (1 and 20 ``state``
                        triggers, each on its own scope) and ``bench::fan::direct``
``fanout-writer``       a pyiii SDK worker timing a ``state::set`` to the start of its handlers
                        (custom blocks ``direct``, ``fan1``, ``fan20``)
======================  ==========================================================================

Key choice: every variant cycles through the same number of keys (``keys``, 64 by default), one key
per call in turn, so with 64 calls in flight each lands on a different key (the store's throughput,
not one key's lock). ``set``/``get`` use keys ``k<i>`` holding the payload, ``update`` uses keys
``c<i>`` holding ``{"n": <int>}`` (Redis: a hash with field ``n``). The baseline encodes each value
to JSON on SET and decodes it on GET, as a pyiii worker's SDK does with every payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from _common import (
    Target,
    emit,
    exit_when_parent_goes,
    serve_commands,
    start_loop_thread,
    wait_until_callable,
)

SET, GET, UPDATE = "state::set", "state::get", "state::update"
DELETE = "state::delete"
OPS = ("set", "get", "update")
ECHO = "bench::echo"
DIRECT = "bench::fan::direct"
ACK = "bench::fan::ack"
FANOUTS = (1, 20)
#: Longest wait for one write's handlers (a lost event fails the block instead of hanging it).
FANOUT_WAIT_S = 10.0
INCREMENT = [{"type": "increment", "path": "n", "by": 1}]


def fan_scope(scope: str, n: int) -> str:
    return f"{scope}-fan{n}"


def fan_function(n: int, i: int) -> str:
    return f"bench::fan{n}::{i}"


# ============================================================================================== engine


def role_engine(config: str) -> int:
    """The engine, exactly as `python -m pyiii.cli -c CONFIG` runs it."""
    from pyiii.cli import main

    exit_when_parent_goes()  # SIGTERM on parent exit: the engine's own graceful shutdown
    return main(["-c", config])


# ============================================================================================== pyiii ops


class StateCalls:
    """The three timed calls through any ``trigger_async`` (remote or embedded worker).

    Requests are built once per key and reused (the SDK encodes the payload on every call and never
    mutates it); a counter picks the next key, so concurrent calls spread over the keys.
    """

    def __init__(self, trigger: Callable[[Any], Awaitable[Any]], scope: str, keys: int, value: Any) -> None:
        self.trigger = trigger
        self.scope = scope
        self.keys = keys
        self.value = value
        self.set_requests = [
            {"function_id": SET, "payload": {"scope": scope, "key": f"k{i}", "value": value}}
            for i in range(keys)
        ]
        self.get_requests = [
            {"function_id": GET, "payload": {"scope": scope, "key": f"k{i}"}} for i in range(keys)
        ]
        self.update_requests = [
            {"function_id": UPDATE, "payload": {"scope": scope, "key": f"c{i}", "ops": INCREMENT}}
            for i in range(keys)
        ]
        self._next = itertools.count().__next__

    def set(self) -> Awaitable[Any]:
        return self.trigger(self.set_requests[self._next() % self.keys])

    def get(self) -> Awaitable[Any]:
        return self.trigger(self.get_requests[self._next() % self.keys])

    def update(self) -> Awaitable[Any]:
        return self.trigger(self.update_requests[self._next() % self.keys])

    async def prepare(self) -> None:
        """Wait for the module, write every key once, and check the three results' shapes."""
        await wait_until_callable(lambda: self.trigger(self.get_requests[0]))
        for i in range(self.keys):
            await self.trigger(self.set_requests[i])
            await self.trigger(
                {"function_id": SET, "payload": {"scope": self.scope, "key": f"c{i}", "value": {"n": 0}}}
            )
        got = await self.trigger(self.get_requests[0])
        if got != self.value:
            raise RuntimeError(f"state::get returned {got!r}, expected the value written")
        updated = await self.trigger(self.update_requests[0])
        if not isinstance(updated, dict) or updated.get("new_value") != {"n": 1} or "errors" in updated:
            raise RuntimeError(f"state::update returned {updated!r}, expected new_value {{'n': 1}}")

    async def cleanup(self) -> None:
        """Delete every key written (a scope disappears with its last key)."""
        for i in range(self.keys):
            for key in (f"k{i}", f"c{i}"):
                await self.trigger({"function_id": DELETE, "payload": {"scope": self.scope, "key": key}})

    def targets(self, loop: asyncio.AbstractEventLoop) -> dict[str, Target]:
        return {
            "set": Target(self.set, loop),
            "get": Target(self.get, loop),
            "update": Target(self.update, loop),
        }


def _run_bounded(coro: Any, loop: asyncio.AbstractEventLoop, timeout_s: float) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout_s)


def role_worker(url: str, plan: dict[str, Any]) -> int:
    """A pyiii SDK worker calling the state functions over WebSocket, on the SDK's own loop."""
    from pyiii import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name="bench-state"))
    calls = StateCalls(iii.trigger_async, plan["scope"], plan["keys"], plan["payload"])
    loop = iii._loop  # the SDK's background loop (where an async handler's calls run)
    try:
        _run_bounded(calls.prepare(), loop, 120)
        serve_commands(calls.targets(loop), plan.get("cpu_pids"))
        with contextlib.suppress(Exception):
            _run_bounded(calls.cleanup(), loop, 30)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        iii.shutdown()
    return 0


# ============================================================================================== baseline


class RedisCalls:
    """SET / GET / HINCRBY with redis-py asyncio (hiredis parser) on its default connection pool:
    ``inflight`` concurrent commands use as many pooled connections (how redis-py serves them)."""

    def __init__(self, client: Any, prefix: str, keys: int, value: Any) -> None:
        import msgspec

        self.client = client
        self.keys = keys
        self.value = value
        self.prefix = prefix
        self.value_keys = [f"{prefix}k{i}" for i in range(keys)]
        self.counter_keys = [f"{prefix}c{i}" for i in range(keys)]
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.decode
        self._next = itertools.count().__next__

    def set(self) -> Awaitable[Any]:
        return self.client.set(self.value_keys[self._next() % self.keys], self._encode(self.value))

    async def get(self) -> Any:
        return self._decode(await self.client.get(self.value_keys[self._next() % self.keys]))

    def update(self) -> Awaitable[Any]:
        return self.client.hincrby(self.counter_keys[self._next() % self.keys], "n", 1)

    async def prepare(self) -> None:
        for i in range(self.keys):
            await self.client.set(self.value_keys[i], self._encode(self.value))
            await self.client.delete(self.counter_keys[i])
            await self.client.hset(self.counter_keys[i], "n", 0)
        if await self.get() != self.value:
            raise RuntimeError("GET did not return the value written")
        if await self.client.hincrby(self.counter_keys[0], "n", 1) != 1:
            raise RuntimeError("HINCRBY did not count from 0")

    async def cleanup(self) -> None:
        await self.client.delete(*self.value_keys, *self.counter_keys)

    def targets(self, loop: asyncio.AbstractEventLoop) -> dict[str, Target]:
        return {
            "set": Target(self.set, loop),
            "get": Target(self.get, loop),
            "update": Target(self.update, loop),
        }


def role_redis_client(plan: dict[str, Any]) -> int:
    """The baseline client: one redis.asyncio.Redis on a uvloop loop in a thread."""
    import redis.asyncio as aioredis
    import uvloop
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        emit("error", message="hiredis is not installed: pip install 'redis[hiredis]'")
        return 1
    loop = uvloop.new_event_loop()
    start_loop_thread(loop, "redis-client")

    async def connect() -> Any:
        client = aioredis.Redis.from_url(plan["redis_url"])
        await client.ping()
        return client

    try:
        client = _run_bounded(connect(), loop, 30)
        calls = RedisCalls(client, plan["prefix"], plan["keys"], plan["payload"])
        _run_bounded(calls.prepare(), loop, 60)
        serve_commands(calls.targets(loop), plan.get("cpu_pids"))
        with contextlib.suppress(Exception):
            _run_bounded(calls.cleanup(), loop, 30)
            _run_bounded(client.aclose(), loop, 10)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


# ============================================================================================== in-process


async def _echo(data: Any) -> Any:
    return data


def role_inprocess(config: str, plan: dict[str, Any]) -> int:
    """Engine (the config's ``iii-state``, no listener) and an embedded worker on one uvloop loop."""
    import uvloop

    loop = uvloop.new_event_loop()
    start_loop_thread(loop, "inprocess")
    try:
        server, worker, calls = _run_bounded(_inprocess_setup(config, plan), loop, 120)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    try:
        echo_request = {"function_id": ECHO, "payload": plan["payload"]}
        targets = calls.targets(loop)
        targets["echo"] = Target(lambda: worker.trigger_async(echo_request), loop)
        serve_commands(targets)
    finally:
        with contextlib.suppress(Exception):
            _run_bounded(calls.cleanup(), loop, 30)
        _run_bounded(_inprocess_teardown(server, worker), loop, 30)
    return 0


async def _inprocess_setup(config: str, plan: dict[str, Any]) -> tuple[Any, Any, StateCalls]:
    import dataclasses

    from pyiii import InitOptions, register_worker
    from pyiii.config import load_settings
    from pyiii.server.app import EngineServer

    settings = dataclasses.replace(load_settings(config), worker_managers=())  # no socket
    server = EngineServer(settings)
    await server.start()
    worker = register_worker(server.engine, InitOptions(worker_name="bench-state-embedded"))
    worker.register_function(ECHO, _echo)
    calls = StateCalls(worker.trigger_async, plan["scope"], plan["keys"], plan["payload"])
    await calls.prepare()
    await wait_until_callable(lambda: worker.trigger_async({"function_id": ECHO, "payload": None}))
    return server, worker, calls


async def _inprocess_teardown(server: Any, worker: Any) -> None:
    await worker.shutdown_async()
    await server.stop()


# ============================================================================================== fan-out


def role_fanout_handler(url: str, plan: dict[str, Any]) -> int:
    """Serves the handlers of 1 and of 20 ``state`` triggers (config ``{scope}``, one scope per
    fan-out) and ``bench::fan::direct``. Each handler notes ``time.monotonic_ns()`` as its first step
    (one system-wide clock, so the writer's timestamp in the value is comparable); the last handler of
    a write to start sends all of them to the writer (``bench::fan::ack``, Void)."""
    from pyiii import InitOptions, TriggerAction, register_worker

    exit_when_parent_goes()
    iii = register_worker(url, InitOptions(worker_name="bench-fan-handlers"))
    clock = time.monotonic_ns
    started: dict[tuple[int, int], list[int]] = {}

    def make_handler(n: int) -> Callable[[Any], Awaitable[Any]]:
        async def handler(event: Any) -> Any:
            t = clock()
            value = event.get("new_value") if isinstance(event, dict) else None
            if not isinstance(value, dict) or "seq" not in value:
                return None  # e.g. the deletes of the clean-up
            seq = value["seq"]
            seen = started.setdefault((n, seq), [])
            seen.append(t - value["t0"])
            if len(seen) == n:
                del started[(n, seq)]
                await iii.trigger_async(
                    {
                        "function_id": ACK,
                        "payload": {"seq": seq, "started_ns": seen},
                        "action": TriggerAction.Void(),
                    }
                )
            return None

        return handler

    async def direct(_data: Any) -> Any:
        return clock()

    iii.register_function(DIRECT, direct)
    for n in FANOUTS:
        handler = make_handler(n)
        for i in range(n):
            iii.register_function(fan_function(n, i), handler)
            iii.register_trigger(
                {
                    "type": "state",
                    "function_id": fan_function(n, i),
                    "config": {"scope": fan_scope(plan["scope"], n)},
                }
            )
    emit("ready", worker_id=iii.worker_id)
    threading.Event().wait()  # SIGTERM (from the parent watch) ends the process
    return 0


class FanoutWriter:
    """Writes one key at a time and waits until every handler of the write has started (closed loop:
    no write overlaps the deliveries of the previous one). Keys rotate over ``keys`` so per-key
    delivery order never makes a write wait for the previous handlers to finish."""

    def __init__(self, iii: Any, scope: str, keys: int) -> None:
        self.iii = iii
        self.scope = scope
        self.keys = keys
        self.waiting: dict[int, asyncio.Future[list[int]]] = {}
        self._seq = itertools.count(1).__next__

    async def on_ack(self, data: Any) -> Any:
        future = self.waiting.pop(data["seq"], None)
        if future is not None and not future.done():
            future.set_result(data["started_ns"])
        return None

    async def write(self, n: int, timeout_s: float = FANOUT_WAIT_S) -> tuple[int, list[int]]:
        """One write: (reply ns, [handler start - write start ns, ...])."""
        seq = self._seq()
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.waiting[seq] = future
        try:
            t0 = time.monotonic_ns()
            await self.iii.trigger_async(
                {
                    "function_id": SET,
                    "payload": {
                        "scope": fan_scope(self.scope, n),
                        "key": f"k{seq % self.keys}",
                        "value": {"t0": t0, "seq": seq},
                    },
                }
            )
            reply = time.monotonic_ns() - t0
            started = await asyncio.wait_for(future, timeout_s)
        finally:
            self.waiting.pop(seq, None)
        return reply, started

    async def direct(self) -> tuple[int, list[int]]:
        """A plain call to a function of the handler worker: (reply ns, [handler start - call ns])."""
        t0 = time.monotonic_ns()
        started = await self.iii.trigger_async({"function_id": DIRECT, "payload": {"t0": t0}})
        return time.monotonic_ns() - t0, [started - t0]

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Until one write of each fan-out reaches all its handlers (registration is asynchronous)."""
        await wait_until_callable(self.direct)
        deadline = time.monotonic() + timeout_s
        for n in FANOUTS:
            while True:
                try:
                    await self.write(n, 0.5)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {n} state trigger(s) never all fired") from None

    def block(self, variant: str) -> Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]:
        async def run(cmd: dict[str, Any]) -> dict[str, Any]:
            one: Callable[[], Awaitable[tuple[int, list[int]]]]
            if variant == "direct":
                one = self.direct
            else:
                n = int(variant.removeprefix("fan"))

                def one() -> Awaitable[tuple[int, list[int]]]:
                    return self.write(n)

            for _ in range(int(cmd.get("warmup", 0))):
                await one()
            reply_ns: list[int] = []
            first_ns: list[int] = []
            last_ns: list[int] = []
            all_ns: list[int] = []
            for _ in range(int(cmd["calls"])):
                reply, started = await one()
                reply_ns.append(reply)
                first_ns.append(min(started))
                last_ns.append(max(started))
                all_ns.extend(started)
            return {"reply_ns": reply_ns, "first_ns": first_ns, "last_ns": last_ns, "all_ns": all_ns}

        return run

    async def cleanup(self) -> None:
        for n in FANOUTS:
            for i in range(self.keys):
                await self.iii.trigger_async(
                    {"function_id": DELETE, "payload": {"scope": fan_scope(self.scope, n), "key": f"k{i}"}}
                )


def role_fanout_writer(url: str, plan: dict[str, Any]) -> int:
    from pyiii import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name="bench-fan-writer"))
    writer = FanoutWriter(iii, plan["scope"], plan["keys"])
    iii.register_function(ACK, writer.on_ack)
    loop = iii._loop
    try:
        _run_bounded(writer.ready(), loop, 60)
        targets = {
            variant: Target(lambda: None, loop, block=writer.block(variant))
            for variant in ("direct", *(f"fan{n}" for n in FANOUTS))
        }
        serve_commands(targets, plan.get("cpu_pids"))
        with contextlib.suppress(Exception):
            _run_bounded(writer.cleanup(), loop, 30)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        iii.shutdown()
    return 0
