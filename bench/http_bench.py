"""HTTP-module speed: requests/s and latency through pyiii's iii-http against aiohttp and FastAPI, same run.

    .venv/bin/python bench/http_bench.py              # full run (about 2 minutes on 2 cores)
    .venv/bin/python bench/http_bench.py --quick      # CI smoke: 1 s blocks, 3 blocks (about 30 s)
    .venv/bin/python bench/http_bench.py --json       # machine-readable result on stdout

Needs ``wrk`` (Debian: ``apt-get install -y wrk``) and, for the baseline, ``fastapi`` and
``uvicorn[standard]`` in the venv (``.venv/bin/pip install fastapi 'uvicorn[standard]'``).

What is measured (bench/README.md has the process layout and how to read the numbers):

1. load: ``wrk`` (one thread, 64 connections, its own process) POSTs a ~100-byte JSON object to
   ``/echo`` and gets it back, for each of
   * ``aiohttp``: a bare aiohttp app on uvloop that decodes and re-encodes the body (the floor);
   * ``fastapi``: FastAPI on uvicorn (uvloop + httptools, 1 worker), ``async def echo(payload:
     dict[str, Any]) -> dict[str, Any]`` (what a Python user would write instead);
   * ``remote``: pyiii's engine (``python -m pyiii.cli -c CONFIG`` with ``iii-http``) and a pyiii SDK
     worker in another process serving the route's function (``return req["body"]``);
   * ``inprocess``: the same engine and function with the worker in the engine's process
     (``register_worker(engine)``), with the GC tuned after startup as ``pyiii run APP.py`` does
     (``--no-inprocess-gc-tune`` to leave it at Python's defaults).
   requests/s, p50 / p90 / p99 latency and CPU per request of every process.
   Targets: in-process >= 1.5x FastAPI's requests/s, remote >= 1.0x FastAPI's requests/s.
2. route scaling: one in-process engine, sequential requests (one connection) to ``POST /echo`` with
   only that route registered, and with 999 other routes (static and ``:param`` paths, some sharing
   ``/echo``'s first segment, registered before it). Target: median latency with 1,000 routes
   <= 1.1x the median with 1 route.

Every server stays up for the whole run; the variants run in short interleaved blocks (the order
reversed every block), so a noisy shared machine hits them alike. Absolute numbers are not comparable
between runs or machines; the ratios are the result. Nothing here belongs in unit tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python bench/http_bench.py` puts bench/ first on sys.path, where this very file would shadow the
# standard library's `http` package (aiohttp imports http.cookies): keep bench/ last instead.
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.append(str(BENCH))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from typing import Any  # noqa: E402

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
    make_payload,
    paired_ratios,
    percentile,
    pin_cpu_from_env,
    wait_port,
)

TARGET_INPROCESS_VS_FASTAPI = 1.5
TARGET_REMOTE_VS_FASTAPI = 1.0
TARGET_ROUTES_RATIO = 1.1

FUNCTION_ID = "bench::http_echo"
ROUTE = "/echo"
EXTRA_ROUTES = 999
ROUTES_TARGET = f"median latency with {EXTRA_ROUTES + 1} routes <= {TARGET_ROUTES_RATIO}x with 1 route"

AIOHTTP, FASTAPI, FASTAPI_RAW, REMOTE, INPROCESS = "aiohttp", "fastapi", "fastapi-raw", "remote", "inprocess"
CMP = "-cmp"  # suffix of the variants running --compare-src
ORDER = (AIOHTTP, FASTAPI, FASTAPI_RAW, REMOTE, REMOTE + CMP, INPROCESS, INPROCESS + CMP)
BASELINES = (AIOHTTP, FASTAPI, FASTAPI_RAW)
LABELS = {
    AIOHTTP: "floor: bare aiohttp app (uvloop)",
    FASTAPI: "baseline: FastAPI on uvicorn (uvloop, httptools)",
    FASTAPI_RAW: "  FastAPI, Request.json() -> JSONResponse",
    REMOTE: "pyiii iii-http -> SDK worker (other process)",
    INPROCESS: "pyiii iii-http -> in-process worker",
    REMOTE + CMP: "  same, pyiii from --compare-src",
    INPROCESS + CMP: "  same, pyiii from --compare-src",
    "routes1": "1 route registered",
    "routes1000": f"{EXTRA_ROUTES + 1} routes registered",
}
#: Process roles whose CPU time each variant reports (besides wrk's own).
PROC_NAMES = ("server", "worker")

INSTALL_WRK = "wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu; as root or with sudo)"
INSTALL_FASTAPI = "fastapi/uvicorn missing: `.venv/bin/pip install fastapi 'uvicorn[standard]'`"


# ============================================================================================== routes


def extra_routes(n: int) -> list[tuple[str, str, str]]:
    """``n`` routes other than ``POST /echo``: (method, template, a concrete path matching it).

    Four shapes in turn: a static path, a static path with a parameter, a path under a shared
    parameter prefix, and a path under ``/echo`` itself (so a trie's first level holds more than one
    child on the hit route's branch)."""
    out = []
    for i in range(n):
        method = "POST" if i % 2 == 0 else "GET"
        shape = i % 4
        if shape == 0:
            out.append((method, f"/r{i}", f"/r{i}"))
        elif shape == 1:
            out.append((method, f"/r{i}/:id", f"/r{i}/42"))
        elif shape == 2:
            out.append((method, f"/users/:uid/r{i}", f"/users/7/r{i}"))
        else:
            out.append((method, f"/echo/r{i}/:id", f"/echo/r{i}/42"))
    return out


# ============================================================================================== roles
# Each role runs in its own process, started by the orchestrator with `--role NAME`.


async def http_echo(request: Any) -> Any:
    """The route's function: the request's parsed JSON body, which the engine sends back with 200."""
    return request["body"]


def _echo_trigger(api_path: str = ROUTE, method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http",
        "function_id": FUNCTION_ID,
        "config": {"api_path": api_path, "http_method": method},
    }


def role_engine(config: str) -> int:
    """The engine exactly as `python -m pyiii.cli -c CONFIG` runs it (uvloop, default modules + iii-http)."""
    from pyiii.cli import main

    exit_when_parent_goes()
    return main(["-c", config])


def role_worker(url: str) -> int:
    """A pyiii SDK worker serving the echo function behind ``POST /echo``."""
    from pyiii import InitOptions, register_worker

    exit_when_parent_goes()
    iii = register_worker(url, InitOptions(worker_name="bench-http-worker"))
    iii.register_function(FUNCTION_ID, http_echo)
    iii.register_trigger(_echo_trigger())
    emit("ready", pid=os.getpid())
    threading.Event().wait()  # SIGTERM (from the parent watch) ends the process
    return 0


def role_inprocess(port: int) -> int:
    """Engine with iii-http on ``port`` and an in-process worker serving ``POST /echo``, on uvloop.

    Commands on stdin (one JSON line each, answered by one ``result`` line): ``{"cmd": "routes",
    "extra": N}`` leaves ``POST /echo`` plus N other routes registered (N > 0: ``/echo`` is registered
    again after them). EOF stops the engine."""
    import uvloop

    return uvloop.run(_inprocess_main(port))


async def _inprocess_main(port: int) -> int:
    from pyiii import InitOptions, register_worker
    from pyiii.config import HttpSettings, Settings
    from pyiii.server.app import EngineServer

    loop = asyncio.get_running_loop()
    server = EngineServer(Settings(worker_managers=(), http=HttpSettings(host="127.0.0.1", port=port)))
    await server.start()
    iii = register_worker(server.engine, InitOptions(worker_name="bench-http-inprocess"))
    iii.register_function(FUNCTION_ID, http_echo)
    state: dict[str, Any] = {"echo": iii.register_trigger(_echo_trigger()), "extra": []}

    def set_routes(extra: int) -> int:  # on the loop
        if extra == len(state["extra"]):
            return extra
        for trigger in state["extra"]:
            trigger.unregister()
        state["extra"] = []
        if extra:
            state["echo"].unregister()
            state["extra"] = [
                iii.register_trigger(_echo_trigger(template, method))
                for method, template, _ in extra_routes(extra)
            ]
            state["echo"] = iii.register_trigger(_echo_trigger())
        return extra

    done = asyncio.Event()

    def read_commands() -> None:  # a thread: stdin lines -> the loop
        with contextlib.suppress(Exception):
            for cmd in commands():
                try:
                    fut = asyncio.run_coroutine_threadsafe(_call(set_routes, int(cmd["extra"])), loop)
                    emit("result", routes=fut.result(60) + 1)
                except Exception as exc:
                    emit("error", message=f"{type(exc).__name__}: {exc}")
        loop.call_soon_threadsafe(done.set)
        time.sleep(10)
        os._exit(3)  # the graceful stop below hung

    threading.Thread(target=read_commands, name="bench-commands", daemon=True).start()
    if os.environ.get(GC_TUNE_ENV):
        # What `pyiii` (serve) does after startup: freeze startup objects, rarer gen-0 collections.
        from pyiii.server import app as server_app

        tune = getattr(server_app, "tune_gc", None) or getattr(server_app, "_tune_gc", None)
        if tune is not None:
            tune()
    emit("ready", pid=os.getpid())
    await done.wait()
    with contextlib.suppress(Exception):
        await iii.shutdown_async()
    await server.stop()
    return 0


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


ROLES = ("engine", "worker", "inprocess")
#: Set for the in-process children by --inprocess-gc-tune.
GC_TUNE_ENV = "PYIII_BENCH_GC_TUNE"


# ============================================================================================== load (wrk)

WRK_LUA = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local q = {}
  for i = 0, 999 do q[#q + 1] = string.format("%%d", latency:percentile((i + 0.5) / 10)) end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"errors":{"connect":%%d,"read":%%d,"write":%%d,'
      .. '"status":%%d,"timeout":%%d},"quantiles_us":[%%s]}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(q, ",")))
end
"""


def write_wrk_script(path: Path, body: bytes) -> Path:
    """wrk's Lua script: POST ``body`` as JSON; at the end, one JSON line with the counts and the
    latency distribution as 1,000 quantiles (so blocks can be pooled)."""
    path.write_text(WRK_LUA % {"body": json.dumps(body.decode())})
    return path


class Wrk:
    """Runs one wrk block against a URL, pinned to the client CPU; adds the servers' CPU time."""

    def __init__(self, exe: str, script: Path, cpu: int | None) -> None:
        self.exe = exe
        self.script = script
        self.cpu = cpu

    def run(self, url: str, connections: int, seconds: int, pids: dict[str, int]) -> dict[str, Any]:
        argv = [self.exe, "-t1", f"-c{connections}", f"-d{seconds}", "-s", str(self.script), url]
        cpu = self.cpu

        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        before_self = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = cpu_ns(pids)
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, preexec_fn=pin, check=False
        )
        after = cpu_ns(pids)
        after_self = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}")
        out: dict[str, Any] = json.loads(lines[-1])
        out["connections"] = connections
        out["cpu_ns"] = {name: after[name] - before[name] for name in after if name in before}
        out["cpu_ns"]["wrk"] = int(
            (after_self.ru_utime + after_self.ru_stime - before_self.ru_utime - before_self.ru_stime) * 1e9
        )
        return out


# ============================================================================================== orchestrator


def _python_argv(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", *args]


class Plan:
    def __init__(self, args: argparse.Namespace) -> None:
        self.payload = make_payload(args.payload_bytes)
        self.body = json.dumps(self.payload, separators=(",", ":")).encode()
        self.layout = args.layout
        self.cpus = cpu_layout(args.layout)
        self.gc_tune = args.inprocess_gc_tune

    def env(self, role: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(extra or {})
        if role == "inprocess" and self.gc_tune:
            env[GC_TUNE_ENV] = "1"
        if self.cpus is not None:
            env[CPU_ENV] = str(self.cpus[role])
        return env


def post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


def wait_route(url: str, body: bytes, want: int, timeout_s: float = 30.0) -> None:
    """POST until the status is ``want`` (trigger registrations are not acknowledged); bounded."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, _, _ = post(url, body, timeout=2.0)
            if status == want:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.02)
    raise TimeoutError(f"{url}: no {want} after {timeout_s} s (last: {last})")


def check_echo(name: str, url: str, plan: Plan) -> None:
    """One request: 200, a JSON content type and the payload back (every variant serves the same)."""
    status, data, ctype = post(url, plan.body)
    if status != 200 or "application/json" not in ctype or json.loads(data) != plan.payload:
        raise RuntimeError(f"{name}: POST {url} gave {status} {ctype!r} {data[:200]!r}, not the payload")


class Server:
    """A variant under load: its URL and the processes whose CPU time is reported."""

    def __init__(self, name: str, url: str, pids: dict[str, int], child: Child | None = None) -> None:
        self.name = name
        self.url = url
        self.pids = pids
        self.child = child


def http_module_available(src: str | None) -> bool:
    if src:
        return (Path(src) / "src" / "pyiii" / "modules" / "http").is_dir()
    return importlib.util.find_spec("pyiii.modules.http") is not None


def start_servers(
    args: argparse.Namespace, plan: Plan, children: Children, tmp: Path, notes: list[str]
) -> dict[str, Server]:
    baselines_script = str(BENCH / "_http_baselines.py")
    servers: dict[str, Server] = {}
    kinds = [AIOHTTP, FASTAPI] + ([FASTAPI_RAW] if args.fastapi_raw else [])
    for kind in kinds:
        port = free_port()
        child = children.start(
            kind, _python_argv(baselines_script, kind, "--port", str(port)), plan.env("router")
        )
        child.wait_event("ready", 60)
        servers[kind] = Server(kind, f"http://127.0.0.1:{port}{ROUTE}", {"server": child.pid}, child)
    if not args.pyiii:
        return servers
    pyenv = {"PYTHONPATH": str(Path(args.src).resolve() / "src")} if args.src else None
    servers.update(start_pyiii(plan, children, tmp, "", pyenv))
    if args.compare_src:
        cmp_env = {"PYTHONPATH": str(Path(args.compare_src).resolve() / "src")}
        servers.update(start_pyiii(plan, children, tmp, CMP, cmp_env))
    return servers


def start_pyiii(
    plan: Plan, children: Children, tmp: Path, suffix: str, pyenv: dict[str, str] | None
) -> dict[str, Server]:
    """The two pyiii variants (``remote``, ``inprocess`` + suffix), running the pyiii of ``pyenv``."""
    me = str(Path(__file__).resolve())
    # remote: engine as `pyiii -c CONFIG` (worker manager + iii-http), then the SDK worker
    ws_port, http_port = free_port(), free_port()
    config = tmp / f"config{suffix}.yaml"
    config.write_text(
        "workers:\n"
        f"  - name: iii-worker-manager\n    config:\n      host: 127.0.0.1\n      port: {ws_port}\n"
        f"  - name: iii-http\n    config:\n      host: 127.0.0.1\n      port: {http_port}\n"
    )
    engine = children.start(
        f"engine{suffix}",
        _python_argv(me, "--role", "engine", "--config", str(config)),
        plan.env("router", pyenv),
    )
    wait_port(ws_port, 60, lambda: engine.alive)
    worker = children.start(
        f"worker{suffix}",
        _python_argv(me, "--role", "worker", "--url", f"ws://127.0.0.1:{ws_port}"),
        plan.env("echo", pyenv),
    )
    worker.wait_event("ready", 60)
    wait_port(http_port, 30, lambda: engine.alive)
    url = f"http://127.0.0.1:{http_port}{ROUTE}"
    wait_route(url, plan.body, 200)
    remote = Server(REMOTE + suffix, url, {"server": engine.pid, "worker": worker.pid}, engine)
    # in-process: engine + worker in one process (also the route-scaling engine)
    port = free_port()
    inproc = children.start(
        f"inprocess{suffix}",
        _python_argv(me, "--role", "inprocess", "--port", str(port)),
        plan.env("inprocess", pyenv),
    )
    inproc.wait_event("ready", 60)
    url = f"http://127.0.0.1:{port}{ROUTE}"
    wait_route(url, plan.body, 200)
    return {
        remote.name: remote,
        INPROCESS + suffix: Server(INPROCESS + suffix, url, {"server": inproc.pid}, inproc),
    }


def start_routes_server(plan: Plan, children: Children, src: str | None) -> Server:
    pyenv = {"PYTHONPATH": str(Path(src).resolve() / "src")} if src else None
    port = free_port()
    child = children.start(
        "routes",
        _python_argv(str(Path(__file__).resolve()), "--role", "inprocess", "--port", str(port)),
        plan.env("inprocess", pyenv),
    )
    child.wait_event("ready", 60)
    url = f"http://127.0.0.1:{port}{ROUTE}"
    wait_route(url, plan.body, 200)
    return Server("routes", url, {"server": child.pid}, child)


def run_load(
    args: argparse.Namespace, plan: Plan, wrk: Wrk, servers: dict[str, Server]
) -> dict[str, list[Any]]:
    """Interleaved wrk blocks at ``--connections``: {variant: [block, ...]}."""
    variants = list(servers)
    for name in variants:
        check_echo(name, servers[name].url, plan)
    for name in variants:  # warm-up: connections, caches, every code path
        _progress(args, f"warm-up {name}")
        wrk.run(servers[name].url, args.connections, args.warmup_seconds, servers[name].pids)
    out: dict[str, list[Any]] = {v: [] for v in variants}
    for block in range(args.blocks):
        order = variants if block % 2 == 0 else variants[::-1]
        _progress(args, f"load block {block + 1}/{args.blocks}")
        for name in order:
            out[name].append(wrk.run(servers[name].url, args.connections, args.seconds, servers[name].pids))
    return out


def run_routes(args: argparse.Namespace, plan: Plan, wrk: Wrk, server: Server) -> dict[str, list[Any]]:
    """Sequential latency of ``POST /echo`` with 1 and with 1,000 routes, same engine, interleaved."""
    child = server.child
    assert child is not None
    base = server.url[: -len(ROUTE)]
    probe_method, _, probe_path = extra_routes(EXTRA_ROUTES)[-1]
    out: dict[str, list[Any]] = {"routes1": [], "routes1000": []}

    def set_routes(extra: int) -> None:
        child.command(cmd="routes", extra=extra)
        wait_route(server.url, plan.body, 200)
        if probe_method == "POST":  # the last extra route answers (or is gone)
            wait_route(base + probe_path, plan.body, 200 if extra else 404)
        else:
            _wait_get(base + probe_path, 200 if extra else 404)

    for extra in (0, EXTRA_ROUTES):  # warm-up
        set_routes(extra)
        wrk.run(server.url, 1, args.warmup_seconds, server.pids)
    for block in range(args.route_blocks):
        order = [("routes1", 0), ("routes1000", EXTRA_ROUTES)]
        if block % 2:
            order.reverse()
        _progress(args, f"routes block {block + 1}/{args.route_blocks}")
        for state, extra in order:
            set_routes(extra)
            out[state].append(wrk.run(server.url, 1, args.seconds, server.pids))
    set_routes(0)
    return out


def _wait_get(url: str, want: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = None
        if status == want:
            return
        time.sleep(0.02)
    raise TimeoutError(f"GET {url}: no {want} after {timeout_s} s")


# ---------------------------------------------------------------------------------------------- summary


def _pool(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled statistics of one variant's wrk blocks: rate over all blocks, latency percentiles of the
    merged distributions (each block's 1,000 quantiles weighted by its request count)."""
    if not blocks:
        return {}
    requests = sum(b["requests"] for b in blocks)
    seconds = sum(b["duration_us"] for b in blocks) / 1e6
    weighted = sorted((q, b["requests"] / len(b["quantiles_us"])) for b in blocks for q in b["quantiles_us"])
    total = sum(w for _, w in weighted)

    def pct(p: float) -> float:
        acc, goal = 0.0, p / 100 * total
        for value, weight in weighted:
            acc += weight
            if acc >= goal:
                return float(value)
        return float(weighted[-1][0]) if weighted else float("nan")

    errors: dict[str, int] = {}
    for b in blocks:
        for k, v in b["errors"].items():
            errors[k] = errors.get(k, 0) + v
    cpu = {}
    for name in ("server", "worker", "wrk"):
        spent = [b["cpu_ns"].get(name) for b in blocks]
        if all(s is not None for s in spent) and requests:
            cpu[name] = sum(spent) / requests / 1000
    block_p50 = [percentile(b["quantiles_us"], 50) for b in blocks]
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": requests / seconds if seconds else float("nan"),
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "errors": {k: v for k, v in errors.items() if v},
        "cpu_us_per_request": cpu,
        "block_rates": [b["requests"] / (b["duration_us"] / 1e6) for b in blocks],
        "block_p50_us": block_p50,
    }


def summarize(load: dict[str, list[Any]], routes: dict[str, list[Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"load": {v: _pool(b) for v, b in load.items()}, "routes": {}, "targets": []}
    fast = summary["load"].get(FASTAPI)
    ratios: dict[str, Any] = {}
    for variant, stats in summary["load"].items():
        if fast and variant != FASTAPI:
            ratios[variant] = {
                "rate_vs_fastapi": stats["requests_per_s"] / fast["requests_per_s"],
                "blocks": paired_ratios(stats["block_rates"], fast["block_rates"]),
            }
    summary["ratios"] = ratios
    compare = {}
    for variant in (REMOTE, INPROCESS):
        ours, theirs = summary["load"].get(variant), summary["load"].get(variant + CMP)
        if ours and theirs:
            compare[variant] = {
                "rate": ours["requests_per_s"] / theirs["requests_per_s"],
                "blocks": paired_ratios(ours["block_rates"], theirs["block_rates"]),
                "server_cpu": ours["cpu_us_per_request"]["server"] / theirs["cpu_us_per_request"]["server"],
            }
    if compare:
        summary["compare"] = compare
    for variant, (label, goal) in {
        INPROCESS: ("in-process requests/s >= {g}x FastAPI", TARGET_INPROCESS_VS_FASTAPI),
        REMOTE: ("remote requests/s >= {g}x FastAPI", TARGET_REMOTE_VS_FASTAPI),
    }.items():
        value = ratios.get(variant, {}).get("rate_vs_fastapi")
        summary["targets"].append(
            {
                "name": label.format(g=goal),
                "value": value,
                "unit": "x",
                "pass": None if value is None else value >= goal,
            }
        )
    if routes:
        one, many = _pool(routes["routes1"]), _pool(routes["routes1000"])
        summary["routes"] = {"routes1": one, "routes1000": many}
        value = many["p50_us"] / one["p50_us"]
        summary["routes_ratio"] = {
            "p50": value,
            "p99": many["p99_us"] / one["p99_us"],
            "blocks": paired_ratios(many["block_p50_us"], one["block_p50_us"]),
        }
        summary["targets"].append(
            {
                "name": ROUTES_TARGET,
                "value": value,
                "unit": "x",
                "pass": value <= TARGET_ROUTES_RATIO,
            }
        )
    else:
        summary["targets"].append(
            {
                "name": ROUTES_TARGET,
                "value": None,
                "unit": "x",
                "pass": None,
            }
        )
    return summary


def _num(value: float | None, width: int = 10, digits: int = 0) -> str:
    return (
        f"{value:>{width}.{digits}f}"
        if isinstance(value, int | float) and value == value
        else f"{'-':>{width}}"
    )


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"pyiii http benchmark  {meta['date']}  nproc={meta['nproc']}  python {meta['python']}  "
        + "  ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"load: wrk {meta['wrk']} -t1 -c{meta['connections']}, POST {ROUTE} with a "
        f"{meta['payload_bytes']} B JSON body echoed back; {meta['blocks']} interleaved blocks of "
        f"{meta['seconds']} s per variant",
        "processes: "
        + (
            "pinned ({layout}): servers / engines on CPU {router}, wrk and the remote SDK worker on CPU "
            "{client}".format(layout=meta["layout"], **meta["cpu_layout"])
            if meta["cpu_layout"]
            else "not pinned (--layout none)"
        )
        + ("; in-process engines tune the GC as serve does" if meta.get("inprocess_gc_tune") else ""),
        "",
        f"{'load, 64 connections':<50}{'req/s':>9}{'× FastAPI':>10}{'p50 µs':>9}{'p90 µs':>9}{'p99 µs':>9}"
        f"{'blocks ×FastAPI':>18}",
    ]
    lines[-1] = lines[-1].replace("64", str(meta["connections"]), 1)
    load, ratios = summary["load"], summary["ratios"]
    for variant in ORDER:
        if variant not in load:
            continue
        s = load[variant]
        r = ratios.get(variant, {})
        x = r.get("rate_vs_fastapi", 1.0 if variant == FASTAPI else None)
        spread = r.get("blocks")
        lines.append(
            f"{LABELS[variant]:<50}{_num(s['requests_per_s'], 9)}"
            + (f"{x:>9.2f}×" if x is not None else f"{'-':>10}")
            + f"{_num(s['p50_us'], 9)}{_num(s['p90_us'], 9)}{_num(s['p99_us'], 9)}"
            + (f"{spread['min']:>12.2f}..{spread['max']:.2f}" if spread else "")
        )
        if s["errors"]:
            lines.append(f"    errors: {s['errors']}")
    for variant in (REMOTE, INPROCESS):
        c = summary.get("compare", {}).get(variant)
        if c:
            spread = c["blocks"]
            lines.append(
                f"{variant}: this tree / --compare-src: req/s {c['rate']:.2f}× "
                f"(blocks {spread['min']:.2f}..{spread['max']:.2f}), "
                f"server CPU per request {c['server_cpu']:.2f}×"
            )
    lines += [
        "",
        f"{'CPU µs per request (all threads of each process)':<50}{'server':>9}{'worker':>9}{'wrk':>9}",
    ]
    for variant in ORDER:
        if variant in load:
            cpu = load[variant]["cpu_us_per_request"]
            lines.append(
                f"  {variant:<48}" + "".join(_num(cpu.get(p), 9, 1) for p in ("server", "worker", "wrk"))
            )
    if summary["routes"]:
        lines += [
            "",
            f"{'route scaling: in-process engine, 1 connection':<50}{'req/s':>9}{'':>10}{'p50 µs':>9}"
            f"{'p90 µs':>9}{'p99 µs':>9}{'server CPU µs':>15}",
        ]
        for state in ("routes1", "routes1000"):
            s = summary["routes"][state]
            lines.append(
                f"{LABELS[state]:<50}{_num(s['requests_per_s'], 9)}{'':>10}{_num(s['p50_us'], 9)}"
                f"{_num(s['p90_us'], 9)}{_num(s['p99_us'], 9)}"
                f"{_num(s['cpu_us_per_request'].get('server'), 15, 1)}"
            )
        rr = summary["routes_ratio"]
        lines.append(
            f"  {EXTRA_ROUTES + 1} / 1 routes: p50 {rr['p50']:.3f}×  p99 {rr['p99']:.3f}×"
            + (
                f"  (per-block p50 ratio {rr['blocks']['min']:.2f}..{rr['blocks']['max']:.2f})"
                if rr["blocks"]
                else ""
            )
        )
    lines += ["", "targets:"]
    for t in summary["targets"]:
        if t["pass"] is None:
            lines.append(f"  n/a   {t['name']}: not measured")
        else:
            lines.append(f"  {'PASS' if t['pass'] else 'MISS'}  {t['name']}: {t['value']:.2f}×")
    for note in meta["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("aiohttp", "uvloop", "msgspec", "fastapi", "uvicorn", "httptools", "pydantic"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "?"
    return out


def _wrk_version(exe: str) -> str:
    with contextlib.suppress(Exception):
        text = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        return text.split()[1]
    return "?"


def orchestrate(args: argparse.Namespace) -> int:
    install_signal_exit()
    if args.render:  # a saved --json result as the table
        saved = json.loads(Path(args.render).read_text())
        print(render(saved["summary"], saved["meta"]))
        return 0
    exe = shutil.which(args.wrk)
    if exe is None:
        print(f"http bench: {INSTALL_WRK}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        print(f"http bench: {INSTALL_FASTAPI}", file=sys.stderr)
        return 2
    notes: list[str] = []
    if args.pyiii and not http_module_available(args.src):
        notes.append("pyiii rows skipped: this pyiii tree has no HTTP module (pyiii.modules.http) yet")
        args.pyiii = False
    if args.compare_src and (not args.pyiii or not http_module_available(args.compare_src)):
        notes.append(f"--compare-src {args.compare_src}: skipped (no HTTP module there, or no pyiii rows)")
        args.compare_src = None
    plan = Plan(args)
    children = Children()
    load: dict[str, list[Any]] = {}
    routes: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pyiii-bench-http-") as tmp:
        wrk = Wrk(exe, write_wrk_script(Path(tmp) / "echo.lua", plan.body), (plan.cpus or {}).get("client"))
        try:
            servers = start_servers(args, plan, children, Path(tmp), notes)
            load = run_load(args, plan, wrk, servers)
            if INPROCESS in servers and args.route_blocks:
                # A fresh in-process engine of its own: what the load phase left in the other one
                # (garbage, timers) must not weigh on one route state more than the other.
                routes = run_routes(args, plan, wrk, start_routes_server(plan, children, args.src))
        finally:
            children.stop_all()
    summary = summarize(load, routes)
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
        "wrk": _wrk_version(exe),
        "connections": args.connections,
        "seconds": args.seconds,
        "blocks": args.blocks,
        "route_blocks": args.route_blocks,
        "layout": plan.layout,
        "cpu_layout": plan.cpus,
        "payload_bytes": len(plan.body),
        "src": args.src,
        "compare_src": args.compare_src,
        "inprocess_gc_tune": args.inprocess_gc_tune,
        "notes": notes,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.json:
        blocks = {
            "load": {
                v: [{k: x for k, x in b.items() if k != "quantiles_us"} for b in bl] for v, bl in load.items()
            },
            "routes": {
                v: [{k: x for k, x in b.items() if k != "quantiles_us"} for b in bl]
                for v, bl in routes.items()
            },
        }
        print(json.dumps({"meta": meta, "summary": summary, "blocks": blocks}, indent=2))
    else:
        print(render(summary, meta))
    missed = [t for t in summary["targets"] if t["pass"] is False]
    return 1 if missed and args.fail_on_miss else 0


def _progress(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"... {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--connections", type=int, default=64, help="wrk connections of the load blocks (64)")
    p.add_argument("--seconds", type=int, default=2, help="length of one wrk block, whole seconds (2)")
    p.add_argument("--blocks", type=int, default=8, help="interleaved load blocks per variant (8)")
    p.add_argument("--route-blocks", type=int, default=6, help="route-scaling blocks per state (6; 0 = skip)")
    p.add_argument("--warmup-seconds", type=int, default=1, help="untimed wrk run per variant first (1)")
    p.add_argument("--payload-bytes", type=int, default=48, help="text field length; 48 = a 100-byte body")
    p.add_argument(
        "--fastapi-raw", action="store_true", help="also FastAPI with Request.json() -> JSONResponse"
    )
    p.add_argument(
        "--no-inprocess-gc-tune",
        dest="inprocess_gc_tune",
        action="store_false",
        help="in-process engines keep the default GC settings (by default they tune it as `pyiii run` "
        "and `pyiii` serve do: freeze startup objects, gen-0 threshold 20000)",
    )
    p.add_argument("--no-pyiii", dest="pyiii", action="store_false", help="baselines only (harness check)")
    p.add_argument(
        "--src", metavar="DIR", help="run pyiii's engine and workers from DIR/src (another checkout)"
    )
    p.add_argument(
        "--compare-src",
        metavar="DIR",
        help="also run the pyiii variants from another checkout (DIR/src), interleaved (before/after)",
    )
    p.add_argument("--wrk", default="wrk", help="the wrk executable (wrk)")
    p.add_argument("--quick", action="store_true", help="CI smoke: 1 s blocks, 3 load and 2 route blocks")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="split",
        help="CPU pinning: split = servers/engines on one CPU, wrk and the SDK worker on the other "
        "(default); single = all on one CPU; none = the scheduler decides",
    )
    p.add_argument("--render", metavar="FILE", help="print the table of a saved --json result and exit")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--verbose", action="store_true", help="progress on stderr")
    # internal: the process roles
    p.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.blocks, args.route_blocks = 1, min(args.blocks, 3), min(args.route_blocks, 2)
    for name in ("connections", "seconds", "blocks", "warmup_seconds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.route_blocks < 0:
        p.error("--route-blocks must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        pin_cpu_from_env()  # before any thread starts: every thread inherits the affinity
    if args.role == "engine":
        return role_engine(args.config)
    if args.role == "worker":
        return role_worker(args.url)
    if args.role == "inprocess":
        return role_inprocess(args.port)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
