"""The `pyiii` command as a user runs it: real subprocesses against a real engine (config-cli-modules.md §3).

`pyiii trigger` runs as a subprocess against an engine served on the test's loop (the `engine_server`
fixture), with pyiii SDK workers attached in-process. `pyiii` (serve) runs as a subprocess on port 0;
its real port is read from the `Engine listening on address: HOST:PORT` log line. Nothing sleeps to
wait for readiness, and every subprocess is killed in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from helpers import TIME_FACTOR, Connect
from pyiii import III, InitOptions, register_worker
from pyiii._version import __version__
from pyiii.config import WorkerManagerSettings
from pyiii.testing import start_server

#: The environment of every subprocess: the test runner's, without III_* variables.
CLEAN_ENV = {name: value for name, value in os.environ.items() if not name.startswith("III_")}
#: §3.1 rule 3: one line per worker listener (the log format puts a timestamp and level in front).
LISTENING = re.compile(r"\] Engine listening on address: (\S+):(\d+)$")
#: A line in the engine's log format, `[HH:MM:SS.mmm] [LEVEL] message`.
LOG_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\.\d{3}\] \[[A-Z]+\] ")
DEFAULT_PORT = 49134
SHUTDOWN_BUDGET_S = 10.0  # §3.1 shutdown: the whole sequence has 10 s
STARTUP_WAIT_S = 20.0  # interpreter start + imports + binding, on a loaded machine


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether the engine could bind 127.0.0.1:PORT now (it binds with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listing(directory: Path) -> list[str]:
    """Names of the entries of `directory`, sorted."""
    return sorted(entry.name for entry in directory.iterdir())


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyiii.cli", *args]


# --------------------------------------------------------------------------------------------------
# one-shot runs (`pyiii trigger`, --version, config errors)


@dataclass
class Ran:
    code: int
    out: str
    err: str
    elapsed_s: float


async def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 30.0) -> Ran:
    """Run `python -m pyiii.cli ARGS` to completion (killed after `timeout_s`). `env` is added to the
    clean environment. `elapsed_s` runs from just before the process starts to its exit."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc = await asyncio.create_subprocess_exec(
        *cli_command(*args),
        cwd=cwd,
        env={**CLEAN_ENV, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s * TIME_FACTOR)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode(), loop.time() - started)


# --------------------------------------------------------------------------------------------------
# a running `pyiii` (serve)


class Served:
    """A `pyiii` serve process; its stderr is read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.eof = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            async for raw in self.proc.stderr:
                self.lines.append(raw.decode().rstrip("\n"))
                self._changed.set()
        finally:
            self.eof.set()
            self._changed.set()

    async def wait_for(self, pattern: re.Pattern[str], timeout_s: float = STARTUP_WAIT_S) -> re.Match[str]:
        """The first stderr line matching `pattern`, waiting for it (fails on exit or timeout)."""
        matches = await self.wait_for_all(pattern, 1, timeout_s)
        return matches[0]

    async def wait_for_all(
        self, pattern: re.Pattern[str], count: int, timeout_s: float = STARTUP_WAIT_S
    ) -> list[re.Match[str]]:
        """The first `count` stderr lines matching `pattern`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s * TIME_FACTOR
        while True:
            found = [m for m in map(pattern.search, self.lines) if m is not None]
            if len(found) >= count:
                return found[:count]
            left = deadline - loop.time()
            if left <= 0 or self.eof.is_set():
                state = "exited" if self.eof.is_set() else "still running"
                raise AssertionError(f"no {count} lines matching {pattern.pattern!r} ({state}): {self.lines}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def listening(self, count: int = 1) -> list[tuple[str, int]]:
        """(host, port) of the first `count` worker listeners, from their log lines."""
        return [(m[1], int(m[2])) for m in await self.wait_for_all(LISTENING, count)]

    async def exit_code(self, timeout_s: float) -> int:
        """Wait for the process to exit (at most `timeout_s`, unscaled: callers pass spec bounds)."""
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await self._reader
        return code

    async def stop_with(self, sig: signal.Signals) -> tuple[int, float]:
        """Send `sig`; return the exit code and the seconds the process took to exit."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        self.proc.send_signal(sig)
        code = await self.exit_code(SHUTDOWN_BUDGET_S * TIME_FACTOR + 5)
        return code, loop.time() - sent

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


@contextlib.asynccontextmanager
async def serving(*args: str, cwd: Path) -> AsyncIterator[Served]:
    """`python -m pyiii.cli ARGS` in `cwd` with a clean environment; killed on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *cli_command(*args),
        cwd=cwd,
        env=CLEAN_ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(proc)
    try:
        yield served
    finally:
        await served.kill()


def write_config(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def worker_manager(port: int | str = 0, **config: Any) -> str:
    """A `workers:` entry for one worker listener (block style, so `${…}` values stay plain scalars)."""
    lines = ["  - name: iii-worker-manager", "    config:", f"      port: {port}"]
    lines += [f"      {key}: {value}" for key, value in config.items()]
    return "\n".join(lines) + "\n"


def ws(host: str, port: int) -> str:
    return f"ws://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


# ==================================================================================================
# pyiii trigger against a real engine (§3.2, checklist 18-19)


@dataclass
class Workers:
    """In-process pyiii SDK workers on the test's engine, with what their handlers saw."""

    url: str
    port: int
    echo_calls: list[Any]
    main: III
    orders: III


@pytest_asyncio.fixture
async def workers(engine_server: Any) -> AsyncIterator[Workers]:
    """`test::echo`, `test::null`, `test::fail`, `test::slow`, `test::whoami` and `test::where` in the
    default namespace; `test::where` also in the namespace `orders`."""
    echo_calls: list[Any] = []
    release = asyncio.Event()

    async def echo(data: Any) -> Any:
        echo_calls.append(data)
        return {"got": data}

    async def fail(data: Any) -> Any:
        raise ValueError("it broke")

    async def slow(data: Any) -> Any:
        await release.wait()  # outlives every CLI timeout; released at teardown
        return "late"

    main = register_worker(engine_server.engine, InitOptions(worker_name="cli-e2e"))
    orders = register_worker(
        engine_server.engine, InitOptions(worker_name="cli-e2e-orders", namespace="orders")
    )

    async def whoami(data: Any) -> Any:
        listed = await main.trigger_async({"function_id": "engine::workers::list", "payload": {}})
        return sorted(row["name"] for row in listed["workers"] if row["status"] == "connected")

    try:
        main.register_function("test::echo", echo)
        main.register_function("test::null", lambda data: None)
        main.register_function("test::fail", fail)
        main.register_function("test::slow", slow)
        main.register_function("test::whoami", whoami)
        main.register_function("test::where", lambda data: {"ns": "default"})
        orders.register_function("test::where", lambda data: {"ns": "orders"})
        # Each connection's messages are handled in order: once these calls answer, the
        # registrations before them are in place.
        assert await main.trigger_async({"function_id": "test::where", "payload": {}}) == {"ns": "default"}
        assert await orders.trigger_async({"function_id": "test::where", "payload": {}}) == {"ns": "orders"}
        yield Workers(engine_server.url, engine_server.worker_addresses[0][1], echo_calls, main, orders)
    finally:
        release.set()
        await main.shutdown_async()
        await orders.shutdown_async()


def pretty(value: Any) -> str:
    """What `pyiii trigger` prints for a result: indented JSON and a newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


async def test_trigger_pairs_are_sent_and_result_printed(workers: Workers, tmp_path: Path) -> None:
    """Checklist 18-19: `pyiii trigger fn a=10 b=hi` sends {"a":10,"b":"hi"}, prints the result as
    indented JSON on stdout and exits 0."""
    ran = await run_cli("trigger", "test::echo", "a=10", "b=hi", "--url", workers.url, cwd=tmp_path)
    assert (ran.code, ran.err) == (0, ""), ran
    assert ran.out == pretty({"got": {"a": 10, "b": "hi"}})
    assert workers.echo_calls == [{"a": 10, "b": "hi"}]


async def test_trigger_pairs_override_json(workers: Workers, tmp_path: Path) -> None:
    """Checklist 18: `--json '{"a":1}' a=2` sends {"a":2} (here through --port)."""
    ran = await run_cli(
        "trigger", "test::echo", "--json", '{"a":1}', "a=2", "--port", str(workers.port), cwd=tmp_path
    )
    assert ran.code == 0, ran
    assert workers.echo_calls == [{"a": 2}]
    assert ran.out == pretty({"got": {"a": 2}})


async def test_trigger_without_payload_sends_empty_object(workers: Workers, tmp_path: Path) -> None:
    """§3.2 rule 1: no --json and no pairs sends {}."""
    ran = await run_cli("trigger", "test::echo", "--url", workers.url, cwd=tmp_path)
    assert (ran.code, ran.out) == (0, pretty({"got": {}})), ran
    assert workers.echo_calls == [{}]


async def test_trigger_uses_iii_url(workers: Workers, tmp_path: Path) -> None:
    """§3.2 rule 2: without --url/--address/--port the engine at $III_URL is called."""
    ran = await run_cli("trigger", "test::echo", "x=1", cwd=tmp_path, env={"III_URL": workers.url})
    assert (ran.code, ran.out) == (0, pretty({"got": {"x": 1}})), ran


async def test_trigger_null_result_prints_nothing(workers: Workers, tmp_path: Path) -> None:
    """§3.2 rule 4: a null result prints nothing and exits 0."""
    ran = await run_cli("trigger", "test::null", "--url", workers.url, cwd=tmp_path)
    assert (ran.code, ran.out, ran.err) == (0, "", ""), ran


async def test_trigger_function_error(workers: Workers, tmp_path: Path) -> None:
    """Checklist 19: a function error prints `Error: {code, message, stacktrace}` indented on stderr,
    nothing on stdout, and exits 1."""
    ran = await run_cli("trigger", "test::fail", "--url", workers.url, cwd=tmp_path)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.startswith("Error: {\n")
    body = json.loads(ran.err.removeprefix("Error: "))
    assert ran.err == "Error: " + pretty(body)
    assert (body["code"], body["message"]) == ("invocation_failed", "it broke")
    assert "ValueError: it broke" in body["stacktrace"]


async def test_trigger_unknown_function(workers: Workers, tmp_path: Path) -> None:
    """An unknown function is the engine's `function_not_found` error, printed like any error, exit 1."""
    ran = await run_cli("trigger", "test::missing", "--url", workers.url, cwd=tmp_path)
    assert ran.code == 1, ran
    body = json.loads(ran.err.removeprefix("Error: "))
    assert body["code"] == "function_not_found"
    assert body["message"] == "Function test::missing not found in namespace default."


async def test_trigger_timeout(workers: Workers, tmp_path: Path) -> None:
    """§3.2 rule 6: no answer within --timeout-ms prints one line on stderr and exits 1, right after
    the timeout."""
    ran = await run_cli("trigger", "test::slow", "--url", workers.url, "--timeout-ms", "1500", cwd=tmp_path)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err == f"Timed out waiting for the engine at {workers.url} (no response within 1500 ms)\n"
    assert 1.5 <= ran.elapsed_s < 1.5 + 3.0 * TIME_FACTOR  # the margin covers interpreter start-up


async def test_trigger_namespace(workers: Workers, tmp_path: Path) -> None:
    """§3.2 rule 3: `-n orders` reaches the function of the namespace `orders`; without -n the call
    goes to `default`."""
    in_orders = await run_cli("trigger", "test::where", "-n", "orders", "--url", workers.url, cwd=tmp_path)
    in_default = await run_cli("trigger", "test::where", "--url", workers.url, cwd=tmp_path)
    assert (in_orders.code, in_orders.out) == (0, pretty({"ns": "orders"})), in_orders
    assert (in_default.code, in_default.out) == (0, pretty({"ns": "default"})), in_default


async def test_trigger_connects_as_cli_worker(workers: Workers, tmp_path: Path) -> None:
    """§3.2 rule 2: the CLI registers with the engine as worker `pyiii-cli:trigger`."""
    ran = await run_cli("trigger", "test::whoami", "--url", workers.url, cwd=tmp_path)
    assert ran.code == 0, ran
    assert "pyiii-cli:trigger" in json.loads(ran.out)


async def test_trigger_without_engine_fails_fast(tmp_path: Path) -> None:
    """Checklist 19: with no engine on the port, one line on stderr and exit 1, well within --timeout-ms."""
    port = free_port()
    ran = await run_cli("trigger", "test::echo", "--port", str(port), "--timeout-ms", "20000", cwd=tmp_path)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.startswith(f"Could not connect to the engine at ws://127.0.0.1:{port}: ")
    assert ran.err.count("\n") == 1
    assert ran.elapsed_s < 10.0 * TIME_FACTOR


@pytest_asyncio.fixture
async def token_engine() -> AsyncIterator[tuple[str, list[Any]]]:
    """An engine whose worker listener has `auth_token: s3cret`, serving `test::echo`."""
    server = await start_server(
        worker_managers=(WorkerManagerSettings(host="127.0.0.1", port=0, auth_token="s3cret"),)
    )
    calls: list[Any] = []
    worker = register_worker(server.engine, InitOptions(worker_name="cli-e2e-auth"))
    try:
        worker.register_function("test::echo", lambda data: calls.append(data) or {"got": data})
        assert await worker.trigger_async({"function_id": "test::echo", "payload": "ready"})
        calls.clear()
        yield server.url, calls
    finally:
        await worker.shutdown_async()
        await server.stop()


async def test_trigger_sends_iii_token(token_engine: tuple[str, list[Any]], tmp_path: Path) -> None:
    """§3.2 rule 2: with $III_TOKEN the CLI passes the listener's auth_token and the call succeeds."""
    url, calls = token_engine
    ran = await run_cli(
        "trigger", "test::echo", "a=1", "--url", url, cwd=tmp_path, env={"III_TOKEN": "s3cret"}
    )
    assert (ran.code, ran.out) == (0, pretty({"got": {"a": 1}})), ran
    assert calls == [{"a": 1}]


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_trigger_without_valid_token_fails(
    token: str | None, token_engine: tuple[str, list[Any]], tmp_path: Path
) -> None:
    """Without $III_TOKEN (or with a wrong one) the engine refuses the CLI: one stderr line naming the
    engine's AUTH_ERROR (not a timeout), exit 1, and the function never runs."""
    url, calls = token_engine
    env = {} if token is None else {"III_TOKEN": token}
    ran = await run_cli("trigger", "test::echo", "--url", url, "--timeout-ms", "3000", cwd=tmp_path, env=env)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.count("\n") == 1 and url in ran.err, ran.err
    assert "AUTH_ERROR: missing or invalid bearer token" in ran.err, ran.err
    assert ran.elapsed_s < 3.0 + 3.0 * TIME_FACTOR
    assert calls == []


# ==================================================================================================
# pyiii (serve): §3.1, §2.8, checklist 12-17


async def test_version(tmp_path: Path) -> None:
    """Checklist 16: `pyiii --version` prints the bare version on stdout and exits 0."""
    ran = await run_cli("--version", cwd=tmp_path)
    assert (ran.code, ran.out, ran.err) == (0, f"{__version__}\n", "")


async def test_unknown_option_exits_2(tmp_path: Path) -> None:
    """Checklist 16: an unknown option exits 2 with the usage on stderr, and nothing is started."""
    ran = await run_cli("--bogus", cwd=tmp_path)
    assert (ran.code, ran.out) == (2, ""), ran
    assert ran.err.startswith("usage: pyiii") and "--bogus" in ran.err
    assert listing(tmp_path) == []


async def test_serve_listens_and_accepts_workers(tmp_path: Path, connect: Connect) -> None:
    """§3.1: the listener line names the bound address (127.0.0.1 without `host`, checklist 12), a raw
    WebSocket client gets `workerregistered`, and no open-listener warning is logged."""
    write_config(tmp_path, "workers:\n" + worker_manager(0))
    async with serving(cwd=tmp_path) as engine:
        ((host, port),) = await engine.listening()
        assert host == "127.0.0.1" and port != 0
        worker = await connect(f"ws://127.0.0.1:{port}")  # reads `workerregistered` first
        assert worker.worker_id
        assert not [line for line in engine.lines if "[WARN]" in line]
        assert (await engine.stop_with(signal.SIGTERM))[0] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_closes_workers_with_1012_and_exits_0(
    sig: signal.Signals, tmp_path: Path, connect: Connect
) -> None:
    """Checklist 17 / §3.1 shutdown: SIGTERM or SIGINT closes connected workers with code 1012 and
    exits 0 within 10 s."""
    write_config(tmp_path, "workers:\n" + worker_manager(0))
    async with serving(cwd=tmp_path) as engine:
        ((host, port),) = await engine.listening()
        worker = await connect(ws(host, port))
        await worker.register("cli-e2e-raw")
        code, took_s = await engine.stop_with(sig)
        assert await worker.wait_closed() == 1012
        assert code == 0, engine.lines
        assert took_s < SHUTDOWN_BUDGET_S
        assert any(line.endswith("] shutting down") for line in engine.lines)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_right_after_listener_line_exits_0(sig: signal.Signals, tmp_path: Path) -> None:
    """Once the listener line is logged, a signal is a clean shutdown (exit 0), not a kill."""
    write_config(tmp_path, "workers:\n" + worker_manager(0))
    async with serving(cwd=tmp_path) as engine:
        await engine.listening()
        code, took_s = await engine.stop_with(sig)
        assert code == 0, engine.lines
        assert took_s < SHUTDOWN_BUDGET_S


async def test_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    """Checklist 15: a port already in use exits 1 with one error line on stderr (besides log lines)
    and no listener line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(tmp_path, "workers:\n" + worker_manager(port))
        async with serving(cwd=tmp_path) as engine:
            code = await engine.exit_code(STARTUP_WAIT_S * TIME_FACTOR)
    assert code == 1, engine.lines
    errors = [line for line in engine.lines if not LOG_LINE.match(line)]
    assert len(errors) == 1, engine.lines
    assert errors[0].startswith("pyiii: failed to start: ") and "address already in use" in errors[0]
    assert not [line for line in engine.lines if LISTENING.search(line)]


async def test_open_host_without_auth_warns(tmp_path: Path, connect: Connect) -> None:
    """Checklist 12: an iii-worker-manager on `host: 0.0.0.0` without auth logs the open-listener
    warning, and still serves."""
    write_config(tmp_path, "workers:\n" + worker_manager(0, host="0.0.0.0"))
    async with serving(cwd=tmp_path) as engine:
        ((host, port),) = await engine.listening()
        assert host == "0.0.0.0"
        warning = re.compile(
            r"\] \[WARN\] workers\[0\]: iii-worker-manager on 0\.0\.0\.0:0 is reachable from other hosts "
            r"and has no auth: set auth_token or rbac\.auth_function_id$"
        )
        await engine.wait_for(warning)
        await connect(ws(host, port))
        assert (await engine.stop_with(signal.SIGTERM))[0] == 0


async def test_two_worker_managers_share_functions(tmp_path: Path, connect: Connect) -> None:
    """Checklist 14: two iii-worker-manager entries listen on different ports, both accept workers, and
    a function registered through one is callable through the other (both ways)."""
    write_config(tmp_path, "workers:\n" + worker_manager(0) + worker_manager(0))
    async with serving(cwd=tmp_path) as engine:
        (first, second) = await engine.listening(2)
        assert first[1] != second[1]
        a = await connect(ws(*first))
        b = await connect(ws(*second))
        await a.register("on-first")
        await b.register("on-second")
        await a.serve("first::echo")
        await b.serve("second::echo")
        assert await b.result("first::echo", {"x": 1}) == {"x": 1}
        assert await a.result("second::echo", {"y": 2}) == {"y": 2}
        assert (await engine.stop_with(signal.SIGTERM))[0] == 0


async def test_worker_manager_entry_replaces_default_listener(tmp_path: Path) -> None:
    """Checklist 13: with an iii-worker-manager entry, that is the only worker listener (none on 49134)."""
    write_config(tmp_path, "workers:\n" + worker_manager(0))
    async with serving(cwd=tmp_path) as engine:
        ((_, port),) = await engine.listening()
        code, _ = await engine.stop_with(signal.SIGTERM)
    assert code == 0
    assert port != DEFAULT_PORT
    assert len([line for line in engine.lines if LISTENING.search(line)]) == 1


CONFIG_ERRORS = {
    "unset variable": (
        "workers:\n" + worker_manager(0) + worker_manager("${PYIII_E2E_UNSET_PORT}"),
        "workers[1].config.port: environment variable PYIII_E2E_UNSET_PORT is not set and has no default",
    ),
    "unknown module": (
        "workers:\n" + worker_manager(0) + "  - name: iii-htpp\n",
        "workers[1].name: unknown module 'iii-htpp'",
    ),
    "yaml syntax": ("workers:\n" + worker_manager(0) + "  - name: [oops\n", "line "),
    "unknown top-level key": ("workers:\n" + worker_manager(0) + "wrokers: []\n", "wrokers"),
}


@pytest.mark.parametrize("case", CONFIG_ERRORS, ids=list(CONFIG_ERRORS))
async def test_config_error_one_line_exit_1(case: str, tmp_path: Path) -> None:
    """§2.8, checklist 10: a config error prints one `pyiii: config error: <file>: …` line and exits 1,
    before any listener is bound (no listener line); the file is left byte-identical."""
    text, message = CONFIG_ERRORS[case]
    path = write_config(tmp_path, "# ${PYIII_E2E_IN_COMMENT} is never expanded\n" + text)
    before = path.read_bytes()
    ran = await run_cli("-c", "config.yaml", cwd=tmp_path)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.count("\n") == 1, ran.err
    assert ran.err.startswith("pyiii: config error: config.yaml: "), ran.err
    assert message in ran.err
    assert "listening" not in ran.err
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["config.yaml"]


async def test_missing_config_file_exits_1(tmp_path: Path) -> None:
    """§2.1 rule 1: `-c` naming a missing file is one config error line, exit 1, and nothing is created."""
    ran = await run_cli("-c", "missing.yaml", cwd=tmp_path)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.startswith("pyiii: config error: missing.yaml: cannot read the file"), ran.err
    assert ran.err.count("\n") == 1
    assert listing(tmp_path) == []


async def test_config_file_unchanged_after_a_run(tmp_path: Path, connect: Connect) -> None:
    """Checklist 10 / §2.1 rule 4: after a full run (./config.yaml found without -c, `${VAR:default}`
    and comments in it) the file is byte-identical and nothing else is written next to it."""
    text = (
        "# port: ${PYIII_E2E_IN_COMMENT}\n"
        "invocation_timeout_ms: ${PYIII_E2E_TIMEOUT:300000}\n"
        "workers:\n" + worker_manager("${PYIII_E2E_PORT:0}") + "  - name: iii-http-functions\n"
    )
    path = write_config(tmp_path, text)
    before = path.read_bytes()
    async with serving(cwd=tmp_path) as engine:
        ((host, port),) = await engine.listening()
        await engine.wait_for(re.compile(r"module 'iii-http-functions' is not provided by pyiii; skipped$"))
        await connect(ws(host, port))
        assert (await engine.stop_with(signal.SIGTERM))[0] == 0
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["config.yaml"]


async def _serve_on_default_port(tmp_path: Path, *args: str) -> Served:
    """Serve in `tmp_path` expecting the listener on 127.0.0.1:49134; skip when another process has it."""
    if not port_is_free(DEFAULT_PORT):
        pytest.skip(f"127.0.0.1:{DEFAULT_PORT} is in use by another process (scripts/reserve-default-port)")
    async with serving(*args, cwd=tmp_path) as engine:
        try:
            listening = await engine.listening()
        except AssertionError:
            taken = [line for line in engine.lines if "address already in use" in line]
            if taken:  # the default set also binds 3111 and 3112: name the one that was taken
                pytest.skip(
                    f"a default port was taken by another process: {taken[0]} (scripts/reserve-default-port)"
                )
            raise
        assert listening == [("127.0.0.1", DEFAULT_PORT)]
        assert (await engine.stop_with(signal.SIGTERM))[0] == 0, engine.lines
    return engine


async def test_no_config_in_memory_serves_default_port_writes_nothing(tmp_path: Path) -> None:
    """Checklist 1-2 (worker listener part): no config file and --in-memory in an empty directory
    listens on 127.0.0.1:49134, creates no config.yaml and writes nothing under ./data."""
    engine = await _serve_on_default_port(tmp_path, "--in-memory")
    assert any(LISTENING.search(line) for line in engine.lines)
    assert listing(tmp_path) == []


async def test_config_without_worker_manager_gets_default_listener(tmp_path: Path) -> None:
    """Checklist 13: a config listing only iii-http still gets a worker listener on 127.0.0.1:49134."""
    path = write_config(tmp_path, "workers:\n  - name: iii-http\n")
    before = path.read_bytes()
    await _serve_on_default_port(tmp_path, "-c", str(path))
    assert path.read_bytes() == before
