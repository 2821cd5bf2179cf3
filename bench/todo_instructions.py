"""Instructions per embedded todo write, counted by callgrind: a deterministic A/B of two sources.

    .venv/bin/python bench/todo_instructions.py                  # HEAD~1 (baseline) vs the working tree
    .venv/bin/python bench/todo_instructions.py --base v0 --requests 400 --repeat 2

On these shared VMs, wall-clock ratios drift between runs by more than a 1-2 % code change is worth,
so this counts instructions instead. `pyiii run examples/todo/app.py` (the todo app of
bench/todo_e2e.py: embedded worker, durable SQLite store, console log on) runs under
`valgrind --tool=callgrind` with the count switched off. After a warm-up, the count is switched on
(`callgrind_control -i on`), N `POST /todos` are sent one after another on one connection, and the count is
switched off and dumped. One connection means every write is its own commit, so the count does not
depend on how writes happened to batch. Every thread is counted (the SQLite writer too).

The baseline is the `src/` of a git revision (`git archive`), the candidate the working tree's
`src/`; both run with this checkout's virtualenv. It prints instructions per request (Ir) of each and
their ratio. Runs of the same source agree within about 0.2 %; instructions are not time (a syscall
or a cache miss counts as little), so confirm a real change with bench/todo_e2e.py as well.
Needs valgrind (`apt-get install valgrind`); about a minute per run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TODO_APP = ROOT / "examples" / "todo" / "app.py"
BODY = json.dumps({"title": "buy milk"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(directory: Path, ports: list[int]) -> Path:
    """The default module set on free ports, durable stores under ``directory`` (as todo_e2e.py)."""
    kv = "{name: kv, config: {store_method: file_based, file_path: %s}}"
    path = directory / "config.yaml"
    path.write_text(
        "workers:\n"
        f"  - {{name: iii-worker-manager, config: {{port: {ports[0]}}}}}\n"
        f"  - {{name: iii-http, config: {{port: {ports[1]}}}}}\n"
        f"  - {{name: iii-stream, config: {{port: {ports[2]}, adapter: {kv % (directory / 'stream')}}}}}\n"
        f"  - {{name: iii-state, config: {{adapter: {kv % (directory / 'state.db')}}}}}\n"
        "  - {name: iii-observability, config: {level: warn, logs_console_output: true}}\n"
    )
    return path


def post_todos(port: int, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(count):
            conn.request("POST", "/todos", BODY, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"POST /todos answered {response.status}")
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the engine exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/todos/metrics")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the engine did not answer within {timeout_s:.0f} s")


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def instructions_per_request(src: Path, requests: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory(prefix="pyiii-callgrind-") as tmp:
        work = Path(tmp)
        ports = [free_port() for _ in range(3)]
        out = work / "callgrind.out"
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "pyiii.cli",
            "run",
            str(TODO_APP),
            "-c",
            str(config(work, ports)),
        ]
        env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin:/usr/local/bin"}
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(ports[1], proc)
            post_todos(ports[1], warmup)
            pid = str(proc.pid)
            control("-i", "on", pid)
            post_todos(ports[1], requests)
            control("-i", "off", pid)
            control("-d", pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        total = 0
        for dump in work.glob("callgrind.out*"):
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    total += int(line.split()[1])
        if total == 0:
            raise RuntimeError("callgrind counted nothing (was the dump written?)")
        return total / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision of the baseline (default HEAD~1)")
    parser.add_argument("--requests", type=int, default=300, help="counted POST /todos per run")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="runs per source (alternating)")
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "git"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install valgrind)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="pyiii-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {"base": Path(tmp) / "src", "candidate": ROOT / "src"}
        counts: dict[str, list[float]] = {name: [] for name in sources}
        for _ in range(args.repeat):
            for name, src in sources.items():
                counts[name].append(instructions_per_request(src, args.requests, args.warmup))
                print(f"  {name:<10} {counts[name][-1]:>12,.0f} Ir/request", flush=True)
    base = min(counts["base"])
    candidate = min(counts["candidate"])
    print(
        f"base {args.base}: {base:,.0f} Ir/request; working tree: {candidate:,.0f} Ir/request; "
        f"candidate/base {candidate / base:.4f} ({(candidate / base - 1) * 100:+.2f} %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
