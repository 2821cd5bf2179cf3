"""The live todo backend end to end: pyiii against the hand-built FastAPI + Redis stack (issue 6).

    .venv/bin/python bench/todo_e2e.py            # full run (about 2 minutes on 2 cores)
    .venv/bin/python bench/todo_e2e.py --quick    # smoke: short blocks (~40 s)
    .venv/bin/python bench/todo_e2e.py --json     # everything as JSON

Three stacks serve the same HTTP and WebSocket surface (examples/todo/app.py and
bench/baselines/diy_todo/app.py), each started fresh for the run:

    pyiii-remote    engine (`python -m pyiii.cli -c CONFIG`, durable SQLite store) + the todo worker as a
                    separate process (`python examples/todo/app.py`, pyiii's SDK over WebSocket)
    pyiii-embedded  `python -m pyiii.cli run examples/todo/app.py -c CONFIG`: engine, durable store and
                    worker in one process
    diy             FastAPI on uvicorn (uvloop, httptools), todos in a Redis hash, Redis pub/sub fanned
                    out to the WebSockets, metrics with HINCRBY (the Redis server on 127.0.0.1:6379)

Two measurements, the stacks interleaved block by block (order reversed every block) so a noisy
neighbour hits all of them alike:

* throughput: wrk -t1 -c64 POST /todos {"title": ...} (every request creates a todo; 201 expected);
* reactive latency: 50 WebSocket clients on /stream/todos-live/all; a writer POSTs /todos at a steady
  200 writes/s (open loop: each write is sent on schedule, whatever the previous ones are doing); the
  latency of a write at a client is from just before its POST is sent to the arrival of its
  `todo_changed` frame at that client (50 samples per write). Missing events are counted.

CPU layout (`split`, the default on 2+ CPUs): every server process (engine, embedded engine, uvicorn)
and pyiii-remote's worker on one CPU (`--worker-cpu client` moves the worker); wrk, the latency client
and this orchestrator (it reads every child's output, including a console line per todo from the pyiii
engines) on the other. The Redis server is not pinned (the DIY stack's database is its own process;
pyiii's durable store lives in the engine).

Targets (issue 6): pyiii-remote >= 1.0x DIY throughput and p99 reactive latency <= DIY's;
pyiii-embedded >= 2.0x DIY throughput. PASS/MISS is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# bench/ must not shadow the standard library (see http_bench.py); keep it last on the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.append(str(BENCH))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from _common import (  # noqa: E402
    LAYOUTS,
    Children,
    cpu_ns,
    free_port,
    install_signal_exit,
    paired_ratios,
    percentile,
    wait_port,
)
from http_bench import Wrk, write_wrk_script  # noqa: E402
from http_bench import _pool as pool_wrk_blocks  # noqa: E402

ROOT = BENCH.parent
TODO_APP = ROOT / "examples" / "todo" / "app.py"
DIY_APP = BENCH / "baselines" / "diy_todo" / "app.py"
REMOTE, EMBEDDED, DIY = "pyiii-remote", "pyiii-embedded", "diy"
STACKS = (REMOTE, EMBEDDED, DIY)
TARGET_REMOTE_RATE = 1.0
TARGET_EMBEDDED_RATE = 2.0


# ============================================================================================== stacks


class Stack:
    def __init__(self, name: str, http_port: int, ws_port: int, pids: dict[str, int]) -> None:
        self.name = name
        self.http = f"http://127.0.0.1:{http_port}"
        self.ws = f"ws://127.0.0.1:{ws_port}"
        self.pids = pids
        #: Todos created so far (the counters must reach it before the stack is settled).
        self.created = 0


#: Every CPU this process could use before it pinned itself (for children that must stay unpinned).
UNPINNED_CPUS: list[int] = []


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None and shutil.which("taskset") else argv


def pyiii_config(
    directory: Path,
    worker_port: int,
    http_port: int,
    stream_port: int,
    store: str = "file_based",
    console_logs: bool = True,
) -> Path:
    """The default module set (durable stores under `directory`) on the given ports. Diagnostics:
    `store` in_memory replaces the durable stores (what the fsyncs cost); `console_logs` False stops
    printing the app's Logger records (what the per-change log line costs)."""
    data = directory / "data"
    path = directory / "config.yaml"
    kv = "{name: kv, config: {store_method: " + store + ", file_path: %s}}"
    path.write_text(
        "workers:\n"
        f"  - {{name: iii-worker-manager, config: {{port: {worker_port}}}}}\n"
        f"  - {{name: iii-http, config: {{port: {http_port}}}}}\n"
        f"  - {{name: iii-stream, config: {{port: {stream_port},"
        f" adapter: {kv % (data / 'stream_store')}}}}}\n"
        f"  - {{name: iii-state, config: {{adapter: {kv % (data / 'state_store.db')}}}}}\n"
        "  - {name: iii-observability, config: {level: warn, logs_console_output: "
        + ("true" if console_logs else "false")
        + "}}\n"
    )
    return path


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def post(url: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(stack: Stack, alive: Any, timeout_s: float = 60.0) -> None:
    """Until GET /todos/metrics answers 200 (pyiii: the worker has registered its routes); then one
    create must answer 201."""
    deadline = time.monotonic() + timeout_s
    while get(stack.http + "/todos/metrics")[0] != 200:
        if not alive():
            raise RuntimeError(f"{stack.name}: a process exited during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stack.name}: /todos/metrics never answered 200")
        time.sleep(0.05)
    status, body = post(stack.http + "/todos", {"title": "ready?"})
    if status != 201:
        raise RuntimeError(f"{stack.name}: POST /todos answered {status} {body!r}")
    stack.created = 1
    settle(stack)


def metrics_total(stack: Stack) -> int:
    status, body = get(stack.http + "/todos/metrics")
    if status != 200:
        raise RuntimeError(f"{stack.name}: GET /todos/metrics answered {status} {body!r}")
    return int(json.loads(body)["total"])


def settle(stack: Stack, timeout_s: float = 300.0) -> float:
    """Seconds until the counters account for every created todo and stop moving: the reactive work
    of the writes so far (state triggers, stream pushes, counter updates) is done. pyiii answers a
    write before its triggers run; the DIY stack updates the counters inside the request."""
    started = time.monotonic()
    last, stable_since = -1, started
    while True:
        total = metrics_total(stack)
        now = time.monotonic()
        if total != last:
            last, stable_since = total, now
        if total >= stack.created and now - stable_since >= 0.1:
            stack.created = total
            return max(0.0, stable_since - started)
        if now - started > timeout_s:
            raise TimeoutError(f"{stack.name}: counters stuck at {total} (created {stack.created})")
        time.sleep(0.01)


def start_stacks(
    children: Children,
    workdir: Path,
    cpus: dict[str, int] | None,
    diy_prefix: str,
    worker_cpu: str,
    store: str,
    console_logs: bool,
    diy_durable: bool,
) -> dict[str, Stack]:
    server_cpu = cpus["router"] if cpus else None
    client_cpu = cpus["client"] if cpus else None
    python = [sys.executable, "-X", "faulthandler"]
    stacks: dict[str, Stack] = {}

    # pyiii, remote worker
    ports = [free_port() for _ in range(3)]
    remote_dir = workdir / REMOTE
    remote_dir.mkdir()
    config = pyiii_config(remote_dir, *ports, store=store, console_logs=console_logs)
    engine = children.start(
        "remote-engine", pinned([*python, "-m", "pyiii.cli", "-c", str(config)], server_cpu)
    )
    wait_port(ports[0], 60, lambda: engine.alive)
    worker = children.start(
        "remote-worker",
        pinned([*python, str(TODO_APP)], server_cpu if worker_cpu == "server" else client_cpu),
        env={"III_URL": f"ws://127.0.0.1:{ports[0]}"},
    )
    stacks[REMOTE] = Stack(REMOTE, ports[1], ports[2], {"server": engine.pid, "worker": worker.pid})
    wait_ready(stacks[REMOTE], lambda: engine.alive and worker.alive)

    # pyiii, embedded worker (`pyiii run`)
    ports = [free_port() for _ in range(3)]
    embedded_dir = workdir / EMBEDDED
    embedded_dir.mkdir()
    config = pyiii_config(embedded_dir, *ports, store=store, console_logs=console_logs)
    embedded = children.start(
        "embedded", pinned([*python, "-m", "pyiii.cli", "run", str(TODO_APP), "-c", str(config)], server_cpu)
    )
    stacks[EMBEDDED] = Stack(EMBEDDED, ports[1], ports[2], {"server": embedded.pid})
    wait_ready(stacks[EMBEDDED], lambda: embedded.alive)

    # DIY: FastAPI + Redis
    url = redis_url()
    if diy_durable:
        url = start_durable_redis(children, workdir)
    port = free_port()
    diy = children.start(
        "diy",
        pinned([*python, str(DIY_APP), "--port", str(port)], server_cpu),
        env={"REDIS_URL": url, "DIY_TODO_PREFIX": diy_prefix},
    )
    pids = {"server": diy.pid}
    redis_pid = redis_server_pid(url)
    if redis_pid is not None:
        pids["redis"] = redis_pid
    stacks[DIY] = Stack(DIY, port, port, pids)
    wait_ready(stacks[DIY], lambda: diy.alive)
    return stacks


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def start_durable_redis(children: Children, workdir: Path) -> str:
    """A private redis-server that fsyncs every write (`appendfsync always`), as pyiii's durable store
    does: the DIY stack with the same durability (diagnostic `--diy-durable`)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("--diy-durable needs redis-server on PATH")
    directory = workdir / "redis"
    directory.mkdir()
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
    argv += ["--appendfsync", "always", "--dir", str(directory), "--daemonize", "no"]
    # Unpinned like the system Redis of the default run (the orchestrator itself is pinned).
    all_cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0) | set(UNPINNED_CPUS)))
    if shutil.which("taskset") and all_cpus:
        argv = ["taskset", "-c", all_cpus, *argv]
    server = children.start("durable-redis", argv)
    wait_port(port, 30, lambda: server.alive)
    return f"redis://127.0.0.1:{port}/0"


def redis_server_pid(url: str) -> int | None:
    """The Redis server's pid when it runs on this machine (its CPU time is the DIY stack's too)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}").exists() else None


def clear_diy_keys(prefix: str) -> None:
    """The DIY stack's keys are prefixed per run; delete them at the end of the run."""
    import redis

    client = redis.Redis.from_url(redis_url())
    try:
        client.delete(f"{prefix}todos", f"{prefix}todo-metrics")
    finally:
        client.close()


# ============================================================================================== latency


async def latency_block(
    http: str, ws: str, clients: int, rate: int, seconds: float, warmup: int
) -> dict[str, Any]:
    """`clients` WebSockets; `rate` writes/s for `seconds` (after `warmup` unmeasured writes)."""
    import aiohttp
    import msgspec

    run = uuid.uuid4().hex[:8]
    total = warmup + int(rate * seconds)
    sent_ns = [0] * total
    received: list[list[int]] = [[0] * total for _ in range(clients)]
    counts = [0] * clients
    done = asyncio.Event()
    prefix = f"lat-{run}-"
    decode = msgspec.json.decode
    clock = time.perf_counter_ns

    async def reader(index: int, sock: aiohttp.ClientWebSocketResponse, synced: asyncio.Event) -> None:
        row = received[index]
        async for msg in sock:
            arrived = clock()
            frame = decode(msg.data)
            event = frame["event"]
            if event["type"] == "sync":
                synced.set()
                continue
            data = event["event"]["data"]
            title = data["todo"]["title"]
            if data["action"] == "created" and title.startswith(prefix):
                row[int(title[len(prefix) :])] = arrived
                counts[index] += 1
                if all(c >= total for c in counts):
                    done.set()

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = [
            await session.ws_connect(f"{ws}/stream/todos-live/all", max_msg_size=0) for _ in range(clients)
        ]
        syncs = [asyncio.Event() for _ in sockets]
        readers = [asyncio.create_task(reader(i, s, syncs[i])) for i, s in enumerate(sockets)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in syncs)), 30)

        statuses: dict[int, int] = {}

        async def write(i: int) -> None:
            body = {"title": f"{prefix}{i}"}
            sent_ns[i] = clock()
            async with session.post(f"{http}/todos", json=body) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        writes = []
        lag_ms = 0.0
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag_ms = max(lag_ms, -delay * 1000)
            writes.append(asyncio.create_task(write(i)))
        await asyncio.gather(*writes)
        try:
            await asyncio.wait_for(done.wait(), 15)
        except TimeoutError:
            pass
        for sock in sockets:
            await sock.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    samples = [row[i] - sent_ns[i] for row in received for i in range(warmup, total) if row[i] and sent_ns[i]]
    expected = clients * (total - warmup)
    return {
        "writes": total - warmup,
        "warmup": warmup,
        "samples_ns": samples,
        "missing": expected - len(samples),
        "statuses": statuses,
        "writer_lag_ms": lag_ms,
    }


def throughput_block(wrk: Wrk, stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """One wrk block, then the wait until the stack has done the reactive work of its writes; the CPU
    time of that wait is added to the block's."""
    block = wrk.run(stack.http + "/todos", args.connections, args.seconds, stack.pids)
    stack.created += block["requests"]
    before = cpu_ns(stack.pids)
    block["settle_s"] = settle(stack)
    after = cpu_ns(stack.pids)
    for name in after:
        if name in before and name in block["cpu_ns"]:
            block["cpu_ns"][name] += after[name] - before[name]
    return block


def role_latency(args: argparse.Namespace) -> int:
    import uvloop

    result = uvloop.run(
        latency_block(args.http, args.ws, args.clients, args.rate, args.latency_seconds, args.warmup)
    )
    Path(args.out).write_text(json.dumps(result))
    return 0


def run_latency(stack: Stack, args: argparse.Namespace, cpu: int | None, out: Path) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--role",
        "latency",
        "--http",
        stack.http,
        "--ws",
        stack.ws,
        "--clients",
        str(args.clients),
        "--rate",
        str(args.rate),
        "--latency-seconds",
        str(args.latency_seconds),
        "--warmup",
        str(args.warmup),
        "--out",
        str(out),
    ]
    proc = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"latency client failed against {stack.name}: {proc.stderr[-2000:]}")
    result = dict(json.loads(out.read_text()))
    out.unlink()
    stack.created += result["writes"] + result["warmup"]
    result["settle_s"] = settle(stack)
    return result


# ============================================================================================== summary


def pool_latency(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    samples = sorted(s for b in blocks for s in b["samples_ns"])
    statuses: dict[str, int] = {}
    for b in blocks:
        for code, n in b["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    return {
        "writes": sum(b["writes"] for b in blocks),
        "samples": len(samples),
        "missing": sum(b["missing"] for b in blocks),
        "p50_ms": percentile(samples, 50) / 1e6,
        "p90_ms": percentile(samples, 90) / 1e6,
        "p99_ms": percentile(samples, 99) / 1e6,
        "max_ms": (samples[-1] / 1e6) if samples else float("nan"),
        "statuses": statuses,
        "writer_lag_ms": max(b["writer_lag_ms"] for b in blocks),
        "block_p99_ms": [percentile(sorted(b["samples_ns"]), 99) / 1e6 for b in blocks],
    }


def summarize(load: dict[str, list[Any]], latency: dict[str, list[Any]]) -> dict[str, Any]:
    rates = {name: pool_wrk_blocks(blocks) for name, blocks in load.items() if blocks}
    for name, stats in rates.items():
        blocks = load[name]
        busy_s = [b["duration_us"] / 1e6 + b["settle_s"] for b in blocks]
        stats["settle_s"] = [round(b["settle_s"], 3) for b in blocks]
        stats["sustained_per_s"] = stats["requests"] / sum(busy_s)
        stats["block_sustained"] = [b["requests"] / t for b, t in zip(blocks, busy_s, strict=True)]
        stats["cpu_us_per_request"] = {
            process: sum(b["cpu_ns"][process] for b in blocks) / stats["requests"] / 1000
            for process in blocks[0]["cpu_ns"]
            if all(process in b["cpu_ns"] for b in blocks)
        }
    lat = {name: pool_latency(blocks) for name, blocks in latency.items() if blocks}
    targets = []
    diy_rate = rates.get(DIY, {}).get("sustained_per_s")
    ratios: dict[str, Any] = {}
    for name in (REMOTE, EMBEDDED):
        if name in rates and diy_rate:
            ratios[name] = {
                "rate_vs_diy": rates[name]["sustained_per_s"] / diy_rate,
                "reply_rate_vs_diy": rates[name]["requests_per_s"] / rates[DIY]["requests_per_s"],
                "blocks": paired_ratios(rates[name]["block_sustained"], rates[DIY]["block_sustained"]),
            }
        if name in lat and DIY in lat:
            ratios.setdefault(name, {})["p99_vs_diy"] = lat[name]["p99_ms"] / lat[DIY]["p99_ms"]
            ratios[name]["p50_vs_diy"] = lat[name]["p50_ms"] / lat[DIY]["p50_ms"]
    if REMOTE in ratios and "rate_vs_diy" in ratios[REMOTE]:
        value = ratios[REMOTE]["rate_vs_diy"]
        targets.append(("pyiii-remote throughput >= 1.0x DIY", value, value >= TARGET_REMOTE_RATE))
    if REMOTE in ratios and "p99_vs_diy" in ratios[REMOTE]:
        value = ratios[REMOTE]["p99_vs_diy"]
        ok = value <= 1.0 and lat[REMOTE]["missing"] == 0
        targets.append(("pyiii-remote p99 reactive latency <= DIY", value, ok))
    if EMBEDDED in ratios and "rate_vs_diy" in ratios[EMBEDDED]:
        value = ratios[EMBEDDED]["rate_vs_diy"]
        targets.append(("pyiii-embedded throughput >= 2.0x DIY", value, value >= TARGET_EMBEDDED_RATE))
    return {"throughput": rates, "latency": lat, "ratios": ratios, "targets": targets}


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    out = [
        f"todo_e2e: throughput {meta['blocks']} blocks of wrk -c{meta['connections']} {meta['seconds']} s;"
        f" latency {meta['latency_blocks']} blocks of {meta['latency_seconds']} s,"
        f" {meta['clients']} WS clients at {meta['rate']} writes/s; layout {meta['layout']},"
        f" remote worker on the {meta['worker_cpu']} CPU, pyiii store {meta['pyiii_store']},"
        f" console logs {'on' if meta['console_logs'] else 'off'}"
        + (", DIY Redis with appendfsync always" if meta["diy_durable"] else ""),
        "",
        "POST /todos (sustained = requests / (wrk time + time until the reactive work is done))",
        "                  replies/s  sustained/s  settle s  reply p50/p99 ms  sustained vs DIY (blocks)"
        "  CPU µs/req",
    ]
    for name in STACKS:
        s = summary["throughput"].get(name)
        if not s:
            continue
        r = summary["ratios"].get(name, {})
        ratio = f"{r['rate_vs_diy']:.2f}x" if "rate_vs_diy" in r else "-"
        blocks = r.get("blocks") or {}
        spread = f"({blocks['min']:.2f}-{blocks['max']:.2f})" if blocks else ""
        cpu = " ".join(f"{k} {v:.0f}" for k, v in s["cpu_us_per_request"].items())
        out.append(
            f"  {name:<15}{s['requests_per_s']:>10.0f} {s['sustained_per_s']:>12.0f}"
            f" {sum(s['settle_s']) / len(s['settle_s']):>9.2f}"
            f" {s['p50_us'] / 1000:>9.1f}/{s['p99_us'] / 1000:<7.1f}  {ratio:>6} {spread:<16} {cpu}"
        )
        if s["errors"]:
            out.append(f"    errors: {s['errors']}")
    out += [
        "",
        "reactive latency (POST -> todo_changed at each client)  p50 ms   p90 ms   p99 ms   max ms  missing",
    ]
    for name in STACKS:
        s = summary["latency"].get(name)
        if not s:
            continue
        r = summary["ratios"].get(name, {})
        ratio = f"  p99 {r['p99_vs_diy']:.2f}x DIY" if "p99_vs_diy" in r else ""
        out.append(
            f"  {name:<16} {s['samples']:>10} {s['p50_ms']:>11.2f} {s['p90_ms']:>8.2f}"
            f" {s['p99_ms']:>8.2f} {s['max_ms']:>8.1f} {s['missing']:>8}{ratio}"
        )
        out.append("    p99 of each block (ms): " + ", ".join(f"{v:.1f}" for v in s["block_p99_ms"]))
        if set(s["statuses"]) != {"201"}:
            out.append(f"    statuses: {s['statuses']}")
        if s["writer_lag_ms"] > 20:
            out.append(f"    the writer fell behind its schedule by up to {s['writer_lag_ms']:.0f} ms")
    out.append("")
    for label, value, ok in summary["targets"]:
        out.append(f"  {'PASS' if ok else 'MISS'}  {label}: {value:.2f}")
    return "\n".join(out)


# ============================================================================================== orchestrator


def orchestrate(args: argparse.Namespace) -> int:
    from _common import cpu_layout

    wrk_exe = shutil.which("wrk")
    if wrk_exe is None:
        print("todo_e2e: needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    try:
        import fastapi  # noqa: F401
        import redis  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"todo_e2e: needs FastAPI, uvicorn and redis ({exc}); pip install fastapi 'uvicorn[standard]'")
        return 2
    install_signal_exit()
    cpus = cpu_layout(args.layout)
    client_cpu = cpus["client"] if cpus else None
    if client_cpu is not None:
        # The orchestrator belongs with the load generators, not on the server CPU: its reader
        # threads drain every child's stdout and stderr, and the pyiii engines print a console line
        # per todo (thousands per second), which an unpinned parent could read on the server CPU.
        # Pinned before any thread starts, so its threads inherit it.
        UNPINNED_CPUS.extend(sorted(os.sched_getaffinity(0)))
        os.sched_setaffinity(0, {client_cpu})
    children = Children()
    diy_prefix = f"bench-todo-{uuid.uuid4().hex[:8]}:"
    load: dict[str, list[Any]] = {name: [] for name in STACKS}
    latency: dict[str, list[Any]] = {name: [] for name in STACKS}
    with tempfile.TemporaryDirectory(prefix="pyiii-todo-e2e-") as tmp:
        workdir = Path(tmp)
        script = write_wrk_script(workdir / "post.lua", b'{"title":"a todo from wrk"}')
        wrk = Wrk(wrk_exe, script, client_cpu)
        try:
            stacks = start_stacks(
                children,
                workdir,
                cpus,
                diy_prefix,
                args.worker_cpu,
                args.pyiii_store,
                not args.no_console_logs,
                args.diy_durable,
            )
            order = list(STACKS)
            for block in range(args.blocks):
                for name in order:
                    stack = stacks[name]
                    load[name].append(throughput_block(wrk, stack, args))
                    progress(args, f"block {block + 1}: {name} throughput done")
                order.reverse()
            for block in range(args.latency_blocks):
                for name in order:
                    result = run_latency(stacks[name], args, client_cpu, workdir / "latency.json")
                    latency[name].append(result)
                    progress(args, f"latency block {block + 1}: {name} done")
                order.reverse()
        finally:
            children.stop_all()
            clear_diy_keys(diy_prefix)
    meta = {
        "blocks": args.blocks,
        "connections": args.connections,
        "seconds": args.seconds,
        "clients": args.clients,
        "rate": args.rate,
        "latency_seconds": args.latency_seconds,
        "latency_blocks": args.latency_blocks,
        "layout": args.layout,
        "pyiii_store": args.pyiii_store,
        "worker_cpu": args.worker_cpu,
        "console_logs": not args.no_console_logs,
        "diy_durable": args.diy_durable,
    }
    summary = summarize(load, latency)
    if args.json:
        for stats in summary["latency"].values():
            stats.pop("samples_ns", None)
        print(json.dumps({"meta": meta, "summary": summary}, indent=2))
    else:
        print(render(summary, meta))
    if args.fail_on_miss and not all(ok for _, _, ok in summary["targets"]):
        return 1
    return 0


def progress(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short blocks (a smoke run)")
    parser.add_argument("--blocks", type=int, default=6, help="throughput blocks per stack")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per throughput block (wrk)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--latency-blocks", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients in the latency phase")
    parser.add_argument("--rate", type=int, default=200, help="writes per second in the latency phase")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured writes before each latency block")
    parser.add_argument("--layout", choices=LAYOUTS, default="split")
    parser.add_argument(
        "--worker-cpu",
        choices=["server", "client"],
        default="server",
        help="CPU of pyiii-remote's worker process in the split layout (default: with the engine)",
    )
    parser.add_argument(
        "--pyiii-store",
        choices=["file_based", "in_memory"],
        default="file_based",
        help="the pyiii stacks' state and stream stores (targets are for file_based, the durable default)",
    )
    parser.add_argument(
        "--no-console-logs",
        action="store_true",
        help="diagnostic: the pyiii stacks do not print the app's per-change log records",
    )
    parser.add_argument(
        "--diy-durable",
        action="store_true",
        help="diagnostic: the DIY stack on a private redis-server with appendfsync always",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fail-on-miss", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--role", choices=["latency"], help=argparse.SUPPRESS)
    parser.add_argument("--http", help=argparse.SUPPRESS)
    parser.add_argument("--ws", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.seconds, args.latency_blocks, args.latency_seconds = 2, 1, 1, 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "latency":
        return role_latency(args)
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
