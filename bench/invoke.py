"""Function-call latency and throughput through pyiii, against a bare relay measured in the same run.

    .venv/bin/python bench/invoke.py              # full run (about a minute on 2 cores)
    .venv/bin/python bench/invoke.py --quick      # CI smoke: small N, < 30 s
    .venv/bin/python bench/invoke.py --json       # machine-readable result on stdout

What is measured (bench/README.md has the process layout and how to read the numbers):

1. remote: worker A -> engine -> worker B -> engine -> worker A, both workers on the pyiii SDK over
   WebSocket, engine, A and B each in its own process. Sequential round trips (median, p90, p99) and
   throughput with 64 calls in flight. Baseline: ``bench/baseline_relay.py`` (client -> relay -> echo
   -> relay -> client, same three-process layout, same frames, uvloop everywhere).
   Targets: median <= 1.5x the baseline; throughput >= 0.6x the baseline.
2. in-process: A and B both ``register_worker(engine)`` on the engine's loop. Target: median <= 10 us.
   Floors for reference: a plain ``await`` of an async function, and awaiting it as a task.
3. the official Python SDK (iii-sdk 0.25.0, ``.compat/py-0.25``) as worker A against the same pyiii
   engine and pyiii worker B: its round trip beside ours (no target).

All processes of every variant stay up for the whole run and the measurements are interleaved in
short blocks (baseline, pyiii, official SDK, then the other way round), so a noisy shared machine
hits every variant alike. Statistics pool the samples of all blocks. Absolute times are not
comparable between runs; the ratios are the result. Nothing here belongs in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _common import (  # noqa: E402
    CPU_ENV,
    FUNCTION_ID,
    LAYOUTS,
    Child,
    Children,
    Target,
    cpu_layout,
    emit,
    exit_when_parent_goes,
    free_port,
    install_signal_exit,
    make_payload,
    paired_ratios,
    pin_cpu_from_env,
    pooled_stats,
    serve_commands,
    start_loop_thread,
    wait_port,
    wait_until_callable,
)

SDK025_PYTHON = ROOT / ".compat" / "py-0.25" / "bin" / "python"

TARGET_MEDIAN_RATIO = 1.5
TARGET_THROUGHPUT_RATIO = 0.6
TARGET_INPROCESS_MEDIAN_US = 10.0

RELAY, PYIII, PYIII_SYNC, PYIII_CMP, SDK025 = "relay", "pyiii", "pyiii_sync", "pyiii_cmp", "sdk025"
LABELS = {
    RELAY: "baseline: aiohttp relay (client/relay/echo)",
    PYIII: "pyiii SDK -> pyiii engine -> pyiii SDK",
    PYIII_SYNC: "  same, blocking trigger() from main thread",
    PYIII_CMP: "same, pyiii from --compare-src",
    SDK025: "iii-sdk 0.25 -> pyiii engine -> pyiii SDK",
    "floor_await": "floor: await coroutine",
    "floor_task": "floor: await create_task(coroutine)",
    "inprocess": "pyiii A -> engine -> B, register_worker(engine)",
}


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
    """Worker A: times `bench::echo` calls. Target ``call``: ``trigger_async`` awaited on the SDK's
    loop (where async handlers run); ``sync``: blocking ``trigger()`` from the main thread."""
    from pyiii import InitOptions, register_worker

    iii = register_worker(url, InitOptions(worker_name="bench-a"))
    request = {"function_id": plan["function_id"], "payload": plan["payload"]}

    def call() -> Any:
        return iii.trigger_async(request)

    try:
        loop = iii._loop  # the SDK's background loop
        asyncio.run_coroutine_threadsafe(wait_until_callable(call), loop).result(60)
        targets = {"call": Target(call, loop), "sync": Target(lambda: iii.trigger(request), None)}
        serve_commands(targets, plan.get("cpu_pids"))
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        iii.shutdown()
    return 0


def role_inprocess(plan: dict[str, Any]) -> int:
    """Engine, A and B in this process on one uvloop loop (a thread); A calls B through the engine.

    Targets: ``call`` (A -> engine -> B), ``floor_await`` (``await echo(payload)``) and
    ``floor_task`` (``await loop.create_task(echo(payload))``)."""
    import uvloop

    loop = uvloop.new_event_loop()
    start_loop_thread(loop, "inprocess")
    payload = plan["payload"]
    try:
        setup = asyncio.run_coroutine_threadsafe(_inprocess_setup(payload), loop).result(60)
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    server, a, b, call = setup
    try:
        serve_commands(
            {
                "call": Target(call, loop),
                "floor_await": Target(lambda: echo(payload), loop),
                "floor_task": Target(lambda: loop.create_task(echo(payload)), loop),
            }
        )
    finally:
        asyncio.run_coroutine_threadsafe(_inprocess_teardown(server, a, b), loop).result(30)
    return 0


async def _inprocess_setup(payload: Any) -> tuple[Any, Any, Any, Any]:
    from pyiii import InitOptions, register_worker
    from pyiii.config import Settings
    from pyiii.server.app import EngineServer

    server = EngineServer(Settings(worker_managers=()))  # the default modules, no socket
    await server.start()
    b = register_worker(server.engine, InitOptions(worker_name="bench-b"))
    b.register_function(FUNCTION_ID, echo)
    a = register_worker(server.engine, InitOptions(worker_name="bench-a"))
    request = {"function_id": FUNCTION_ID, "payload": payload}

    def call() -> Any:
        return a.trigger_async(request)

    await wait_until_callable(call)
    return server, a, b, call


async def _inprocess_teardown(server: Any, a: Any, b: Any) -> None:
    await a.shutdown_async()
    await b.shutdown_async()
    await server.stop()


ROLES = ("engine", "worker-b", "worker-a", "inprocess")


# ============================================================================================== orchestrator


def _python_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", *args]


class Plan:
    """Block sizes derived from the options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.blocks = args.blocks
        self.seq_per_block = math.ceil(args.calls / args.blocks)
        self.tp_per_block = math.ceil(args.throughput_calls / args.blocks)
        self.inproc_per_block = math.ceil(args.inprocess_calls / args.blocks)
        self.block_warmup = max(10, self.seq_per_block // 10)
        self.warmup = args.warmup
        self.inflight = args.inflight
        self.payload = make_payload(args.payload_bytes)
        self.layout = args.layout
        self.cpus = cpu_layout(args.layout)

    def env(self, role: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of a child in ``role`` (client, router, echo, inprocess): its CPU when pinned."""
        env = dict(extra or {})
        if self.cpus is not None:
            env[CPU_ENV] = str(self.cpus[role])
        return env

    def client_plan(self, cpu_pids: dict[str, int] | None = None) -> str:
        return json.dumps({"function_id": FUNCTION_ID, "payload": self.payload, "cpu_pids": cpu_pids or {}})


def start_remote(args: argparse.Namespace, plan: Plan, children: Children, tmp: Path) -> dict[str, Child]:
    """Start every process of the remote variants; returns the clients by variant."""
    me = str(Path(__file__).resolve())
    relay_script = str(BENCH / "baseline_relay.py")
    # baseline: relay, echo, client
    relay_port = free_port()
    relay = children.start(
        "relay", _python_argv(relay_script, "relay", "--port", str(relay_port)), plan.env("router")
    )
    relay.wait_event("ready", 30)
    relay_url = f"ws://127.0.0.1:{relay_port}"
    echo_proc = children.start(
        "relay-echo", _python_argv(relay_script, "echo", "--url", relay_url), plan.env("echo")
    )
    echo_proc.wait_event("ready", 30)
    clients = {
        RELAY: children.start(
            "relay-client",
            _python_argv(
                relay_script,
                "client",
                "--url",
                relay_url,
                "--plan",
                plan.client_plan({"router": relay.pid, "echo": echo_proc.pid}),
            ),
            plan.env("client"),
        )
    }
    # pyiii: engine (as `pyiii -c CONFIG` runs it), worker B, worker A
    url, cpu_pids = _start_pyiii(children, plan, tmp, "", None)
    clients[PYIII] = children.start(
        "worker-a",
        _python_argv(me, "--role", "worker-a", "--url", url, "--plan", plan.client_plan(cpu_pids)),
        plan.env("client"),
    )
    if args.compare_src:
        # The same three processes running another checkout of pyiii (before/after a change).
        env = {"PYTHONPATH": str(Path(args.compare_src).resolve() / "src")}
        url2, cpu_pids2 = _start_pyiii(children, plan, tmp, "-cmp", env)
        clients[PYIII_CMP] = children.start(
            "worker-a-cmp",
            _python_argv(me, "--role", "worker-a", "--url", url2, "--plan", plan.client_plan(cpu_pids2)),
            plan.env("client", env),
        )
    if not args.no_sdk025 and SDK025_PYTHON.exists():
        clients[SDK025] = children.start(
            "sdk025-client",
            [
                str(SDK025_PYTHON),
                str(BENCH / "_sdk025_client.py"),
                "--url",
                url,
                "--plan",
                plan.client_plan(cpu_pids),
            ],
            plan.env("client"),
        )
    for client in clients.values():
        client.wait_event("ready", 60)
    return clients


def _start_pyiii(
    children: Children, plan: Plan, tmp: Path, suffix: str, env: dict[str, str] | None
) -> tuple[str, dict[str, int]]:
    """Engine and worker B; returns the engine URL and the pids whose CPU time worker A reports."""
    me = str(Path(__file__).resolve())
    port = free_port()
    config = tmp / f"config{suffix}.yaml"
    # Only the worker listener is configured; the always-on modules (engine functions, observability)
    # load as they do in production.
    config.write_text(
        f"workers:\n  - name: iii-worker-manager\n    config:\n      host: 127.0.0.1\n      port: {port}\n"
    )
    engine = children.start(
        f"engine{suffix}",
        _python_argv(me, "--role", "engine", "--config", str(config)),
        plan.env("router", env),
    )
    wait_port(port, 30, lambda: engine.alive)
    url = f"ws://127.0.0.1:{port}"
    worker_b = children.start(
        f"worker-b{suffix}", _python_argv(me, "--role", "worker-b", "--url", url), plan.env("echo", env)
    )
    worker_b.wait_event("ready", 30)
    return url, {"router": engine.pid, "echo": worker_b.pid}


def run_remote(args: argparse.Namespace, plan: Plan, children: Children) -> dict[str, dict[str, list[Any]]]:
    """Interleaved blocks of every remote variant: {variant: {"sequential": [...], "throughput": [...]}}."""
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-") as tmp:
        try:
            clients = start_remote(args, plan, children, Path(tmp))
            variants = list(clients)
            if args.sync_trigger:
                variants.insert(2, PYIII_SYNC)
            out: dict[str, dict[str, list[Any]]] = {v: {"sequential": [], "throughput": []} for v in variants}

            def client_of(variant: str) -> tuple[Child, str]:
                return (clients[PYIII], "sync") if variant == PYIII_SYNC else (clients[variant], "call")

            for variant in variants:  # first warm-up: connections, caches, the engine's code paths
                child, target = client_of(variant)
                child.command(kind="sequential", target=target, calls=0, warmup=plan.warmup)
                if variant != PYIII_SYNC:
                    child.command(kind="throughput", calls=0, warmup=plan.warmup, inflight=plan.inflight)
            for block in range(plan.blocks):
                order = variants if block % 2 == 0 else variants[::-1]
                _progress(args, f"remote block {block + 1}/{plan.blocks}")
                for variant in order:
                    child, target = client_of(variant)
                    out[variant]["sequential"].append(
                        child.command(
                            kind="sequential",
                            target=target,
                            calls=plan.seq_per_block,
                            warmup=plan.block_warmup,
                        )
                    )
                for variant in order:
                    if variant == PYIII_SYNC:
                        continue
                    child, target = client_of(variant)
                    out[variant]["throughput"].append(
                        child.command(
                            kind="throughput",
                            calls=plan.tp_per_block,
                            warmup=plan.block_warmup,
                            inflight=plan.inflight,
                        )
                    )
            return out
        finally:
            children.stop_all()


def run_inprocess(
    args: argparse.Namespace, plan: Plan, children: Children
) -> dict[str, dict[str, list[Any]]]:
    me = str(Path(__file__).resolve())
    targets = ("floor_await", "floor_task", "call")
    out: dict[str, dict[str, list[Any]]] = {t: {"sequential": [], "throughput": []} for t in targets}
    try:
        child = children.start(
            "inprocess",
            _python_argv(me, "--role", "inprocess", "--plan", plan.client_plan()),
            plan.env("inprocess"),
        )
        child.wait_event("ready", 60)
        for target in targets:
            child.command(kind="sequential", target=target, calls=0, warmup=plan.warmup)
        for block in range(plan.blocks):
            _progress(args, f"in-process block {block + 1}/{plan.blocks}")
            for target in targets:
                out[target]["sequential"].append(
                    child.command(
                        kind="sequential",
                        target=target,
                        calls=plan.inproc_per_block,
                        warmup=plan.block_warmup,
                    )
                )
            out["call"]["throughput"].append(
                child.command(
                    kind="throughput",
                    calls=plan.inproc_per_block,
                    warmup=plan.block_warmup,
                    inflight=plan.inflight,
                )
            )
        return out
    finally:
        children.stop_all()


# ---------------------------------------------------------------------------------------------- summary


def summarize(remote: dict[str, Any], inproc: dict[str, Any], inflight: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"remote": {}, "inprocess": {}}
    for variant, phases in remote.items():
        seq, tp = pooled_stats(phases["sequential"]), pooled_stats(phases["throughput"])
        summary["remote"][variant] = {"sequential": seq, "throughput": tp}
    for target, phases in inproc.items():
        summary["inprocess"][target] = {
            "sequential": pooled_stats(phases["sequential"]),
            "throughput": pooled_stats(phases["throughput"]),
        }
    base, ours = summary["remote"][RELAY], summary["remote"][PYIII]
    median_ratio = ours["sequential"]["median_us"] / base["sequential"]["median_us"]
    tp_ratio = ours["throughput"]["calls_per_s"] / base["throughput"]["calls_per_s"]
    summary["block_ratios"] = {
        "median": paired_ratios(
            ours["sequential"]["block_medians_us"], base["sequential"]["block_medians_us"]
        ),
        "throughput": paired_ratios(ours["throughput"]["block_rates"], base["throughput"]["block_rates"]),
    }
    cmp = summary["remote"].get(PYIII_CMP)
    if cmp:
        summary["compare"] = {
            "median_ratio": ours["sequential"]["median_us"] / cmp["sequential"]["median_us"],
            "throughput_ratio": ours["throughput"]["calls_per_s"] / cmp["throughput"]["calls_per_s"],
            "block_ratios": {
                "median": paired_ratios(
                    ours["sequential"]["block_medians_us"], cmp["sequential"]["block_medians_us"]
                ),
                "throughput": paired_ratios(
                    ours["throughput"]["block_rates"], cmp["throughput"]["block_rates"]
                ),
            },
        }
    inproc_median = summary["inprocess"]["call"]["sequential"]["median_us"]
    summary["targets"] = [
        {
            "name": f"remote median round trip <= {TARGET_MEDIAN_RATIO}x relay",
            "value": median_ratio,
            "unit": "x",
            "pass": median_ratio <= TARGET_MEDIAN_RATIO,
        },
        {
            "name": f"remote throughput ({inflight} in flight) >= {TARGET_THROUGHPUT_RATIO}x relay",
            "value": tp_ratio,
            "unit": "x",
            "pass": tp_ratio >= TARGET_THROUGHPUT_RATIO,
        },
        {
            "name": f"in-process median <= {TARGET_INPROCESS_MEDIAN_US:g} us",
            "value": inproc_median,
            "unit": "us",
            "pass": inproc_median <= TARGET_INPROCESS_MEDIAN_US,
        },
    ]
    return summary


def _num(value: float | None, width: int = 10, digits: int = 1) -> str:
    return (
        f"{value:>{width}.{digits}f}"
        if isinstance(value, int | float) and value == value
        else f"{'-':>{width}}"
    )


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    remote = summary["remote"]
    base = remote[RELAY]
    lines = [
        f"pyiii invoke benchmark  {meta['date']}  nproc={meta['nproc']}  python {meta['python']}  "
        f"uvloop {meta['uvloop']}  aiohttp {meta['aiohttp']}  msgspec {meta['msgspec']}",
        f"sequential: {meta['calls']} calls per variant, throughput: {meta['throughput_calls']} calls with "
        f"{meta['inflight']} in flight; {meta['blocks']} interleaved blocks; "
        f"payload {meta['payload_bytes']} B",
        "processes: "
        + (
            "pinned ({layout}): router (relay / engine) on CPU {router}, client (A) and echo (B) "
            "on CPU {client}".format(layout=meta["layout"], **meta["cpu_layout"])
            if meta["cpu_layout"]
            else "not pinned (--layout none)"
        ),
        "",
        f"{'remote (3 processes)':<48}{'median µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'calls/s':>10}"
        f"{'× median':>10}{'× calls/s':>10}",
    ]
    for variant in (RELAY, PYIII, PYIII_SYNC, PYIII_CMP, SDK025):
        if variant not in remote:
            continue
        seq, tp = remote[variant]["sequential"], remote[variant]["throughput"]
        rate = tp.get("calls_per_s")
        line = f"{LABELS[variant]:<48}{_num(seq['median_us'])}{_num(seq['p90_us'])}{_num(seq['p99_us'])}"
        line += _num(rate, digits=0)
        line += f"{seq['median_us'] / base['sequential']['median_us']:>9.2f}×"
        line += f"{rate / base['throughput']['calls_per_s']:>9.2f}×" if rate else f"{'-':>10}"
        lines.append(line)
    spread = summary["block_ratios"]
    if spread["median"] and spread["throughput"]:
        lines.append(
            f"{'  per-block ratio pyiii/relay, min..max':<48}"
            f"{'':>40}{spread['median']['min']:>5.2f}..{spread['median']['max']:.2f}"
            f"{spread['throughput']['min']:>5.2f}..{spread['throughput']['max']:.2f}"
        )
    if "compare" in summary:
        c = summary["compare"]
        med, rate = c["block_ratios"]["median"], c["block_ratios"]["throughput"]
        lines.append(
            f"this tree / --compare-src: median {c['median_ratio']:.2f}× "
            f"(blocks {med['min']:.2f}..{med['max']:.2f}), "
            f"calls/s {c['throughput_ratio']:.2f}× (blocks {rate['min']:.2f}..{rate['max']:.2f})"
        )
    lines += [
        "",
        f"{'CPU µs per call, all threads of each process':<48}"
        f"{'client':>10}{'router':>10}{'echo':>10}{'total':>10}",
    ]
    for variant in (RELAY, PYIII, PYIII_CMP, SDK025):
        for phase in ("sequential", "throughput"):
            cpu = remote.get(variant, {}).get(phase, {}).get("cpu_us_per_call")
            if not cpu:
                continue
            label = f"{variant}, {phase}"
            lines.append(
                f"  {label:<46}"
                + "".join(_num(cpu.get(p)) for p in ("client", "router", "echo"))
                + _num(sum(cpu.values()))
            )
    inproc = summary["inprocess"]
    floor = inproc["floor_await"]["sequential"]["median_us"]
    lines += [
        "",
        f"{'in-process (one loop, one process)':<48}"
        f"{'median µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'calls/s':>10}{'× await':>10}",
    ]
    for target, label in (
        ("floor_await", "floor_await"),
        ("floor_task", "floor_task"),
        ("call", "inprocess"),
    ):
        seq, tp = inproc[target]["sequential"], inproc[target]["throughput"]
        lines.append(
            f"{LABELS[label]:<48}{_num(seq['median_us'], digits=2)}{_num(seq['p90_us'], digits=2)}"
            f"{_num(seq['p99_us'], digits=2)}{_num(tp.get('calls_per_s'), digits=0)}"
            f"{seq['median_us'] / floor:>9.1f}×"
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


def _strip_samples(phases: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """Blocks for --json without the raw samples (their pooled statistics are in the summary)."""
    return {
        variant: {
            phase: [{k: v for k, v in b.items() if k != "samples_ns"} for b in blocks]
            for phase, blocks in by_phase.items()
        }
        for variant, by_phase in phases.items()
    }


def orchestrate(args: argparse.Namespace) -> int:
    install_signal_exit()
    if not args.no_sdk025 and not SDK025_PYTHON.exists():
        print(
            f"note: {SDK025_PYTHON} missing (run scripts/setup-compat): no official-SDK row", file=sys.stderr
        )
    plan = Plan(args)
    children = Children()
    try:
        remote = run_remote(args, plan, children)
        inproc = run_inprocess(args, plan, children)
    finally:
        children.stop_all()
    summary = summarize(remote, inproc, args.inflight)
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        **_versions(),
        "calls": plan.seq_per_block * plan.blocks,
        "throughput_calls": plan.tp_per_block * plan.blocks,
        "inprocess_calls": plan.inproc_per_block * plan.blocks,
        "warmup": args.warmup,
        "inflight": args.inflight,
        "blocks": args.blocks,
        "layout": plan.layout,
        "cpu_layout": plan.cpus,
        "payload_bytes": len(json.dumps(plan.payload, separators=(",", ":"))),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.json:
        blocks = {"remote": _strip_samples(remote), "inprocess": _strip_samples(inproc)}
        print(json.dumps({"meta": meta, "summary": summary, "blocks": blocks}, indent=2))
    else:
        print(render(summary, meta))
    missed = [t for t in summary["targets"] if not t["pass"]]
    return 1 if missed and args.fail_on_miss else 0


def _progress(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"... {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--calls", type=int, default=5000, help="timed sequential calls per variant (5000)")
    p.add_argument(
        "--throughput-calls", type=int, default=None, help="calls of the throughput runs (4x calls)"
    )
    p.add_argument("--inflight", type=int, default=64, help="concurrent calls of the throughput runs (64)")
    p.add_argument("--inprocess-calls", type=int, default=None, help="in-process timed calls (4x calls)")
    p.add_argument("--blocks", type=int, default=20, help="interleaved blocks the calls are split into (20)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed calls per variant first (calls/5, >= 200)"
    )
    p.add_argument("--payload-bytes", type=int, default=64, help="length of the payload's text field (64)")
    p.add_argument("--quick", action="store_true", help="CI smoke: 1000 calls in 4 blocks (< 30 s)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    p.add_argument("--no-sdk025", action="store_true", help="skip the official-SDK row")
    p.add_argument("--sync-trigger", action="store_true", help="also time blocking trigger() from a thread")
    p.add_argument(
        "--compare-src",
        metavar="DIR",
        help="also run engine and workers from another pyiii checkout (DIR/src), interleaved",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="split",
        help="CPU pinning: split = router on one CPU, client+echo on another (default); "
        "single = all on one CPU; none = the scheduler decides",
    )
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--verbose", action="store_true", help="progress on stderr")
    # internal: the process roles
    p.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.calls = min(args.calls, 1000)
        args.blocks = min(args.blocks, 4)
    if args.warmup is None:
        args.warmup = max(200, args.calls // 5)
    if args.throughput_calls is None:
        args.throughput_calls = 4 * args.calls
    if args.inprocess_calls is None:
        args.inprocess_calls = 4 * args.calls
    for name in ("calls", "inflight", "blocks", "throughput_calls", "inprocess_calls"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        pin_cpu_from_env()  # before any thread starts: every thread inherits the affinity
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
