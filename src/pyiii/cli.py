"""The `pyiii` command (config-cli-modules.md §3).

    pyiii [-c PATH] [--in-memory] [--data-dir DIR]       serve (§3.1)
    pyiii trigger FUNCTION_ID [KEY=VALUE ...] [...]      call one function and print its result (§3.2)
    pyiii run APP.py [-c PATH] [--in-memory] [--data-dir DIR]
                                                         serve, with a worker file in the same process
    pyiii -v | --version                                 print the bare version

Exit codes (§3.3): 0 success, 1 config/runtime failure, 2 usage error.

The pure parts, `build_payload` and `resolve_target_url`, raise `UsageError` and are tested on their
own. Serving is delegated to `pyiii.server.app.serve(settings) -> int`; `pyiii trigger` talks to the
engine through pyiii's own SDK, so it behaves like any other worker. `pyiii run` (not in the spec: the
quickstart of issue 6) serves like `pyiii` with a worker file attached in-process; see `pyiii.run`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyiii import III, InitOptions, register_worker
from pyiii._version import __version__
from pyiii.config import ConfigError, Settings, load_settings
from pyiii.errors import InvocationError

__all__ = ["UsageError", "build_payload", "main", "resolve_target_url"]

DEFAULT_URL = "ws://127.0.0.1:49134"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 49134
DEFAULT_TIMEOUT_MS = 30000
TRIGGER_WORKER_NAME = "pyiii-cli:trigger"


class UsageError(ValueError):
    """Bad command-line input: reported with the usage text, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `pyiii` command and return its exit code (argparse's own exits are returned too)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except SystemExit as exc:  # argparse exits for -h, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _dispatch(argv: list[str]) -> int:
    parser, trigger_parser, run_parser = _build_parsers()
    if argv[:1] == ["run"]:
        return _run_app(run_parser.parse_args(argv[1:]), run_parser)
    if argv[:1] == ["trigger"]:
        # intermixed parsing lets KEY=VALUE pairs appear before and after the options
        args = trigger_parser.parse_intermixed_args(argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command == "trigger":
        return _run_trigger(args, trigger_parser)
    if args.command == "run":
        # `pyiii --in-memory run APP`: the serve options before `run` belong to it too (parsed again by
        # the run parser: argparse would let the subcommand's defaults overwrite them).
        at = argv.index("run")
        return _run_app(run_parser.parse_args(argv[at + 1 :] + argv[:at]), run_parser)
    return _run_serve(args)


# --------------------------------------------------------------------------------------------------
# Argument parsing


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="PATH", help="config file (default: ./config.yaml if present)"
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="keep every state, stream, queue and cron store in memory; nothing is written to disk",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory of the default module set (default ./data); ignored with a config file",
    )


def _build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="pyiii",
        description=(
            "Run the pyiii engine, call one function with 'pyiii trigger', or serve with a worker file "
            "in the same process with 'pyiii run APP.py'."
        ),
        allow_abbrev=False,
    )
    _add_serve_options(parser)
    parser.add_argument("-v", "--version", action="version", version=__version__)
    parser.set_defaults(command="serve")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="{trigger,run}")
    trigger = commands.add_parser(
        "trigger",
        help="call one function and print its result",
        description="Call one function and print its result as JSON.",
        allow_abbrev=False,
    )
    trigger.add_argument("function_id", metavar="FUNCTION_ID")
    trigger.add_argument(
        "pairs", nargs="*", metavar="KEY=VALUE", help="payload keys; VALUE is parsed as JSON when possible"
    )
    trigger.add_argument(
        "--json", metavar="JSON", help="payload as a JSON value; KEY=VALUE pairs override its keys"
    )
    trigger.add_argument(
        "--url", metavar="URL", help=f"engine address (default $III_URL, else {DEFAULT_URL})"
    )
    trigger.add_argument("--address", metavar="HOST", help=f"engine host (default {DEFAULT_HOST})")
    trigger.add_argument("--port", metavar="PORT", type=_port, help=f"engine port (default {DEFAULT_PORT})")
    trigger.add_argument(
        "--timeout-ms",
        metavar="MS",
        type=_positive_int,
        default=DEFAULT_TIMEOUT_MS,
        help=f"bound on connecting plus the call (default {DEFAULT_TIMEOUT_MS})",
    )
    trigger.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="namespace of the call (default 'default')"
    )
    trigger.set_defaults(command="trigger")
    run = commands.add_parser(
        "run",
        help="serve, and run a worker file in the same process",
        description=(
            "Serve like 'pyiii' and run APP (a Python worker file) in the same process: register_worker() "
            "without an address attaches to this engine in-process. Prints the address to open."
        ),
        allow_abbrev=False,
    )
    run.add_argument("app", metavar="APP", help="the worker file, e.g. examples/todo/app.py")
    _add_serve_options(run)
    run.set_defaults(command="run")
    return parser, trigger, run


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number between 1 and 65535, got {text!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Serve (§3.1)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        settings = _load_serve_settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    # `serve` configures logging from settings.observability first, then logs settings.warnings: the
    # warnings come out in the engine's log format, once.
    return _serve(settings)


def _serve(settings: Settings) -> int:
    from pyiii.server.app import serve  # imported late: `pyiii trigger` and --version never need it

    return serve(settings)


def _load_serve_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config, in_memory=args.in_memory, data_dir=args.data_dir or "./data")
    if args.data_dir is not None and settings.source_file is not None:
        note = f"--data-dir is ignored because the config file {settings.source_file} is used"
        settings = replace(settings, warnings=(*settings.warnings, note))
    return settings


# --------------------------------------------------------------------------------------------------
# pyiii run: serve with a worker file attached


def _run_app(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    app = Path(args.app)
    if not app.is_file():
        parser.error(f"APP must be a Python file: {args.app!r} is not a file")
    try:
        settings = _load_serve_settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    from pyiii.run import run_app  # imported late, like serve

    return run_app(settings, app)


# --------------------------------------------------------------------------------------------------
# pyiii trigger (§3.2): pure parts


def build_payload(json_text: str | None, pairs: Sequence[str]) -> Any:
    """The call's payload from `--json` and KEY=VALUE pairs (§3.2 rule 1).

    No input gives `{}`. Each VALUE is parsed as JSON when possible, else taken as a string. Pairs
    override keys of a `--json` object (shallow). Raises `UsageError` for invalid JSON, pairs with a
    non-object `--json`, a token without `=`, or an empty key.
    """
    payload: Any = {}
    if json_text is not None:
        try:
            payload = _strict_json(json_text)
        except ValueError as exc:
            raise UsageError(f"--json is not valid JSON: {exc}") from None
    if not pairs:
        return payload
    if not isinstance(payload, dict):
        raise UsageError("KEY=VALUE pairs need --json to be a JSON object")
    merged = dict(payload)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {pair!r}")
        if not key:
            raise UsageError(f"empty key in {pair!r}")
        merged[key] = _pair_value(value)
    return merged


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(text: str) -> Any:
    """`json.loads` without the NaN/Infinity extensions, which would produce invalid JSON frames."""
    return json.loads(text, parse_constant=_reject_constant)


def _pair_value(text: str) -> Any:
    try:
        return _strict_json(text)
    except ValueError:
        return text


def resolve_target_url(
    url: str | None, address: str | None, port: int | None, env: Mapping[str, str] | None = None
) -> str:
    """The engine address (§3.2 rule 2): `--url`; else `ws://HOST:PORT` when `--address` or `--port` is
    given (defaults 127.0.0.1 and 49134 for the missing one); else `$III_URL`; else the default."""
    if url:
        return url
    if address or port is not None:
        host = address or DEFAULT_HOST
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        return f"ws://{host}:{DEFAULT_PORT if port is None else port}"
    env = os.environ if env is None else env
    return env.get("III_URL", "").strip() or DEFAULT_URL


def _auth_headers(env: Mapping[str, str]) -> dict[str, str] | None:
    token = env.get("III_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else None


# --------------------------------------------------------------------------------------------------
# pyiii trigger: the call


def _run_trigger(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.url and (args.address or args.port is not None):
        parser.error("--url cannot be combined with --address or --port")
    if not args.function_id:
        parser.error("FUNCTION_ID must not be empty")
    try:
        payload = build_payload(args.json, args.pairs)
    except UsageError as exc:
        parser.error(str(exc))
    call = _Call(
        url=resolve_target_url(args.url, args.address, args.port),
        function_id=args.function_id,
        payload=payload,
        namespace=args.namespace or "default",
        timeout_ms=args.timeout_ms,
        headers=_auth_headers(os.environ),
    )
    with _quiet_sdk_logs():
        return call.run()


@contextlib.contextmanager
def _quiet_sdk_logs() -> Iterator[None]:
    """The SDK's reconnect warnings would break the one-line stderr contract of §3.2 rule 6."""
    logger = logging.getLogger("pyiii")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


class _Call:
    """One `pyiii trigger` run: connect, call, print. `timeout_ms` bounds connecting plus the call."""

    def __init__(
        self,
        *,
        url: str,
        function_id: str,
        payload: Any,
        namespace: str,
        timeout_ms: int,
        headers: dict[str, str] | None,
    ) -> None:
        self.url = url
        self.function_id = function_id
        self.payload = payload
        self.namespace = namespace
        self.timeout_ms = timeout_ms
        self.headers = headers
        self.deadline = time.monotonic() + timeout_ms / 1000

    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def run(self) -> int:
        refused = _probe(self.url, self.remaining_s())
        if refused is not None:
            return self.fail(f"Could not connect to the engine at {self.url}: {refused}")
        try:
            client = self.connect()
        except Exception as exc:  # the SDK refused the address or failed to start
            return self.fail(f"Could not connect to the engine at {self.url}: {exc}")
        if client is None:
            return self.fail(self.timeout_message(connected=False))
        try:
            timeout_ms = int(self.remaining_s() * 1000)
            if timeout_ms < 1:
                return self.fail(self.timeout_message(connected=_is_connected(client)))
            result = client.trigger(
                {
                    "function_id": self.function_id,
                    "payload": self.payload,
                    "timeout_ms": timeout_ms,
                    "namespace": self.namespace,
                }
            )
        except InvocationError as exc:
            if exc.code == "TIMEOUT":  # the SDK's client-side timeout (protocol.md §10.5 rule 5)
                return self.fail(self.timeout_message(connected=_is_connected(client)))
            if exc.code == "AUTH_ERROR":  # the engine refused the connection: a connection failure
                return self.fail(f"Could not connect to the engine at {self.url}: AUTH_ERROR: {exc.message}")
            return self.fail("Error: " + json.dumps(_error_body(exc), indent=2, ensure_ascii=False))
        finally:
            _shutdown_quietly(client)
        if result is not None:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0

    def connect(self) -> III | None:
        """`register_worker` blocks until the socket is open (up to 30 s); bound it by our deadline.

        Returns the client, or None when the deadline passed first. The helper thread is a daemon so
        an abandoned connect never keeps the process alive; a client that arrives late is shut down.
        """
        options = InitOptions(worker_name=TRIGGER_WORKER_NAME, headers=self.headers)
        outcome: list[III] = []
        failure: list[Exception] = []
        lock = threading.Lock()
        abandoned = threading.Event()

        def connect() -> None:
            try:
                client = register_worker(self.url, options)
            except Exception as exc:
                failure.append(exc)
                return
            with lock:
                if not abandoned.is_set():
                    outcome.append(client)
                    return
            _shutdown_quietly(client)

        thread = threading.Thread(target=connect, name="pyiii-cli-connect", daemon=True)
        thread.start()
        thread.join(self.remaining_s())
        with lock:
            if outcome:
                return outcome[0]
            abandoned.set()
        if failure:
            raise failure[0]
        return None

    def timeout_message(self, *, connected: bool) -> str:
        what = "no response" if connected else "could not connect"
        return f"Timed out waiting for the engine at {self.url} ({what} within {self.timeout_ms} ms)"

    @staticmethod
    def fail(message: str) -> int:
        print(message, file=sys.stderr)
        return 1


def _probe(url: str, timeout_s: float) -> str | None:
    """A plain TCP connect to the engine, so a stopped engine fails at once instead of after the
    SDK's retries. Returns the reason it failed, or None (also when the URL is not one we can parse:
    the SDK then decides)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if port is None:
        port = 443 if parts.scheme in ("wss", "https") else 80
    try:
        with socket.create_connection((host, port), timeout=max(timeout_s, 0.001)):
            return None
    except TimeoutError:
        return None  # slow, not refused: let the deadline decide
    except OSError as exc:
        return exc.strerror or str(exc)


def _is_connected(client: III) -> bool:
    try:
        return bool(client.get_connection_state() == "connected")
    except Exception:
        return False


def _shutdown_quietly(client: III) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()


def _error_body(exc: InvocationError) -> dict[str, Any]:
    """§3.2 rule 5: `{"code", "message", "stacktrace"}`; stacktrace only when the error has one."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    stacktrace = exc.stacktrace
    if stacktrace is not None:
        body["stacktrace"] = stacktrace
    return body


if __name__ == "__main__":
    raise SystemExit(main())
