"""Wiring: typed settings -> engine + modules + listeners; the `pyiii` serve loop (cli spec §3.1)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pyiii._listen import listen
from pyiii.config import Settings, WorkerManagerSettings
from pyiii.engine.channels import ChannelRegistry
from pyiii.engine.core import Engine, EngineSettings
from pyiii.modules.engine_functions import EngineFunctionsModule
from pyiii.server.channels import make_channel_handler
from pyiii.server.worker_socket import ListenerAuth, worker_manager_app

log = logging.getLogger("pyiii")

SHUTDOWN_BUDGET_S = 10.0
#: Modules the config accepts whose implementation lands with a later release of pyiii.
_NOT_YET = ("pubsub", "cron", "queue")
#: Canonical names of the modules this build runs (tests that need another module skip on it).
PROVIDED_MODULES = frozenset(
    {"iii-worker-manager", "iii-engine-functions", "iii-observability", "iii-state", "iii-http", "iii-stream"}
)


class _Formatter(logging.Formatter):
    """``[HH:MM:SS.mmm] [LEVEL] message`` (config-cli-modules.md §3.1)."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        stamp = time.strftime("%H:%M:%S", t) + f".{int(record.msecs):03d}"
        level = {"WARNING": "WARN", "CRITICAL": "ERROR"}.get(record.levelname, record.levelname)
        line = f"[{stamp}] [{level}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("pyiii")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel({"trace": logging.DEBUG, "warn": logging.WARNING}.get(level, level.upper()))
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


@dataclass
class EngineServer:
    """An engine with its modules and listeners. ``await start()`` binds everything; ``await stop()``."""

    settings: Settings
    engine: Engine = field(init=False)
    channels: ChannelRegistry = field(default_factory=ChannelRegistry)
    runners: list[web.BaseRunner] = field(default_factory=list)
    #: Bound (host, port) of each worker-manager listener, in config order.
    worker_addresses: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.engine = Engine(
            EngineSettings(
                invocation_timeout_ms=s.invocation_timeout_ms,
                registration_namespace_grace_ms=s.registration_namespace_grace_ms,
            )
        )
        self.engine.add_module(EngineFunctionsModule(self.channels))
        observability = _observability_module(s)
        if observability is not None:
            self.engine.add_module(observability)
        if s.state is not None:
            from pyiii.modules.state.module import StateModule

            self.engine.add_module(StateModule(s.state))
        self.http: Any = None
        if s.http is not None:
            from pyiii.modules.http import HttpModule

            # Its listener binds in engine.start(), before the worker managers (§2.1 rule 5).
            self.http = HttpModule(s.http, self.channels)
            self.engine.add_module(self.http)
        self.stream: Any = None
        if s.stream is not None:
            from pyiii.modules.stream import StreamModule

            # Its client listener binds in engine.start(), before the worker managers (§2.1 rule 5).
            self.stream = StreamModule(s.stream)
            self.engine.add_module(self.stream)

    async def start(self) -> None:
        await self.engine.start()
        for name in _NOT_YET:
            if getattr(self.settings, name, None) is not None:
                log.warning("module 'iii-%s' is not available in this version of pyiii; skipped", name)
        # Worker managers bind last: an open 49134 means the engine is ready (§2.1 rule 5).
        for wm in self.settings.worker_managers:
            await self._bind_worker_manager(wm)
        if self.worker_addresses:
            self.engine.ws_url = self.url

    async def _bind_worker_manager(self, wm: WorkerManagerSettings) -> None:
        auth = ListenerAuth(
            auth_token=wm.auth_token,
            auth_function_id=wm.rbac.auth_function_id if wm.rbac else None,
            rbac=wm.rbac is not None,
            expose=wm.rbac.expose_functions if wm.rbac else (),
        )
        app = worker_manager_app(self.engine, auth, make_channel_handler(self.channels))
        # §2.1 rule 3: aiohttp's keep-alive timer starts with the connection and closes it while no
        # request has arrived complete, so it is the handshake timeout (upgraded sockets are exempt).
        runner, port = await listen(
            app,
            wm.host,
            wm.port,
            access_log=None,
            shutdown_timeout=0.1,
            keepalive_timeout=wm.handshake_timeout_ms / 1000,
        )
        self.runners.append(runner)
        self.worker_addresses.append((wm.host, port))
        log.info("Engine listening on address: %s:%s", wm.host, port)  # the open-listener warning is config's

    @property
    def url(self) -> str:
        host, port = self.worker_addresses[0]
        return f"ws://{host}:{port}"

    async def stop(self) -> None:
        """Stop accepting, close workers with 1012, fail pending calls, close modules (§3.1 shutdown)."""
        for runner in self.runners:
            for site in list(runner.sites):
                await site.stop()
        await self.engine.stop()
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()


def _observability_module(settings: Settings) -> Any:
    try:
        from pyiii.modules.observability import ObservabilityModule, ObservabilitySettings
    except ImportError:  # pragma: no cover - the module ships with pyiii
        return None
    src = settings.observability
    fields = getattr(ObservabilitySettings, "__dataclass_fields__", {})
    values = {name: getattr(src, name) for name in fields if hasattr(src, name)}
    return ObservabilityModule(ObservabilitySettings(**values))


def tune_gc() -> None:
    """Move everything allocated at startup out of the collector's sight and collect the young
    generation less often: under load the engine keeps many short-lived call records alive across a
    durable commit, and gen-0 collections were 4% of its CPU (bench/RESULTS.md, state section)."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(20_000, gen1, gen2)


#: Called once every listener is bound: ``None`` to serve until a signal, or an exit code to stop
#: at once (``pyiii run`` attaches its worker file here).
AfterStart = Callable[["EngineServer"], Awaitable[int | None]]


def serve(settings: Settings, after_start: AfterStart | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code (0 normal, 1 startup failure or an
    exit code from ``after_start``)."""
    configure_logging(settings.observability.level)
    for warning in settings.warnings:
        log.warning("%s", warning)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return int(runner(_serve(settings, after_start)))


async def _serve(settings: Settings, after_start: AfterStart | None = None) -> int:
    server = EngineServer(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            print("pyiii: second signal during shutdown; exiting now", file=sys.stderr)
            sys.stderr.flush()
            import os

            os._exit(1)
        stop.set()

    # Installed before binding: once the listener line is logged, a signal must mean a clean shutdown
    # (a signal during startup is honoured as soon as startup ends).
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await server.start()
    except OSError as exc:
        print(f"pyiii: failed to start: {exc}", file=sys.stderr)
        await server.stop()
        return 1
    code = None if after_start is None else await after_start(server)
    if code is None:
        tune_gc()
        await stop.wait()
        log.info("shutting down")
    try:
        await asyncio.wait_for(server.stop(), SHUTDOWN_BUDGET_S)
    except TimeoutError:
        log.error("shutdown took longer than %ss", SHUTDOWN_BUDGET_S)
        return 1
    return code or 0
