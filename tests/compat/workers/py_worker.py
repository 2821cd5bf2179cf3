"""A worker built on the official Python iii SDK, driven by a JSON plan (tests/compat).

Runs unchanged under both SDK generations (`.compat/py-0.25/bin/python` and
`.compat/py-0.11.6/bin/python`) and adapts to their API differences at runtime. The plan and the
event lines are documented in tests/compat/README.md; node_worker.mjs speaks the same language.

Input:  the plan, as JSON text in argv[1] (or `@path`), else in $COMPAT_PLAN; then one JSON command
        per line on stdin.
Output: one JSON event per line on stdout. Everything else (SDK prints, tracebacks) goes to stderr:
        fd 1 is pointed at stderr at startup and events are written to a private copy of it.
Stops:  on stdin EOF, SIGTERM, `{"cmd": "exit"}`, or after the plan's calls with
        `"exit_after_calls": true`; the SDK is shut down gracefully (close frame) first.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import iii
from iii.iii import III
from iii.triggers import TriggerHandler

SDK_VERSION = importlib.metadata.version("iii-sdk")
# The two generations this program knows; anything else is treated like the newer one.
LEGACY = SDK_VERSION.startswith("0.11.")
SDK_ID = f"py-{SDK_VERSION}" if LEGACY else f"py-{'.'.join(SDK_VERSION.split('.')[:2])}"

if LEGACY:
    from iii import Logger, ReconnectionConfig
else:  # 0.25 does not export Logger from `iii`; it lives in the helpers package.
    from iii_helpers.observability import Logger, ReconnectionConfig

# How often the connection state is sampled where the SDK has no listener API (0.11.6).
STATE_POLL_S = 0.02
# Interval of the readiness poll (engine::workers::list) while registrations settle.
SYNC_POLL_S = 0.02


class Out:
    """Writes event lines to the real stdout; fd 1 itself is redirected to stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._file = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, separators=(",", ":"), default=repr)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


OUT = Out()


class EventLogHandler(logging.Handler):
    """Turns the SDK's own log records (logger `iii.*`) into `sdk_log` events."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            OUT.emit(
                "sdk_log", level=record.levelname.lower(), logger=record.name, message=record.getMessage()
            )
        except Exception:
            self.handleError(record)


def setup_logging() -> None:
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(stderr)
    root.addHandler(EventLogHandler())
    root.setLevel(logging.WARNING)
    logging.getLogger("iii").setLevel(logging.INFO)


def os_string() -> str:
    """The `os` value both Python SDK generations put in their engine::workers::register payload."""
    return f"{platform.system()} {platform.release()} ({platform.machine()})"


def error_fields(exc: BaseException) -> dict[str, Any]:
    """An SDK error as event fields: InvocationError (0.25) and IIIInvocationError (0.11.6) carry `code`."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return {
            "code": code,
            "message": getattr(exc, "message", str(exc)),
            "stacktrace": getattr(exc, "stacktrace", None),
        }
    return {"code": f"EXCEPTION:{type(exc).__name__}", "message": str(exc)}


def json_len(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class Provider(TriggerHandler):
    """A worker-provided trigger type: records the engine's binding deliveries and fires them on demand."""

    def __init__(self, worker: Worker, spec: dict[str, Any]) -> None:
        self.worker = worker
        self.spec = spec
        self.bindings: dict[str, Any] = {}

    def _fields(self, config: Any) -> dict[str, Any]:
        return {
            "trigger_type": self.spec["id"],
            "id": config.id,
            "function_id": config.function_id,
            "config": config.config,
            "metadata": config.metadata,
            "namespace": getattr(config, "namespace", None),
        }

    async def register_trigger(self, config: Any) -> None:
        # Stored before the event: a test may `fire` as soon as it sees the event.
        if not self.spec.get("fail"):
            self.bindings[config.id] = config
        OUT.emit("trigger_register", **self._fields(config))
        if self.spec.get("fail"):
            raise RuntimeError(self.spec["fail"])
        if "fire_on_register" in self.spec:
            payload = self.spec["fire_on_register"]
            self.worker.pool.submit(self.worker.fire, self, config, payload)

    async def unregister_trigger(self, config: Any) -> None:
        self.bindings.pop(config.id, None)
        OUT.emit("trigger_unregister", **self._fields(config))


class Worker:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.name: str = plan.get("worker_name") or f"compat-{SDK_ID}-{os.getpid()}"
        self.client: Any = None
        self.pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="compat")
        self.stop = threading.Event()
        self.functions: dict[str, Any] = {}  # id -> FunctionRef
        self.counted: set[str] = set()  # function ids expected in this connection's function_count
        self.providers: dict[str, Provider] = {}
        self.triggers: dict[str, Any] = {}  # key -> Trigger
        self.connect_lock = threading.Lock()

    # Connecting

    def connect(self) -> None:
        with self.connect_lock:
            if self.client is not None:
                return
            self.client = III(self.plan["url"], self._options())
        self._watch_connection_state()
        self._wait_connected(self.plan.get("connect_timeout_ms", 30000))
        self._register_all()
        if self.plan.get("ready", "registered") == "registered":
            sync = self.sync(self.plan.get("ready_timeout_ms", 20000))
        else:
            sync = {"verified": False}
        OUT.emit(
            "ready", sdk=SDK_ID, worker_id=self.client.worker_id, name=self.name, pid=os.getpid(), **sync
        )
        self._run_plan()

    def _options(self) -> Any:
        opts: dict[str, Any] = {"worker_name": self.name}
        if "headers" in self.plan:
            opts["headers"] = self.plan["headers"]
        if "invocation_timeout_ms" in self.plan:
            opts["invocation_timeout_ms"] = self.plan["invocation_timeout_ms"]
        if "reconnect" in self.plan:
            opts["reconnection_config"] = ReconnectionConfig(**self.plan["reconnect"])
        if not LEGACY:
            if self.plan.get("namespace") is not None:
                opts["namespace"] = self.plan["namespace"]
            if self.plan.get("description") is not None:
                opts["worker_description"] = self.plan["description"]
        elif self.plan.get("namespace") is not None:
            OUT.emit("unsupported", feature="namespace", sdk=SDK_ID)
        return iii.InitOptions(**opts)

    def _watch_connection_state(self) -> None:
        def report(state: str) -> None:
            OUT.emit("connection_state", state=state)

        if hasattr(self.client, "add_connection_state_listener"):
            self.client.add_connection_state_listener(report)
            return

        def poll() -> None:
            last = None
            while True:
                state = self.client.get_connection_state()
                if state != last:
                    report(state)
                    last = state
                time.sleep(STATE_POLL_S)

        threading.Thread(target=poll, daemon=True, name="compat-state").start()

    def _wait_connected(self, timeout_ms: int) -> None:
        deadline = time.monotonic() + timeout_ms / 1000
        reported = False
        while self.client.get_connection_state() != "connected":
            if not reported and time.monotonic() > deadline:
                OUT.emit("connect_timeout", url=self.plan["url"], timeout_ms=timeout_ms)
                reported = True  # keep waiting: the SDK retries in the background
            time.sleep(STATE_POLL_S)

    def _register_all(self) -> None:
        for spec in self.plan.get("trigger_types", []):
            self.register_trigger_type(spec)
        for spec in self.plan.get("services", []):
            self.register_service(spec)
        for spec in self.plan.get("functions", []):
            self.register_function(spec)
        for i, spec in enumerate(self.plan.get("triggers", [])):
            self.register_trigger(spec, key=spec.get("key", f"plan-{i}"))

    def sync(self, timeout_ms: int = 20000) -> dict[str, Any]:
        """Waits until the engine lists this connection with all its expected functions.

        Registrations travel without acknowledgement, so this polls `engine::workers::list` for this
        connection's `worker_id` (which changes on every reconnect) and its `function_count`.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            worker_id = self.client.worker_id
            try:
                listing = self.client.trigger(
                    {"function_id": "engine::workers::list", "payload": {}, "timeout_ms": 5000}
                )
            except Exception as exc:
                if getattr(exc, "code", None) == "function_not_found":
                    return {"verified": False}
                listing = None
            for entry in (listing or {}).get("workers", []):
                if (
                    worker_id
                    and entry.get("id") == worker_id
                    and entry.get("function_count", 0) >= len(self.counted)
                ):
                    return {"verified": True}
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"engine never listed worker {worker_id} with {len(self.counted)} functions: {listing!r}"
                )
            time.sleep(SYNC_POLL_S)

    # Registrations

    def register_function(self, spec: dict[str, Any]) -> None:
        fid = spec["id"]
        kwargs: dict[str, Any] = {}
        for key in ("description", "metadata", "request_format", "response_format"):
            if key in spec:
                kwargs[key] = spec[key]
        self.functions[fid] = self.client.register_function(fid, self._handler(spec), **kwargs)
        if spec.get("expect_registered", True):
            self.counted.add(fid)

    def unregister_function(self, fid: str) -> None:
        self.functions.pop(fid).unregister()
        self.counted.discard(fid)

    def register_trigger_type(self, spec: dict[str, Any]) -> None:
        provider = Provider(self, spec)
        self.providers[spec["id"]] = provider
        body = {"id": spec["id"], "description": spec.get("description", f"{spec['id']} ({SDK_ID})")}
        self.client.register_trigger_type(body, provider)

    def unregister_trigger_type(self, type_id: str) -> None:
        self.providers.pop(type_id, None)
        self.client.unregister_trigger_type({"id": type_id, "description": ""})

    def register_trigger(self, spec: dict[str, Any], key: str) -> None:
        body = {
            k: spec[k]
            for k in ("type", "function_id", "config", "metadata", "namespace", "trigger_namespace")
            if k in spec
        }
        if LEGACY:
            body.pop("namespace", None)
            body.pop("trigger_namespace", None)
        self.triggers[key] = self.client.register_trigger(body)

    def register_service(self, spec: dict[str, Any]) -> None:
        if not hasattr(self.client, "register_service"):
            OUT.emit("unsupported", feature="register_service", sdk=SDK_ID)
            return
        self.client.register_service(spec)

    def _handler(self, spec: dict[str, Any]) -> Any:
        fid = spec["id"]
        kind = spec.get("kind", "echo")
        quiet = spec.get("quiet", False)

        # `metadata` must be spelled out: 0.25 passes it only to a parameter of that name;
        # 0.11.6 always calls handler(data).
        async def handler(data: Any, metadata: Any = None) -> Any:
            seen = {"data_len": json_len(data)} if quiet else {"data": data}
            OUT.emit("invoked", function_id=fid, metadata=metadata, worker=self.name, **seen)
            result = await run(data, metadata)
            OUT.emit("returned", function_id=fid)
            return result

        async def run(data: Any, metadata: Any) -> Any:
            if kind == "sleep":
                await asyncio.sleep(spec.get("ms", 1000) / 1000)
            elif kind == "fail":
                raise RuntimeError(spec.get("message", f"{fid} failed"))
            elif kind == "big":
                return "x" * spec["bytes"]
            elif kind == "relay":
                request = {"function_id": spec["target"], "payload": data}
                if "target_namespace" in spec:
                    request["namespace"] = spec["target_namespace"]
                relayed = await self.client.trigger_async(request)
                return {"relayed": relayed, "worker": self.name, "sdk": SDK_ID}
            elif kind == "log":
                getattr(Logger(), spec.get("level", "info"))(spec.get("message", fid), data)
            return {
                "got": data,
                "meta": metadata,
                "worker": self.name,
                "sdk": SDK_ID,
                "pid": os.getpid(),
                "function_id": fid,
            }

        return handler

    # Calls, logs, fires

    def call(self, spec: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"function_id": spec["function_id"]}
        if "payload_blob_bytes" in spec:
            request["payload"] = {"blob": "x" * spec["payload_blob_bytes"]}
        elif "payload" in spec:
            request["payload"] = spec["payload"]
        action = spec.get("action")
        if action == "void":
            request["action"] = iii.TriggerAction.Void()
        elif action == "enqueue":
            request["action"] = iii.TriggerAction.Enqueue(queue=spec.get("queue", "default"))
        for key in ("timeout_ms", "namespace", "metadata"):
            if key in spec:
                request[key] = spec[key]
        started = time.monotonic()
        try:
            result = self.client.trigger(request)
        except Exception as exc:
            return {
                "ok": False,
                "elapsed_ms": round((time.monotonic() - started) * 1000),
                **error_fields(exc),
            }
        fields: dict[str, Any] = {"ok": True, "elapsed_ms": round((time.monotonic() - started) * 1000)}
        if spec.get("quiet"):
            fields["result_len"] = json_len(result)
        else:
            fields["result"] = result
        return fields

    def log(self, spec: dict[str, Any]) -> None:
        logger = Logger(service_name=spec["service_name"]) if "service_name" in spec else Logger()
        getattr(logger, spec.get("level", "info"))(spec["message"], spec.get("data"))

    def fire(self, provider: Provider, binding: Any, payload: Any) -> None:
        """Fires one binding the way a provider does: an ordinary call to the bound function."""
        spec = {"function_id": binding.function_id, "payload": payload}
        if binding.metadata is not None:
            spec["metadata"] = binding.metadata
        if getattr(binding, "namespace", None):
            spec["namespace"] = binding.namespace
        OUT.emit("fired", trigger_type=provider.spec["id"], trigger_id=binding.id, **self.call(spec))

    def _run_plan(self) -> None:
        for index, spec in enumerate(self.plan.get("calls", [])):
            OUT.emit("call_result", index=index, function_id=spec["function_id"], **self.call(spec))
        for index, spec in enumerate(self.plan.get("logs", [])):
            self.log(spec)
            OUT.emit("logged", index=index)
        OUT.emit("plan_done")
        if self.plan.get("exit_after_calls"):
            self.stop.set()

    # Commands

    def read_commands(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
            except ValueError as exc:
                OUT.emit("reply", id=None, ok=False, code="bad_command", message=str(exc))
                continue
            self.pool.submit(self.run_command, cmd)
        self.stop.set()

    def run_command(self, cmd: dict[str, Any]) -> None:
        cid = cmd.get("id")
        name = cmd.get("cmd")
        try:
            if name == "connect":
                threading.Thread(target=self._connect_guarded, daemon=True, name="compat-connect").start()
                OUT.emit("reply", id=cid, ok=True)
                return
            if name == "exit":
                OUT.emit("reply", id=cid, ok=True)
                self.stop.set()
                return
            if self.client is None:
                raise RuntimeError("not connected yet: send {'cmd': 'connect'} first")
            if name == "call":
                OUT.emit("call_result", id=cid, function_id=cmd["function_id"], **self.call(cmd))
                return
            extra = self._command(name, cmd) or {}
            OUT.emit("reply", id=cid, ok=True, **extra)
        except Exception as exc:
            OUT.emit("reply", id=cid, ok=False, **error_fields(exc), traceback=traceback.format_exc())

    def _command(self, name: str, cmd: dict[str, Any]) -> dict[str, Any] | None:
        if name == "sync":
            return {"worker_id": self.client.worker_id, **self.sync(cmd.get("timeout_ms", 20000))}
        if name == "state":
            return {"state": self.client.get_connection_state(), "worker_id": self.client.worker_id}
        if name == "log":
            self.log(cmd)
            return None
        if name == "register_function":
            self.register_function(cmd["function"])
            return None
        if name == "unregister_function":
            self.unregister_function(cmd["function_id"])
            return None
        if name == "register_trigger_type":
            self.register_trigger_type(cmd["trigger_type"])
            return None
        if name == "unregister_trigger_type":
            self.unregister_trigger_type(cmd["trigger_type_id"])
            return None
        if name == "register_trigger":
            self.register_trigger(cmd["trigger"], key=cmd["key"])
            return None
        if name == "unregister_trigger":
            self.triggers.pop(cmd["key"]).unregister()
            return None
        if name == "register_service":
            self.register_service(cmd["service"])
            return None
        if name == "fire":
            provider = self.providers[cmd["trigger_type"]]
            bindings = [b for b in provider.bindings.values() if cmd.get("trigger_id") in (None, b.id)]
            for binding in bindings:
                self.fire(provider, binding, cmd.get("payload"))
            return {"fired": len(bindings)}
        raise ValueError(f"unknown command {name!r}")

    def _connect_guarded(self) -> None:
        try:
            self.connect()
        except Exception as exc:
            OUT.emit("fatal", stage="connect", **error_fields(exc), traceback=traceback.format_exc())
            self.stop.set()

    def shutdown(self) -> None:
        if self.client is None:
            return
        done = threading.Thread(target=self.client.shutdown, daemon=True, name="compat-shutdown")
        done.start()
        done.join(timeout=5)


def load_plan() -> dict[str, Any]:
    text = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("COMPAT_PLAN", "")
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as fh:
            text = fh.read()
    plan = json.loads(text)
    if not isinstance(plan, dict) or not isinstance(plan.get("url"), str):
        raise ValueError("the plan must be a JSON object with a string 'url'")
    return plan


def main() -> None:
    setup_logging()
    try:
        plan = load_plan()
    except Exception as exc:
        OUT.emit("fatal", stage="plan", code="bad_plan", message=str(exc))
        os._exit(2)
    worker = Worker(plan)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    OUT.emit(
        "started", sdk=SDK_ID, sdk_version=SDK_VERSION, pid=os.getpid(), os=os_string(), name=worker.name
    )
    threading.Thread(target=worker.read_commands, daemon=True, name="compat-stdin").start()
    if plan.get("connect", "now") == "now":
        threading.Thread(target=worker._connect_guarded, daemon=True, name="compat-connect").start()
    while not worker.stop.wait(0.5):
        pass
    worker.shutdown()
    OUT.emit("exit", code=0)
    os._exit(0)


if __name__ == "__main__":
    main()
