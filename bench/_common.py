"""Shared pieces of the benchmarks: measurement blocks, statistics, child processes.

Standard library only: the official-SDK client (``bench/_sdk025_client.py``) imports this module
from the compat venv (``.compat/py-0.25``), which has neither pyiii nor msgspec nor uvloop.

Child processes. The orchestrator starts every role as a child with ``stdin`` a pipe and reads JSON
lines from its stdout (``{"event": "ready"}``, ``{"event": "result", ...}``, ``{"event": "error"}``).
Servers (engine, relay, echo workers) only watch stdin: EOF means the orchestrator is gone or done,
and they exit (:func:`exit_when_parent_goes`). Clients read one JSON command per stdin line and
answer each with one result line (:func:`serve_commands`), so the orchestrator can interleave short
blocks of every variant: on a shared, noisy machine both sides of a ratio then see the same noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any

FUNCTION_ID = "bench::echo"
#: Upper bound of any single wait of the orchestrator (start-up, a block); bounded loops only.
STEP_TIMEOUT_S = 300.0


# ---------------------------------------------------------------------------------------------- payload


def make_payload(text_bytes: int) -> dict[str, Any]:
    """The request payload every variant sends (and the echo returns): a small JSON object."""
    return {"user": "bench", "ids": [1, 2, 3], "flag": True, "text": "x" * text_bytes}


# ---------------------------------------------------------------------------------------------- stats


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def latency_stats_us(samples_ns: Sequence[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "n": n,
        "median_us": percentile(ordered, 50) / 1000,
        "p90_us": percentile(ordered, 90) / 1000,
        "p99_us": percentile(ordered, 99) / 1000,
        "mean_us": (sum(ordered) / n / 1000) if n else float("nan"),
    }


# ---------------------------------------------------------------------------------------------- measuring

Call = Callable[[], Awaitable[Any]]


async def sequential_block(call: Call, calls: int, warmup: int) -> list[int]:
    """``warmup`` calls, then ``calls`` timed one at a time: one round trip each, in ns."""
    for _ in range(warmup):
        await call()
    samples: list[int] = []
    append = samples.append
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        await call()
        append(clock() - t0)
    return samples


def blocking_sequential_block(call: Callable[[], Any], calls: int, warmup: int) -> list[int]:
    """The same for a blocking call (``III.trigger`` from a plain thread)."""
    for _ in range(warmup):
        call()
    samples: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        call()
        samples.append(clock() - t0)
    return samples


async def throughput_block(call: Call, calls: int, inflight: int, warmup: int) -> float:
    """``calls`` calls with ``inflight`` of them outstanding at any time; returns the seconds taken."""
    remaining = warmup

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    if warmup:
        await asyncio.gather(*(lane() for _ in range(inflight)))
    remaining = calls
    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    return time.perf_counter() - t0


def cpu_ns(pids: dict[str, int]) -> dict[str, int]:
    """CPU time (ns, all threads) of each process from /proc/PID/task/*/schedstat; {} off Linux."""
    out: dict[str, int] = {}
    for name, pid in pids.items():
        total = 0
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            continue
        out[name] = total
    return out


class Target:
    """One thing a client can time: an async ``call`` run on ``loop``, or a blocking one (loop None).

    ``block``, when given, runs a whole ``{"kind": "custom"}`` block itself: ``await block(cmd)``
    on ``loop`` returns the fields to report (for measurements that are not one call timed from the
    outside, e.g. a write and the trigger handlers it starts in another process).
    """

    def __init__(
        self,
        call: Callable[[], Any],
        loop: asyncio.AbstractEventLoop | None,
        block: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]] | None = None,
    ) -> None:
        self.call = call
        self.loop = loop
        self.block = block


def run_command(cmd: dict[str, Any], targets: dict[str, Target], cpu_pids: dict[str, int]) -> dict[str, Any]:
    """Run one measurement block; CPU ns of every watched process is reported beside wall time."""
    target = targets[cmd.get("target", "call")]
    calls, warmup = int(cmd["calls"]), int(cmd.get("warmup", 0))
    kind = cmd["kind"]
    out: dict[str, Any] = {"kind": kind, "target": cmd.get("target", "call"), "calls": calls}
    timeout = STEP_TIMEOUT_S
    if target.loop is None:
        if kind != "sequential":
            raise ValueError("blocking targets only run sequential blocks")
        blocking_sequential_block(target.call, 0, warmup)
        before = cpu_ns(cpu_pids)
        out["samples_ns"] = blocking_sequential_block(target.call, calls, 0)
    elif kind == "custom":
        if target.block is None or target.loop is None:
            raise ValueError(f"target {out['target']!r} has no custom block")
        before = cpu_ns(cpu_pids)
        out.update(asyncio.run_coroutine_threadsafe(target.block(cmd), target.loop).result(timeout))
    else:
        loop = target.loop
        if warmup:
            asyncio.run_coroutine_threadsafe(sequential_block(target.call, 0, warmup), loop).result(timeout)
        before = cpu_ns(cpu_pids)
        if kind == "sequential":
            coro: Any = sequential_block(target.call, calls, 0)
            out["samples_ns"] = asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
        else:
            inflight = int(cmd["inflight"])
            coro = throughput_block(target.call, calls, inflight, 0)
            out["seconds"] = asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
            out["inflight"] = inflight
    after = cpu_ns(cpu_pids)
    out["cpu_ns"] = {name: after[name] - before[name] for name in after if name in before}
    return out


def commands() -> Iterator[dict[str, Any]]:
    """The JSON commands on stdin, one per line, until EOF or ``{"cmd": "exit"}``."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        if cmd.get("cmd") == "exit":
            return
        yield cmd


def serve_commands(targets: dict[str, Target], cpu_pids: dict[str, int] | None = None, **ready: Any) -> None:
    """Answer JSON commands from stdin until EOF or ``{"cmd": "exit"}`` (runs on the main thread).

    A command: ``{"kind": "sequential" | "throughput" | "custom", "calls", "warmup", "inflight"?,
    "target"?}`` (``custom``: the target's own ``block``, given the whole command).
    """
    pids = {"client": os.getpid(), **(cpu_pids or {})}
    emit("ready", targets=sorted(targets), **ready)
    for cmd in commands():
        try:
            emit("result", **run_command(cmd, targets, pids))
        except Exception as exc:
            emit("error", message=f"{type(exc).__name__}: {exc}")


async def wait_until_callable(call: Call, timeout_s: float = 20.0) -> None:
    """Call until the target function is registered (registrations are not acknowledged, §5)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await call()
            return
        except Exception as exc:
            code = str(getattr(exc, "code", "")).lower()
            if "not_found" not in code or loop.time() > deadline:
                raise
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------- child side


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout for the orchestrator."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def exit_when_parent_goes() -> None:
    """Exit (SIGTERM to self, then hard) when stdin closes: the orchestrator is gone or done."""

    def watch() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(1):
                pass
        with contextlib.suppress(Exception):
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        os._exit(3)

    threading.Thread(target=watch, name="bench-parent-watch", daemon=True).start()


#: Set by the orchestrator: the CPU a child pins itself to before it starts any thread.
CPU_ENV = "PYIII_BENCH_CPU"


def pin_cpu_from_env() -> None:
    """Pin this process (and every thread it starts later) to ``$PYIII_BENCH_CPU`` when set."""
    cpu = os.environ.get(CPU_ENV)
    if cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})


LAYOUTS = ("split", "single", "none")


def cpu_layout(layout: str) -> dict[str, int] | None:
    """CPU of each role: ``split`` puts the router (relay or engine) alone on one CPU and client and
    echo on another; ``single`` puts everything on one CPU (pure CPU cost, no parallelism);
    ``none`` lets the scheduler decide.

    Unpinned, the scheduler places the six processes of a run as it likes and keeps that placement
    for seconds: one trio can run co-located (short wake-ups, no parallelism) while the other is
    spread over both CPUs, which skews a ratio by up to 1.5x between runs. Pinned, both variants get
    the same placement. ``None`` when not pinning (``none``, fewer than 2 CPUs, not Linux).
    """
    if layout == "none" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    other = cpus[0] if layout == "single" else cpus[1]
    return {"client": cpus[0], "echo": cpus[0], "router": other, "inprocess": other}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float, alive: Callable[[], bool]) -> None:
    """Poll 127.0.0.1:port until it accepts a connection (an open listener is the readiness signal)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process exited before listening on {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def start_loop_thread(loop: asyncio.AbstractEventLoop, name: str) -> threading.Thread:
    """Run ``loop`` forever in a daemon thread (the clients' measurements run there)."""
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------------------- parent side


class Child:
    """A benchmark child process: JSON events on stdout, stderr kept for the error report."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self._keep(f"stdout: {line}")
                continue
            self.events.put(event)
        self.events.put({"event": "eof"})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._keep(line.rstrip())

    def _keep(self, line: str) -> None:
        self.stderr_tail.append(line)
        del self.stderr_tail[:-40]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_event(self, name: str, timeout_s: float = STEP_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no '{name}' event after {timeout_s} s{self.describe()}")
            try:
                event = self.events.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if event.get("event") == name:
                return event
            if event.get("event") == "error":
                raise RuntimeError(f"{self.name} failed: {event.get('message')}{self.describe()}")
            if event.get("event") == "eof":
                self.proc.wait(5)
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before '{name}'{self.describe()}"
                )

    def command(self, **cmd: Any) -> dict[str, Any]:
        """Send one command to a client and wait for its result."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.wait_event("result")

    def describe(self) -> str:
        tail = "\n    ".join(self.stderr_tail[-20:])
        return f"\n  argv: {' '.join(self.argv)}\n  stderr (last lines):\n    {tail}" if tail else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close stdin (the child exits by itself), then SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout_s / 2)
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout_s / 2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Children:
    """Every child of a run; ``stop_all`` in reverse start order (clients before servers)."""

    def __init__(self) -> None:
        self.items: list[Child] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, argv, env)
        self.items.append(child)
        return child

    def stop_all(self) -> None:
        while self.items:
            child = self.items.pop()
            with contextlib.suppress(Exception):
                child.stop()


def install_signal_exit() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks stop the children."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def pooled_stats(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled statistics of one variant's blocks (sequential: latency; throughput: rate), with the CPU
    time per call of every process that reported it in every block."""
    if not blocks:
        return {}
    calls = sum(b["calls"] for b in blocks)
    cpu: dict[str, float] = {}
    for name in blocks[0].get("cpu_ns", {}):
        spent = [b["cpu_ns"].get(name) for b in blocks]
        if all(s is not None for s in spent) and calls:
            cpu[name] = sum(spent) / calls / 1000
    out: dict[str, Any] = {"cpu_us_per_call": cpu}
    if "samples_ns" in blocks[0]:
        out.update(latency_stats_us([s for b in blocks for s in b["samples_ns"]]))
        out["block_medians_us"] = [latency_stats_us(b["samples_ns"])["median_us"] for b in blocks]
    else:
        out["calls_per_s"] = calls / sum(b["seconds"] for b in blocks)
        out["block_rates"] = [b["calls"] / b["seconds"] for b in blocks]
    return out


def paired_ratios(ours: list[float], base: list[float]) -> dict[str, float]:
    """Spread of the per-block ratios (each block pair ran back to back)."""
    ratios = [o / b for o, b in zip(ours, base, strict=False) if b]
    if not ratios:
        return {}
    return {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}
