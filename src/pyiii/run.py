"""`pyiii run APP.py`: an engine and a worker file in one process (the quickstart of issue 6).

The engine starts exactly as `pyiii` (serve) would, on the same settings (by default the module set
of config-cli-modules.md §2.7 on the durable store under ./data). Once every listener is bound, the
worker file is executed like a script, with two differences:

* `register_worker()` called **without an address** attaches to this engine through the in-process
  transport (no socket, no JSON per call). An explicit `ws://` address still connects over the network;
  the same file run with plain `python APP.py` connects to `$III_URL`, else ws://127.0.0.1:49134.
* the file runs under the module name `__pyiii_app__`, not `__main__`, so its
  `if __name__ == "__main__":` block (the standalone worker's keep-alive) is skipped: the engine keeps
  the process alive instead.

The file's top level runs in a helper thread, not on the engine's loop, so blocking SDK calls at top
level (`iii.trigger(...)` to seed data) work as they do in a standalone worker. Its handlers run where
the SDK puts them: async handlers on the engine's loop, sync handlers in the SDK's thread pool.

Then the command prints the address to open (the HTTP listener's `/`) and runs until SIGINT/SIGTERM,
shutting down as `pyiii` does (§3.1). An exception from the file stops the engine and exits 1.
"""

from __future__ import annotations

import asyncio
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from pyiii.config import Settings
from pyiii.sdk.client import set_default_engine

__all__ = ["APP_MODULE_NAME", "AppError", "app_url", "load_app", "run_app", "start_app"]

#: `__name__` of the worker file under `pyiii run`.
APP_MODULE_NAME = "__pyiii_app__"


class AppError(Exception):
    """The worker file raised while it ran its top level; the traceback is in `detail`."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path} failed")
        self.path = path
        self.detail = detail


def load_app(path: Path) -> dict[str, Any]:
    """Execute the worker file's top level (blocking; call it off the engine's loop) and return its
    globals. Its directory goes first on `sys.path`, as `python APP.py` would put it."""
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        return runpy.run_path(str(path), run_name=APP_MODULE_NAME)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppError(path, traceback.format_exc()) from exc


async def start_app(server: Any, path: Path) -> dict[str, Any]:
    """Attach the worker file to `server` (a started `EngineServer`): run its top level with
    `register_worker()` bound to `server.engine` (it stays bound, so workers the app creates later
    attach too, until `set_default_engine(None)`). Returns the file's globals; raises `AppError`."""
    set_default_engine(server.engine)
    return await asyncio.to_thread(load_app, path)


def app_url(server: Any) -> str:
    """What to open: the HTTP listener's `/` when the HTTP module runs, else the worker socket."""
    http = getattr(server, "http", None)
    if http is not None and getattr(http, "address", None) is not None:
        host, port = http.address
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}/"
    return str(server.url)


def run_app(settings: Settings, path: Path) -> int:
    """Serve `settings` with the worker file attached until SIGINT/SIGTERM; return the exit code."""
    from pyiii.server.app import serve

    async def attach(server: Any) -> int | None:
        try:
            await start_app(server, path)
        except AppError as exc:
            print(f"pyiii run: {exc.path} raised an exception:\n{exc.detail}", file=sys.stderr, end="")
            return 1
        print(f"pyiii run: {path} is running. Open {app_url(server)}", flush=True)
        return None

    try:
        return serve(settings, after_start=attach)
    finally:
        set_default_engine(None)
