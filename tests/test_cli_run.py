"""`pyiii run APP.py`: argument handling in-process, and the command as a user runs it (subprocesses).

The subprocess tests serve examples/todo/app.py with a config that puts every listener on port 0 and the
durable store in a temporary directory; the real ports are read from the listener log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pyiii import III, InitOptions, register_worker
from pyiii.cli import main
from pyiii.config import Settings
from pyiii.sdk.client import set_default_engine
from pyiii.testing import start_server

ROOT = Path(__file__).resolve().parents[1]
TODO_APP = ROOT / "examples" / "todo" / "app.py"
TIME_FACTOR = float(os.environ.get("PYIII_TEST_TIME_FACTOR", "1"))
WAIT_S = 30.0 * TIME_FACTOR
CLEAN_ENV = {name: value for name, value in os.environ.items() if not name.startswith("III_")}
API_LISTENING = re.compile(r"\] API listening on address: (\S+):(\d+)$")
OPEN_LINE = re.compile(r"^pyiii run: .*app\.py is running\. Open (http://\S+/)$")


@pytest.fixture
def fake_run_app(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, Path]]:
    """Replace `pyiii.run` with a stub whose `run_app` records its arguments and returns 0."""
    calls: list[tuple[Settings, Path]] = []

    def run_app(settings: Settings, path: Path) -> int:
        calls.append((settings, path))
        return 0

    module = types.ModuleType("pyiii.run")
    module.run_app = run_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyiii.run", module)
    return calls


# --------------------------------------------------------------------------------------------------
# in-process: arguments


def test_run_serves_the_default_set_with_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_run_app: list[tuple[Settings, Path]]
) -> None:
    """`pyiii run APP` loads the default module set under ./data and hands it the app path."""
    monkeypatch.chdir(tmp_path)
    app = tmp_path / "app.py"
    app.write_text("")
    assert main(["run", "app.py"]) == 0
    [(settings, path)] = fake_run_app
    assert path == Path("app.py")
    assert settings.source_file is None
    assert settings.state is not None and settings.state.adapter.file_path == "./data/state_store.db"
    assert settings.http is not None and settings.stream is not None


def test_run_takes_the_serve_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_run_app: list[tuple[Settings, Path]]
) -> None:
    """--data-dir, --in-memory and -c mean what they mean for `pyiii`, before or after APP."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("")
    (tmp_path / "c.yaml").write_text("workers:\n  - name: iii-http\n")
    assert main(["run", "--data-dir", "elsewhere", "app.py"]) == 0
    assert main(["run", "app.py", "--in-memory"]) == 0
    assert main(["run", "-c", "c.yaml", "app.py"]) == 0
    elsewhere, in_memory, configured = (settings for settings, _ in fake_run_app)
    assert elsewhere.state is not None and elsewhere.state.adapter.file_path == "elsewhere/state_store.db"
    assert in_memory.state is not None and in_memory.state.adapter.store_method == "in_memory"
    assert configured.source_file == "c.yaml" and configured.state is None


def test_serve_options_before_run_apply_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_run_app: list[tuple[Settings, Path]]
) -> None:
    """`pyiii --in-memory run APP` and `pyiii --data-dir D run APP` run the app with those options."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("")
    assert main(["--in-memory", "run", "app.py"]) == 0
    assert main(["--data-dir", "d", "run", "app.py"]) == 0
    (in_memory, _), (data_dir, path) = fake_run_app
    assert in_memory.state is not None and in_memory.state.adapter.store_method == "in_memory"
    assert data_dir.state is not None and data_dir.state.adapter.file_path == "d/state_store.db"
    assert path == Path("app.py")


def test_run_without_a_file_is_a_usage_error(
    tmp_path: Path, fake_run_app: list[tuple[Settings, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing APP, or one that is not a file, exits 2 with the usage text."""
    assert main(["run"]) == 2
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert main(["run", str(tmp_path)]) == 2
    assert "usage: pyiii run" in capsys.readouterr().err
    assert fake_run_app == []


def test_run_config_error_exits_1(
    tmp_path: Path, fake_run_app: list[tuple[Settings, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A config error prints its one line and exits 1 without starting anything."""
    (tmp_path / "app.py").write_text("")
    (tmp_path / "c.yaml").write_text("workers:\n  - name: iii-htpp\n")
    assert main(["run", "-c", str(tmp_path / "c.yaml"), str(tmp_path / "app.py")]) == 1
    assert capsys.readouterr().err.startswith("pyiii: config error: ")
    assert fake_run_app == []


async def test_register_worker_without_address_follows_the_run_engine_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `pyiii run`'s engine set and started, register_worker() without an address attaches to it
    in-process; an explicit URL still goes remote; once the engine stops, $III_URL applies again."""
    monkeypatch.setenv("III_URL", "ws://127.0.0.1:9")
    server = await start_server()
    set_default_engine(server.engine)
    try:
        embedded = register_worker(options=InitOptions(worker_name="embedded"))
        assert embedded.get_address().startswith("inprocess://")
        assert embedded.get_connection_state() == "connected"
        remote = III("ws://127.0.0.1:9", InitOptions(worker_name="explicit"))
        assert remote.get_address() == "ws://127.0.0.1:9"
        await embedded.shutdown_async()
        await remote.shutdown_async()
    finally:
        await server.stop()
    try:
        after = III(None, InitOptions(worker_name="after-stop"))
        assert after.get_address() == "ws://127.0.0.1:9"
        await after.shutdown_async()
    finally:
        set_default_engine(None)


# --------------------------------------------------------------------------------------------------
# subprocesses


def port0_config(directory: Path) -> Path:
    """The default module set with every listener on a free port and the durable stores under
    `directory`/data (the default set itself binds the fixed ports 49134, 3111 and 3112)."""
    data = directory / "data"
    path = directory / "config.yaml"
    path.write_text(
        f"""\
workers:
  - {{name: iii-worker-manager, config: {{port: 0}}}}
  - {{name: iii-http, config: {{port: 0}}}}
  - name: iii-stream
    config:
      port: 0
      adapter: {{name: kv, config: {{store_method: file_based, file_path: {data / "stream_store"}}}}}
  - name: iii-state
    config:
      adapter: {{name: kv, config: {{store_method: file_based, file_path: {data / "state_store.db"}}}}}
"""
    )
    return path


class Running:
    """A `pyiii run` process: stdout and stderr lines as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = asyncio.Condition()
        self._closed = 0
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    async def _read(self, stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for raw in stream:
            async with self._changed:
                lines.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._closed += 1
            self._changed.notify_all()

    async def line(self, lines: list[str], pattern: re.Pattern[str]) -> re.Match[str]:
        """The first line of `lines` matching `pattern`, waiting for it."""

        def found() -> re.Match[str] | None:
            return next((m for m in map(pattern.search, lines) if m), None)

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: found() is not None or all(r.done() for r in self._readers)
                    ),
                    WAIT_S,
                )
            except TimeoutError:
                pass
        match = found()
        assert match is not None, f"no line matching {pattern.pattern!r}: out={self.out} err={self.err}"
        return match

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader


@contextlib.asynccontextmanager
async def pyiii_run(*args: str, cwd: Path) -> AsyncIterator[Running]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pyiii.cli",
        "run",
        *args,
        cwd=cwd,
        env=CLEAN_ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Running(proc)
    try:
        yield running
    finally:
        await running.kill()


async def call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as resp:
        return resp.status, json.loads(await resp.text())


async def poll_until(read: Any, expected: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while (last := await read()) != expected:
        assert loop.time() < deadline, f"still {last}, expected {expected}"
        await asyncio.sleep(0.02)


async def test_run_prints_the_url_and_data_survives_a_restart(tmp_path: Path) -> None:
    """`pyiii run examples/todo/app.py` prints the page's address; todos and counters written before a
    SIGINT are served again after a restart on the same durable store."""
    config = port0_config(tmp_path)
    async with aiohttp.ClientSession() as session:
        async with pyiii_run(str(TODO_APP), "-c", str(config), cwd=tmp_path) as first:
            host, port = (await first.line(first.err, API_LISTENING)).groups()
            url = (await first.line(first.out, OPEN_LINE))[1]
            assert url == f"http://{host}:{port}/"
            status, todo = await call(session, "POST", f"{url}todos", {"title": "survive a restart"})
            assert status == 201
            status, toggled = await call(session, "POST", f"{url}todos/toggle", {"id": todo["id"]})
            assert status == 200 and toggled["completed"] is True
            await call(session, "POST", f"{url}todos", {"title": "second"})
            # The counters are written by a trigger after the reply (in another process: no event to
            # await here); once they read 2/1 they are durable.
            await poll_until(
                lambda: call(session, "GET", f"{url}todos/metrics"), (200, {"total": 2, "completed": 1})
            )
            before = await call(session, "GET", f"{url}todos")
            assert await first.stop() == 0

        async with pyiii_run(str(TODO_APP), "-c", str(config), cwd=tmp_path) as second:
            url = (await second.line(second.out, OPEN_LINE))[1]
            assert await call(session, "GET", f"{url}todos") == before
            assert before[1][0] == toggled
            assert await call(session, "GET", f"{url}todos/metrics") == (200, {"total": 2, "completed": 1})
            assert await second.stop() == 0


async def test_run_an_app_that_raises_exits_1_with_its_traceback(tmp_path: Path) -> None:
    """An exception at the app's top level stops the engine and exits 1, with the traceback on stderr."""
    app = tmp_path / "broken.py"
    app.write_text("from pyiii import register_worker\niii = register_worker()\nraise RuntimeError('boom')\n")
    async with pyiii_run(str(app), "-c", str(port0_config(tmp_path)), cwd=tmp_path) as running:
        code = await asyncio.wait_for(running.proc.wait(), WAIT_S)
        await asyncio.gather(*running._readers)
    assert code == 1
    assert any("RuntimeError: boom" in line for line in running.err)
    assert running.out == []


async def test_plain_python_app_runs_its_main_block_but_pyiii_run_does_not(tmp_path: Path) -> None:
    """Under `pyiii run` the app's `__name__` is `__pyiii_app__`, so its `__main__` block is skipped."""
    app = tmp_path / "app.py"
    app.write_text(
        "print('top level', __name__, flush=True)\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('the standalone block ran')\n"
    )
    async with pyiii_run(str(app), "-c", str(port0_config(tmp_path)), cwd=tmp_path) as running:
        await running.line(running.out, re.compile(r"is running\. Open "))
        assert running.out[0] == "top level __pyiii_app__"
        assert await running.stop() == 0
