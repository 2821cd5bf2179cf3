"""Config file loading and validation: YAML in, typed settings out (spec: config-cli-modules.md §2).

`load_settings()` is the only entry point. It reads the file once (or builds the default module set of
§2.7), expands `${VAR}` / `${VAR:default}` in string values (§2.4), validates every key, and returns a
frozen `Settings`. The rest of pyiii receives these objects and never sees raw config dicts. Every
problem raises `ConfigError`, whose `str()` is the one line the CLI prints (§2.8); non-fatal findings
are collected in `Settings.warnings` for the CLI to log.

Settings classes (all frozen; every field has the spec's default, so tests can build them directly)::

    Settings                     the whole file
      ModuleSettings             one enabled module, in config order (informational)
      WorkerManagerSettings      one worker listener (protocol.md §2.1-§2.3)
        RbacSettings             rbac block: auth function and expose_functions filters
          ExposeFilter, Glob     one expose_functions filter, a `match("glob")` pattern
      HttpSettings               iii-http (http.md §15)
        CorsSettings, HttpMiddlewareSettings
      StreamSettings             iii-stream (stream.md §8)
      StateSettings              iii-state (state.md §9)
      PubSubSettings             iii-pubsub (§4)
      CronSettings               iii-cron (§5)
      QueueSettings              iii-queue (§6.2)
        QueueDefinition          one entry of queue_configs
      ObservabilitySettings      iii-observability (§7.1), always present
      AdapterSettings            the `adapter` block of a module (§2.6), defaults applied

A module whose typed field on `Settings` is `None` is not enabled. Config keys keep the names the spec
gives; internal names carry units (`default_timeout` -> `default_timeout_ms`, `body_limit` ->
`body_limit_bytes`).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pyiii._version import __version__

__all__ = [
    "AdapterSettings",
    "ConfigError",
    "CorsSettings",
    "CronSettings",
    "ExposeFilter",
    "Glob",
    "HttpMiddlewareSettings",
    "HttpSettings",
    "ModuleSettings",
    "ObservabilitySettings",
    "PubSubSettings",
    "QueueDefinition",
    "QueueSettings",
    "RbacSettings",
    "Settings",
    "StateSettings",
    "StreamSettings",
    "WorkerManagerSettings",
    "load_settings",
]

# --------------------------------------------------------------------------------------------------
# Errors


class ConfigError(Exception):
    """A config problem that stops startup (§2.8).

    `str()` is the one line to print: `pyiii: config error: <file>: <location>: <message>`.

    `location` is a path into the document (`workers[2].config.port`), `line N, column M` for YAML
    syntax errors, or empty when the file itself cannot be read (then the segment is omitted).
    """

    def __init__(self, file: str, location: str, message: str) -> None:
        self.file = file
        self.location = location
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.file, self.location, self.message] if self.location else [self.file, self.message]
        return "pyiii: config error: " + ": ".join(parts)


# --------------------------------------------------------------------------------------------------
# Typed settings

IN_MEMORY = "in_memory"
FILE_BASED = "file_based"
STORE_METHODS = (IN_MEMORY, FILE_BASED)
DEFAULT_KV_FILE_PATH = "kv_store_data.db"
DEFAULT_REDIS_URL = "redis://localhost:6379"
DEFAULT_SAVE_INTERVAL_MS = 5000


@dataclass(frozen=True, kw_only=True)
class ModuleSettings:
    """One enabled module entry, in config order; always-on and implied modules come last."""

    name: str  # canonical name, e.g. "iii-http"
    listed_as: str | None = None  # the name used in the file ("http"); None when implied
    location: str | None = None  # "workers[1]"; None when implied (default set, always-on)


@dataclass(frozen=True)
class Glob:
    """A `match("glob")` pattern: `*` matches any sequence of characters, nothing else is special."""

    pattern: str

    def matches(self, text: str) -> bool:
        regex = ".*".join(re.escape(part) for part in self.pattern.split("*"))
        return re.fullmatch(regex, text, re.DOTALL) is not None


@dataclass(frozen=True, kw_only=True)
class ExposeFilter:
    """One `rbac.expose_functions` filter (protocol.md §2.3 rule 4).

    Exactly one of `match` (a function-id glob) and `metadata` is set. `metadata` values are plain
    JSON values compared for equality, or `Glob` instances matched against string metadata values.
    """

    match: Glob | None = None
    metadata: Mapping[str, Any] | None = None
    namespace: str = "default"


@dataclass(frozen=True, kw_only=True)
class RbacSettings:
    auth_function_id: str | None = None
    expose_functions: tuple[ExposeFilter, ...] = ()


@dataclass(frozen=True, kw_only=True)
class WorkerManagerSettings:
    """One worker listener (`/`, `/otel`, `/ws/channels/{id}`). `port` 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = 49134
    handshake_timeout_ms: int = 10000
    auth_token: str | None = None  # an empty string in the file means unset
    rbac: RbacSettings | None = None


@dataclass(frozen=True, kw_only=True)
class AdapterSettings:
    """A module's storage or transport adapter with the defaults of §2.6 applied.

    `name` is canonical (`memory` becomes `local` for pubsub and `builtin` for the queue). Fields that
    do not apply to the adapter are None. `config` holds the keys of `adapter.config` this adapter
    knows, as written (after interpolation); unknown keys were dropped with a warning.
    """

    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    store_method: str | None = None  # kv, builtin: "in_memory" | "file_based"
    file_path: str | None = None  # kv, builtin
    save_interval_ms: int | None = None  # kv, normalised as in state.md §8.3
    redis_url: str | None = None  # redis
    channel_size: int | None = None  # stream kv
    lock_ttl_ms: int | None = None  # cron kv
    lock_index: str | None = None  # cron kv

    @property
    def file_based(self) -> bool:
        return self.store_method == FILE_BASED


def _kv_adapter(**overrides: Any) -> AdapterSettings:
    base = AdapterSettings(
        name="kv",
        store_method=IN_MEMORY,
        file_path=DEFAULT_KV_FILE_PATH,
        save_interval_ms=DEFAULT_SAVE_INTERVAL_MS,
    )
    return replace(base, **overrides)


@dataclass(frozen=True, kw_only=True)
class CorsSettings:
    """`cors` block of iii-http (http.md §14). Invalid header values were dropped at load time."""

    allowed_origins: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = ()

    @property
    def any_origin(self) -> bool:
        return not self.allowed_origins or "*" in self.allowed_origins


@dataclass(frozen=True, kw_only=True)
class HttpMiddlewareSettings:
    function_id: str
    phase: str = "preHandler"
    priority: int = 0


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """iii-http. `middleware` holds only `preHandler` entries, sorted by priority (stable, http.md §10.1)."""

    host: str = "127.0.0.1"
    port: int = 3111
    default_timeout_ms: int = 30000  # key `default_timeout`
    concurrency_request_limit: int = 1024  # 0 in the file is raised to 1
    body_limit_bytes: int = 1048576  # key `body_limit`
    cors: CorsSettings | None = None  # None: the permissive policy
    middleware: tuple[HttpMiddlewareSettings, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StreamSettings:
    host: str = "127.0.0.1"
    port: int = 3112
    auth_function: str | None = None
    adapter: AdapterSettings = field(default_factory=lambda: _kv_adapter(channel_size=256))


@dataclass(frozen=True, kw_only=True)
class StateSettings:
    adapter: AdapterSettings = field(default_factory=_kv_adapter)
    triggers_enabled: bool = True
    max_value_bytes: int | None = None  # None: unlimited (0 in the file means unset)
    save_interval_ms: int | None = None  # module-level override, kept only within 100..3600000
    trigger_timeout_ms: int = 60000  # 0 disables the timeout


@dataclass(frozen=True, kw_only=True)
class PubSubSettings:
    adapter: AdapterSettings = field(default_factory=lambda: AdapterSettings(name="local"))


@dataclass(frozen=True, kw_only=True)
class CronSettings:
    """iii-cron. With the `kv` adapter, locks always stay in memory whatever `store_method` says."""

    adapter: AdapterSettings = field(
        default_factory=lambda: _kv_adapter(lock_ttl_ms=30000, lock_index="cron_locks")
    )


@dataclass(frozen=True, kw_only=True)
class QueueDefinition:
    """One queue of `queue_configs`. `max_retries` is the total number of attempts (§6.4 rule 2)."""

    type: str = "standard"  # "standard" | "fifo"
    message_group_field: str | None = None  # set when type is fifo
    max_retries: int = 3
    concurrency: int = 10
    backoff_ms: int = 1000
    poll_interval_ms: int = 100


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    """iii-queue. `queues` always contains `default`."""

    adapter: AdapterSettings = field(
        default_factory=lambda: AdapterSettings(
            name="builtin", store_method=IN_MEMORY, file_path=DEFAULT_KV_FILE_PATH
        )
    )
    queues: Mapping[str, QueueDefinition] = field(default_factory=lambda: {"default": QueueDefinition()})


@dataclass(frozen=True, kw_only=True)
class ObservabilitySettings:
    enabled: bool = True
    service_name: str = "iii"
    level: str = "info"  # trace | debug | info | warn | error
    format: str = "default"  # default | json
    logs_enabled: bool = True
    logs_max_count: int = 1000
    logs_retention_seconds: float = 3600
    logs_console_output: bool = True
    logs_sampling_ratio: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the engine needs at startup. A module field that is None means the module is off."""

    modules: tuple[ModuleSettings, ...] = ()
    worker_managers: tuple[WorkerManagerSettings, ...] = (WorkerManagerSettings(),)
    invocation_timeout_ms: int = 300000
    registration_namespace_grace_ms: int = 5000
    http: HttpSettings | None = None
    stream: StreamSettings | None = None
    state: StateSettings | None = None
    pubsub: PubSubSettings | None = None
    cron: CronSettings | None = None
    queue: QueueSettings | None = None
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    source_file: str | None = None  # None: the default module set (§2.7)
    warnings: tuple[str, ...] = ()  # startup warnings, in order, each one log line


# --------------------------------------------------------------------------------------------------
# Module names (§2.3)

WORKER_MANAGER = "iii-worker-manager"
OBSERVABILITY = "iii-observability"
ENGINE_FUNCTIONS = "iii-engine-functions"
ALWAYS_ON = (OBSERVABILITY, ENGINE_FUNCTIONS)

# canonical name -> alias (None when the module has no alias), in the order of the §2.3 table
_MODULES: dict[str, str | None] = {
    WORKER_MANAGER: None,
    "iii-http": "http",
    "iii-stream": "stream",
    "iii-state": "state",
    "iii-pubsub": "pubsub",
    "iii-cron": "cron",
    "iii-queue": "queue",
    OBSERVABILITY: None,
    ENGINE_FUNCTIONS: None,
}
_CANONICAL = {alias: name for name, alias in _MODULES.items() if alias} | {name: name for name in _MODULES}
_IGNORED_MODULES = {
    "iii-telemetry": "no usage telemetry is sent",
    "configuration": "the config file is the only source of truth",
}
_REFERENCE_ONLY_MODULES = (
    "iii-http-functions",
    "iii-exec",
    "iii-bridge",
    "iii-sandbox",
    "iii-directory",
    "shell",
)
_SUPPORTED_NAMES = [n for name, alias in _MODULES.items() for n in (name, alias) if n] + list(
    _IGNORED_MODULES
)

_TOP_LEVEL_KEYS = ("workers", "modules", "registration_namespace_grace_ms", "invocation_timeout_ms")
DEFAULT_SOURCE = "(default config)"


# --------------------------------------------------------------------------------------------------
# Entry point


def load_settings(
    path: str | None,
    *,
    in_memory: bool = False,
    data_dir: str = "./data",
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Load, interpolate and validate the config; raise `ConfigError` on any problem.

    `path` None reads `./config.yaml` when it exists, else builds the default module set of §2.7 under
    `data_dir` (which is ignored when a file is read). `in_memory` forces `store_method: in_memory` on
    every kv store. `env` defaults to `os.environ`. Nothing is written: the file is only read, and
    directories for file-based stores are created by the stores themselves.
    """
    env = os.environ if env is None else env
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    if path is None:
        ctx = _Context(DEFAULT_SOURCE, in_memory=in_memory)
        document: Any = _default_document(data_dir)
    else:
        ctx = _Context(path, in_memory=in_memory)
        document = _read_document(path, env, ctx)
    settings = _build_settings(document, ctx)
    grace = _grace_override(env, ctx)
    if grace is not None:
        settings = replace(settings, registration_namespace_grace_ms=grace)
    return replace(settings, source_file=path, warnings=tuple(ctx.warnings))


def _default_document(data_dir: str) -> dict[str, Any]:
    """The §2.7 default module set, as if read from a file."""

    def kv_file(sub_path: str) -> dict[str, Any]:
        store = {"store_method": FILE_BASED, "file_path": os.path.join(data_dir, sub_path)}
        return {"adapter": {"name": "kv", "config": store}}

    return {
        "workers": [
            {"name": WORKER_MANAGER},
            {"name": "iii-http"},
            {"name": "iii-stream", "config": kv_file("stream_store")},
            {"name": "iii-state", "config": kv_file("state_store.db")},
            {"name": "iii-pubsub"},
            {"name": "iii-cron"},
        ]
    }


def _grace_override(env: Mapping[str, str], ctx: _Context) -> int | None:
    raw = env.get("III_NAMESPACE_GRACE_MS", "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\d+", raw):
        raise ctx.error("$III_NAMESPACE_GRACE_MS", f"expected an integer >= 0, got {raw!r}")
    return int(raw)


# --------------------------------------------------------------------------------------------------
# Reading, YAML and ${VAR} interpolation (§2.1, §2.4)

_PLACEHOLDER = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VERSION_DEFAULT = "__III_ENGINE_VERSION__"


def _read_document(path: str, env: Mapping[str, str], ctx: _Context) -> Any:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ctx.error("", f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        loader = yaml.SafeLoader(raw)
        try:
            root = loader.get_single_node()
            if root is None:
                return {}
            _Interpolator(env, ctx).visit(root, "")
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise ctx.error(*_yaml_error_parts(exc)) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, or bad encoding
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        raise ctx.error(f"position {exc.position}", f"character #x{code:04x}: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise ctx.error("", _one_line(str(exc))) from exc


def _yaml_error_parts(exc: yaml.MarkedYAMLError) -> tuple[str, str]:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and problem.startswith("but "):  # "expected a single document…, but found another"
        problem = f"{exc.context}, {problem}"
    location = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return location, _one_line(problem)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Interpolator:
    """Expands placeholders in the composed YAML node tree, before construction.

    Working on nodes (not constructed values) is what lets rule 5 see whether a scalar was plain or
    quoted, and guarantees that keys and comments are never touched (C3).
    """

    def __init__(self, env: Mapping[str, str], ctx: _Context) -> None:
        self.env = env
        self.ctx = ctx
        self.seen: set[int] = set()  # anchors are shared nodes: expand each once
        self.scalar_reader = yaml.SafeLoader("")

    def visit(self, node: yaml.Node, location: str) -> None:
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._visit_mapping(node, location)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.visit(item, f"{location}[{index}]")
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "${" in node.value:
            self._expand(node, location)

    def _visit_mapping(self, node: yaml.MappingNode, location: str) -> None:
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.visit(value_node, location)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if isinstance(key_node, yaml.ScalarNode):
                if key in keys:
                    raise self.ctx.error(_join(location, key), f"duplicate key {key!r}")
                keys.add(key)
            self.visit(value_node, _join(location, key))

    def _expand(self, node: yaml.ScalarNode, location: str) -> None:
        single = node.style is None and _PLACEHOLDER.fullmatch(node.value) is not None
        text = _PLACEHOLDER.sub(lambda m: self._lookup(m, location), node.value)
        node.value = text
        # Rule 5: a plain scalar that is exactly one placeholder is re-read as a YAML scalar. The
        # empty string stays "" (rule 3: `${V:}` gives ""), never null.
        if single and text:
            node.tag = self._scalar_tag(text)
            self.ctx.env_text[location] = text

    def _lookup(self, match: re.Match[str], location: str) -> str:
        name, default = match.group(1), match.group(2)
        if name in self.env:
            return self.env[name]
        if default is None:
            raise self.ctx.error(location, f"environment variable {name} is not set and has no default")
        return __version__ if default == _VERSION_DEFAULT else default

    def _scalar_tag(self, text: str) -> str:
        """The tag YAML would give `text` as a plain scalar; str when that would not construct."""
        tag: str = self.scalar_reader.resolve(yaml.ScalarNode, text, (True, False))
        try:
            self.scalar_reader.construct_object(yaml.ScalarNode(tag, text))
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            return _STR_TAG
        return tag


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _join(location: str, key: object) -> str:
    """Extend a location with a mapping key: `workers[0].config` + `port`; odd keys get `["…"]`."""
    text = str(key)
    if _IDENTIFIER.fullmatch(text):
        return f"{location}.{text}" if location else text
    return f'{location}["{text}"]'


# --------------------------------------------------------------------------------------------------
# Validation helpers


class _Context:
    """Per-load state: the file name for messages, collected warnings, and the substituted text of
    plain single-placeholder scalars (so a string field keeps `${TOKEN}` = "0123" as "0123" even
    though rule 5 re-read it as a number)."""

    def __init__(self, file: str, *, in_memory: bool) -> None:
        self.file = file
        self.in_memory = in_memory
        self.env_text: dict[str, str] = {}
        self.warnings: list[str] = []

    def error(self, location: str, message: str) -> ConfigError:
        return ConfigError(self.file, location, message)

    def warn(self, location: str, message: str) -> None:
        self.warnings.append(f"{location}: {message}" if location else message)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" between {minimum} and {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


class _Section:
    """A mapping from the document plus its location, with typed getters.

    A key whose value is null counts as absent and gets its default.
    """

    def __init__(self, ctx: _Context, data: Mapping[Any, Any], location: str) -> None:
        self.ctx = ctx
        self.data = data
        self.location = location

    @classmethod
    def of(cls, ctx: _Context, value: Any, location: str) -> _Section:
        if value is None:
            return cls(ctx, {}, location)
        if not isinstance(value, dict):
            raise ctx.error(location or "top level", f"expected a mapping, got {_describe(value)}")
        return cls(ctx, value, location)

    def loc(self, key: str) -> str:
        return _join(self.location, key)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def check_keys(self, allowed: tuple[str, ...], *, rejected: Mapping[str, str] | None = None) -> None:
        """Unknown keys are errors; `rejected` maps known-but-unsupported keys to their message."""
        for key in self.data:
            if rejected and key in rejected:
                raise self.ctx.error(self.loc(key), rejected[key])
            if key not in allowed:
                raise self.ctx.error(
                    self.loc(key), f"unknown key {str(key)!r}; allowed: {', '.join(allowed)}"
                )

    def section(self, key: str) -> _Section:
        return _Section.of(self.ctx, self.get(key), self.loc(key))

    def string(self, key: str, default: str, *, non_empty: bool = False) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            # rule 5 may have re-read a plain `${VAR}` as a number, bool or null: keep the text
            value = self.ctx.env_text.get(self.loc(key), value)
        if value is None:
            return default
        if not isinstance(value, str) or (non_empty and not value):
            expected = "a non-empty string" if non_empty else "a string"
            raise self.ctx.error(self.loc(key), f"expected {expected}, got {_describe(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        """A string that may be absent; the empty string also means absent (`${TOKEN:}`)."""
        return self.string(key, "") or None

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.get(key)
        if value is None:
            return default
        in_range = (
            _is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        )
        if not in_range:
            expected = "an integer" + _range_text(minimum, maximum)
            raise self.ctx.error(self.loc(key), f"expected {expected}, got {_describe(value)}")
        return int(value)

    def number(self, key: str, default: float, *, minimum: float, maximum: float | None = None) -> float:
        value = self.get(key)
        if value is None:
            return default
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or value < minimum or (maximum is not None and value > maximum):
            expected = "a number" + _range_text(minimum, maximum)
            raise self.ctx.error(self.loc(key), f"expected {expected}, got {_describe(value)}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.ctx.error(self.loc(key), f"expected true or false, got {_describe(value)}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key)
        if value is None:
            return default
        if value not in choices:
            raise self.ctx.error(
                self.loc(key), f"expected one of {', '.join(choices)}, got {_describe(value)}"
            )
        return str(value)

    def string_list(self, key: str) -> list[str]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.ctx.error(self.loc(key), f"expected a list of strings, got {_describe(value)}")
        return list(value)

    def port(self, key: str, default: int, *, allow_digit_string: bool = False) -> int:
        value = self.get(key)
        if allow_digit_string and isinstance(value, str) and value.isascii() and value.isdigit():
            # http.md §15 rule 2: for `port` only, a string of digits (`"${PORT:4000}"`) is accepted
            if int(value) <= 65535:
                return int(value)
            raise self.ctx.error(self.loc(key), f"expected an integer between 0 and 65535, got {value!r}")
        return self.integer(key, default, minimum=0, maximum=65535)


# --------------------------------------------------------------------------------------------------
# Top level and module entries (§2.2, §2.3)


@dataclass(frozen=True)
class _Entry:
    name: str  # as written
    location: str  # "workers[2]"
    config: _Section


def _build_settings(document: Any, ctx: _Context) -> Settings:
    top = _Section.of(ctx, document, "")
    for key in top.data:
        if key not in _TOP_LEVEL_KEYS:
            allowed = ", ".join(_TOP_LEVEL_KEYS)
            raise ctx.error(top.loc(key), f"unknown top-level key {str(key)!r}; allowed: {allowed}")
    invocation_timeout_ms = top.integer("invocation_timeout_ms", 300000, minimum=1)
    grace_ms = top.integer("registration_namespace_grace_ms", 5000, minimum=0)
    builder = _ModuleSetBuilder(ctx)
    # `modules:` is the legacy alias of `workers:`; its entries come after (§2.2)
    for entry in [*_module_entries(top, "workers"), *_module_entries(top, "modules")]:
        builder.add(entry)
    return builder.finish(
        invocation_timeout_ms=invocation_timeout_ms, registration_namespace_grace_ms=grace_ms
    )


def _module_entries(top: _Section, key: str) -> Iterator[_Entry]:
    entries = top.get(key)
    if entries is None:
        return
    if not isinstance(entries, list):
        raise top.ctx.error(top.loc(key), f"expected a list of module entries, got {_describe(entries)}")
    for index, raw in enumerate(entries):
        location = f"{key}[{index}]"
        entry = _Section.of(top.ctx, raw, location)
        entry.check_keys(
            ("name", "config"),
            rejected={
                "image": "external worker images are not supported by pyiii; only built-in modules run"
            },
        )
        name = entry.get("name")
        if name is None:
            raise top.ctx.error(location, "missing 'name'")
        if not isinstance(name, str):
            raise top.ctx.error(entry.loc("name"), f"expected a module name, got {_describe(name)}")
        yield _Entry(name=name, location=location, config=entry.section("config"))


@dataclass(frozen=True)
class _Listener:
    host: str
    port: int
    owner: str  # "iii-http (workers[1])"
    location: str | None  # where to report a clash; None for the implied worker manager


@dataclass(frozen=True)
class _StoreFile:
    path: str
    owner: str
    location: str


class _ModuleSetBuilder:
    """Accumulates validated module entries, then runs the cross-module checks."""

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx
        self.modules: list[ModuleSettings] = []
        self.worker_managers: list[WorkerManagerSettings] = []
        self.typed: dict[str, Any] = {}  # canonical name -> settings object
        self.listeners: list[_Listener] = []
        self.store_files: list[_StoreFile] = []
        self.first_seen: dict[str, _Entry] = {}

    def add(self, entry: _Entry) -> None:
        if entry.name in _REFERENCE_ONLY_MODULES:
            self.ctx.warn("", f"module '{entry.name}' is not provided by pyiii; skipped")
            return
        if entry.name in _IGNORED_MODULES:
            reason = _IGNORED_MODULES[entry.name]
            self.ctx.warn(
                entry.location, f"module '{entry.name}' is accepted and ignored by pyiii ({reason})"
            )
            return
        canonical = _CANONICAL.get(entry.name)
        if canonical is None:
            supported = ", ".join(_SUPPORTED_NAMES)
            raise self.ctx.error(
                _join(entry.location, "name"), f"unknown module '{entry.name}'; supported: {supported}"
            )
        self._check_duplicate(canonical, entry)
        self.modules.append(ModuleSettings(name=canonical, listed_as=entry.name, location=entry.location))
        if canonical == WORKER_MANAGER:
            self.worker_managers.append(self._worker_manager(entry))
        else:
            self.typed[canonical] = _MODULE_BUILDERS[canonical](self, entry)

    def _check_duplicate(self, canonical: str, entry: _Entry) -> None:
        if canonical == WORKER_MANAGER:
            return  # one entry per listener
        first = self.first_seen.setdefault(canonical, entry)
        if first is entry:
            return
        also = (
            f"also listed as '{first.name}'"
            if first.name != entry.name
            else f"also listed at {first.location}"
        )
        raise self.ctx.error(entry.location, f"duplicate module '{entry.name}' ({also})")

    def _worker_manager(self, entry: _Entry) -> WorkerManagerSettings:
        settings = _worker_manager_settings(entry.config)
        self.add_listener(settings.host, settings.port, entry, "port")
        _warn_if_open(self.ctx, settings, entry.location)
        return settings

    def add_listener(self, host: str, port: int, entry: _Entry, port_key: str) -> None:
        owner = f"{_CANONICAL[entry.name]} ({entry.location})"
        self._register_listener(_Listener(host, port, owner, _join(entry.config.location, port_key)))

    def _register_listener(self, listener: _Listener) -> None:
        for other in self.listeners:
            if _same_address(listener, other):
                # report at the later entry, or at the file's entry when one side is implied
                here, there = (listener, other) if listener.location else (other, listener)
                raise self.ctx.error(
                    here.location or "",
                    f"listener {_address(here.host, here.port)} is also used by {there.owner}",
                )
        self.listeners.append(listener)

    def add_store_file(self, adapter: AdapterSettings, entry: _Entry, location: str) -> None:
        """§2.6 rule 1: two modules naming the same existing regular file is a config error."""
        if not adapter.file_based or adapter.file_path is None or not os.path.isfile(adapter.file_path):
            return
        owner = f"{_CANONICAL[entry.name]} ({entry.location})"
        for other in self.store_files:
            if os.path.samefile(other.path, adapter.file_path):
                raise self.ctx.error(
                    location, f"file '{adapter.file_path}' is already the database of {other.owner}"
                )
        self.store_files.append(_StoreFile(adapter.file_path, owner, location))

    def finish(self, *, invocation_timeout_ms: int, registration_namespace_grace_ms: int) -> Settings:
        modules = list(self.modules)
        worker_managers = list(self.worker_managers)
        if not worker_managers:
            # §2.3 rule 2: no iii-worker-manager entry means one listener with default settings
            default = WorkerManagerSettings()
            self._register_listener(
                _Listener(default.host, default.port, f"{WORKER_MANAGER} (default)", None)
            )
            worker_managers.append(default)
            modules.append(ModuleSettings(name=WORKER_MANAGER))
        modules.extend(ModuleSettings(name=name) for name in ALWAYS_ON if name not in self.first_seen)
        typed = self.typed
        return Settings(
            modules=tuple(modules),
            worker_managers=tuple(worker_managers),
            invocation_timeout_ms=invocation_timeout_ms,
            registration_namespace_grace_ms=registration_namespace_grace_ms,
            http=typed.get("iii-http"),
            stream=typed.get("iii-stream"),
            state=typed.get("iii-state"),
            pubsub=typed.get("iii-pubsub"),
            cron=typed.get("iii-cron"),
            queue=typed.get("iii-queue"),
            observability=typed.get(OBSERVABILITY) or ObservabilitySettings(),
        )


_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def _same_address(a: _Listener, b: _Listener) -> bool:
    """Port 0 never clashes; a wildcard host clashes with every host on the same port."""
    if a.port == 0 or a.port != b.port:
        return False
    return a.host == b.host or a.host in _WILDCARD_HOSTS or b.host in _WILDCARD_HOSTS


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_open(ctx: _Context, settings: WorkerManagerSettings, location: str) -> None:
    """protocol.md §2.2 rule 5: a non-loopback worker listener without auth logs a warning."""
    has_auth = settings.auth_token is not None or (
        settings.rbac is not None and settings.rbac.auth_function_id is not None
    )
    if not has_auth and not _is_loopback(settings.host):
        ctx.warn(
            location,
            f"iii-worker-manager on {_address(settings.host, settings.port)} is reachable from other hosts "
            "and has no auth: set auth_token or rbac.auth_function_id",
        )


# --------------------------------------------------------------------------------------------------
# iii-worker-manager (§2.5, protocol.md §2.1-§2.3)

_UNSUPPORTED_HOOK = "not supported by pyiii (RBAC registration hooks and middleware are not provided)"
_RBAC_HOOKS = (
    "on_function_registration_function_id",
    "on_trigger_registration_function_id",
    "on_trigger_type_registration_function_id",
)
_MATCH_CALL = re.compile(r"""match\(\s*(?:"([^"]*)"|'([^']*)')\s*\)""")


def _worker_manager_settings(config: _Section) -> WorkerManagerSettings:
    config.check_keys(
        ("host", "port", "handshake_timeout_ms", "auth_token", "rbac"),
        rejected={"middleware_function_id": _UNSUPPORTED_HOOK},
    )
    return WorkerManagerSettings(
        host=config.string("host", "127.0.0.1", non_empty=True),
        port=config.port("port", 49134),
        handshake_timeout_ms=config.integer("handshake_timeout_ms", 10000, minimum=1),
        auth_token=config.optional_string("auth_token"),
        rbac=_rbac_settings(config.section("rbac")) if config.get("rbac") is not None else None,
    )


def _rbac_settings(rbac: _Section) -> RbacSettings:
    rbac.check_keys(
        ("auth_function_id", "expose_functions"), rejected=dict.fromkeys(_RBAC_HOOKS, _UNSUPPORTED_HOOK)
    )
    filters = rbac.get("expose_functions")
    if filters is None:
        filters = []
    if not isinstance(filters, list):
        raise rbac.ctx.error(
            rbac.loc("expose_functions"), f"expected a list of filters, got {_describe(filters)}"
        )
    location = rbac.loc("expose_functions")
    return RbacSettings(
        auth_function_id=rbac.optional_string("auth_function_id"),
        expose_functions=tuple(
            _expose_filter(rbac.ctx, item, f"{location}[{index}]") for index, item in enumerate(filters)
        ),
    )


def _glob(text: str) -> Glob | None:
    match = _MATCH_CALL.fullmatch(text.strip())
    if match is None:
        return None
    return Glob(match.group(1) if match.group(1) is not None else match.group(2))


def _expose_filter(ctx: _Context, item: Any, location: str) -> ExposeFilter:
    """`match("glob")`, or `{metadata: {key: value | match("glob")}, namespace?}`; a mapping may also
    give `match: 'match("glob")'` so that a glob filter can carry a namespace."""
    expected = "expected 'match(\"<glob>\")' or a mapping with 'metadata' (and optional 'namespace')"
    if isinstance(item, str):
        glob = _glob(item)
        if glob is None:
            raise ctx.error(location, f"{expected}, got {_describe(item)}")
        return ExposeFilter(match=glob)
    section = _Section.of(ctx, item, location)
    section.check_keys(("match", "metadata", "namespace"))
    namespace = section.string("namespace", "default", non_empty=True)
    if (section.get("match") is None) == (section.get("metadata") is None):
        raise ctx.error(location, f"{expected}; give exactly one of 'match' and 'metadata'")
    if section.get("match") is not None:
        text = section.string("match", "")
        glob = _glob(text) or Glob(text)
        return ExposeFilter(match=glob, namespace=namespace)
    metadata = section.section("metadata").data
    values = {key: (_glob(v) or v) if isinstance(v, str) else v for key, v in metadata.items()}
    return ExposeFilter(metadata=values, namespace=namespace)


# --------------------------------------------------------------------------------------------------
# Adapters (§2.6)


@dataclass(frozen=True)
class _AdapterKind:
    names: Mapping[str, str]  # accepted name -> canonical name
    default: str
    keys: Mapping[str, tuple[str, ...]]  # canonical name -> known adapter.config keys


_KV_KEYS = ("store_method", "file_path", "save_interval_ms")
_REDIS_KEYS = ("redis_url",)
_ADAPTER_KINDS: dict[str, _AdapterKind] = {
    "iii-state": _AdapterKind({"kv": "kv", "redis": "redis"}, "kv", {"kv": _KV_KEYS, "redis": _REDIS_KEYS}),
    "iii-stream": _AdapterKind(
        {"kv": "kv", "redis": "redis"}, "kv", {"kv": (*_KV_KEYS, "channel_size"), "redis": _REDIS_KEYS}
    ),
    "iii-pubsub": _AdapterKind(
        {"local": "local", "memory": "local", "redis": "redis"}, "local", {"local": (), "redis": _REDIS_KEYS}
    ),
    "iii-cron": _AdapterKind(
        {"kv": "kv", "redis": "redis"},
        "kv",
        {"kv": ("lock_ttl_ms", "lock_index", *_KV_KEYS), "redis": _REDIS_KEYS},
    ),
    "iii-queue": _AdapterKind(
        {"builtin": "builtin", "memory": "builtin"}, "builtin", {"builtin": ("store_method", "file_path")}
    ),
}


def _redis_installed() -> bool:
    return importlib.util.find_spec("redis") is not None


def _adapter_settings(builder: _ModuleSetBuilder, entry: _Entry) -> AdapterSettings:
    """The module's `adapter` block, validated; absent means the module's default adapter."""
    ctx = builder.ctx
    kind = _ADAPTER_KINDS[_CANONICAL[entry.name]]
    block = entry.config.section("adapter")
    block.check_keys(("name", "config"))
    written = kind.default if entry.config.get("adapter") is None else block.get("name")
    if written is None:
        raise ctx.error(block.location, "missing 'name'")
    name = kind.names.get(written) if isinstance(written, str) else None
    if name is None:
        available = ", ".join(kind.names)
        raise ctx.error(block.loc("name"), f"Adapter factory '{written}' not found. Available: [{available}]")
    if name == "redis" and not _redis_installed():
        raise ctx.error(
            block.loc("name"),
            "the redis adapter needs the optional 'redis' package, which is not installed; "
            "install it with: pip install 'pyiii[redis]'",
        )
    config = block.section("config")
    known = kind.keys[name]
    unknown = [str(key) for key in config.data if key not in known]
    if unknown:
        ctx.warn(config.location, "unknown adapter config keys ignored: " + ", ".join(unknown))
    adapter = AdapterSettings(
        name=name,
        config={key: value for key, value in config.data.items() if key in known},
        **_adapter_fields(config, known, force_in_memory=ctx.in_memory or written == "memory"),
    )
    builder.add_store_file(adapter, entry, config.loc("file_path"))
    return adapter


def _adapter_fields(config: _Section, known: tuple[str, ...], *, force_in_memory: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "store_method" in known:
        fields["store_method"] = _store_method(config, force_in_memory=force_in_memory)
        fields["file_path"] = config.string("file_path", DEFAULT_KV_FILE_PATH, non_empty=True)
    if "save_interval_ms" in known:
        fields["save_interval_ms"] = _normalised_save_interval(config.get("save_interval_ms"))
    if "redis_url" in known:
        fields["redis_url"] = config.string("redis_url", DEFAULT_REDIS_URL, non_empty=True)
    if "channel_size" in known:
        fields["channel_size"] = config.integer("channel_size", 256, minimum=1, maximum=1048576)
    if "lock_ttl_ms" in known:
        fields["lock_ttl_ms"] = config.integer("lock_ttl_ms", 30000, minimum=1)
        fields["lock_index"] = config.string("lock_index", "cron_locks", non_empty=True)
    return fields


def _store_method(config: _Section, *, force_in_memory: bool) -> str:
    value = config.get("store_method")
    if value is None:
        value = IN_MEMORY
    if value not in STORE_METHODS:
        expected = ", ".join(STORE_METHODS)
        raise config.ctx.error(
            config.loc("store_method"), f"Unknown store_method '{value}'. Expected one of: {expected}"
        )
    # `--in-memory` (§3.1) and the queue's `memory` alias (§2.6) win over the file
    return IN_MEMORY if force_in_memory else str(value)


def _normalised_save_interval(value: Any) -> int:
    """state.md §8.3 rule 5: missing, 0 or non-integer -> 5000; below 100 -> 100. Never an error."""
    if not _is_int(value) or value == 0:
        return DEFAULT_SAVE_INTERVAL_MS
    return max(int(value), 100)


# --------------------------------------------------------------------------------------------------
# Modules (§2.5, http.md §15, stream.md §8.2, state.md §9, §4-§7)


def _http_settings(builder: _ModuleSetBuilder, entry: _Entry) -> HttpSettings:
    config = entry.config
    config.check_keys(
        ("host", "port", "default_timeout", "concurrency_request_limit", "body_limit", "cors", "middleware")
    )
    settings = HttpSettings(
        host=config.string("host", "127.0.0.1", non_empty=True),
        port=config.port("port", 3111, allow_digit_string=True),
        default_timeout_ms=config.integer("default_timeout", 30000, minimum=1),
        concurrency_request_limit=max(config.integer("concurrency_request_limit", 1024, minimum=0), 1),
        body_limit_bytes=config.integer("body_limit", 1048576, minimum=1),
        cors=_cors_settings(config.section("cors")) if config.get("cors") is not None else None,
        middleware=_http_middleware(config),
    )
    builder.add_listener(settings.host, settings.port, entry, "port")
    return settings


def _is_header_value(text: str) -> bool:
    return bool(text) and all(ch == "\t" or " " <= ch <= "~" for ch in text)


def _cors_settings(cors: _Section) -> CorsSettings:
    cors.check_keys(("allowed_origins", "allowed_methods"))
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("allowed_origins", "allowed_methods"):
        values = cors.string_list(key)
        invalid = [value for value in values if not _is_header_value(value)]
        if invalid:
            cors.ctx.warn(cors.loc(key), "dropped values that are not valid header values: " + repr(invalid))
        lists[key] = tuple(value for value in values if _is_header_value(value))
    origins = lists["allowed_origins"]
    if "*" in origins and len(origins) > 1:
        cors.ctx.warn(cors.loc("allowed_origins"), "'*' next to explicit origins means any origin")
    return CorsSettings(allowed_origins=origins, allowed_methods=lists["allowed_methods"])


def _http_middleware(config: _Section) -> tuple[HttpMiddlewareSettings, ...]:
    raw = config.get("middleware")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise config.ctx.error(config.loc("middleware"), f"expected a list, got {_describe(raw)}")
    entries = []
    for index, item in enumerate(raw):
        section = _Section.of(config.ctx, item, f"{config.loc('middleware')}[{index}]")
        section.check_keys(("function_id", "phase", "priority"))
        if section.get("function_id") is None:
            raise config.ctx.error(section.location, "missing 'function_id'")
        entries.append(
            HttpMiddlewareSettings(
                function_id=section.string("function_id", "", non_empty=True),
                phase=section.string("phase", "preHandler"),
                priority=section.integer("priority", 0),
            )
        )
    # http.md §10.1: other phases are accepted and skipped; ascending priority, config order on ties
    return tuple(sorted((m for m in entries if m.phase == "preHandler"), key=lambda m: m.priority))


def _stream_settings(builder: _ModuleSetBuilder, entry: _Entry) -> StreamSettings:
    config = entry.config
    config.check_keys(("host", "port", "auth_function", "adapter"))
    settings = StreamSettings(
        host=config.string("host", "127.0.0.1", non_empty=True),
        port=config.port("port", 3112),
        auth_function=config.optional_string("auth_function"),
        adapter=_adapter_settings(builder, entry),
    )
    builder.add_listener(settings.host, settings.port, entry, "port")
    return settings


def _state_settings(builder: _ModuleSetBuilder, entry: _Entry) -> StateSettings:
    config = entry.config
    config.check_keys(
        ("adapter", "triggers_enabled", "max_value_bytes", "save_interval_ms", "trigger_timeout_ms")
    )
    save_interval = config.get("save_interval_ms")
    return StateSettings(
        adapter=_adapter_settings(builder, entry),
        triggers_enabled=config.boolean("triggers_enabled", True),
        max_value_bytes=config.integer("max_value_bytes", 0, minimum=0) or None,
        # state.md §9.1: kept only within 100..3600000, otherwise unset (normalised, never an error)
        save_interval_ms=save_interval
        if _is_int(save_interval) and 100 <= save_interval <= 3600000
        else None,
        trigger_timeout_ms=config.integer("trigger_timeout_ms", 60000, minimum=0),
    )


def _pubsub_settings(builder: _ModuleSetBuilder, entry: _Entry) -> PubSubSettings:
    entry.config.check_keys(("adapter",))
    return PubSubSettings(adapter=_adapter_settings(builder, entry))


def _cron_settings(builder: _ModuleSetBuilder, entry: _Entry) -> CronSettings:
    entry.config.check_keys(("adapter",))
    return CronSettings(adapter=_adapter_settings(builder, entry))


_QUEUE_KEYS = (
    "type",
    "message_group_field",
    "max_retries",
    "concurrency",
    "backoff_ms",
    "poll_interval_ms",
    "max_priority",  # accepted and ignored (§6.2 rule 2)
    "priority_field",  # accepted and ignored
)


def _queue_settings(builder: _ModuleSetBuilder, entry: _Entry) -> QueueSettings:
    config = entry.config
    config.check_keys(("adapter", "queue_configs"))
    queue_configs = config.section("queue_configs")
    queues = {"default": QueueDefinition()}  # §6.2 rule 1, unless queue_configs defines it
    for name in queue_configs.data:
        if not isinstance(name, str) or not name:
            raise builder.ctx.error(queue_configs.loc(str(name)), "a queue name must be a non-empty string")
        queues[name] = _queue_definition(queue_configs.section(name))
    return QueueSettings(adapter=_adapter_settings(builder, entry), queues=queues)


def _queue_definition(queue: _Section) -> QueueDefinition:
    queue.check_keys(_QUEUE_KEYS)
    queue_type = queue.choice("type", "standard", ("standard", "fifo"))
    group_field = queue.optional_string("message_group_field")
    if queue_type == "fifo" and group_field is None:
        raise queue.ctx.error(queue.loc("message_group_field"), "required when type is fifo")
    return QueueDefinition(
        type=queue_type,
        message_group_field=group_field,
        max_retries=queue.integer("max_retries", 3, minimum=0),
        concurrency=queue.integer("concurrency", 10, minimum=1),
        backoff_ms=queue.integer("backoff_ms", 1000, minimum=0),
        poll_interval_ms=queue.integer("poll_interval_ms", 100, minimum=1),
    )


_OBSERVABILITY_IGNORED = (
    "service_version",
    "endpoint",
    "sampling_ratio",
    "memory_max_spans",
    "metrics_enabled",
    "metrics_retention_seconds",
    "metrics_max_count",
)
_OBSERVABILITY_KEYS = (
    "enabled",
    "service_name",
    "level",
    "format",
    "logs_enabled",
    "logs_max_count",
    "logs_retention_seconds",
    "logs_console_output",
    "logs_sampling_ratio",
    "exporter",
    "logs_exporter",
    "metrics_exporter",
    "alerts",
    *_OBSERVABILITY_IGNORED,
)


def _observability_settings(builder: _ModuleSetBuilder, entry: _Entry) -> ObservabilitySettings:
    config = entry.config
    config.check_keys(_OBSERVABILITY_KEYS)
    for key in ("exporter", "logs_exporter", "metrics_exporter"):
        value = config.get(key)
        if value is not None and value != "memory":
            raise builder.ctx.error(
                config.loc(key),
                f"exporter {_describe(value)} is not supported: pyiii keeps logs in memory and exports "
                "nothing; only 'memory' is accepted",
            )
    alerts = config.get("alerts")
    if alerts is not None and alerts != []:
        raise builder.ctx.error(
            config.loc("alerts"), "alerts are not supported by pyiii; the list must be empty"
        )
    return ObservabilitySettings(
        enabled=config.boolean("enabled", True),
        service_name=config.string("service_name", "iii"),
        level=config.choice("level", "info", ("trace", "debug", "info", "warn", "error")),
        format=config.choice("format", "default", ("default", "json")),
        logs_enabled=config.boolean("logs_enabled", True),
        logs_max_count=config.integer("logs_max_count", 1000, minimum=1),
        logs_retention_seconds=config.number("logs_retention_seconds", 3600, minimum=0),
        logs_console_output=config.boolean("logs_console_output", True),
        logs_sampling_ratio=config.number("logs_sampling_ratio", 1.0, minimum=0.0, maximum=1.0),
    )


def _engine_functions_settings(builder: _ModuleSetBuilder, entry: _Entry) -> None:
    if entry.config.data:
        raise builder.ctx.error(entry.config.location, "iii-engine-functions takes no config; remove it")


_MODULE_BUILDERS: dict[str, Callable[[_ModuleSetBuilder, _Entry], Any]] = {
    "iii-http": _http_settings,
    "iii-stream": _stream_settings,
    "iii-state": _state_settings,
    "iii-pubsub": _pubsub_settings,
    "iii-cron": _cron_settings,
    "iii-queue": _queue_settings,
    OBSERVABILITY: _observability_settings,
    ENGINE_FUNCTIONS: _engine_functions_settings,
}
