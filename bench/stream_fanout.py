"""Stream fan-out benchmark: one ``stream::send`` to N WebSocket subscribers, against a bare aiohttp floor.

Three measurements (issue 5), each against a baseline measured in the same run:

1. **fan-out**: one event delivered to N subscribed clients (N = 100, 1,000, 10,000), clients in
   separate processes. Per event: time to last delivery (publisher's ``t0`` to the last client's
   receipt) and deliveries/s (= N / that time). The floor is a bare aiohttp WebSocket server that
   broadcasts the same frame bytes to the same clients (``await ws.send_frame`` in a loop).
   Target: pyiii >= 0.7x the floor's deliveries/s at N = 1,000 and 10,000.
2. **latency under load**: 100 subscribers, 1,000 events/s (and the lower ``--rates``) paced by a
   worker (pyiii SDK, remote, ``stream::send`` with ``TriggerAction.Void()``, or awaited with
   ``--awaited``): p50/p99 from the call to receipt, over every delivery. The floor gets the same
   paced run. Target: p99 < 10 ms at 1,000 events/s.
3. **slow client**: 1,000 subscribers at ``--slow-rate`` events/s, with and without one extra
   subscriber that never reads (tiny receive buffer, reading paused, joined 64 times, 4 KiB events:
   the kernel buffers and its 1,024-frame queue fill within a block and it is closed with 1013
   mid-block), alternating. Target:
   the normal subscribers' p99 with it <= 1.2x without it (or inside the without-blocks' range).

Processes (all on 127.0.0.1; ``--layout split``: servers on CPU 1, everything else on CPU 0)::

    publisher (pyiii SDK worker + a floor socket) ──ws──► engine [iii-stream]  ══► k client processes
                                                  ──ws──► floor (aiohttp)      ══►   (N/k lean sockets
                                                                                      per variant each)

The engine runs as ``python -m pyiii.cli -c CONFIG`` does (worker manager + iii-stream, kv in memory).
Clients: see ``stream_clients.py`` (why they are not aiohttp clients). Absolute numbers are not
comparable between runs or machines; the ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _common import (  # noqa: E402
    CPU_ENV,
    LAYOUTS,
    Child,
    Children,
    commands,
    cpu_layout,
    cpu_ns,
    emit,
    exit_when_parent_goes,
    free_port,
    install_signal_exit,
    percentile,
    pin_cpu_from_env,
    wait_port,
)

STREAM, GROUP, EVENT_TYPE = "bench", "g", "tick"
FLOOR, PYIII = "floor", "pyiii"
LABELS = {
    FLOOR: "floor: bare aiohttp broadcast",
    PYIII: "pyiii iii-stream (stream::send)",
}
TARGET_FANOUT_RATIO = 0.7
TARGET_P99_MS = 10.0
TARGET_RATE = 1000.0
TARGET_SLOW_RATIO = 1.2


def raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ============================================================================================== roles

# The floor's messages: the publisher's input (stream::send's shape) and the frame it broadcasts
# (stream.md §3.6, keys in the listener's order).


class Publish(msgspec.Struct):
    stream_name: str
    group_id: str
    type: str
    data: msgspec.Raw


class Custom(msgspec.Struct):
    type: str
    data: msgspec.Raw


class Event(msgspec.Struct):
    type: str
    event: Custom


class Sync(msgspec.Struct):
    type: str
    data: list[Any]


class Frame(msgspec.Struct):
    type: str
    timestamp: int
    streamName: str
    groupId: str
    id: str | None
    event: Event | Sync


def role_floor(port: int) -> int:
    """The floor: aiohttp, clients join on ``/``, the publisher on ``/publish``; each published
    message becomes one frame (the stream listener's shape, serialized once) sent to every subscriber
    of its group with ``await ws.send_frame`` one after the other."""
    import uvloop
    from aiohttp import WSMsgType, web

    exit_when_parent_goes()
    raise_nofile()
    groups: dict[tuple[str, str], list[web.WebSocketResponse]] = {}
    decode_publish = msgspec.json.Decoder(Publish).decode
    encode = msgspec.json.Encoder().encode

    async def subscriber(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        joined: list[list[web.WebSocketResponse]] = []
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                m = msgspec.json.decode(msg.data)
                if isinstance(m, dict) and m.get("type") == "join":
                    d = m["data"]
                    members = groups.setdefault((d["streamName"], d["groupId"]), [])
                    members.append(ws)
                    joined.append(members)
                    sync = Frame(
                        "stream",
                        int(time.time() * 1000),
                        d["streamName"],
                        d["groupId"],
                        None,
                        Sync("sync", []),
                    )
                    await ws.send_frame(encode(sync), WSMsgType.TEXT)
        finally:
            for members in joined:
                members.remove(ws)
        return ws

    async def publisher(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            p = decode_publish(msg.data)
            frame = encode(
                Frame(
                    "stream",
                    int(time.time() * 1000),
                    p.stream_name,
                    p.group_id,
                    None,
                    Event("event", Custom(p.type, p.data)),
                )
            )
            for sub in list(groups.get((p.stream_name, p.group_id), ())):
                try:
                    await sub.send_frame(frame, WSMsgType.TEXT)
                except (ConnectionError, RuntimeError):
                    pass
        return ws

    app = web.Application()
    app.router.add_get("/publish", publisher)
    app.router.add_get("/{tail:.*}", subscriber)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)
    return 0


def role_engine(config: str) -> int:
    """The engine exactly as ``python -m pyiii.cli -c CONFIG`` runs it, with the open-files limit raised."""
    from pyiii.cli import main

    exit_when_parent_goes()
    raise_nofile()
    return main(["-c", config])


class Publisher:
    """Sends the events: ``stream::send`` through the pyiii SDK, or one text message to the floor."""

    def __init__(self, plan: dict[str, Any]) -> None:
        from pyiii import InitOptions, TriggerAction, register_worker

        self.pad = "x" * int(plan["pad_bytes"])
        self.awaited = bool(plan["awaited"])
        self.void = TriggerAction.Void()
        self.iii: Any = None
        if plan["engine_url"]:
            self.iii = register_worker(plan["engine_url"], InitOptions(worker_name="bench-publisher"))
            self.loop = self.iii._loop  # the SDK's loop: calls made there take no thread hop
        else:  # floor only
            import uvloop

            self.loop = uvloop.new_event_loop()
            threading.Thread(target=self.loop.run_forever, name="publisher", daemon=True).start()
        self.floor_url = plan["floor_url"]
        self.floor_ws: Any = None
        self.session: Any = None

    async def start(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.floor_ws = await self.session.ws_connect(self.floor_url)
        if self.iii is not None:
            # stream::send is a built-in function: ready once the worker is connected; check it answers.
            await self.send(PYIII, -1, wait=True)

    def _payload(self, seq: int, t0: int) -> dict[str, Any]:
        # The clients find '"seq":S,"t0":T' in the frame bytes (the engine sorts keys: pad, seq, t0).
        return {
            "stream_name": STREAM,
            "group_id": GROUP,
            "type": EVENT_TYPE,
            "data": {"seq": seq, "t0": t0, "pad": self.pad},
        }

    async def send(self, variant: str, seq: int, wait: bool = False) -> int:
        t0 = time.monotonic_ns()
        payload = self._payload(seq, t0)
        if variant == FLOOR:
            await self.floor_ws.send_str(json.dumps(payload, separators=(",", ":")))
        elif self.awaited or wait:
            await self.iii.trigger_async({"function_id": "stream::send", "payload": payload})
        else:
            await self.iii.trigger_async(
                {"function_id": "stream::send", "payload": payload, "action": self.void}
            )
        return t0

    async def paced(self, variant: str, seq_from: int, count: int, rate: float) -> dict[str, Any]:
        """``count`` events at ``rate``/s on an absolute schedule (a late send does not shift the rest)."""
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.005
        behind_max = 0.0
        pending: list[asyncio.Task[int]] = []
        for i in range(count):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind_max = max(behind_max, -delay)
            if self.awaited and variant == PYIII:
                pending.append(loop.create_task(self.send(variant, seq_from + i)))
            else:
                await self.send(variant, seq_from + i)
        if pending:
            await asyncio.gather(*pending)
        return {"sent": count, "seconds": loop.time() - start, "behind_max_ms": behind_max * 1000}


def role_publisher(plan_json: str) -> int:
    pin_cpu_from_env()
    plan = json.loads(plan_json)
    try:
        pub = Publisher(plan)
        asyncio.run_coroutine_threadsafe(pub.start(), pub.loop).result(60)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    emit("ready")
    for cmd in commands():
        try:
            if cmd["cmd"] == "send":
                t0 = asyncio.run_coroutine_threadsafe(
                    pub.send(cmd["variant"], int(cmd["seq"])), pub.loop
                ).result(60)
                emit("result", t0=t0)
            elif cmd["cmd"] == "paced":
                pub.pad = "x" * int(cmd.get("pad_bytes", len(pub.pad)))
                coro = pub.paced(cmd["variant"], int(cmd["seq_from"]), int(cmd["count"]), float(cmd["rate"]))
                emit("result", **asyncio.run_coroutine_threadsafe(coro, pub.loop).result(600))
            else:
                raise ValueError(f"unknown command {cmd['cmd']!r}")
        except Exception as exc:
            emit("error", message=f"{type(exc).__name__}: {exc}")
    if pub.iii is not None:
        pub.iii.shutdown()
    return 0


ROLES = ("floor", "engine", "publisher")


# ============================================================================================== orchestrator


def _python_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", *args]


class Run:
    """Every process of a run and the commands that drive them."""

    def __init__(self, args: argparse.Namespace, children: Children, tmp: Path) -> None:
        self.args = args
        self.children = children
        self.cpus = cpu_layout(args.layout)
        me = str(Path(__file__).resolve())
        floor_port = free_port()
        self.floor = children.start(
            "floor", _python_argv(me, "--role", "floor", "--port", str(floor_port)), self.env("router")
        )
        wait_port(floor_port, 30, lambda: self.floor.alive)
        self.floor_url = f"ws://127.0.0.1:{floor_port}"
        self.engine: Child | None = None
        self.targets = {FLOOR: self.floor_url + "/"}
        plan: dict[str, Any] = {
            "engine_url": None,
            "floor_url": self.floor_url + "/publish",
            "pad_bytes": args.pad_bytes,
            "awaited": args.awaited,
        }
        if not args.no_pyiii:
            wm_port, stream_port = free_port(), free_port()
            config = tmp / "config.yaml"
            config.write_text(
                "workers:\n"
                f"  - name: iii-worker-manager\n    config:\n      host: 127.0.0.1\n      port: {wm_port}\n"
                f"  - name: iii-stream\n    config:\n      host: 127.0.0.1\n      port: {stream_port}\n"
            )
            self.engine = children.start(
                "engine", _python_argv(me, "--role", "engine", "--config", str(config)), self.env("router")
            )
            wait_port(stream_port, 60, lambda: self.engine is not None and self.engine.alive)
            wait_port(wm_port, 60, lambda: self.engine is not None and self.engine.alive)
            self.targets[PYIII] = f"ws://127.0.0.1:{stream_port}/"
            plan["engine_url"] = f"ws://127.0.0.1:{wm_port}"
        self.publisher = children.start(
            "publisher",
            _python_argv(me, "--role", "publisher", "--plan", json.dumps(plan)),
            self.env("client"),
        )
        self.publisher.wait_event("ready", 60)
        self.clients: list[Child] = []
        for i in range(args.client_procs):
            client_plan = {
                "targets": self.targets,
                "stream": STREAM,
                "group": GROUP,
                "source_ip": f"127.0.0.{2 + i}",
            }
            self.clients.append(
                children.start(
                    f"clients-{i}",
                    _python_argv(str(BENCH / "stream_clients.py"), "--plan", json.dumps(client_plan)),
                    self.env("client"),
                )
            )
        for child in self.clients:
            child.wait_event("ready", 30)
        self.seq = 0

    @property
    def variants(self) -> list[str]:
        return list(self.targets)

    def env(self, role: str) -> dict[str, str]:
        return {CPU_ENV: str(self.cpus[role])} if self.cpus is not None else {}

    def split(self, n: int) -> list[int]:
        k = len(self.clients)
        return [n // k + (1 if i < n % k else 0) for i in range(k)]

    def connect(self, variant: str, n: int) -> float:
        t0 = time.perf_counter()
        for child, count in zip(self.clients, self.split(n), strict=True):
            child.command(cmd="connect", variant=variant, count=count)
        return time.perf_counter() - t0

    def disconnect(self, variant: str) -> None:
        for child in self.clients:
            child.command(cmd="disconnect", variant=variant)

    def next_seqs(self, count: int) -> int:
        first = self.seq
        self.seq += count
        return first

    def _cpu(self, variant: str) -> dict[str, int]:
        """CPU ns so far (all threads) of the server of ``variant``, the publisher and the clients."""
        server = self.engine if variant == PYIII and self.engine is not None else self.floor
        pids = {"server": server.pid, "publisher": self.publisher.pid}
        pids.update({c.name: c.pid for c in self.clients})
        got = cpu_ns(pids)
        out = {k: got.get(k, 0) for k in ("server", "publisher")}
        out["clients"] = sum(got.get(c.name, 0) for c in self.clients)
        return out

    def _cpu_spent(self, variant: str, before: dict[str, int]) -> dict[str, int]:
        after = self._cpu(variant)
        return {k: after[k] - before[k] for k in after}

    def one_event(self, variant: str) -> dict[str, Any]:
        """One event to every connected subscriber of ``variant``: time to first and last delivery."""
        seq = self.next_seqs(1)
        cpu = self._cpu(variant)
        for child in self.clients:
            child.command(cmd="arm", variant=variant, seq=seq)
        t0 = self.publisher.command(cmd="send", variant=variant, seq=seq)["t0"]
        got = [child.command(cmd="collect", variant=variant, timeout_s=30) for child in self.clients]
        delivered = sum(g["count"] for g in got)
        last = max((g["last_ns"] for g in got if g["count"]), default=t0)
        first = min((g["first_ns"] for g in got if g["count"]), default=t0)
        ttl_s = (last - t0) / 1e9
        return {
            "cpu_ns": self._cpu_spent(variant, cpu),
            "delivered": delivered,
            "expected": sum(g["expected"] for g in got),
            "ttl_ms": ttl_s * 1000,
            "first_ms": (first - t0) / 1e6,
            "rate": delivered / ttl_s if ttl_s > 0 else float("nan"),
        }

    def paced(
        self, variant: str, rate: float, seconds: float, pad_bytes: int | None = None
    ) -> dict[str, Any]:
        """A paced run: every delivery's latency from the publisher's call to receipt."""
        count = max(1, round(rate * seconds))
        seq = self.next_seqs(count)
        cpu = self._cpu(variant)
        for child in self.clients:
            child.command(cmd="record", variant=variant, seq_from=seq, seq_to=seq + count)
        pad = self.args.pad_bytes if pad_bytes is None else pad_bytes
        sent = self.publisher.command(
            cmd="paced", variant=variant, seq_from=seq, count=count, rate=rate, pad_bytes=pad
        )
        got = [child.command(cmd="collect", variant=variant, timeout_s=10) for child in self.clients]
        samples = [s for g in got for s in g["samples_ns"]]
        return {
            "cpu_ns": self._cpu_spent(variant, cpu),
            "samples_ns": samples,
            "delivered": sum(g["count"] for g in got),
            "expected": sum(g["expected"] for g in got),
            "behind_max_ms": sent["behind_max_ms"],
        }

    def stop(self) -> None:
        for child in [*self.clients, self.publisher]:
            if child.alive and child.proc.stdin is not None:
                try:
                    child.proc.stdin.write('{"cmd":"exit"}\n')
                    child.proc.stdin.flush()
                except OSError:
                    pass
        self.children.stop_all()


# ---------------------------------------------------------------------------------------------- phases


def phase_fanout(run: Run, n: int, blocks: int, warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "connect_s": {}, "blocks": {v: [] for v in run.variants}}
    for variant in run.variants:
        out["connect_s"][variant] = run.connect(variant, n)
    try:
        for variant in run.variants:
            for _ in range(warmup):
                run.one_event(variant)
        for block in range(blocks):
            order = run.variants if block % 2 == 0 else run.variants[::-1]
            progress(run.args, f"fan-out N={n} block {block + 1}/{blocks}")
            for variant in order:
                out["blocks"][variant].append(run.one_event(variant))
    finally:
        for variant in run.variants:
            run.disconnect(variant)
    return out


def phase_latency(run: Run, n: int, rates: list[float], seconds: float, blocks: int) -> list[dict[str, Any]]:
    """Paced runs at each rate (the same subscribers), floor and pyiii alternating block by block."""
    outs: list[dict[str, Any]] = []
    for variant in run.variants:
        run.connect(variant, n)
    try:
        for rate in rates:
            out: dict[str, Any] = {"n": n, "rate": rate, "blocks": {v: [] for v in run.variants}}
            for variant in run.variants:
                run.paced(variant, rate, min(0.5, seconds))  # warm-up
            for block in range(blocks):
                order = run.variants if block % 2 == 0 else run.variants[::-1]
                progress(run.args, f"latency {rate:g}/s block {block + 1}/{blocks}")
                for variant in order:
                    out["blocks"][variant].append(run.paced(variant, rate, seconds))
            outs.append(out)
    finally:
        for variant in run.variants:
            run.disconnect(variant)
    return outs


def phase_slow(run: Run, n: int, rate: float, seconds: float, blocks: int) -> dict[str, Any]:
    """Paced blocks with and without the never-reading subscriber (and, with ``--slow-control``, with a
    reading subscriber of the same joins), the order rotating block by block."""
    variant = PYIII if PYIII in run.targets else FLOOR
    conditions = ["without", "with", *(["reading"] if run.args.slow_control else [])]
    out: dict[str, Any] = {"n": n, "rate": rate, "variant": variant, "slow": []}
    out.update({c: [] for c in conditions})
    run.connect(variant, n)
    try:
        pad = run.args.slow_pad_bytes
        run.paced(variant, rate, min(0.5, seconds), pad)
        for block in range(blocks):
            progress(run.args, f"slow-client block {block + 1}/{blocks}")
            k = block % len(conditions)
            for condition in conditions[k:] + conditions[:k]:
                if condition != "without":
                    run.clients[0].command(
                        cmd="slow_connect",
                        variant=variant,
                        subscriptions=run.args.slow_subscriptions,
                        reading=condition == "reading",
                    )
                out[condition].append(run.paced(variant, rate, seconds, pad))
                if condition != "without":
                    ends = run.clients[0].command(cmd="slow_check", variant=variant, timeout_s=10)["slow"]
                    if condition == "with":
                        out["slow"].extend(ends)
    finally:
        run.disconnect(variant)
    return out


# ---------------------------------------------------------------------------------------------- report


def _cpu_per_delivery(blocks: list[dict[str, Any]]) -> dict[str, float]:
    """CPU µs per delivery of the server, the clients (all processes) and the publisher."""
    delivered = sum(b["delivered"] for b in blocks)
    if not delivered:
        return {}
    return {
        k: sum(b["cpu_ns"][k] for b in blocks) / delivered / 1000 for k in ("server", "clients", "publisher")
    }


def _latency(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    samples = sorted(s for b in blocks for s in b["samples_ns"])
    per_block_p99 = [percentile(sorted(b["samples_ns"]), 99) / 1e6 for b in blocks if b["samples_ns"]]
    return {
        "n": len(samples),
        "missing": sum(b["expected"] - b["delivered"] for b in blocks),
        "p50_ms": percentile(samples, 50) / 1e6,
        "p90_ms": percentile(samples, 90) / 1e6,
        "p99_ms": percentile(samples, 99) / 1e6,
        "max_ms": (samples[-1] / 1e6) if samples else float("nan"),
        "block_p99_ms": per_block_p99,
        "behind_max_ms": max((b["behind_max_ms"] for b in blocks), default=0.0),
        "cpu_us": _cpu_per_delivery(blocks),
    }


def _median_block_ratio(x: dict[str, Any], base: dict[str, Any]) -> float:
    if not x["block_p99_ms"] or not base["block_p99_ms"]:
        return float("nan")
    return statistics.median(x["block_p99_ms"]) / statistics.median(base["block_p99_ms"])


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"fanout": [], "targets": []}
    for phase in results["fanout"]:
        row: dict[str, Any] = {"n": phase["n"], "variants": {}}
        for variant, blocks in phase["blocks"].items():
            ttl = [b["ttl_ms"] for b in blocks]
            rates = [b["rate"] for b in blocks]
            row["variants"][variant] = {
                "median_ttl_ms": statistics.median(ttl),
                "median_first_ms": statistics.median(b["first_ms"] for b in blocks),
                "median_rate": statistics.median(rates),
                "lost": sum(b["expected"] - b["delivered"] for b in blocks),
                "connect_s": phase["connect_s"][variant],
                "cpu_us": _cpu_per_delivery(blocks),
            }
        if PYIII in phase["blocks"]:
            pairs = [
                p["rate"] / f["rate"]
                for p, f in zip(phase["blocks"][PYIII], phase["blocks"][FLOOR], strict=True)
            ]
            ratio = row["variants"][PYIII]["median_rate"] / row["variants"][FLOOR]["median_rate"]
            row["ratio"] = ratio
            row["block_ratios"] = (min(pairs), max(pairs))
            if phase["n"] >= 1000:
                summary["targets"].append(
                    (
                        ratio >= TARGET_FANOUT_RATIO,
                        f"fan-out N={phase['n']}: deliveries/s >= {TARGET_FANOUT_RATIO}x floor",
                        f"{ratio:.2f}×",
                    )
                )
        summary["fanout"].append(row)
    summary["latency"] = []
    for lat in results.get("latency", []):
        row = {
            "n": lat["n"],
            "rate": lat["rate"],
            "variants": {v: _latency(b) for v, b in lat["blocks"].items()},
        }
        summary["latency"].append(row)
        if PYIII in row["variants"] and lat["rate"] == TARGET_RATE:
            p99 = row["variants"][PYIII]["p99_ms"]
            summary["targets"].append(
                (
                    p99 < TARGET_P99_MS,
                    f"latency, {lat['n']} subscribers, {lat['rate']:.0f} events/s:"
                    f" p99 < {TARGET_P99_MS:g} ms",
                    f"{p99:.2f} ms",
                )
            )
    if results.get("slow"):
        slow = results["slow"]
        without, with_ = _latency(slow["without"]), _latency(slow["with"])
        ratio = with_["p99_ms"] / without["p99_ms"] if without["p99_ms"] else float("nan")
        # The median of the block p99s: on a shared machine one block can stall for seconds (another
        # process takes the CPUs) and then sets the pooled p99 of whichever condition it fell in.
        median_ratio = _median_block_ratio(with_, without)
        inside = bool(without["block_p99_ms"]) and with_["p99_ms"] <= max(without["block_p99_ms"])
        summary["slow"] = {
            "without": without,
            "with": with_,
            "ratio": ratio,
            "median_ratio": median_ratio,
            "slow": slow["slow"],
        }
        if slow.get("reading"):
            reading = _latency(slow["reading"])
            summary["slow"]["reading"] = reading
            summary["slow"]["reading_ratio"] = (
                reading["p99_ms"] / without["p99_ms"] if without["p99_ms"] else float("nan")
            )
            summary["slow"]["reading_median_ratio"] = _median_block_ratio(reading, without)
        summary["targets"].append(
            (
                ratio <= TARGET_SLOW_RATIO or median_ratio <= TARGET_SLOW_RATIO or inside,
                f"slow client beside {slow['n']}: normal p99 with/without <= {TARGET_SLOW_RATIO}x"
                " (pooled, or the median block p99s, or inside the without-blocks' p99 range)",
                f"pooled {ratio:.2f}×, median block {median_ratio:.2f}×",
            )
        )
    return summary


def _row(label: str, cells: list[str], width: int = 10) -> str:
    return f"{label:46}" + "".join(f" {c:>{width}}" for c in cells)


def _ms(x: float) -> str:
    return f"{x:.2f}"


def _block_list(s: dict[str, Any]) -> str:
    return "; ".join(
        f"{name} " + " ".join(f"{p:.0f}" for p in s[name]["block_p99_ms"])
        for name in ("without", "with", "reading")
        if name in s
    )


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    publisher = "awaits stream::send" if meta["awaited"] else "stream::send with TriggerAction.Void()"
    lines = [
        f"pyiii stream fan-out benchmark  {meta['when']}  nproc={meta['nproc']}  python {meta['python']}",
        f"{meta['client_procs']} client processes; event frame {meta['frame_bytes']} B;"
        f" layout {meta['layout']}; publisher {publisher}",
        "",
        _row(
            "fan-out: one event to N subscribers",
            ["N", "last ms", "first ms", "deliv/s", "× floor", "blocks ×", "lost"],
        ),
    ]
    for row in summary["fanout"]:
        for variant, v in row["variants"].items():
            ratio, spread = "1.00×", ""
            if variant == PYIII:
                ratio = f"{row['ratio']:.2f}×"
                spread = f"{row['block_ratios'][0]:.2f}..{row['block_ratios'][1]:.2f}"
            cells = [str(row["n"]), _ms(v["median_ttl_ms"]), _ms(v["median_first_ms"])]
            cells += [f"{v['median_rate']:.0f}", ratio, spread, str(v["lost"])]
            lines.append(_row(LABELS[variant], cells))
    heads = ["p50 ms", "p90 ms", "p99 ms", "max ms", "deliveries", "lost"]
    for lat in summary["latency"]:
        title = f"latency, {lat['n']} subs, {lat['rate']:g} events/s"
        lines += ["", _row(title, [*heads, "late ms"])]
        for variant, s in lat["variants"].items():
            cells = [_ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"])]
            cells += [str(s["n"]), str(s["missing"]), f"{s['behind_max_ms']:.1f}"]
            lines.append(_row(LABELS[variant], cells))
    if summary["latency"]:
        lines.append(
            "  (send -> receipt of every delivery; late ms: the publisher's worst lag behind its schedule)"
        )
    if "slow" in summary:
        s = summary["slow"]
        lines += ["", _row("slow client (normal subscribers only)", [*heads, "block p99s"])]
        lines[-1] += f" {'median':>10}"
        names = {
            "without": "without the slow client",
            "with": "with the slow client",
            "reading": "a reading client of its joins instead",
        }
        for name in ("without", "with", "reading"):
            if name not in s:
                continue
            x = s[name]
            p99s = x["block_p99_ms"]
            cells = [_ms(x["p50_ms"]), _ms(x["p90_ms"]), _ms(x["p99_ms"]), _ms(x["max_ms"])]
            cells += [str(x["n"]), str(x["missing"]), f"{min(p99s):.2f}..{max(p99s):.2f}" if p99s else ""]
            cells.append(_ms(statistics.median(p99s)) if p99s else "")
            lines.append(_row(names[name], cells))
        lines.append(f"  block p99s, block by block (ms): {_block_list(s)}")
        lines.append(
            f"  with / without: pooled p99 ×{s['ratio']:.2f}, median block p99 ×{s['median_ratio']:.2f}"
        )
        if "reading" in s:
            lines.append(
                f"  reading client of the same joins / without: pooled p99 ×{s['reading_ratio']:.2f},"
                f" median block p99 ×{s['reading_median_ratio']:.2f} (the extra deliveries alone)"
            )
        ends = [
            f"closed {e['close_code']}" if e["close_code"] is not None else "still open" for e in s["slow"]
        ]
        lines.append(f"  the slow subscribers: {', '.join(ends)}")
    lines += ["", _row("CPU µs per delivery (all threads)", ["server", "clients", "publisher"])]
    cpu_rows: list[tuple[str, dict[str, float]]] = []
    for row in summary["fanout"]:
        cpu_rows += [(f"fan-out N={row['n']}, {v}", x["cpu_us"]) for v, x in row["variants"].items()]
    for lat in summary["latency"]:
        cpu_rows += [(f"latency {lat['rate']:g}/s, {v}", x["cpu_us"]) for v, x in lat["variants"].items()]
    if "slow" in summary:
        cpu_rows += [
            (f"slow client phase, {c}", summary["slow"][c]["cpu_us"])
            for c in ("without", "with", "reading")
            if c in summary["slow"]
        ]
    for label, cpu in cpu_rows:
        if cpu:
            lines.append(
                _row(label, [f"{cpu['server']:.1f}", f"{cpu['clients']:.1f}", f"{cpu['publisher']:.1f}"])
            )
    lines += ["", "targets:"]
    for ok, what, value in summary["targets"]:
        lines.append(f"  {'PASS' if ok else 'MISS'}  {what}: {value}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def progress(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def orchestrate(args: argparse.Namespace) -> int:
    install_signal_exit()
    raise_nofile()
    children = Children()
    results: dict[str, Any] = {"fanout": []}
    with tempfile.TemporaryDirectory(prefix="pyiii-stream-bench-") as tmp:
        run = Run(args, children, Path(tmp))
        try:
            if not args.no_fanout:
                for n in args.n:
                    blocks = args.blocks if n <= 1000 else max(2, args.blocks // 2)
                    results["fanout"].append(phase_fanout(run, n, blocks, warmup=2))
            if args.latency_blocks:
                results["latency"] = phase_latency(run, 100, args.rates, args.seconds, args.latency_blocks)
            if args.slow_blocks:
                results["slow"] = phase_slow(run, args.slow_n, args.slow_rate, args.seconds, args.slow_blocks)
        finally:
            run.stop()
    frame = len(
        json.dumps(
            {
                "type": "stream",
                "timestamp": 1_700_000_000_000,
                "streamName": STREAM,
                "groupId": GROUP,
                "id": None,
                "event": {
                    "type": "event",
                    "event": {
                        "type": EVENT_TYPE,
                        "data": {"seq": 12345, "t0": 10**13, "pad": "x" * args.pad_bytes},
                    },
                },
            },
            separators=(",", ":"),
        )
    )
    meta = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "client_procs": args.client_procs,
        "frame_bytes": frame,
        "layout": args.layout,
        "awaited": args.awaited,
    }
    summary = summarize(results)
    if args.json:
        print(json.dumps({"meta": meta, "summary": summary, "results": results if args.json_raw else None}))
    else:
        print(render(summary, meta))
    missed = [t for t in summary["targets"] if not t[0]]
    return 1 if missed and args.fail_on_miss else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke: few short blocks")
    p.add_argument(
        "--n",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 1000, 10000],
        help="subscriber counts of the fan-out phase (comma-separated)",
    )
    p.add_argument(
        "--blocks", type=int, default=20, help="fan-out events per variant and N (halved at N > 1,000)"
    )
    p.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="subscriber processes (each holds N/k sockets per variant)",
    )
    p.add_argument("--pad-bytes", type=int, default=64, help="string padding in each event's data")
    p.add_argument(
        "--rates",
        type=lambda x: [float(r) for r in x.split(",")],
        default=[250.0, 500.0, TARGET_RATE],
        help="events/s of the latency phase, comma-separated (the target is at 1000)",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="length of each paced block")
    p.add_argument(
        "--latency-blocks", type=int, default=4, help="paced blocks per variant (0 skips the phase)"
    )
    p.add_argument("--slow-n", type=int, default=1000)
    p.add_argument(
        "--slow-pad-bytes",
        type=int,
        default=4096,
        help="padding of the slow-client phase's events (4 KiB: the kernel buffers fill within a block)",
    )
    p.add_argument("--slow-rate", type=float, default=20.0, help="events/s of the slow-client phase")
    p.add_argument(
        "--slow-subscriptions", type=int, default=64, help="group joins of the slow client (frames per event)"
    )
    p.add_argument("--slow-blocks", type=int, default=4, help="blocks per condition (0 skips the phase)")
    p.add_argument(
        "--slow-control",
        action="store_true",
        help="a third condition: a client with the slow client's joins that reads (the extra deliveries"
        " without the slow socket)",
    )
    p.add_argument("--no-fanout", action="store_true")
    p.add_argument(
        "--no-pyiii", action="store_true", help="floor only (how the harness was checked before the module)"
    )
    p.add_argument(
        "--awaited", action="store_true", help="await stream::send instead of TriggerAction.Void()"
    )
    p.add_argument("--layout", choices=LAYOUTS, default="split")
    p.add_argument("--json", action="store_true")
    p.add_argument("--json-raw", action="store_true", help="with --json: every block's raw results too")
    p.add_argument("--fail-on-miss", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.blocks = min(args.blocks, 4)
        args.seconds = min(args.seconds, 1.0)
        args.latency_blocks = min(args.latency_blocks, 2)
        args.slow_blocks = min(args.slow_blocks, 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "floor":
        pin_cpu_from_env()
        return role_floor(args.port)
    if args.role == "engine":
        pin_cpu_from_env()
        return role_engine(args.config)
    if args.role == "publisher":
        return role_publisher(args.plan)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
