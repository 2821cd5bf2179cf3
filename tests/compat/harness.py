"""Drive the official iii SDKs against pyiii from pytest.

Every SDK runs as a separate process: ``workers/py_worker.py`` under one of the ``.compat/py-*`` venvs,
or ``workers/node_worker.mjs`` with one of the ``node/v*`` package directories. A JSON plan says
what the worker registers and does; the worker reports what happens as JSON event lines, and takes
JSON commands on stdin (see README.md). :class:`SdkWorker` wraps one such process;
:class:`EngineProcess` runs a pyiii engine as a subprocess for the tests that must restart it, read
its console, or tune its hidden test settings.

Waiting is always for an event, with a timeout scaled by ``$PYIII_TEST_TIME_FACTOR``; a timeout fails
with the events and stderr seen so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

COMPAT_DIR = Path(__file__).resolve().parent
ROOT = COMPAT_DIR.parents[1]
VENVS_DIR = ROOT / ".compat"
WORKERS_DIR = COMPAT_DIR / "workers"
NODE_DIR = COMPAT_DIR / "node"

#: Multiplies every timeout: set it above 1 on slow machines.
TIME_FACTOR = float(os.environ.get("PYIII_TEST_TIME_FACTOR", "1"))
#: Default wait for one event.
EVENT_TIMEOUT_S = 20.0
#: Hidden engine setting (server/worker_socket.py): the interval of engine pings, in ms. A worker
#: is dropped after 2 missed pongs (protocol.md §2.4 rule 6).
PING_INTERVAL_ENV = "PYIII_PING_INTERVAL_MS"
#: Largest event line a worker may print (20 MiB payloads are echoed in some tests).
MAX_LINE_BYTES = 256 * 1024 * 1024

# Inherited variables that would change what an SDK does; the harness sets what it needs.
_SCRUBBED_ENV = ("III_URL", "III_TOKEN", "III_NAMESPACE", "III_WORKER_NAME", "III_ISOLATION", "COMPAT_PLAN")


@dataclass(frozen=True)
class Sdk:
    """One official SDK the compat tests drive, and what it can do (tests/compat/SDK_NOTES.md)."""

    id: str
    language: str  # "python" or "node"
    version: str

    @property
    def legacy(self) -> bool:
        """The 0.11 generation: no reattach, no per-call metadata, no namespaces (protocol.md §6.5)."""
        return self.version.startswith("0.11.")

    @property
    def sends_metadata(self) -> bool:
        """Calls carry `metadata` and handlers receive it."""
        return not self.legacy

    @property
    def has_namespaces(self) -> bool:
        """Worker and call namespaces (only Python 0.25; neither Node generation has them)."""
        return self.id == "py-0.25"

    @property
    def handles_unregister_trigger(self) -> bool:
        """A provider gets an `unregister_trigger` callback (0.11 providers ignore the message)."""
        return not self.legacy

    @property
    def install_dir(self) -> Path:
        return VENVS_DIR / self.id if self.language == "python" else NODE_DIR / f"v{self.version}"

    def missing(self) -> str | None:
        """Why this SDK cannot run here, or None."""
        if self.language == "python":
            if not (self.install_dir / "bin" / "python").exists():
                return f"{self.id} is not installed ({self.install_dir} missing): run scripts/setup-compat"
            return None
        if shutil.which("node") is None:
            return f"{self.id} needs `node` on PATH"
        if not (self.install_dir / "node_modules" / "iii-sdk").is_dir():
            return (
                f"{self.id} is not installed (no {self.install_dir}/node_modules): run scripts/setup-compat"
            )
        return None

    def command(self, plan_json: str) -> list[str]:
        if self.language == "python":
            return [str(self.install_dir / "bin" / "python"), str(WORKERS_DIR / "py_worker.py"), plan_json]
        return ["node", str(WORKERS_DIR / "node_worker.mjs"), plan_json]


SDKS: dict[str, Sdk] = {
    sdk.id: sdk
    for sdk in (
        Sdk("py-0.25", "python", "0.25.0"),
        Sdk("py-0.11.6", "python", "0.11.6"),
        Sdk("node-0.22.1", "node", "0.22.1"),
        Sdk("node-0.11.6", "node", "0.11.6"),
    )
}
ALL_SDKS: list[str] = list(SDKS)
PYTHON_SDKS: list[str] = [s for s in ALL_SDKS if SDKS[s].language == "python"]
NODE_SDKS: list[str] = [s for s in ALL_SDKS if SDKS[s].language == "node"]
LEGACY_SDKS: list[str] = [s for s in ALL_SDKS if SDKS[s].legacy]
CURRENT_SDKS: list[str] = [s for s in ALL_SDKS if not SDKS[s].legacy]


def sdk_pairs(callers: Iterable[str] = ALL_SDKS, targets: Iterable[str] = ALL_SDKS) -> list[Any]:
    """(caller, target) parameters with readable ids, e.g. ``py-0.25->node-0.11.6``."""
    return [pytest.param(c, t, id=f"{c}->{t}") for c, t in itertools.product(callers, targets)]


# Function specs for plans (the `kind` values both worker programs implement).


def echo(fid: str, **extra: Any) -> dict[str, Any]:
    """Returns ``{"got": data, "meta": metadata, "worker", "sdk", "pid", "function_id"}``."""
    return {"id": fid, "kind": "echo", **extra}


def failing(fid: str, message: str) -> dict[str, Any]:
    """Raises (Python) or throws (Node) an error with `message`."""
    return {"id": fid, "kind": "fail", "message": message}


def sleeping(fid: str, ms: int) -> dict[str, Any]:
    """Sleeps `ms` then echoes."""
    return {"id": fid, "kind": "sleep", "ms": ms}


def big(fid: str, n_bytes: int) -> dict[str, Any]:
    """Returns a string of `n_bytes` ASCII characters."""
    return {"id": fid, "kind": "big", "bytes": n_bytes}


def relay(fid: str, target: str) -> dict[str, Any]:
    """Calls `target` with its own payload and returns ``{"relayed": result, "worker", "sdk"}``."""
    return {"id": fid, "kind": "relay", "target": target}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _matcher(match: dict[str, Any] | Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    if callable(match):
        return match
    return lambda event: all(event.get(k) == v for k, v in match.items())


def _short(value: Any, limit: int = 400) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


class _Lines:
    """Lines read from a process stream, with waiting on new ones."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.closed = False
        self.cond = asyncio.Condition()

    async def add(self, item: Any) -> None:
        async with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    async def close(self) -> None:
        async with self.cond:
            self.closed = True
            self.cond.notify_all()

    async def wait(
        self, pred: Callable[[Any], bool], since: int, timeout_s: float, describe: Callable[[], str]
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s * TIME_FACTOR
        i = since
        async with self.cond:
            while True:
                while i < len(self.items):
                    item = self.items[i]
                    i += 1
                    if pred(item):
                        return item
                remaining = deadline - loop.time()
                if self.closed or remaining <= 0:
                    why = (
                        "the stream ended"
                        if self.closed
                        else f"no match within {timeout_s * TIME_FACTOR:g} s"
                    )
                    raise AssertionError(f"{why}\n{describe()}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.cond.wait(), remaining)


async def _pump(stream: asyncio.StreamReader, sink: Callable[[bytes], Any]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        await sink(line)


class SdkWorker:
    """One official-SDK worker process, driven by a plan and by stdin commands."""

    _ids = itertools.count(1)

    def __init__(self, sdk: str, plan: dict[str, Any], *, env: dict[str, str] | None = None) -> None:
        if sdk not in SDKS:
            raise ValueError(f"unknown SDK {sdk!r}; one of {ALL_SDKS}")
        self.sdk = SDKS[sdk]
        self.plan = plan
        self.name: str = plan.get("worker_name", "")
        self.extra_env = env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self._events = _Lines()
        self._stderr = _Lines()
        self._noise: list[str] = []  # non-JSON stdout lines (there should be none)
        self._tasks: list[asyncio.Task[None]] = []

    # Lifecycle

    async def start(self, *, wait_ready: bool = True, timeout_s: float = 40.0) -> SdkWorker:
        """Spawns the process; with `wait_ready`, waits for its `ready` event (registrations visible)."""
        reason = self.sdk.missing()
        if reason:
            pytest.skip(reason)
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        # The 0.11 Python SDK sends its /otel frames to $III_URL, not to the address it was given.
        env.update({"III_URL": str(self.plan.get("url", "")), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
        if self.sdk.language == "node":
            env["III_COMPAT_NODE_DIR"] = str(self.sdk.install_dir)
        env.update(self.extra_env)
        self.proc = await asyncio.create_subprocess_exec(
            *self.sdk.command(json.dumps(self.plan)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(self.sdk.install_dir),
            env=env,
            limit=MAX_LINE_BYTES,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._tasks = [
            asyncio.create_task(self._read_events(self.proc.stdout)),
            asyncio.create_task(self._read_stderr(self.proc.stderr)),
        ]
        await self.wait_event({"event": "started"}, timeout_s=timeout_s)
        if wait_ready:
            await self.wait_ready(timeout_s=timeout_s)
        return self

    async def wait_ready(self, timeout_s: float = 40.0, since: int = 0) -> dict[str, Any]:
        """The `ready` event: connected, registered and listed by the engine with its functions."""
        event = await self.wait_event(
            lambda e: e["event"] in ("ready", "fatal"), timeout_s=timeout_s, since=since
        )
        if event["event"] == "fatal":
            raise AssertionError(f"{self} failed before ready: {event}\n{self.describe()}")
        return event

    def kill(self) -> None:
        """SIGKILL: the socket is torn down by the kernel, without a WebSocket close frame."""
        if self.proc and self.proc.returncode is None:
            self.proc.kill()

    def freeze(self) -> None:
        """SIGSTOP: the socket stays open but nothing answers, not even pings (a half-open peer)."""
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGSTOP)

    async def stop(self, timeout_s: float = 10.0) -> int | None:
        """Graceful stop (stdin EOF: the SDK shuts down and sends a close frame), then SIGTERM, SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            if self.proc.stdin and not self.proc.stdin.is_closing():
                self.proc.stdin.close()
            for escalate in (self.proc.terminate, self.proc.kill):
                try:
                    await asyncio.wait_for(self.proc.wait(), timeout_s * TIME_FACTOR)
                    break
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        escalate()
            await self.proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        return self.proc.returncode

    async def wait_exit(self, timeout_s: float = 10.0) -> int:
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), timeout_s * TIME_FACTOR)
        return self.proc.returncode  # type: ignore[return-value]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # Events

    @property
    def events(self) -> list[dict[str, Any]]:
        return self._events.items

    def mark(self) -> int:
        """A position in the event list: pass it as `since` to wait only for later events."""
        return len(self._events.items)

    def find(
        self, match: dict[str, Any] | Callable[[dict[str, Any]], bool], since: int = 0
    ) -> list[dict[str, Any]]:
        pred = _matcher(match)
        return [e for e in self._events.items[since:] if pred(e)]

    async def wait_event(
        self,
        match: dict[str, Any] | Callable[[dict[str, Any]], bool],
        timeout_s: float = EVENT_TIMEOUT_S,
        *,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first event from position `since` that matches (a dict of expected fields, or a predicate).

        Fails the test after `timeout_s` (times $PYIII_TEST_TIME_FACTOR) with the events and stderr seen.
        """
        what = match if isinstance(match, dict) else getattr(match, "__name__", "predicate")
        return await self._events.wait(
            _matcher(match), since, timeout_s, lambda: f"{self} waited for {what}\n{self.describe()}"
        )

    def after(self, event: dict[str, Any]) -> int:
        """The position just after `event` (one returned by `wait_event`), for a later `since`."""
        for i, seen in enumerate(self._events.items):
            if seen is event:
                return i + 1
        raise ValueError(f"{event} is not an event of {self}")

    async def wait_state(
        self, state: str, *, since: int = 0, timeout_s: float = EVENT_TIMEOUT_S
    ) -> dict[str, Any]:
        return await self.wait_event(
            {"event": "connection_state", "state": state}, since=since, timeout_s=timeout_s
        )

    # Commands

    def send(self, cmd: str, **fields: Any) -> str:
        """Writes one command line; returns its id (replies and call results carry it)."""
        assert self.proc is not None and self.proc.stdin is not None
        cid = f"c{next(self._ids)}"
        self.proc.stdin.write((json.dumps({"cmd": cmd, "id": cid, **fields}) + "\n").encode())
        return cid

    async def command(
        self, cmd: str, *, check: bool = True, timeout_s: float = EVENT_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """Runs a command and returns its `reply` event; with `check`, a failed reply fails the test."""
        cid = self.send(cmd, **fields)
        reply = await self.wait_event({"event": "reply", "id": cid}, timeout_s=timeout_s)
        if check and not reply["ok"]:
            raise AssertionError(f"{self}: command {cmd} failed: {_short(reply, 2000)}")
        return reply

    async def call(
        self,
        function_id: str,
        payload: Any = ...,
        *,
        timeout_s: float | None = None,
        **opts: Any,
    ) -> dict[str, Any]:
        """One `trigger` through the SDK; returns the `call_result` event.

        `payload` omitted sends no payload at all (the SDKs then leave `data` out). Options:
        `action` ("void" | "enqueue"), `queue`, `timeout_ms`, `namespace`, `metadata`,
        `payload_blob_bytes` (payload ``{"blob": "x" * n}`` built by the worker), `quiet` (report
        `result_len` instead of the result).
        """
        fields: dict[str, Any] = {"function_id": function_id, **opts}
        if payload is not ...:
            fields["payload"] = payload
        if timeout_s is None:
            timeout_s = opts.get("timeout_ms", 30000) / 1000 + EVENT_TIMEOUT_S
        cid = self.send("call", **fields)
        return await self.wait_event({"event": "call_result", "id": cid}, timeout_s=timeout_s)

    async def call_ok(self, function_id: str, payload: Any = ..., **opts: Any) -> Any:
        """A call that must succeed; returns its result."""
        result = await self.call(function_id, payload, **opts)
        assert result["ok"], f"{self}: call to {function_id} failed: {_short(result, 2000)}"
        return result.get("result")

    async def sync(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        """Waits until the engine lists this worker's current connection with all its functions."""
        return await self.command("sync", timeout_s=timeout_s, timeout_ms=int(timeout_s * TIME_FACTOR * 1000))

    # Diagnostics

    def stderr_text(self) -> str:
        return "".join(self._stderr.items)

    def describe(self, n_events: int = 40) -> str:
        events = "\n".join(f"  {_short(e)}" for e in self._events.items[-n_events:])
        stderr = self.stderr_text()[-4000:]
        noise = f"\nnon-JSON stdout: {self._noise[-5:]}" if self._noise else ""
        code = self.proc.returncode if self.proc else None
        return f"{self} (exit code {code}) last events:\n{events}{noise}\nstderr tail:\n{stderr}"

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<SdkWorker {self.sdk.id} {self.name or '?'} pid={pid}>"

    async def _read_events(self, stream: asyncio.StreamReader) -> None:
        async def sink(raw: bytes) -> None:
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                return
            try:
                event = json.loads(text)
            except ValueError:
                self._noise.append(text)
                return
            await self._events.add(event)

        try:
            await _pump(stream, sink)
        finally:
            await self._events.close()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        async def sink(raw: bytes) -> None:
            await self._stderr.add(raw.decode("utf-8", "replace"))

        try:
            await _pump(stream, sink)
        finally:
            await self._stderr.close()


class WorkerPool:
    """Spawns workers for one test and stops them all at its end (the `sdk_worker` fixture)."""

    def __init__(self) -> None:
        self.workers: list[SdkWorker] = []
        self._names = itertools.count(1)

    async def __call__(
        self,
        sdk: str,
        url: str,
        *,
        name: str | None = None,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        **plan: Any,
    ) -> SdkWorker:
        """Starts a worker of `sdk` on `url`. Keyword arguments are plan fields: `functions`,
        `trigger_types`, `triggers`, `calls`, `logs`, `services`, `namespace`, `headers`,
        `reconnect`, `connect` ("now" | "on_command"), `ready` ("registered" | "connected"),
        `exit_after_calls`, `invocation_timeout_ms`."""
        full_plan = {"url": url, "worker_name": name or f"{sdk}-w{next(self._names)}", **plan}
        worker = SdkWorker(sdk, full_plan, env=env)
        self.workers.append(worker)
        return await worker.start(wait_ready=wait_ready and plan.get("connect", "now") == "now")

    async def close(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)


class EngineProcess:
    """A pyiii engine in a subprocess (``python -m pyiii.cli -c <config>``) on a fixed port.

    For the tests that restart the engine, read its console (stderr), or set its hidden test settings.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        ping_interval_ms: int | None = None,
        modules: Iterable[dict[str, Any]] = (),
        worker_manager: dict[str, Any] | None = None,
        top_level: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.config_path = workdir / "pyiii-compat.yaml"
        config: dict[str, Any] = {
            "workers": [
                {"name": "iii-worker-manager", "config": {"port": self.port, **(worker_manager or {})}},
                *modules,
            ],
            **(top_level or {}),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        if ping_interval_ms is not None:
            self.env[PING_INTERVAL_ENV] = str(ping_interval_ms)
        self.env.update(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr = _Lines()
        self._tasks: list[asyncio.Task[None]] = []
        self.starts = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> EngineProcess:
        """Starts the engine and waits until its worker port accepts connections (bound last, §2.1)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pyiii.cli",
            "-c",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(self.workdir),
            env=self.env,
            limit=MAX_LINE_BYTES,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.starts += 1
        self._tasks = [
            asyncio.create_task(self._read_stderr(self.proc.stderr)),
            asyncio.create_task(self._drain(self.proc.stdout)),
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s * TIME_FACTOR
        while not await self._port_open():
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"engine exited with {self.proc.returncode} during startup\n{self.describe()}"
                )
            if loop.time() > deadline:
                raise AssertionError(
                    f"engine not listening on {self.port} after {timeout_s} s\n{self.describe()}"
                )
            await asyncio.sleep(0.02)  # polling the port: an open port is the readiness signal (§2.1)
        return self

    async def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait: the engine closes every worker socket with 1012 (config-cli-modules.md §3.1)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s * TIME_FACTOR)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise AssertionError(f"engine ignored SIGTERM for {timeout_s} s\n{self.describe()}") from None
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        return self.proc.returncode

    async def restart(self) -> None:
        """Stops the engine and starts a new process on the same port."""
        await self.stop()
        await self.start()

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()

    def mark(self) -> int:
        """A position in the stderr lines: pass it as `since` to wait only for later lines."""
        return len(self._stderr.items)

    @property
    def stderr_lines(self) -> list[str]:
        return self._stderr.items

    async def wait_stderr(
        self, match: str | Callable[[str], bool], *, since: int = 0, timeout_s: float = EVENT_TIMEOUT_S
    ) -> str:
        """The first stderr line from `since` containing `match` (or satisfying it, if callable)."""
        pred = match if callable(match) else (lambda line: match in line)
        return await self._stderr.wait(
            pred, since, timeout_s, lambda: f"engine stderr never showed {match!r}\n{self.describe()}"
        )

    def describe(self) -> str:
        return "engine stderr tail:\n" + "".join(self._stderr.items[-60:])

    async def _port_open(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        async def sink(raw: bytes) -> None:
            await self._stderr.add(raw.decode("utf-8", "replace"))

        await _pump(stream, sink)

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        async def sink(raw: bytes) -> None:
            await self._stderr.add(raw.decode("utf-8", "replace"))

        await _pump(stream, sink)


class RawClient:
    """A hand-driven WebSocket peer, for what no SDK sends: malformed frames, forged reattaches,
    stale connections that never answer pings, oversized messages.

    Every received frame is kept: text frames parsed as JSON when possible (``{"_text": ...}``
    otherwise), and one final ``{"_closed": code}`` entry when the socket closes.
    """

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self._frames = _Lines()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        path: str = "/",
        *,
        autoping: bool = True,
        headers: dict[str, str] | None = None,
        compress: int = 0,
    ) -> RawClient:
        """Opens `url` + `path`. With ``autoping=False`` the client never answers pings (a half-open peer);
        ``compress=15`` offers permessage-deflate."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                url.rstrip("/") + path, autoping=autoping, headers=headers, max_msg_size=0, compress=compress
            )
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        elif isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_str(json.dumps(message))

    @property
    def frames(self) -> list[dict[str, Any]]:
        return self._frames.items

    def mark(self) -> int:
        return len(self._frames.items)

    async def wait_frame(
        self,
        match: dict[str, Any] | Callable[[dict[str, Any]], bool],
        *,
        since: int = 0,
        timeout_s: float = EVENT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """The first received frame from `since` that matches (a dict of expected fields, or a predicate)."""
        return await self._frames.wait(
            _matcher(match),
            since,
            timeout_s,
            lambda: f"raw client waited for {match}; got {self.frames[-20:]}",
        )

    async def wait_closed(self, timeout_s: float = EVENT_TIMEOUT_S) -> int | None:
        """Waits for the engine to close the socket; returns the close code."""
        frame = await self.wait_frame(lambda f: "_closed" in f, timeout_s=timeout_s)
        return frame["_closed"]

    async def hello(self) -> dict[str, Any]:
        """The engine's `workerregistered` frame (sent first on every connection)."""
        return await self.wait_frame({"type": "workerregistered"})

    async def register_worker(self, name: str, **fields: Any) -> None:
        """Sends ``engine::workers::register`` (Void) with `name` and the given payload fields."""
        await self.send(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": {"runtime": "raw", "version": "0", "name": name, "pid": os.getpid(), **fields},
                "action": {"type": "void"},
            }
        )

    async def invoke(self, function_id: str, data: Any = None, **fields: Any) -> dict[str, Any]:
        """A request/response call; returns the `invocationresult` frame."""
        invocation_id = fields.pop("invocation_id", None) or f"raw-{next(_raw_ids)}"
        since = self.mark()
        await self.send(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": function_id,
                "data": data,
                **fields,
            }
        )
        return await self.wait_frame(
            {"type": "invocationresult", "invocation_id": invocation_id}, since=since
        )

    async def wait_listed(self, *function_ids: str, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        """Polls `engine::functions::list` until every id is listed: registrations are not acknowledged,
        and the engine may apply them only once its (asynchronously dispatched) register call ran."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s * TIME_FACTOR
        while True:
            reply = await self.invoke("engine::functions::list", {"include_internal": True})
            listed = {f["function_id"] for f in (reply.get("result") or {}).get("functions", [])}
            if set(function_ids) <= listed:
                return
            if loop.time() > deadline:
                raise AssertionError(f"{function_ids} never listed; last reply {reply}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self.session.close()

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        frame = json.loads(msg.data)
                    except ValueError:
                        frame = {"_text": msg.data}
                    await self._frames.add(frame if isinstance(frame, dict) else {"_json": frame})
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await self._frames.add({"_binary": len(msg.data)})
                elif msg.type == aiohttp.WSMsgType.PONG:  # delivered only with autoping=False
                    await self._frames.add({"_pong": msg.data.decode("utf-8", "replace")})
                elif msg.type == aiohttp.WSMsgType.PING:
                    await self._frames.add({"_ping": msg.data.decode("utf-8", "replace")})
        finally:
            await self._frames.add({"_closed": self.ws.close_code})


_raw_ids = itertools.count(1)


# Engine queries through an SDK worker.


async def list_workers(via: SdkWorker) -> list[dict[str, Any]]:
    """`engine::workers::list` called through `via`."""
    return (await via.call_ok("engine::workers::list", {}))["workers"]


async def wait_worker_gone(via: SdkWorker, worker_id: str, *, timeout_s: float = 60.0) -> float:
    """Polls `engine::workers::list` until `worker_id` is gone; returns the seconds it took.

    The engine publishes disconnects only through this list (or an `engine::workers-available`
    binding), so this polls every 50 ms.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        listed = [w["id"] for w in await list_workers(via)]
        if worker_id not in listed:
            return loop.time() - started
        if loop.time() - started > timeout_s * TIME_FACTOR:
            raise AssertionError(f"worker {worker_id} still listed after {timeout_s} s: {listed}")
        await asyncio.sleep(0.05)
