"""Function-call latency and throughput through pyiii, against a bare relay measured in the same run.

    .venv/bin/python bench/invoke.py              # full run (a few minutes on 2 cores)
    .venv/bin/python bench/invoke.py --quick      # CI smoke: small N, one round, < 30 s
    .venv/bin/python bench/invoke.py --json       # machine-readable result on stdout

What is measured (see bench/README.md for the process layout and how to read the numbers):

1. remote: worker A -> engine -> worker B -> engine -> worker A, both workers on the pyiii SDK over
   WebSocket, engine, A and B each in its own process. Sequential round trips (median, p90, p99) and
   throughput with 64 calls in flight. Baseline: ``bench/baseline_relay.py`` (client -> relay -> echo
   -> relay -> client, same three-process layout, same frames, uvloop everywhere).
   Targets: median <= 1.5x the baseline; throughput >= 0.6x the baseline.
2. in-process: A and B both ``register_worker(engine)`` on the engine's loop. Target: median <= 10 us.
   Floors for reference: a plain ``await`` of an async function, and awaiting it as a task.
3. the official Python SDK (iii-sdk 0.25.0, ``.compat/py-0.25``) as worker A against the same pyiii
   engine and pyiii worker B: its round trip beside ours (no target).

Every variant runs in fresh processes; ``--rounds`` alternates the baseline and pyiii and reports the
median over rounds, because a shared 2-core machine is noisy. Absolute times are not comparable
between runs; the ratios are the result. Nothing here belongs in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _common import (  # noqa: E402
    FUNCTION_ID,
    Children,
    emit,
    exit_when_parent_goes,
    free_port,
    install_signal_exit,
    latency_stats_us,
    make_payload,
    measure_sequential,
    run_client_measurements,
    wait_port,
    wait_until_callable,
)

SDK025_PYTHON = ROOT / ".compat" / "py-0.25" / "bin" / "python"

TARGET_MEDIAN_RATIO = 1.5
TARGET_THROUGHPUT_RATIO = 0.6
TARGET_INPROCESS_MEDIAN_US = 10.0


# ============================================================================================== roles
# Each role runs in its own process, started by the orchestrator below with `--role NAME`.


def role_engine(config: str) -> int:
    """The engine, exactly as `python -m pyiii.cli -c CONFIG` runs it (uvloop, all default modules)."""
    from pyiii.cli import main

    exit_when_parent_goes()  # SIGTERM on parent exit: the engine's own graceful shutdown
    return main(["-c", config])


async def echo(data: Any) -> Any:
    return data


def role_worker_b(url: str) -> int:
    """Worker B: serves `bench::echo` (an async handler returning its input) until told to stop."""
    from pyiii import InitOptions, register_worker

    exit_when_parent_goes()
    iii = register_worker(url, InitOptions(worker_name="bench-b"))
    iii.register_function(FUNCTION_ID, echo)
    emit("ready", worker_id=iii.worker_id)
    threading.Event().wait()  # SIGTERM (from the parent watch) ends the process
    return 0


def role_worker_a(url: str, plan: dict[str, Any]) -> int:
    """Worker A: calls `bench::echo` with `trigger_async` on the SDK's loop (as an async handler would)."""
    from pyiii import InitOptions, register_worker

    exit_when_parent_goes()
    iii = register_worker(url, InitOptions(worker_name="bench-a"))
    request = {"function_id": plan["function_id"], "payload": plan["payload"]}

    def call() -> Any:
        return iii.trigger_async(request)

    async def run() -> dict[str, Any]:
        await wait_until_callable(call)
        return await run_client_measurements(call, plan)

    try:
        loop = iii._loop  # the SDK's background loop: where async handlers and their calls run
        results = asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=600)
        if plan.get("sync_calls"):
            results["sync_trigger"] = _measure_blocking(
                iii.trigger, request, plan["sync_calls"], plan["warmup"]
            )
        emit("result", **results)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        iii.shutdown()
    return 0


def _measure_blocking(trigger: Any, request: dict[str, Any], calls: int, warmup: int) -> dict[str, float]:
    """Blocking ``trigger()`` from a plain thread (scripts, sync handlers): one loop hop each way more."""
    import time

    for _ in range(warmup):
        trigger(request)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        trigger(request)
        samples.append(clock() - t0)
    return latency_stats_us(samples)


def role_inprocess(plan: dict[str, Any]) -> int:
    """Engine, A and B in this process on one uvloop loop; A calls B through the engine."""
    import uvloop

    exit_when_parent_goes()
    try:
        results = uvloop.run(_inprocess(plan))
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    emit("result", **results)
    return 0


async def _inprocess(plan: dict[str, Any]) -> dict[str, Any]:
    from pyiii import InitOptions, register_worker
    from pyiii.config import Settings
    from pyiii.server.app import EngineServer

    server = EngineServer(Settings(worker_managers=()))  # the default modules, no socket
    await server.start()
    loop = asyncio.get_running_loop()
    payload = plan["payload"]
    calls, warmup = plan["calls"], plan["warmup"]
    b = register_worker(server.engine, InitOptions(worker_name="bench-b"))
    b.register_function(FUNCTION_ID, echo)
    a = register_worker(server.engine, InitOptions(worker_name="bench-a"))
    request = {"function_id": FUNCTION_ID, "payload": payload}
    try:

        def call() -> Any:
            return a.trigger_async(request)

        await wait_until_callable(call)
        out: dict[str, Any] = {
            "floor_await": await measure_sequential(lambda: echo(payload), calls, warmup),
            "floor_task": await measure_sequential(lambda: loop.create_task(echo(payload)), calls, warmup),
        }
        out.update(await run_client_measurements(call, plan))
        return out
    finally:
        await a.shutdown_async()
        await b.shutdown_async()
        await server.stop()


ROLES = ("engine", "worker-b", "worker-a", "inprocess")


# ============================================================================================== orchestrator


def _python_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", *args]


def _plan(args: argparse.Namespace, *, throughput: bool = True, sync: bool = False) -> dict[str, Any]:
    return {
        "function_id": FUNCTION_ID,
        "payload": make_payload(args.payload_bytes),
        "calls": args.calls,
        "warmup": args.warmup,
        "throughput_calls": args.throughput_calls if throughput else 0,
        "inflight": args.inflight,
        "sync_calls": args.calls if sync else 0,
    }


def run_relay(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    port = free_port()
    script = str(BENCH / "baseline_relay.py")
    try:
        relay = children.start("relay", _python_argv(script, "relay", "--port", str(port)))
        relay.wait_event("ready", 30)
        url = f"ws://127.0.0.1:{port}"
        echo = children.start("relay-echo", _python_argv(script, "echo", "--url", url))
        echo.wait_event("ready", 30)
        plan = {**_plan(args), "cpu_pids": {"router": relay.proc.pid, "echo": echo.proc.pid}}
        client = children.start(
            "relay-client", _python_argv(script, "client", "--url", url, "--plan", json.dumps(plan))
        )
        return client.wait_event("result")
    finally:
        children.stop_all()


def run_pyiii_remote(args: argparse.Namespace, children: Children, with_sdk025: bool) -> dict[str, Any]:
    port = free_port()
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-") as tmp:
        config = Path(tmp) / "config.yaml"
        # Only the worker listener is configured; the always-on modules (engine functions,
        # observability) load as they do in production.
        config.write_text(
            "workers:\n  - name: iii-worker-manager\n"
            f"    config:\n      host: 127.0.0.1\n      port: {port}\n"
        )
        try:
            engine = children.start("engine", _python_argv(me, "--role", "engine", "--config", str(config)))
            wait_port(port, 30, lambda: engine.alive)
            url = f"ws://127.0.0.1:{port}"
            b = children.start("worker-b", _python_argv(me, "--role", "worker-b", "--url", url))
            b.wait_event("ready", 30)
            cpu_pids = {"router": engine.proc.pid, "echo": b.proc.pid}
            plan = {**_plan(args, sync=args.sync_trigger), "cpu_pids": cpu_pids}
            a = children.start(
                "worker-a", _python_argv(me, "--role", "worker-a", "--url", url, "--plan", json.dumps(plan))
            )
            out = {"pyiii": a.wait_event("result")}
            a.stop()
            if with_sdk025:
                sdk = children.start(
                    "sdk025-client",
                    [
                        str(SDK025_PYTHON),
                        str(BENCH / "_sdk025_client.py"),
                        "--url",
                        url,
                        "--plan",
                        json.dumps({**_plan(args), "cpu_pids": cpu_pids}),
                    ],
                )
                out["sdk025"] = sdk.wait_event("result")
            return out
        finally:
            children.stop_all()


def run_inprocess(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    plan = _plan(args)
    plan["calls"] = args.inprocess_calls
    plan["throughput_calls"] = args.inprocess_calls
    try:
        child = children.start(
            "inprocess", _python_argv(me, "--role", "inprocess", "--plan", json.dumps(plan))
        )
        return child.wait_event("result")
    finally:
        children.stop_all()


# ---------------------------------------------------------------------------------------------- summary


def _median_of(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in rounds:
        node: Any = r
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int | float):
            values.append(float(node))
    return statistics.median(values) if values else float("nan")


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def lat(*path: str) -> dict[str, float]:
        return {k: _median_of(rounds, *path, k) for k in ("median_us", "p90_us", "p99_us")}

    summary: dict[str, Any] = {
        "relay": {
            **lat("relay", "sequential"),
            "calls_per_s": _median_of(rounds, "relay", "throughput", "calls_per_s"),
        },
        "pyiii": {
            **lat("remote", "pyiii", "sequential"),
            "calls_per_s": _median_of(rounds, "remote", "pyiii", "throughput", "calls_per_s"),
        },
        "inprocess": {
            **lat("inprocess", "sequential"),
            "calls_per_s": _median_of(rounds, "inprocess", "throughput", "calls_per_s"),
        },
        "floor_await": lat("inprocess", "floor_await"),
        "floor_task": lat("inprocess", "floor_task"),
    }
    if any("sync_trigger" in r.get("remote", {}).get("pyiii", {}) for r in rounds):
        summary["pyiii_sync"] = lat("remote", "pyiii", "sync_trigger")
    if any("sdk025" in r.get("remote", {}) for r in rounds):
        summary["sdk025"] = {
            **lat("remote", "sdk025", "sequential"),
            "calls_per_s": _median_of(rounds, "remote", "sdk025", "throughput", "calls_per_s"),
        }
    for key, path in (
        ("relay", ("relay",)),
        ("pyiii", ("remote", "pyiii")),
        ("sdk025", ("remote", "sdk025")),
    ):
        if key in summary:
            summary[key]["cpu_us_per_call"] = {
                phase: {
                    proc: _median_of(rounds, *path, phase, "cpu_us_per_call", proc)
                    for proc in ("client", "router", "echo")
                }
                for phase in ("sequential", "throughput")
            }
    relay, ours = summary["relay"], summary["pyiii"]
    median_ratio = ours["median_us"] / relay["median_us"]
    tp_ratio = ours["calls_per_s"] / relay["calls_per_s"]
    inproc = summary["inprocess"]["median_us"]
    summary["targets"] = [
        {
            "name": f"remote median round trip <= {TARGET_MEDIAN_RATIO}x relay",
            "value": median_ratio,
            "unit": "x",
            "pass": median_ratio <= TARGET_MEDIAN_RATIO,
        },
        {
            "name": f"remote throughput ({rounds[0]['inflight']} in flight) "
            f">= {TARGET_THROUGHPUT_RATIO}x relay",
            "value": tp_ratio,
            "unit": "x",
            "pass": tp_ratio >= TARGET_THROUGHPUT_RATIO,
        },
        {
            "name": f"in-process median <= {TARGET_INPROCESS_MEDIAN_US:g} us",
            "value": inproc,
            "unit": "us",
            "pass": inproc <= TARGET_INPROCESS_MEDIAN_US,
        },
    ]
    return summary


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    relay = summary["relay"]
    lines = [
        f"pyiii invoke benchmark  {meta['date']}  nproc={meta['nproc']}  python {meta['python']}  "
        f"uvloop {meta['uvloop']}  aiohttp {meta['aiohttp']}  msgspec {meta['msgspec']}",
        f"calls={meta['calls']} (+{meta['warmup']} warmup)  throughput calls={meta['throughput_calls']} "
        f"with {meta['inflight']} in flight  rounds={meta['rounds']} (median over rounds)  "
        f"payload={meta['payload_bytes']} B",
        "",
        f"{'remote (3 processes)':<44}{'median µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'calls/s':>10}"
        f"{'× median':>10}{'× calls/s':>10}",
    ]

    def row(label: str, s: dict[str, float], ratios: bool = True) -> str:
        tp = s.get("calls_per_s", float("nan"))
        line = f"{label:<44}{s['median_us']:>10.1f}{s['p90_us']:>10.1f}{s['p99_us']:>10.1f}"
        line += f"{tp:>10.0f}" if tp == tp else f"{'-':>10}"
        if ratios:
            line += f"{s['median_us'] / relay['median_us']:>9.2f}×"
            line += f"{tp / relay['calls_per_s']:>9.2f}×" if tp == tp else f"{'-':>10}"
        return line

    lines.append(row("baseline: aiohttp relay (client/relay/echo)", relay))
    lines.append(row("pyiii SDK -> pyiii engine -> pyiii SDK", summary["pyiii"]))
    if "pyiii_sync" in summary:
        lines.append(row("  same, blocking trigger() from main thread", summary["pyiii_sync"]))
    if "sdk025" in summary:
        lines.append(row("iii-sdk 0.25 -> pyiii engine -> pyiii SDK", summary["sdk025"]))
    lines += [
        "",
        f"{'CPU µs per call (all threads)':<44}{'client':>10}{'router':>10}{'echo':>10}{'total':>10}",
    ]
    for label, key in (
        ("relay", "relay"),
        ("pyiii", "pyiii"),
        ("iii-sdk 0.25 client", "sdk025"),
    ):
        for phase in ("sequential", "throughput"):
            cpu = summary.get(key, {}).get("cpu_us_per_call", {}).get(phase)
            if not cpu or all(v != v for v in cpu.values()):
                continue
            total = sum(v for v in cpu.values() if v == v)
            lines.append(
                f"{label + ', ' + phase:<44}"
                + "".join(f"{cpu[p]:>10.1f}" for p in ("client", "router", "echo"))
                + f"{total:>10.1f}"
            )
    floor = summary["floor_await"]["median_us"]
    lines += [
        "",
        f"{'in-process (one loop)':<44}{'median µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'calls/s':>10}"
        f"{'× await':>10}",
    ]
    for label, key in (
        ("floor: await coroutine", "floor_await"),
        ("floor: await create_task(coroutine)", "floor_task"),
        ("pyiii A -> engine -> B (register_worker(engine))", "inprocess"),
    ):
        s = summary[key]
        tp = s.get("calls_per_s", float("nan"))
        lines.append(
            f"{label:<44}{s['median_us']:>10.2f}{s['p90_us']:>10.2f}{s['p99_us']:>10.2f}"
            + (f"{tp:>10.0f}" if tp == tp else f"{'-':>10}")
            + f"{s['median_us'] / floor:>9.1f}×"
        )
    lines += ["", "targets:"]
    for t in summary["targets"]:
        value = f"{t['value']:.2f}×" if t["unit"] == "x" else f"{t['value']:.2f} µs"
        lines.append(f"  {'PASS' if t['pass'] else 'MISS'}  {t['name']}: {value}")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("uvloop", "aiohttp", "msgspec"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "?"
    return out


def orchestrate(args: argparse.Namespace) -> int:
    import datetime

    install_signal_exit()
    with_sdk025 = not args.no_sdk025 and SDK025_PYTHON.exists()
    if not args.no_sdk025 and not with_sdk025:
        print(
            f"note: {SDK025_PYTHON} missing (run scripts/setup-compat); official SDK row skipped",
            file=sys.stderr,
        )
    children = Children()
    rounds: list[dict[str, Any]] = []
    try:
        for i in range(args.rounds):
            r: dict[str, Any] = {"inflight": args.inflight}
            # Alternate the order so neither side always runs on a warmer (or busier) machine.
            order = ("relay", "remote") if i % 2 == 0 else ("remote", "relay")
            for what in order:
                _progress(args, f"round {i + 1}/{args.rounds}: {what}")
                if what == "relay":
                    r["relay"] = run_relay(args, children)
                else:
                    r["remote"] = run_pyiii_remote(args, children, with_sdk025 and i == 0)
            _progress(args, f"round {i + 1}/{args.rounds}: in-process")
            r["inprocess"] = run_inprocess(args, children)
            rounds.append(r)
    finally:
        children.stop_all()
    summary = summarize(rounds)
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        **_versions(),
        "calls": args.calls,
        "warmup": args.warmup,
        "throughput_calls": args.throughput_calls,
        "inflight": args.inflight,
        "rounds": args.rounds,
        "payload_bytes": len(json.dumps(make_payload(args.payload_bytes), separators=(",", ":"))),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.json:
        print(json.dumps({"meta": meta, "summary": summary, "rounds": rounds}, indent=2))
    else:
        print(render(summary, meta))
    missed = [t for t in summary["targets"] if not t["pass"]]
    return 1 if missed and args.fail_on_miss else 0


def _progress(args: argparse.Namespace, text: str) -> None:
    if not args.json or args.verbose:
        print(f"... {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--calls", type=int, default=5000, help="sequential timed calls per variant (default 5000)"
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default calls/10, >= 100)")
    p.add_argument(
        "--throughput-calls", type=int, default=None, help="calls of the 64-in-flight run (default 4x calls)"
    )
    p.add_argument(
        "--inflight", type=int, default=64, help="concurrent calls of the throughput run (default 64)"
    )
    p.add_argument(
        "--inprocess-calls", type=int, default=None, help="in-process timed calls (default 4x calls)"
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating baseline/pyiii rounds (default 3)")
    p.add_argument("--payload-bytes", type=int, default=64, help="length of the payload's text field")
    p.add_argument("--quick", action="store_true", help="small N, one round: the CI smoke run (< 30 s)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    p.add_argument("--no-sdk025", action="store_true", help="skip the official-SDK row")
    p.add_argument("--sync-trigger", action="store_true", help="also time blocking trigger() from a thread")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--verbose", action="store_true", help="progress on stderr even with --json")
    # internal: the process roles
    p.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.calls = min(args.calls, 1000)
        args.rounds = 1
    if args.warmup is None:
        args.warmup = max(100, args.calls // 10)
    if args.throughput_calls is None:
        args.throughput_calls = 4 * args.calls
    if args.inprocess_calls is None:
        args.inprocess_calls = 4 * args.calls
    for name in ("calls", "inflight", "rounds", "throughput_calls", "inprocess_calls"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "engine":
        return role_engine(args.config)
    if args.role == "worker-b":
        return role_worker_b(args.url)
    if args.role == "worker-a":
        return role_worker_a(args.url, json.loads(args.plan))
    if args.role == "inprocess":
        return role_inprocess(json.loads(args.plan))
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
