"""State-module speed: state::set / get / update per adapter, against redis-py measured in the same run.

    .venv/bin/python bench/state.py              # full run (about 1-2 minutes on 2 cores)
    .venv/bin/python bench/state.py --quick      # CI smoke: small N, 3 blocks
    .venv/bin/python bench/state.py --json       # machine-readable result on stdout

What is measured (bench/README.md has the process layout and how to read the numbers):

1. remote: a pyiii SDK worker calls ``state::set``, ``state::get`` and ``state::update`` (one
   ``increment`` op) over WebSocket on an engine started as ``python -m pyiii.cli -c CONFIG``, one
   engine per adapter (``kv`` in_memory, ``kv`` file_based in a temporary directory, ``redis``),
   sequentially (median, p99) and with 64 calls in flight (ops/s). Baseline: redis-py asyncio with
   hiredis doing SET / GET / HINCRBY against the local Redis from its own process, same concurrency.
   Targets: in-memory >= 0.8x the baseline's ops/s at 64 in flight; file_based >= 0.5x in-memory.
2. in-process: an embedded worker (``register_worker(engine)``) in the engine's process, per adapter:
   ops/s (and sequential latency), beside an embedded function call through the same engine.
3. trigger fan-out: time from a ``state::set`` to the start of its handlers (in another pyiii SDK
   worker) for 1 and for 20 matching ``state`` triggers, beside a plain call's time to the handler.

All processes of a phase stay up for the whole phase and the variants run in short interleaved blocks
(the order reversed every block), so a noisy shared machine hits them alike. The Redis server is the
shared local one (not started, not pinned by the benchmark); every key the run writes carries a unique
run id and is deleted at the end. Absolute times are not comparable between runs; the ratios are the
result. Nothing here belongs in unit tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _common import (  # noqa: E402
    CPU_ENV,
    LAYOUTS,
    Child,
    Children,
    cpu_layout,
    free_port,
    install_signal_exit,
    latency_stats_us,
    make_payload,
    paired_ratios,
    pin_cpu_from_env,
    pooled_stats,
    wait_port,
)
from _state_roles import FANOUTS, OPS  # noqa: E402

TARGET_MEMORY_VS_REDIS = 0.8
TARGET_FILE_VS_MEMORY = 0.5

BASELINE = "redis-py"
ADAPTERS = ("memory", "file", "redis")
LABELS = {
    BASELINE: "baseline: redis-py asyncio+hiredis",
    "memory": "pyiii kv in_memory",
    "file": "pyiii kv file_based",
    "redis": "pyiii redis adapter",
    "echo": "floor: embedded call to a function",
}
BASELINE_OPS = {"set": "SET", "get": "GET", "update": "HINCRBY"}
PYIII_OPS = {"set": "state::set", "get": "state::get", "update": "state::update (1 increment)"}
FANOUT_VARIANTS = ("direct", *(f"fan{n}" for n in FANOUTS))
FANOUT_LABELS = {
    "direct": "plain call W -> engine -> H (floor)",
    **{f"fan{n}": f"{n} state trigger(s)" for n in FANOUTS},
}


# ============================================================================================== configs


def adapter_yaml(adapter: str, data_dir: Path, redis_url: str) -> str:
    """The ``iii-state`` entry selecting ``adapter``."""
    if adapter == "memory":
        body = "        name: kv\n        config:\n          store_method: in_memory\n"
    elif adapter == "file":
        body = (
            "        name: kv\n        config:\n          store_method: file_based\n"
            f"          file_path: {data_dir}\n"
        )
    elif adapter == "redis":
        body = f"        name: redis\n        config:\n          redis_url: {redis_url}\n"
    else:
        raise ValueError(adapter)
    return "  - name: iii-state\n    config:\n      adapter:\n" + body


def write_config(path: Path, adapter: str, data_dir: Path, redis_url: str, port: int | None) -> Path:
    text = "workers:\n"
    if port is not None:
        text += f"  - name: iii-worker-manager\n    config:\n      host: 127.0.0.1\n      port: {port}\n"
    text += adapter_yaml(adapter, data_dir, redis_url)
    path.write_text(text)
    return path


# ============================================================================================== orchestrator


def _python_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", str(Path(__file__).resolve()), *args]


class Plan:
    """Block sizes and names derived from the options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.blocks = args.blocks
        self.seq_per_block = math.ceil(args.calls / args.blocks)
        self.tp_per_block = math.ceil(args.throughput_calls / args.blocks)
        self.inproc_seq_per_block = math.ceil(args.inprocess_calls / 4 / args.blocks)
        self.inproc_tp_per_block = math.ceil(args.inprocess_calls / args.blocks)
        self.fan_per_block = math.ceil(args.fanout_writes / args.blocks)
        self.block_warmup = max(10, self.seq_per_block // 10)
        self.warmup = args.warmup
        self.inflight = args.inflight
        self.keys = args.keys
        self.payload = make_payload(args.payload_bytes)
        self.layout = args.layout
        self.cpus = cpu_layout(args.layout)
        self.redis_url = args.redis_url
        self.run_id = uuid.uuid4().hex[:12]

    def env(self, role: str) -> dict[str, str]:
        return {CPU_ENV: str(self.cpus[role])} if self.cpus is not None else {}

    def scope(self, what: str) -> str:
        return f"pyiii-bench-{self.run_id}-{what}"

    def client_plan(self, scope: str, cpu_pids: dict[str, int] | None = None, **extra: Any) -> str:
        return json.dumps(
            {"scope": scope, "keys": self.keys, "payload": self.payload, "cpu_pids": cpu_pids or {}, **extra}
        )


class Phase:
    """The children of one phase and the notes about variants that could not run."""

    def __init__(self, children: Children, notes: list[str]) -> None:
        self.children = children
        self.notes = notes


def start_engine(phase: Phase, plan: Plan, tmp: Path, adapter: str, name: str) -> tuple[str, Child]:
    """An engine with ``adapter`` (as `pyiii -c CONFIG` runs it); returns its URL once it listens."""
    port = free_port()
    data_dir = tmp / f"data-{name}"
    config = write_config(tmp / f"{name}.yaml", adapter, data_dir, plan.redis_url, port)
    engine = phase.children.start(
        name, _python_argv("--role", "engine", "--config", str(config)), plan.env("router")
    )
    wait_port(port, 30, lambda: engine.alive)
    return f"ws://127.0.0.1:{port}", engine


def _skip(phase: Phase, variant: str, exc: BaseException) -> None:
    text = str(exc).strip()
    phase.notes.append(f"{variant}: not measured ({type(exc).__name__}: {text})")


def _cpu_pids(redis_pid: int | None, **pids: int) -> dict[str, int]:
    out = dict(pids)
    if redis_pid is not None:
        out["redis"] = redis_pid
    return out


def start_remote(
    args: argparse.Namespace, plan: Plan, phase: Phase, tmp: Path, redis_pid: int | None
) -> dict[str, Child]:
    """The baseline client and, per adapter, an engine and a worker; returns the clients by variant."""
    clients: dict[str, Child] = {}
    baseline = phase.children.start(
        "redis-client",
        _python_argv(
            "--role",
            "redis-client",
            "--plan",
            plan.client_plan(
                "", _cpu_pids(redis_pid), redis_url=plan.redis_url, prefix=f"pyiii-bench:{plan.run_id}:"
            ),
        ),
        plan.env("client"),
    )
    baseline.wait_event("ready", 60)  # the baseline is required: no ratio without it
    clients[BASELINE] = baseline
    for adapter in args.adapters:
        try:
            url, engine = start_engine(phase, plan, tmp, adapter, f"engine-{adapter}")
            pids = _cpu_pids(redis_pid if adapter == "redis" else None, engine=engine.pid)
            worker = phase.children.start(
                f"worker-{adapter}",
                _python_argv(
                    "--role", "worker", "--url", url, "--plan", plan.client_plan(plan.scope(adapter), pids)
                ),
                plan.env("client"),
            )
            worker.wait_event("ready", 90)
            clients[adapter] = worker
        except Exception as exc:
            _skip(phase, adapter, exc)
    return clients


def run_remote(
    args: argparse.Namespace, plan: Plan, redis_pid: int | None, notes: list[str]
) -> dict[str, Any]:
    """Interleaved blocks: {variant: {op: {"sequential": [...], "throughput": [...]}}}."""
    phase = Phase(Children(), notes)
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-state-", dir=args.data_dir) as tmp:
        try:
            clients = start_remote(args, plan, phase, Path(tmp), redis_pid)
            variants = list(clients)
            out: dict[str, Any] = {
                v: {op: {"sequential": [], "throughput": []} for op in args.ops} for v in variants
            }
            for variant in variants:  # first warm-up: connections, caches, code paths
                for op in args.ops:
                    clients[variant].command(kind="sequential", target=op, calls=0, warmup=plan.warmup)
                    clients[variant].command(
                        kind="throughput", target=op, calls=0, warmup=plan.warmup, inflight=plan.inflight
                    )
            for block in range(plan.blocks):
                order = variants if block % 2 == 0 else variants[::-1]
                _progress(args, f"remote block {block + 1}/{plan.blocks}")
                for op in args.ops:
                    for variant in order:
                        out[variant][op]["sequential"].append(
                            clients[variant].command(
                                kind="sequential",
                                target=op,
                                calls=plan.seq_per_block,
                                warmup=plan.block_warmup,
                            )
                        )
                for op in args.ops:
                    for variant in order:
                        out[variant][op]["throughput"].append(
                            clients[variant].command(
                                kind="throughput",
                                target=op,
                                calls=plan.tp_per_block,
                                warmup=plan.block_warmup,
                                inflight=plan.inflight,
                            )
                        )
            return out
        finally:
            phase.children.stop_all()


def run_inprocess(args: argparse.Namespace, plan: Plan, notes: list[str]) -> dict[str, Any]:
    """One process per adapter (engine + embedded worker), interleaved blocks of every op."""
    phase = Phase(Children(), notes)
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-state-", dir=args.data_dir) as tmp:
        try:
            children: dict[str, Child] = {}
            for adapter in args.adapters:
                config = write_config(
                    Path(tmp) / f"inprocess-{adapter}.yaml",
                    adapter,
                    Path(tmp) / f"data-inprocess-{adapter}",
                    plan.redis_url,
                    None,
                )
                try:
                    child = phase.children.start(
                        f"inprocess-{adapter}",
                        _python_argv(
                            "--role",
                            "inprocess",
                            "--config",
                            str(config),
                            "--plan",
                            plan.client_plan(plan.scope(f"in-{adapter}")),
                        ),
                        plan.env("inprocess"),
                    )
                    child.wait_event("ready", 90)
                    children[adapter] = child
                except Exception as exc:
                    _skip(phase, f"in-process {adapter}", exc)
            targets = (*args.ops, "echo")
            out: dict[str, Any] = {
                a: {t: {"sequential": [], "throughput": []} for t in targets} for a in children
            }
            for child in children.values():
                for target in targets:
                    child.command(
                        kind="throughput", target=target, calls=0, warmup=plan.warmup, inflight=plan.inflight
                    )
            adapters = list(children)
            for block in range(plan.blocks):
                order = adapters if block % 2 == 0 else adapters[::-1]
                _progress(args, f"in-process block {block + 1}/{plan.blocks}")
                for target in targets:
                    for adapter in order:
                        child = children[adapter]
                        out[adapter][target]["sequential"].append(
                            child.command(
                                kind="sequential",
                                target=target,
                                calls=plan.inproc_seq_per_block,
                                warmup=plan.block_warmup,
                            )
                        )
                        out[adapter][target]["throughput"].append(
                            child.command(
                                kind="throughput",
                                target=target,
                                calls=plan.inproc_tp_per_block,
                                warmup=plan.block_warmup,
                                inflight=plan.inflight,
                            )
                        )
            return out
        finally:
            phase.children.stop_all()


def run_fanout(args: argparse.Namespace, plan: Plan, notes: list[str]) -> dict[str, Any]:
    """Per fan-out adapter: engine, handler worker H, writer worker W; interleaved blocks of the
    plain call and of each fan-out: {adapter: {variant: [block, ...]}}."""
    phase = Phase(Children(), notes)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-state-", dir=args.data_dir) as tmp:
        try:
            writers: dict[str, Child] = {}
            for adapter in args.fanout_adapters:
                try:
                    url, engine = start_engine(phase, plan, Path(tmp), adapter, f"engine-fan-{adapter}")
                    scope = plan.scope(f"fan-{adapter}")
                    handler = phase.children.start(
                        f"fan-handler-{adapter}",
                        _python_argv(
                            "--role", "fanout-handler", "--url", url, "--plan", plan.client_plan(scope)
                        ),
                        plan.env("echo"),
                    )
                    handler.wait_event("ready", 60)
                    pids = {"engine": engine.pid, "handler": handler.pid}
                    writer = phase.children.start(
                        f"fan-writer-{adapter}",
                        _python_argv(
                            "--role", "fanout-writer", "--url", url, "--plan", plan.client_plan(scope, pids)
                        ),
                        plan.env("client"),
                    )
                    writer.wait_event("ready", 90)
                    writers[adapter] = writer
                    out[adapter] = {v: [] for v in FANOUT_VARIANTS}
                except Exception as exc:
                    _skip(phase, f"fan-out on {adapter}", exc)
            for block in range(plan.blocks):
                order = FANOUT_VARIANTS if block % 2 == 0 else FANOUT_VARIANTS[::-1]
                _progress(args, f"fan-out block {block + 1}/{plan.blocks}")
                for adapter, writer in writers.items():
                    for variant in order:
                        out[adapter][variant].append(
                            writer.command(
                                kind="custom",
                                target=variant,
                                calls=plan.fan_per_block,
                                warmup=10 if block else max(10, plan.warmup // 10),
                            )
                        )
            return out
        finally:
            phase.children.stop_all()


# ---------------------------------------------------------------------------------------------- redis


class PrivateRedis:
    """``--private-redis``: a redis-server of this run only, on a free port, without persistence, pinned
    like an engine (the router CPU) so that the baseline's server and pyiii's engines get the same
    placement. The shared server cannot be pinned (other users), which makes latency ratios depend on
    where the scheduler happens to run it."""

    def __init__(self, cpu: int | None, directory: str) -> None:
        self.cpu = cpu
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "--private-redis needs redis-server on PATH (scripts/ensure-redis installs it)"
            )
        port = free_port()
        cpu = self.cpu

        def child_setup() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # before redis starts its threads: all inherit it
            with contextlib.suppress(Exception):  # die with the orchestrator, even on SIGKILL (Linux)
                import ctypes

                ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", self.directory, "--logfile", ""]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_setup,
        )
        self.proc = proc
        wait_port(port, 10, lambda: proc.poll() is None)
        return f"redis://127.0.0.1:{port}"

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_info(url: str) -> dict[str, Any]:
    """Version and pid of the Redis server (its CPU is reported when /proc shows the process)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        info = client.info("server")
    finally:
        client.close()
    pid = int(info.get("process_id", 0)) or None
    if pid is not None and not os.path.exists(f"/proc/{pid}/task"):
        pid = None  # another host or pid namespace
    return {"version": info.get("redis_version", "?"), "pid": pid}


def redis_cleanup(url: str, run_id: str) -> int:
    """Delete every key of this run left in Redis (keys and scopes carry the run id); returns how many."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    removed = 0
    try:
        batch = []
        for key in client.scan_iter(match=f"*{run_id}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += client.delete(*batch)
                batch.clear()
        if batch:
            removed += client.delete(*batch)
        for key in client.scan_iter(match="pyiii:state:*", count=1000, _type="set"):
            for member in client.sscan_iter(key, match=f"*{run_id}*"):
                removed += client.srem(key, member)
    finally:
        client.close()
    return removed


# ---------------------------------------------------------------------------------------------- summary


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    if not a or not b or not b.get(key):
        return None
    return a[key] / b[key]


def summarize(remote: dict[str, Any], inproc: dict[str, Any], fanout: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"remote": {}, "inprocess": {}, "fanout": {}, "ratios": {}, "targets": []}
    for variant, by_op in remote.items():
        summary["remote"][variant] = {
            op: {"sequential": pooled_stats(p["sequential"]), "throughput": pooled_stats(p["throughput"])}
            for op, p in by_op.items()
        }
    rem = summary["remote"]
    for variant in rem:
        if variant == BASELINE:
            continue
        summary["ratios"][variant] = {}
        for op in rem[variant]:
            ours, base = rem[variant][op], rem.get(BASELINE, {}).get(op)
            if not base:
                continue
            summary["ratios"][variant][op] = {
                "median_vs_baseline": _ratio(ours["sequential"], base["sequential"], "median_us"),
                "ops_vs_baseline": _ratio(ours["throughput"], base["throughput"], "calls_per_s"),
                "blocks_ops_vs_baseline": paired_ratios(
                    ours["throughput"]["block_rates"], base["throughput"]["block_rates"]
                ),
            }
            if variant != "memory" and "memory" in rem:
                mem = rem["memory"][op]
                summary["ratios"][variant][op]["ops_vs_memory"] = _ratio(
                    ours["throughput"], mem["throughput"], "calls_per_s"
                )
                summary["ratios"][variant][op]["blocks_ops_vs_memory"] = paired_ratios(
                    ours["throughput"]["block_rates"], mem["throughput"]["block_rates"]
                )
    for adapter, by_target in inproc.items():
        summary["inprocess"][adapter] = {
            t: {"sequential": pooled_stats(p["sequential"]), "throughput": pooled_stats(p["throughput"])}
            for t, p in by_target.items()
        }
    for adapter, by_variant in fanout.items():
        summary["fanout"][adapter] = {}
        for variant, blocks in by_variant.items():
            if not blocks:
                continue
            entry = {
                name: latency_stats_us([s for b in blocks for s in b[f"{name}_ns"]])
                for name in ("reply", "first", "last", "all")
            }
            calls = sum(b["calls"] for b in blocks)
            entry["cpu_us_per_write"] = {
                name: sum(b["cpu_ns"][name] for b in blocks) / calls / 1000
                for name in blocks[0].get("cpu_ns", {})
            }
            summary["fanout"][adapter][variant] = entry
    measured = [op for op in OPS if op in rem.get(BASELINE, {})]
    for op in measured:
        r = summary["ratios"].get("memory", {}).get(op, {}).get("ops_vs_baseline")
        summary["targets"].append(
            {
                "name": f"kv in_memory {op} ops/s (64 in flight) >= {TARGET_MEMORY_VS_REDIS}x "
                f"redis-py {BASELINE_OPS[op]}",
                "value": r,
                "pass": None if r is None else r >= TARGET_MEMORY_VS_REDIS,
            }
        )
    for op in measured:
        r = summary["ratios"].get("file", {}).get(op, {}).get("ops_vs_memory")
        summary["targets"].append(
            {
                "name": f"kv file_based {op} ops/s (64 in flight) >= {TARGET_FILE_VS_MEMORY}x kv in_memory",
                "value": r,
                "pass": None if r is None else r >= TARGET_FILE_VS_MEMORY,
            }
        )
    return summary


def _num(value: float | None, width: int = 10, digits: int = 1) -> str:
    return (
        f"{value:>{width}.{digits}f}"
        if isinstance(value, int | float) and value == value
        else f"{'-':>{width}}"
    )


def _x(value: float | None, width: int = 10) -> str:
    return f"{value:>{width - 1}.2f}×" if isinstance(value, int | float) else f"{'-':>{width}}"


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    rem = summary["remote"]
    lines = [
        f"pyiii state benchmark  {meta['date']}  nproc={meta['nproc']}  python {meta['python']}  "
        f"uvloop {meta['uvloop']}  aiohttp {meta['aiohttp']}  msgspec {meta['msgspec']}  "
        f"redis-py {meta['redis']}  hiredis {meta['hiredis']}  redis-server {meta['redis_server']}",
        f"sequential: {meta['calls']} calls per op and variant; throughput: {meta['throughput_calls']} "
        f"calls with {meta['inflight']} in flight; {meta['blocks']} interleaved blocks; "
        f"value {meta['payload_bytes']} B; {meta['keys']} keys per op",
        "processes: "
        + (
            "pinned ({layout}): engines and in-process on CPU {router}, clients (workers, redis-py) on CPU "
            "{client}; ".format(layout=meta["layout"], **meta["cpu_layout"])
            + (
                "private redis-server pinned with the engines"
                if meta["private_redis"]
                else "redis-server not pinned (shared)"
            )
            if meta["cpu_layout"]
            else "not pinned (--layout none)"
        ),
        f"file_based data: {meta['data_dir']} ({meta['data_fs']})"
        + (f"; pyiii from {meta['src']}/src" if meta.get("src") else ""),
        "",
        f"{'remote: SDK worker -> engine (WebSocket)':<44}{'median µs':>10}{'p99 µs':>10}{'ops/s':>10}"
        f"{'× median':>10}{'× ops/s':>10}{'× in_mem':>10}",
    ]
    measured = [op for op in OPS if op in rem.get(BASELINE, {})]
    for op in measured:
        lines.append(f"{op}  ({BASELINE_OPS[op]} / {PYIII_OPS[op]})")
        for variant in (BASELINE, *ADAPTERS):
            if variant not in rem:
                continue
            seq, tp = rem[variant][op]["sequential"], rem[variant][op]["throughput"]
            ratio = summary["ratios"].get(variant, {}).get(op, {})
            base_median = 1.0 if variant == BASELINE else ratio.get("median_vs_baseline")
            base_ops = 1.0 if variant == BASELINE else ratio.get("ops_vs_baseline")
            lines.append(
                f"  {LABELS[variant]:<42}{_num(seq.get('median_us'))}{_num(seq.get('p99_us'))}"
                f"{_num(tp.get('calls_per_s'), digits=0)}{_x(base_median)}{_x(base_ops)}"
                f"{_x(ratio.get('ops_vs_memory'))}"
            )
        blocks = summary["ratios"].get("memory", {}).get(op, {}).get("blocks_ops_vs_baseline")
        if blocks:
            lines.append(
                f"  {'per-block ops/s in_memory/redis-py, min..max':<62}"
                f"{blocks['min']:>16.2f}..{blocks['max']:.2f}"
            )
        blocks = summary["ratios"].get("file", {}).get(op, {}).get("blocks_ops_vs_memory")
        if blocks:
            lines.append(
                f"  {'per-block ops/s file_based/in_memory, min..max':<62}"
                f"{blocks['min']:>26.2f}..{blocks['max']:.2f}"
            )
    lines += [
        "",
        f"{'CPU µs per op, all threads of each process':<44}"
        f"{'client':>10}{'engine':>10}{'redis*':>10}{'total':>10}",
    ]
    for variant in (BASELINE, *ADAPTERS):
        for op in measured:
            for phase in ("sequential", "throughput"):
                cpu = rem.get(variant, {}).get(op, {}).get(phase, {}).get("cpu_us_per_call")
                if not cpu:
                    continue
                label = f"{variant} {op}, {'seq' if phase == 'sequential' else '64 in flight'}"
                lines.append(
                    f"  {label:<42}"
                    + "".join(_num(cpu.get(p)) for p in ("client", "engine", "redis"))
                    + _num(sum(cpu.values()))
                )
    if not meta["private_redis"]:
        lines.append("  * redis-server is shared with the machine's other users: its CPU includes their load")
    inproc = summary["inprocess"]
    if inproc:
        lines += [
            "",
            f"{'in-process: register_worker(engine)':<44}"
            f"{'median µs':>10}{'p99 µs':>10}{'ops/s':>10}{'× echo':>10}",
        ]
        for adapter in ADAPTERS:
            if adapter not in inproc:
                continue
            echo = inproc[adapter]["echo"]["throughput"].get("calls_per_s")
            lines.append(f"{LABELS[adapter]}")
            for target in (*(op for op in OPS if op in inproc[adapter]), "echo"):
                seq, tp = inproc[adapter][target]["sequential"], inproc[adapter][target]["throughput"]
                rate = tp.get("calls_per_s")
                label = PYIII_OPS.get(target, "floor: bench::echo through the engine")
                lines.append(
                    f"  {label:<42}{_num(seq.get('median_us'), digits=2)}{_num(seq.get('p99_us'), digits=2)}"
                    f"{_num(rate, digits=0)}{_x(rate / echo if rate and echo else None)}"
                )
    fan = summary["fanout"]
    if fan:
        lines += [
            "",
            f"{'fan-out: state::set -> handler start (µs)':<44}"
            f"{'reply med':>10}{'first med':>10}{'first p99':>10}"
            f"{'last med':>10}{'last p99':>10}{'× floor':>10}",
        ]
        for adapter, by_variant in fan.items():
            lines.append(f"{LABELS[adapter]} (handlers in another SDK worker)")
            floor = by_variant.get("direct", {}).get("first", {}).get("median_us")
            for variant in FANOUT_VARIANTS:
                if variant not in by_variant:
                    continue
                e = by_variant[variant]
                last = e["last"]["median_us"]
                lines.append(
                    f"  {FANOUT_LABELS[variant]:<42}"
                    f"{_num(e['reply']['median_us'])}{_num(e['first']['median_us'])}"
                    f"{_num(e['first']['p99_us'])}{_num(last)}{_num(e['last']['p99_us'])}"
                    f"{_x(last / floor if floor else None)}"
                )
        lines.append("  (× floor: last handler's start against a plain call's time to its handler)")
    if meta.get("notes"):
        lines += ["", "notes:", *(f"  {n}" for n in meta["notes"])]
    lines += ["", "targets:"]
    for t in summary["targets"]:
        verdict = "n/a " if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        lines.append(f"  {verdict}  {t['name']}: {_x(t['value'], 0).strip()}")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("uvloop", "aiohttp", "msgspec", "redis", "hiredis"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "?"
    return out


def _fs_type(path: str) -> str:
    """Filesystem of ``path`` from /proc/mounts (fsync on tmpfs is free: worth knowing)."""
    best, fs = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        real = os.path.realpath(path)
        for line in f:
            parts = line.split()
            if (
                len(parts) > 2
                and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/"))
                and len(parts[1]) > len(best)
            ):
                best, fs = parts[1], parts[2]
    return fs


def _strip_samples(data: Any) -> Any:
    """Blocks for --json without raw samples (their pooled statistics are in the summary)."""
    if isinstance(data, dict):
        return {k: _strip_samples(v) for k, v in data.items() if not k.endswith("_ns") or k == "cpu_ns"}
    if isinstance(data, list):
        return [_strip_samples(v) for v in data]
    return data


def orchestrate(args: argparse.Namespace) -> int:
    install_signal_exit()
    if args.src:
        # Every child imports pyiii from DIR/src (e.g. `git archive HEAD src | tar -x -C DIR`): a
        # measurement of committed code while others edit the working tree.
        src = str(Path(args.src).resolve() / "src")
        if not Path(src, "pyiii").is_dir():
            print(f"state bench: no pyiii package under {src}", file=sys.stderr)
            return 2
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH"))))
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-redis-") as redis_dir:
        private = PrivateRedis((cpu_layout(args.layout) or {}).get("router"), redis_dir)
        try:
            if args.private_redis:
                args.redis_url = private.start()
            return _orchestrate(args)
        finally:
            private.stop()


def _orchestrate(args: argparse.Namespace) -> int:
    plan = Plan(args)
    try:
        info = redis_info(args.redis_url)
    except Exception as exc:
        print(
            f"state bench: Redis not reachable at {args.redis_url} ({exc}); run scripts/ensure-redis",
            file=sys.stderr,
        )
        return 2
    notes: list[str] = []
    remote: dict[str, Any] = {}
    inproc: dict[str, Any] = {}
    fanout: dict[str, Any] = {}
    try:
        remote = run_remote(args, plan, info["pid"], notes)
        if not args.no_inprocess:
            inproc = run_inprocess(args, plan, notes)
        if args.fanout_adapters:
            fanout = run_fanout(args, plan, notes)
    finally:
        with contextlib.suppress(Exception):
            left = redis_cleanup(args.redis_url, plan.run_id)
            if left:
                notes.append(f"{left} Redis key(s)/member(s) of this run were left and have been removed")
    summary = summarize(remote, inproc, fanout)
    data_dir = args.data_dir or tempfile.gettempdir()
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        **_versions(),
        "redis_server": info["version"],
        "redis_url": args.redis_url,
        "private_redis": args.private_redis,
        "src": args.src,
        "calls": plan.seq_per_block * plan.blocks,
        "throughput_calls": plan.tp_per_block * plan.blocks,
        "inprocess_calls": plan.inproc_tp_per_block * plan.blocks,
        "fanout_writes": plan.fan_per_block * plan.blocks,
        "warmup": args.warmup,
        "inflight": args.inflight,
        "keys": args.keys,
        "blocks": args.blocks,
        "layout": plan.layout,
        "cpu_layout": plan.cpus,
        "payload_bytes": len(json.dumps(plan.payload, separators=(",", ":"))),
        "data_dir": data_dir,
        "data_fs": _fs_type(data_dir),
        "run_id": plan.run_id,
        "notes": notes,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.json:
        blocks = {
            "remote": _strip_samples(remote),
            "inprocess": _strip_samples(inproc),
            "fanout": _strip_samples(fanout),
        }
        print(json.dumps({"meta": meta, "summary": summary, "blocks": blocks}, indent=2))
    else:
        print(render(summary, meta))
    missed = [t for t in summary["targets"] if t["pass"] is False]
    return 1 if missed and args.fail_on_miss else 0


def _progress(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"... {text}", file=sys.stderr, flush=True)


def _adapter_list(text: str) -> tuple[str, ...]:
    items = tuple(a.strip() for a in text.split(",") if a.strip())
    for a in items:
        if a not in ADAPTERS:
            raise argparse.ArgumentTypeError(f"unknown adapter {a!r} (choose from {', '.join(ADAPTERS)})")
    return items


def _op_list(text: str) -> tuple[str, ...]:
    items = tuple(o.strip() for o in text.split(",") if o.strip())
    for o in items:
        if o not in OPS:
            raise argparse.ArgumentTypeError(f"unknown op {o!r} (choose from {', '.join(OPS)})")
    return items or OPS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--calls", type=int, default=2000, help="timed sequential calls per op and variant (2000)")
    p.add_argument(
        "--throughput-calls", type=int, default=None, help="calls of the throughput runs (4x calls)"
    )
    p.add_argument("--inflight", type=int, default=64, help="concurrent calls of the throughput runs (64)")
    p.add_argument("--inprocess-calls", type=int, default=None, help="in-process calls per op (4x calls)")
    p.add_argument(
        "--fanout-writes", type=int, default=None, help="timed writes per fan-out variant (calls/2)"
    )
    p.add_argument("--blocks", type=int, default=10, help="interleaved blocks the calls are split into (10)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed calls per op and variant first (calls/5, >= 200)"
    )
    p.add_argument("--keys", type=int, default=64, help="keys each op cycles through (64)")
    p.add_argument("--payload-bytes", type=int, default=64, help="length of the value's text field (64)")
    p.add_argument(
        "--adapters", type=_adapter_list, default=ADAPTERS, help="adapters to measure (memory,file,redis)"
    )
    p.add_argument(
        "--fanout-adapters",
        type=_adapter_list,
        default=("memory",),
        help="adapters of the fan-out phase (memory)",
    )
    p.add_argument("--ops", type=_op_list, default=OPS, help="ops to measure (set,get,update)")
    p.add_argument("--no-inprocess", action="store_true", help="skip the in-process phase")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        help="Redis of the baseline and the redis adapter",
    )
    p.add_argument(
        "--src",
        metavar="DIR",
        help="run engines and workers on the pyiii of DIR/src (e.g. a `git archive` of a commit)",
    )
    p.add_argument(
        "--private-redis",
        action="store_true",
        help="start a redis-server of this run (free port, pinned like the engines) instead of --redis-url",
    )
    p.add_argument(
        "--data-dir", default=None, help="parent of the file_based store's temporary directory (system temp)"
    )
    p.add_argument("--quick", action="store_true", help="CI smoke: 400 calls (4000 in flight) in 3 blocks")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="split",
        help="CPU pinning: split = engines on one CPU, clients on another (default); "
        "single = all on one CPU; none",
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
        args.calls = min(args.calls, 400)
        args.blocks = min(args.blocks, 3)
        if args.throughput_calls is None:  # throughput blocks of ~30 ms rather than ~15: steadier
            args.throughput_calls = 10 * args.calls
    if args.warmup is None:
        args.warmup = max(200, args.calls // 5)
    if args.throughput_calls is None:
        args.throughput_calls = 4 * args.calls
    if args.inprocess_calls is None:
        args.inprocess_calls = 4 * args.calls
    if args.fanout_writes is None:
        args.fanout_writes = max(1, args.calls // 2)
    for name in (
        "calls",
        "inflight",
        "blocks",
        "throughput_calls",
        "inprocess_calls",
        "fanout_writes",
        "keys",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


ROLES = ("engine", "worker", "redis-client", "inprocess", "fanout-handler", "fanout-writer")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        pin_cpu_from_env()  # before any thread starts: every thread inherits the affinity
        import _state_roles as roles

        plan = json.loads(args.plan) if args.plan else {}
        if args.role == "engine":
            return roles.role_engine(args.config)
        if args.role == "worker":
            return roles.role_worker(args.url, plan)
        if args.role == "redis-client":
            return roles.role_redis_client(plan)
        if args.role == "inprocess":
            return roles.role_inprocess(args.config, plan)
        if args.role == "fanout-handler":
            return roles.role_fanout_handler(args.url, plan)
        return roles.role_fanout_writer(args.url, plan)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
