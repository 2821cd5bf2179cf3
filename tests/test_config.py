"""Tests of pyiii.config: config-cli-modules.md §2 (and the module config tables it points to)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyiii.config as config_module
from pyiii._version import __version__
from pyiii.config import (
    AdapterSettings,
    ConfigError,
    ExposeFilter,
    Glob,
    HttpMiddlewareSettings,
    QueueDefinition,
    Settings,
    WorkerManagerSettings,
    load_settings,
)

# --------------------------------------------------------------------------------------------------
# helpers


def write_config(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, **kwargs: Any) -> Settings:
    return load_settings(write_config(tmp_path, text), env=env or {}, **kwargs)


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env, **kwargs)
    return info.value


def service_name_config(value: str) -> str:
    """A config whose iii-observability service_name is `value`, written in block style (a plain
    `${…}` cannot appear inside a YAML flow mapping, where `{` and `}` are indicators)."""
    return f"workers:\n  - name: iii-observability\n    config:\n      service_name: {value}\n"


def entry(name: str, config: str) -> str:
    """A config with one module entry whose config is the flow mapping `config`."""
    return f"workers:\n  - name: {name}\n    config: {config}\n"


def module_names(s: Settings) -> list[str]:
    return [m.name for m in s.modules]


def listeners(s: Settings) -> set[tuple[str, int]]:
    found = {(wm.host, wm.port) for wm in s.worker_managers}
    if s.http:
        found.add((s.http.host, s.http.port))
    if s.stream:
        found.add((s.stream.host, s.stream.port))
    return found


@pytest.fixture
def no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_redis_installed", lambda: False)


@pytest.fixture
def with_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_redis_installed", lambda: True)


# --------------------------------------------------------------------------------------------------
# §2.8 error format


def test_config_error_str_is_the_one_line_format() -> None:
    """ConfigError renders as `pyiii: config error: <file>: <location>: <message>`."""
    error = ConfigError("config.yaml", "workers[2].config.port", "bad")
    assert str(error) == "pyiii: config error: config.yaml: workers[2].config.port: bad"
    assert (error.file, error.location, error.message) == ("config.yaml", "workers[2].config.port", "bad")


def test_yaml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error is `line N, column M: <problem>` (1-based)."""
    path = write_config(tmp_path, "workers:\n  - name: http\n    config: port: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"pyiii: config error: {path}: line 3, column 17: mapping values are not allowed here"
    )


def test_several_yaml_documents_are_an_error(tmp_path: Path) -> None:
    """A file with two YAML documents is a config error located at the second one."""
    error = config_error(tmp_path, "a: 1\n---\nb: 2\n")
    assert error.location == "line 2, column 1"
    assert "expected a single document" in error.message


def test_unsafe_yaml_tags_are_rejected(tmp_path: Path) -> None:
    """The safe loader refuses Python object tags with a located config error."""
    error = config_error(tmp_path, "workers: !!python/object:os.system {}\n")
    assert error.location.startswith("line 1, column")
    assert "could not determine a constructor" in error.message


def test_error_messages_are_single_lines(tmp_path: Path) -> None:
    """Every config error prints as exactly one line."""
    error = config_error(tmp_path, "workers: [\n")
    assert "\n" not in str(error)


# --------------------------------------------------------------------------------------------------
# §2.1 locating and loading


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """`-c PATH` naming a missing file is a config error naming the file."""
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_settings(missing, env={})
    assert str(info.value).startswith(f"pyiii: config error: {missing}: cannot read the file: ")
    assert "\n" not in str(info.value)


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable path (a directory) is a config error."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(str(tmp_path), env={})


def test_empty_file_counts_as_empty_mapping(tmp_path: Path) -> None:
    """An empty file is `{}`: only the implied worker listener and the always-on modules run."""
    s = load(tmp_path, "")
    assert s.worker_managers == (WorkerManagerSettings(),)
    assert (s.http, s.stream, s.state, s.pubsub, s.cron, s.queue) == (None,) * 6
    assert module_names(s) == ["iii-worker-manager", "iii-observability", "iii-engine-functions"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A top level that is not a mapping is a config error."""
    error = config_error(tmp_path, "- name: http\n")
    assert error.location == "top level"
    assert "expected a mapping" in error.message


def test_json_config_is_accepted(tmp_path: Path) -> None:
    """JSON is valid YAML."""
    path = write_config(tmp_path, json.dumps({"workers": [{"name": "http", "config": {"port": 4000}}]}))
    s = load_settings(path, env={})
    assert s.http is not None and s.http.port == 4000


def test_without_path_reads_config_yaml_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -c, ./config.yaml is read when it exists."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("workers:\n  - name: queue\n")
    s = load_settings(None, env={})
    assert s.source_file == "config.yaml"
    assert s.queue is not None and s.http is None


def test_without_path_or_file_uses_default_module_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checklist 1 (config side): no file gives 49134, 3111, 3112 on 127.0.0.1 and stores under ./data."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert s.source_file is None
    assert listeners(s) == {("127.0.0.1", 49134), ("127.0.0.1", 3111), ("127.0.0.1", 3112)}
    assert s.state is not None and s.stream is not None and s.pubsub is not None and s.cron is not None
    assert s.queue is None
    assert (s.state.adapter.store_method, s.state.adapter.file_path) == (
        "file_based",
        "./data/state_store.db",
    )
    assert (s.stream.adapter.store_method, s.stream.adapter.file_path) == (
        "file_based",
        "./data/stream_store",
    )
    assert module_names(s) == [
        "iii-worker-manager",
        "iii-http",
        "iii-stream",
        "iii-state",
        "iii-pubsub",
        "iii-cron",
        "iii-observability",
        "iii-engine-functions",
    ]
    assert s.warnings == ()


def test_default_set_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """C4/C6: loading the default set creates neither config.yaml nor the data directory."""
    monkeypatch.chdir(tmp_path)
    load_settings(None, env={})
    assert list(tmp_path.iterdir()) == []


def test_in_memory_default_set_uses_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checklist 2 (config side): --in-memory without a file makes every store in_memory."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, in_memory=True, env={})
    assert s.state is not None and s.stream is not None and s.cron is not None
    for adapter in (s.state.adapter, s.stream.adapter, s.cron.adapter):
        assert adapter.store_method == "in_memory"
        assert not adapter.file_based


def test_data_dir_moves_default_set_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checklist 3 (config side): --data-dir ./other puts the default set's files under ./other."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, data_dir="./other", env={})
    assert s.state is not None and s.stream is not None
    assert s.state.adapter.file_path == "./other/state_store.db"
    assert s.stream.adapter.file_path == "./other/stream_store"


def test_data_dir_is_ignored_with_a_config_file(tmp_path: Path) -> None:
    """--data-dir has no effect when a config file is used."""
    s = load(tmp_path, "workers:\n  - name: state\n", data_dir="./other")
    assert s.state is not None
    assert s.state.adapter.store_method == "in_memory"
    assert s.state.adapter.file_path == "kv_store_data.db"


def test_config_file_is_byte_identical_after_load(tmp_path: Path) -> None:
    """Checklist 10: loading never rewrites the file (C4), comments and placeholders included."""
    text = "# ${NOT_SET} comment\nworkers:\n  - name: http   # trailing\n    config:\n      port: ${P:3111}\n"
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode())
    before = path.stat().st_mtime_ns
    load_settings(str(path), env={})
    assert path.read_bytes() == text.encode()
    assert path.stat().st_mtime_ns == before


def test_duplicate_mapping_key_is_an_error(tmp_path: Path) -> None:
    """A key given twice in one mapping is a config error instead of silently keeping the last."""
    error = config_error(tmp_path, "workers: []\nworkers:\n  - name: http\n")
    assert (error.location, error.message) == ("workers", "duplicate key 'workers'")


# --------------------------------------------------------------------------------------------------
# §2.2 top-level keys


def test_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    """Checklist 6: an unknown top-level key is a config error."""
    error = config_error(tmp_path, "workers: []\nworkerz: []\n")
    assert error.location == "workerz"
    assert error.message.startswith("unknown top-level key 'workerz'; allowed: workers, modules")


def test_top_level_defaults(tmp_path: Path) -> None:
    """invocation_timeout_ms defaults to 300000 and registration_namespace_grace_ms to 5000."""
    s = load(tmp_path, "{}")
    assert (s.invocation_timeout_ms, s.registration_namespace_grace_ms) == (300000, 5000)


def test_top_level_values(tmp_path: Path) -> None:
    """Both top-level limits are read from the file."""
    s = load(tmp_path, "invocation_timeout_ms: 1000\nregistration_namespace_grace_ms: 0\n")
    assert (s.invocation_timeout_ms, s.registration_namespace_grace_ms) == (1000, 0)


@pytest.mark.parametrize(
    "text",
    ["invocation_timeout_ms: 0", "invocation_timeout_ms: '10'", "registration_namespace_grace_ms: -1"],
)
def test_top_level_values_out_of_range(tmp_path: Path, text: str) -> None:
    """invocation_timeout_ms must be an int >= 1 and the grace an int >= 0."""
    error = config_error(tmp_path, text)
    assert error.location == text.split(":")[0]
    assert error.message.startswith("expected an integer >=")


def test_grace_env_overrides_file(tmp_path: Path) -> None:
    """$III_NAMESPACE_GRACE_MS overrides registration_namespace_grace_ms."""
    s = load(tmp_path, "registration_namespace_grace_ms: 100\n", env={"III_NAMESPACE_GRACE_MS": "2500"})
    assert s.registration_namespace_grace_ms == 2500


def test_grace_env_applies_to_default_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$III_NAMESPACE_GRACE_MS also applies without a config file."""
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, env={"III_NAMESPACE_GRACE_MS": "7"}).registration_namespace_grace_ms == 7


def test_grace_env_must_be_an_integer(tmp_path: Path) -> None:
    """A non-integer $III_NAMESPACE_GRACE_MS is a config error."""
    error = config_error(tmp_path, "{}", env={"III_NAMESPACE_GRACE_MS": "soon"})
    assert (error.location, error.message) == (
        "$III_NAMESPACE_GRACE_MS",
        "expected an integer >= 0, got 'soon'",
    )


# --------------------------------------------------------------------------------------------------
# §2.3 module entries, names and aliases


@pytest.mark.parametrize("name", ["iii-http", "http"])
def test_http_under_either_name(tmp_path: Path, name: str) -> None:
    """Checklist 4: `iii-http` and `http` both enable the HTTP listener."""
    s = load(tmp_path, f"workers:\n  - name: {name}\n")
    assert s.http is not None and (s.http.host, s.http.port) == ("127.0.0.1", 3111)
    assert s.modules[0].name == "iii-http" and s.modules[0].listed_as == name


@pytest.mark.parametrize(
    ("canonical", "alias", "field"),
    [
        ("iii-stream", "stream", "stream"),
        ("iii-state", "state", "state"),
        ("iii-pubsub", "pubsub", "pubsub"),
        ("iii-cron", "cron", "cron"),
        ("iii-queue", "queue", "queue"),
    ],
)
def test_module_aliases(tmp_path: Path, canonical: str, alias: str, field: str) -> None:
    """Every built-in module is enabled by its canonical name and by its alias."""
    for name in (canonical, alias):
        s = load(tmp_path, f"workers:\n  - name: {name}\n")
        assert getattr(s, field) is not None
        assert canonical in module_names(s)


def test_module_under_both_names_is_duplicate(tmp_path: Path) -> None:
    """Checklist 4: listing `iii-http` and `http` is a config error with the §2.8 message."""
    path = write_config(tmp_path, "workers:\n  - name: iii-http\n  - name: http\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert (
        str(info.value)
        == f"pyiii: config error: {path}: workers[1]: duplicate module 'http' (also listed as 'iii-http')"
    )


def test_module_listed_twice_under_same_name(tmp_path: Path) -> None:
    """The same module name twice is a config error."""
    error = config_error(tmp_path, "workers:\n  - name: state\n  - name: cron\n  - name: state\n")
    assert (error.location, error.message) == (
        "workers[2]",
        "duplicate module 'state' (also listed at workers[0])",
    )


def test_modules_entries_come_after_workers(tmp_path: Path) -> None:
    """Checklist 5: `modules:` entries are appended after `workers:` entries."""
    s = load(tmp_path, "modules:\n  - name: cron\nworkers:\n  - name: http\n")
    assert [(m.name, m.location) for m in s.modules[:2]] == [
        ("iii-http", "workers[0]"),
        ("iii-cron", "modules[0]"),
    ]


def test_duplicate_across_workers_and_modules(tmp_path: Path) -> None:
    """A module in both `workers:` and `modules:` is reported at its `modules:` entry."""
    error = config_error(tmp_path, "workers:\n  - name: http\nmodules:\n  - name: iii-http\n")
    assert (error.location, error.message) == (
        "modules[0]",
        "duplicate module 'iii-http' (also listed as 'http')",
    )


def test_unknown_module_name_lists_supported_names(tmp_path: Path) -> None:
    """Checklist 6: an unknown module name is a config error followed by the supported names."""
    path = write_config(tmp_path, "workers:\n  - name: http\n  - name: iii-htpp\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value).startswith(
        f"pyiii: config error: {path}: workers[1].name: unknown module 'iii-htpp'; "
        "supported: iii-worker-manager, iii-http, http, iii-stream, stream,"
    )


def test_module_names_are_case_sensitive(tmp_path: Path) -> None:
    """`HTTP` is not `http`."""
    assert config_error(tmp_path, "workers:\n  - name: HTTP\n").message.startswith("unknown module 'HTTP'")


def test_image_key_is_an_error(tmp_path: Path) -> None:
    """Checklist 6: an `image:` key (external worker) is a config error."""
    error = config_error(tmp_path, "workers:\n  - name: http\n    image: ghcr.io/x/y:1\n")
    assert error.location == "workers[0].image"
    assert "not supported" in error.message


def test_other_entry_key_is_an_error(tmp_path: Path) -> None:
    """A module entry allows only `name` and `config`."""
    error = config_error(tmp_path, "workers:\n  - name: http\n    enabled: true\n")
    assert (error.location, error.message) == (
        "workers[0].enabled",
        "unknown key 'enabled'; allowed: name, config",
    )


@pytest.mark.parametrize(
    ("text", "location", "message"),
    [
        ("workers:\n  - config: {}\n", "workers[0]", "missing 'name'"),
        ("workers:\n  - name: 3\n", "workers[0].name", "expected a module name, got 3"),
        ("workers:\n  - http\n", "workers[0]", "expected a mapping, got 'http'"),
        ("workers: http\n", "workers", "expected a list of module entries, got 'http'"),
        (
            "workers:\n  - name: http\n    config: [1]\n",
            "workers[0].config",
            "expected a mapping, got a list",
        ),
    ],
)
def test_malformed_module_entries(tmp_path: Path, text: str, location: str, message: str) -> None:
    """Malformed module entries are config errors at their location."""
    error = config_error(tmp_path, text)
    assert (error.location, error.message) == (location, message)


def test_null_workers_and_config_are_empty(tmp_path: Path) -> None:
    """`workers:` with no value is an empty list and `config:` with no value an empty mapping."""
    s = load(tmp_path, "workers:\nmodules:\n  - name: http\n    config:\n")
    assert s.http is not None and s.http.port == 3111


@pytest.mark.parametrize(
    "name", ["iii-http-functions", "iii-exec", "iii-bridge", "iii-sandbox", "iii-directory", "shell"]
)
def test_reference_only_modules_are_skipped_with_warning(tmp_path: Path, name: str) -> None:
    """Checklist 6: reference modules pyiii lacks are skipped with the exact warning, config unchecked."""
    s = load(tmp_path, f"workers:\n  - name: {name}\n    config: {{anything: 1}}\n  - name: http\n")
    assert s.warnings == (f"module '{name}' is not provided by pyiii; skipped",)
    assert s.http is not None
    assert name not in module_names(s)


@pytest.mark.parametrize("name", ["iii-telemetry", "configuration"])
def test_telemetry_and_configuration_are_ignored_with_warning(tmp_path: Path, name: str) -> None:
    """`iii-telemetry` and `configuration` are accepted and ignored with a warning."""
    s = load(tmp_path, f"workers:\n  - name: {name}\n    config: {{enabled: true}}\n")
    assert len(s.warnings) == 1
    assert f"module '{name}' is accepted and ignored by pyiii" in s.warnings[0]
    assert name not in module_names(s)


def test_only_http_still_gets_default_worker_listener(tmp_path: Path) -> None:
    """Checklist 13 (config side): a config with only iii-http gets a worker listener on 127.0.0.1:49134."""
    s = load(tmp_path, "workers:\n  - name: iii-http\n")
    assert s.worker_managers == (WorkerManagerSettings(host="127.0.0.1", port=49134),)


def test_explicit_worker_manager_replaces_default(tmp_path: Path) -> None:
    """Checklist 13 (config side): an iii-worker-manager on 49135 means no listener on 49134."""
    s = load(tmp_path, entry("iii-worker-manager", "{port: 49135}"))
    assert [(wm.host, wm.port) for wm in s.worker_managers] == [("127.0.0.1", 49135)]


def test_two_worker_managers_on_different_ports(tmp_path: Path) -> None:
    """Checklist 14 (config side): two iii-worker-manager entries on different ports are both kept."""
    s = load(
        tmp_path,
        """
        workers:
          - name: iii-worker-manager
            config: {port: 49134}
          - name: iii-worker-manager
            config: {port: 49135, auth_token: secret}
        """,
    )
    assert [(wm.port, wm.auth_token) for wm in s.worker_managers] == [(49134, None), (49135, "secret")]


def test_two_listeners_on_same_address_are_an_error(tmp_path: Path) -> None:
    """Two listeners on the same host and port are a config error at the later one."""
    error = config_error(
        tmp_path,
        "workers:\n  - name: http\n    config: {port: 4000}\n  - name: stream\n    config: {port: 4000}\n",
    )
    assert error.location == "workers[1].config.port"
    assert error.message == "listener 127.0.0.1:4000 is also used by iii-http (workers[0])"


def test_two_worker_managers_on_same_address_are_an_error(tmp_path: Path) -> None:
    """Two iii-worker-manager entries on one address are a config error."""
    error = config_error(tmp_path, "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n")
    assert error.location == "workers[1].config.port"


def test_listener_clashing_with_implied_worker_manager(tmp_path: Path) -> None:
    """An HTTP listener on 49134 clashes with the implied default worker listener."""
    error = config_error(tmp_path, entry("http", "{port: 49134}"))
    assert error.location == "workers[0].config.port"
    assert "iii-worker-manager (default)" in error.message


def test_wildcard_host_clashes_with_same_port(tmp_path: Path) -> None:
    """0.0.0.0 and 127.0.0.1 on the same port cannot both bind: a config error."""
    text = (
        "workers:\n  - name: http\n    config: {host: 0.0.0.0, port: 4000}\n"
        "  - name: stream\n    config: {port: 4000}\n"
    )
    assert config_error(tmp_path, text).location == "workers[1].config.port"


def test_same_port_on_different_hosts_is_allowed(tmp_path: Path) -> None:
    """Listeners on the same port but different specific hosts do not clash; port 0 never clashes."""
    s = load(
        tmp_path,
        """
        workers:
          - name: http
            config: {host: 127.0.0.1, port: 4000}
          - name: stream
            config: {host: 127.0.0.2, port: 4000}
          - name: iii-worker-manager
            config: {port: 0}
          - name: iii-worker-manager
            config: {port: 0}
        """,
    )
    assert [wm.port for wm in s.worker_managers] == [0, 0]


def test_always_on_modules_are_listed(tmp_path: Path) -> None:
    """iii-observability and iii-engine-functions always run, listed or not."""
    s = load(tmp_path, "workers:\n  - name: iii-observability\n")
    assert module_names(s) == ["iii-observability", "iii-worker-manager", "iii-engine-functions"]


def test_engine_functions_config_must_be_empty(tmp_path: Path) -> None:
    """iii-engine-functions accepts an empty config and rejects anything else."""
    s = load(tmp_path, entry("iii-engine-functions", "{}"))
    assert module_names(s).count("iii-engine-functions") == 1
    error = config_error(tmp_path, entry("iii-engine-functions", "{x: 1}"))
    assert error.location == "workers[0].config"


# --------------------------------------------------------------------------------------------------
# §2.4 interpolation


def test_plain_placeholder_default_becomes_int(tmp_path: Path) -> None:
    """Checklist 7: `port: ${P:3111}` is the int 3111 when P is unset."""
    s = load(tmp_path, "workers:\n  - name: stream\n    config:\n      port: ${P:3111}\n")
    assert s.stream is not None and s.stream.port == 3111


def test_plain_placeholder_uses_env_value(tmp_path: Path) -> None:
    """Checklist 7: `port: ${P:3111}` is P's value, as an int, when P is set."""
    s = load(tmp_path, "workers:\n  - name: stream\n    config:\n      port: ${P:3111}\n", env={"P": "4123"})
    assert s.stream is not None and s.stream.port == 4123


def test_quoted_placeholder_stays_string(tmp_path: Path) -> None:
    """Checklist 7: `"${P:3111}"` stays a string, so an integer key rejects it."""
    error = config_error(tmp_path, 'workers:\n  - name: stream\n    config: {port: "${P:3112}"}\n')
    assert (error.location, error.message) == (
        "workers[0].config.port",
        "expected an integer between 0 and 65535, got '3112'",
    )


def test_types_of_expanded_values(tmp_path: Path) -> None:
    """Rule 5: plain single placeholders are re-read as YAML scalars; quoted or embedded stay strings."""
    s = load(
        tmp_path,
        """
        workers:
          - name: state
            config:
              adapter:
                name: kv
                config:
                  save_interval_ms: ${A:5000}
                  store_method: "${B:in_memory}"
                  file_path: ./x-${C:1}
        """,
    )
    assert s.state is not None
    assert s.state.adapter.config == {
        "save_interval_ms": 5000,
        "store_method": "in_memory",
        "file_path": "./x-1",
    }


def test_plain_placeholder_becomes_bool(tmp_path: Path) -> None:
    """Rule 5: `enabled: ${X:false}` gives a bool."""
    s = load(tmp_path, "workers:\n  - name: state\n    config:\n      triggers_enabled: ${X:false}\n")
    assert s.state is not None and s.state.triggers_enabled is False


def test_missing_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    """Checklist 8: `${MISSING}` without default exits naming MISSING and its location."""
    path = write_config(
        tmp_path,
        "workers:\n  - name: http\n  - name: cron\n  - name: stream\n    config:\n      port: ${MISSING}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"pyiii: config error: {path}: workers[2].config.port: "
        "environment variable MISSING is not set and has no default"
    )


def test_placeholder_in_comment_is_ignored(tmp_path: Path) -> None:
    """Checklist 8: the same placeholder inside a comment is never expanded (C3)."""
    s = load(tmp_path, "# ${MISSING}\nworkers:\n  - name: http  # port: ${MISSING}\n")
    assert s.http is not None


def test_empty_default_gives_empty_string(tmp_path: Path) -> None:
    """Checklist 9: `${V:}` gives "" (not null), plain or quoted."""
    s = load(tmp_path, service_name_config("${V:}"))
    assert s.observability.service_name == ""
    s = load(tmp_path, service_name_config('"${V:}"'))
    assert s.observability.service_name == ""


def test_empty_env_value_wins_over_default(tmp_path: Path) -> None:
    """Checklist 9: a variable set to the empty string wins over the default."""
    s = load(
        tmp_path,
        service_name_config("${V:svc}"),
        env={"V": ""},
    )
    assert s.observability.service_name == ""


def test_keys_are_never_expanded(tmp_path: Path) -> None:
    """Rule 2: mapping keys keep their placeholders literally."""
    s = load(tmp_path, "workers:\n  - name: queue\n    config:\n      queue_configs:\n        ${Q}: {}\n")
    assert s.queue is not None and set(s.queue.queues) == {"default", "${Q}"}


def test_default_may_contain_colons(tmp_path: Path, with_redis: None) -> None:
    """A default is any text without `}`, colons included."""
    s = load(
        tmp_path,
        textwrap.dedent(
            """
            workers:
              - name: pubsub
                config:
                  adapter:
                    name: redis
                    config:
                      redis_url: ${U:redis://h:6380}
            """
        ),
    )
    assert s.pubsub is not None and s.pubsub.adapter.redis_url == "redis://h:6380"


def test_engine_version_default(tmp_path: Path) -> None:
    """Rule 4: the default `__III_ENGINE_VERSION__` becomes the pyiii version."""
    s = load(
        tmp_path,
        service_name_config("${V:__III_ENGINE_VERSION__}"),
    )
    assert s.observability.service_name == __version__


def test_several_placeholders_in_one_value(tmp_path: Path) -> None:
    """Placeholders embedded in longer text are all expanded and the result stays a string."""
    s = load(
        tmp_path,
        service_name_config("'${A}-${B:2}'"),
        env={"A": "1"},
    )
    assert s.observability.service_name == "1-2"


def test_string_field_keeps_exact_text_of_numeric_value(tmp_path: Path) -> None:
    """A plain `${TOKEN}` that YAML would read as a number keeps its text in a string field."""
    s = load(
        tmp_path,
        "workers:\n  - name: iii-worker-manager\n    config:\n      auth_token: ${TOKEN}\n",
        env={"TOKEN": "0123"},
    )
    assert s.worker_managers[0].auth_token == "0123"


def test_placeholders_in_lists_are_expanded(tmp_path: Path) -> None:
    """Interpolation applies at any depth, lists included."""
    s = load(
        tmp_path,
        """
        workers:
          - name: http
            config:
              cors:
                allowed_origins:
                  - ${O}
                  - b
        """,
        env={"O": "http://a"},
    )
    assert s.http is not None and s.http.cors is not None
    assert s.http.cors.allowed_origins == ("http://a", "b")


def test_anchors_and_merge_keys_are_expanded(tmp_path: Path) -> None:
    """Anchored values are expanded once and shared by their aliases and merge keys."""
    s = load(
        tmp_path,
        """
        workers:
          - name: http
            config: &base
              host: ${H:127.0.0.2}
          - name: stream
            config:
              <<: *base
              port: 0
        """,
    )
    assert s.http is not None and s.stream is not None
    assert (s.http.host, s.stream.host) == ("127.0.0.2", "127.0.0.2")


def test_incomplete_placeholders_are_literal(tmp_path: Path) -> None:
    """Text that is not a complete placeholder (`${}`, `$A`, `${A` without `}`) is kept as written."""
    s = load(tmp_path, service_name_config("'${} $A ${A'"))
    assert s.observability.service_name == "${} $A ${A"


def test_placeholder_name_is_anything_but_colon_and_brace(tmp_path: Path) -> None:
    """NAME is one or more characters other than `}` and `:`, spaces included."""
    s = load(tmp_path, service_name_config("'${A B:x}'"), env={"A B": "y"})
    assert s.observability.service_name == "y"


def _yaml_printable(exclude: str = "") -> st.SearchStrategy[str]:
    """Characters YAML accepts inside a one-line quoted scalar."""
    return st.characters(
        exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"), exclude_characters=exclude + "\ufeff"
    )


_env_values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_env_values, quoted=st.booleans())
def test_env_values_round_trip_into_string_values(tmp_path: Path, value: str, quoted: bool) -> None:
    """Property: any env value reaches a string field unchanged through `${X}`, quoted or plain."""
    placeholder = '"${X}"' if quoted else "${X}"
    s = load(
        tmp_path,
        service_name_config(placeholder),
        env={"X": value},
    )
    assert s.observability.service_name == value


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(_yaml_printable(exclude="}:"), min_size=1, max_size=12),
    default=st.one_of(st.none(), st.text(_yaml_printable(exclude="}"), max_size=12)),
)
def test_comments_are_never_expanded(tmp_path: Path, name: str, default: str | None) -> None:
    """Property: a placeholder of any name in a comment never fails, even with the variable unset."""
    placeholder = "${" + name + ("" if default is None else ":" + default) + "}"
    s = load(tmp_path, f"# {placeholder}\nworkers:  # {placeholder}\n  - name: http # {placeholder}\n")
    assert s.http is not None


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(default=st.text(_yaml_printable(exclude="}'"), max_size=20))
def test_unset_variable_gives_its_default(tmp_path: Path, default: str) -> None:
    """Property: an unset variable with a default yields the default text in a quoted value."""
    s = load(
        tmp_path,
        service_name_config("'${UNSET:" + default + "}'"),
    )
    expected = __version__ if default == "__III_ENGINE_VERSION__" else default
    assert s.observability.service_name == expected


# --------------------------------------------------------------------------------------------------
# §2.5 iii-worker-manager (protocol.md §2.1-§2.3)


def test_worker_manager_keys(tmp_path: Path) -> None:
    """host, port, handshake_timeout_ms and auth_token are read into WorkerManagerSettings."""
    s = load(
        tmp_path,
        """
        workers:
          - name: iii-worker-manager
            config: {host: 127.0.0.1, port: 0, handshake_timeout_ms: 2500, auth_token: t0k}
        """,
    )
    assert s.worker_managers == (
        WorkerManagerSettings(host="127.0.0.1", port=0, handshake_timeout_ms=2500, auth_token="t0k"),
    )


def test_empty_auth_token_means_unset(tmp_path: Path) -> None:
    """`auth_token: ${TOKEN:}` with TOKEN unset leaves auth off."""
    s = load(tmp_path, entry("iii-worker-manager", "{auth_token: '${TOKEN:}'}"))
    assert s.worker_managers[0].auth_token is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("port: 70000", "port"),
        ("port: -1", "port"),
        ("port: true", "port"),
        ("handshake_timeout_ms: 0", "handshake_timeout_ms"),
        ("host: ''", "host"),
        ("auth_token: [1]", "auth_token"),
    ],
)
def test_worker_manager_bad_values(tmp_path: Path, text: str, key: str) -> None:
    """Out-of-range or mistyped worker-manager values are config errors naming the key."""
    error = config_error(tmp_path, entry("iii-worker-manager", f"{{{text}}}"))
    assert error.location == f"workers[0].config.{key}"


def test_worker_manager_unknown_key(tmp_path: Path) -> None:
    """An unknown key in a module's config is a config error."""
    error = config_error(tmp_path, entry("iii-worker-manager", "{prot: 1}"))
    assert error.location == "workers[0].config.prot"
    assert error.message.startswith("unknown key 'prot'; allowed: host, port")


@pytest.mark.parametrize(
    "text",
    [
        "middleware_function_id: mw",
        "rbac: {on_function_registration_function_id: f}",
        "rbac: {on_trigger_registration_function_id: f}",
        "rbac: {on_trigger_type_registration_function_id: f}",
    ],
)
def test_unsupported_worker_manager_hooks(tmp_path: Path, text: str) -> None:
    """middleware_function_id and the RBAC registration hooks are config errors."""
    error = config_error(tmp_path, entry("iii-worker-manager", f"{{{text}}}"))
    assert "not supported by pyiii" in error.message


def test_rbac_settings(tmp_path: Path) -> None:
    """rbac.auth_function_id and expose_functions filters are parsed into typed filters."""
    s = load(
        tmp_path,
        """
        workers:
          - name: iii-worker-manager
            config:
              rbac:
                auth_function_id: auth::check
                expose_functions:
                  - match("public::*")
                  - metadata: {public: true, team: match("a*")}
                    namespace: orders
                  - {match: 'match("x::*")', namespace: ns}
        """,
    )
    rbac = s.worker_managers[0].rbac
    assert rbac is not None and rbac.auth_function_id == "auth::check"
    assert rbac.expose_functions == (
        ExposeFilter(match=Glob("public::*")),
        ExposeFilter(metadata={"public": True, "team": Glob("a*")}, namespace="orders"),
        ExposeFilter(match=Glob("x::*"), namespace="ns"),
    )


@pytest.mark.parametrize(
    "item",
    [
        "'public::*'",
        "{metadata: {a: 1}, extra: 1}",
        "{namespace: ns}",
        "{match: 'match(\"a\")', metadata: {a: 1}}",
    ],
)
def test_bad_expose_filters(tmp_path: Path, item: str) -> None:
    """An expose_functions filter that is neither match("glob") nor a metadata filter is a config error."""
    error = config_error(
        tmp_path,
        entry("iii-worker-manager", f"{{rbac: {{expose_functions: [{item}]}}}}"),
    )
    assert error.location.startswith("workers[0].config.rbac.expose_functions[0]")


def test_glob_matching() -> None:
    """A Glob's `*` matches any sequence; other characters are literal."""
    assert Glob("api::*").matches("api::users::list")
    assert Glob("*").matches("")
    assert not Glob("api::*").matches("apix::a")
    assert Glob("a.b?").matches("a.b?") and not Glob("a.b?").matches("axbc")


def test_non_loopback_worker_manager_without_auth_warns(tmp_path: Path) -> None:
    """Checklist 12 (config side): host 0.0.0.0 without auth logs a warning."""
    s = load(tmp_path, entry("iii-worker-manager", "{host: 0.0.0.0}"))
    assert len(s.warnings) == 1
    assert "0.0.0.0:49134" in s.warnings[0] and "no auth" in s.warnings[0]


@pytest.mark.parametrize(
    "config",
    [
        "{host: 0.0.0.0, auth_token: t}",
        "{host: 0.0.0.0, rbac: {auth_function_id: auth::fn}}",
        "{host: localhost}",
        "{host: '::1'}",
        "{host: 127.0.0.5}",
    ],
)
def test_worker_manager_without_warning(tmp_path: Path, config: str) -> None:
    """A loopback host, or any host with auth, gives no warning."""
    assert load(tmp_path, entry("iii-worker-manager", f"{config}")).warnings == ()


def test_listeners_default_to_loopback(tmp_path: Path) -> None:
    """Checklist 12 (config side): without `host`, every listener is on 127.0.0.1."""
    s = load(tmp_path, "workers:\n  - name: iii-worker-manager\n  - name: http\n  - name: stream\n")
    assert {host for host, _ in listeners(s)} == {"127.0.0.1"}


# --------------------------------------------------------------------------------------------------
# iii-http (http.md §15)


def test_http_defaults(tmp_path: Path) -> None:
    """iii-http defaults: 127.0.0.1:3111, 30000 ms, 1024 requests, 1 MiB bodies, permissive CORS."""
    s = load(tmp_path, "workers:\n  - name: http\n")
    assert s.http is not None
    assert (s.http.host, s.http.port, s.http.default_timeout_ms) == ("127.0.0.1", 3111, 30000)
    assert (s.http.concurrency_request_limit, s.http.body_limit_bytes) == (1024, 1048576)
    assert s.http.cors is None and s.http.middleware == ()


def test_http_keys(tmp_path: Path) -> None:
    """Config keys keep spec names; internal names carry units; concurrency 0 is raised to 1."""
    s = load(
        tmp_path,
        """
        workers:
          - name: http
            config:
              port: 0
              default_timeout: 5000
              concurrency_request_limit: 0
              body_limit: 10
              cors: {allowed_origins: ["http://a"], allowed_methods: [GET]}
              middleware:
                - {function_id: late, priority: 10}
                - {function_id: skipped, phase: onRequest}
                - {function_id: early, priority: -1}
                - {function_id: tie}
        """,
    )
    assert s.http is not None
    assert (
        s.http.port,
        s.http.default_timeout_ms,
        s.http.concurrency_request_limit,
        s.http.body_limit_bytes,
    ) == (
        0,
        5000,
        1,
        10,
    )
    assert s.http.cors is not None and not s.http.cors.any_origin
    assert (s.http.cors.allowed_origins, s.http.cors.allowed_methods) == (("http://a",), ("GET",))
    assert s.http.middleware == (
        HttpMiddlewareSettings(function_id="early", priority=-1),
        HttpMiddlewareSettings(function_id="tie", priority=0),
        HttpMiddlewareSettings(function_id="late", priority=10),
    )


def test_http_quoted_port_digits_are_accepted(tmp_path: Path) -> None:
    """http.md §15 rule 2: a quoted `"${PORT:4000}"` port is converted to an int."""
    s = load(tmp_path, 'workers:\n  - name: http\n    config: {port: "${PORT:4000}"}\n')
    assert s.http is not None and s.http.port == 4000


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("trust_proxy: true", "trust_proxy"),
        ("not_found_function: f", "not_found_function"),
        ("default_timeout: 0", "default_timeout"),
        ("body_limit: 0", "body_limit"),
        ("concurrency_request_limit: -1", "concurrency_request_limit"),
        ("port: 'abc'", "port"),
        ("cors: {allowed_headers: []}", "cors.allowed_headers"),
        ("cors: {allowed_origins: 'x'}", "cors.allowed_origins"),
        ("middleware: [{phase: preHandler}]", "middleware[0]"),
        ("middleware: [{function_id: f, order: 1}]", "middleware[0].order"),
    ],
)
def test_http_bad_values(tmp_path: Path, text: str, key: str) -> None:
    """Unknown keys at any level and out-of-range values of iii-http are config errors naming the key."""
    error = config_error(tmp_path, entry("http", f"{{{text}}}"))
    assert error.location == f"workers[0].config.{key}"


def test_cors_drops_invalid_values_with_warning(tmp_path: Path) -> None:
    """Origins that are not valid header values are dropped with a warning; `*` next to others warns."""
    s = load(
        tmp_path,
        entry("http", '{cors: {allowed_origins: ["*", "http://a", "bad\\nvalue"]}}'),
    )
    assert s.http is not None and s.http.cors is not None
    assert s.http.cors.allowed_origins == ("*", "http://a") and s.http.cors.any_origin
    assert len(s.warnings) == 2


# --------------------------------------------------------------------------------------------------
# iii-stream (stream.md §8.2) and iii-state (state.md §9)


def test_stream_keys(tmp_path: Path) -> None:
    """iii-stream reads host, port, auth_function and the kv channel_size."""
    s = load(
        tmp_path,
        """
        workers:
          - name: stream
            config:
              host: 127.0.0.1
              port: 4112
              auth_function: stream::auth
              adapter: {name: kv, config: {channel_size: 8}}
        """,
    )
    assert s.stream is not None
    assert (s.stream.port, s.stream.auth_function, s.stream.adapter.channel_size) == (4112, "stream::auth", 8)


@pytest.mark.parametrize("size", [0, 1048577])
def test_stream_channel_size_range(tmp_path: Path, size: int) -> None:
    """channel_size outside 1..1048576 is a config error."""
    error = config_error(
        tmp_path,
        entry("stream", f"{{adapter: {{name: kv, config: {{channel_size: {size}}}}}}}"),
    )
    assert error.location == "workers[0].config.adapter.config.channel_size"


def test_state_defaults(tmp_path: Path) -> None:
    """An iii-state entry without config: in-memory kv, triggers enabled, no size limit."""
    s = load(tmp_path, "workers:\n  - name: state\n")
    assert s.state is not None
    assert s.state.adapter == AdapterSettings(
        name="kv", store_method="in_memory", file_path="kv_store_data.db", save_interval_ms=5000
    )
    assert (s.state.triggers_enabled, s.state.max_value_bytes, s.state.save_interval_ms) == (True, None, None)
    assert s.state.trigger_timeout_ms == 60000


def test_state_keys_and_normalisation(tmp_path: Path) -> None:
    """max_value_bytes 0 means unset; module save_interval_ms is kept only within 100..3600000."""
    s = load(
        tmp_path,
        entry("state", "{max_value_bytes: 0, save_interval_ms: 50, trigger_timeout_ms: 0}"),
    )
    assert s.state is not None
    assert (s.state.max_value_bytes, s.state.save_interval_ms, s.state.trigger_timeout_ms) == (None, None, 0)
    s = load(tmp_path, entry("state", "{max_value_bytes: 10, save_interval_ms: 200}"))
    assert s.state is not None and (s.state.max_value_bytes, s.state.save_interval_ms) == (10, 200)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("triggers_enabled: 'yes'", "triggers_enabled"),
        ("max_value_bytes: -1", "max_value_bytes"),
        ("trigger_timeout_ms: -5", "trigger_timeout_ms"),
        ("ttl: 1", "ttl"),
    ],
)
def test_state_bad_values(tmp_path: Path, text: str, key: str) -> None:
    """Mistyped or unknown iii-state keys are config errors naming the field."""
    assert config_error(tmp_path, entry("state", f"{{{text}}}")).location == (f"workers[0].config.{key}")


# --------------------------------------------------------------------------------------------------
# §2.6 adapters and store methods


def test_unknown_store_method_message(tmp_path: Path) -> None:
    """Checklist 11: `store_method: filebased` is a config error with the §2.8 message."""
    path = write_config(
        tmp_path,
        """
        workers:
          - name: http
          - name: cron
          - name: pubsub
          - name: stream
          - name: state
            config:
              adapter: {name: kv, config: {store_method: filebased}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"pyiii: config error: {path}: workers[4].config.adapter.config.store_method: "
        "Unknown store_method 'filebased'. Expected one of: in_memory, file_based"
    )


@pytest.mark.parametrize(
    ("module", "adapter", "available"),
    [
        ("state", "redis2", "[kv, redis]"),
        ("state", "bridge", "[kv, redis]"),
        ("stream", "bridge", "[kv, redis]"),
        ("pubsub", "rabbitmq", "[local, memory, redis]"),
        ("cron", "memory", "[kv, redis]"),
        ("queue", "redis", "[builtin, memory]"),
        ("queue", "rabbitmq", "[builtin, memory]"),
    ],
)
def test_unknown_adapter_name_message(tmp_path: Path, module: str, adapter: str, available: str) -> None:
    """Checklist 11: an unknown adapter name (reference-only ones included) is a config error."""
    error = config_error(
        tmp_path, f"workers:\n  - name: {module}\n    config: {{adapter: {{name: {adapter}}}}}\n"
    )
    assert (error.location, error.message) == (
        "workers[0].config.adapter.name",
        f"Adapter factory '{adapter}' not found. Available: {available}",
    )


def test_adapter_block_allows_only_name_and_config(tmp_path: Path) -> None:
    """Any key of `adapter` other than name and config is a config error."""
    error = config_error(tmp_path, entry("state", "{adapter: {name: kv, options: {}}}"))
    assert (error.location, error.message) == (
        "workers[0].config.adapter.options",
        "unknown key 'options'; allowed: name, config",
    )


def test_adapter_without_name_is_an_error(tmp_path: Path) -> None:
    """An adapter block without `name` is a config error."""
    error = config_error(tmp_path, entry("state", "{adapter: {config: {}}}"))
    assert (error.location, error.message) == ("workers[0].config.adapter", "missing 'name'")


def test_unknown_adapter_config_keys_warn(tmp_path: Path) -> None:
    """Unknown keys inside adapter.config are ignored with a warning naming them."""
    s = load(
        tmp_path,
        entry("state", "{adapter: {name: kv, config: {store_method: in_memory, foo: 1, bar: 2}}}"),
    )
    assert s.warnings == ("workers[0].config.adapter.config: unknown adapter config keys ignored: foo, bar",)
    assert s.state is not None and s.state.adapter.config == {"store_method": "in_memory"}


def test_redis_adapter_needs_redis_package(tmp_path: Path, no_redis: None) -> None:
    """Without the `redis` package a redis adapter is a config error telling to install pyiii[redis]."""
    error = config_error(tmp_path, entry("pubsub", "{adapter: {name: redis}}"))
    assert error.location == "workers[0].config.adapter.name"
    assert "pip install 'pyiii[redis]'" in error.message


@pytest.mark.parametrize("module", ["state", "stream", "pubsub", "cron"])
def test_redis_adapter_defaults(tmp_path: Path, with_redis: None, module: str) -> None:
    """The redis adapters default to redis://localhost:6379."""
    s = load(tmp_path, f"workers:\n  - name: {module}\n    config: {{adapter: {{name: redis}}}}\n")
    adapter = getattr(s, module).adapter
    assert (adapter.name, adapter.redis_url, adapter.store_method) == (
        "redis",
        "redis://localhost:6379",
        None,
    )


def test_pubsub_memory_alias(tmp_path: Path) -> None:
    """pubsub `memory` is an alias of `local`, which is the default."""
    s = load(tmp_path, entry("pubsub", "{adapter: {name: memory}}"))
    assert s.pubsub is not None and s.pubsub.adapter.name == "local"
    s = load(tmp_path, "workers:\n  - name: pubsub\n")
    assert s.pubsub is not None and s.pubsub.adapter.name == "local"


def test_queue_memory_alias_forces_in_memory(tmp_path: Path) -> None:
    """queue `memory` is `builtin` forced to in_memory, whatever store_method says."""
    s = load(
        tmp_path,
        entry("queue", "{adapter: {name: memory, config: {store_method: file_based}}}"),
    )
    assert s.queue is not None
    assert (s.queue.adapter.name, s.queue.adapter.store_method) == ("builtin", "in_memory")


def test_cron_kv_defaults(tmp_path: Path) -> None:
    """cron kv: lock_ttl_ms 30000 and lock_index cron_locks by default; both configurable."""
    s = load(tmp_path, "workers:\n  - name: cron\n")
    assert s.cron is not None and (s.cron.adapter.lock_ttl_ms, s.cron.adapter.lock_index) == (
        30000,
        "cron_locks",
    )
    s = load(
        tmp_path,
        entry("cron", "{adapter: {name: kv, config: {lock_ttl_ms: 5, lock_index: l}}}"),
    )
    assert s.cron is not None and (s.cron.adapter.lock_ttl_ms, s.cron.adapter.lock_index) == (5, "l")


def test_cron_kv_store_method_is_validated(tmp_path: Path) -> None:
    """cron kv validates store_method even though its locks stay in memory."""
    error = config_error(
        tmp_path,
        entry("cron", "{adapter: {name: kv, config: {store_method: disk}}}"),
    )
    assert error.message == "Unknown store_method 'disk'. Expected one of: in_memory, file_based"


@pytest.mark.parametrize(("value", "expected"), [("0", 5000), ("50", 100), ("'x'", 5000), ("250", 250)])
def test_adapter_save_interval_is_normalised(tmp_path: Path, value: str, expected: int) -> None:
    """Adapter save_interval_ms: missing, 0 or non-integer -> 5000; below 100 -> 100; never an error."""
    s = load(
        tmp_path,
        entry("state", f"{{adapter: {{name: kv, config: {{save_interval_ms: {value}}}}}}}"),
    )
    assert s.state is not None and s.state.adapter.save_interval_ms == expected


def test_in_memory_flag_overrides_config_file(tmp_path: Path) -> None:
    """--in-memory forces in_memory on every state, stream, queue and cron kv store of a config file."""
    fb = "{adapter: {name: %s, config: {store_method: file_based, file_path: ./d}}}"
    s = load(
        tmp_path,
        f"""
        workers:
          - name: state
            config: {fb % "kv"}
          - name: stream
            config: {fb % "kv"}
          - name: queue
            config: {fb % "builtin"}
          - name: cron
            config: {fb % "kv"}
        """,
        in_memory=True,
    )
    assert s.state and s.stream and s.queue and s.cron
    assert {a.store_method for a in (s.state.adapter, s.stream.adapter, s.queue.adapter, s.cron.adapter)} == {
        "in_memory"
    }


def test_file_based_store(tmp_path: Path) -> None:
    """`file_based` keeps file_path as written; the store resolves it (state.md §8.3)."""
    s = load(
        tmp_path,
        entry("state", "{adapter: {name: kv, config: {store_method: file_based, file_path: ./data/s.db}}}"),
    )
    assert s.state is not None and s.state.adapter.file_based and s.state.adapter.file_path == "./data/s.db"


def test_two_modules_on_same_existing_file_is_an_error(tmp_path: Path) -> None:
    """§2.6 rule 1: two modules naming the same existing regular file is a config error."""
    db = tmp_path / "shared.db"
    db.write_bytes(b"")
    fb = f"{{adapter: {{name: %s, config: {{store_method: file_based, file_path: '{db}'}}}}}}"
    error = config_error(
        tmp_path,
        f"workers:\n  - name: state\n    config: {fb % 'kv'}\n"
        f"  - name: queue\n    config: {fb % 'builtin'}\n",
    )
    assert error.location == "workers[1].config.adapter.config.file_path"
    assert "iii-state (workers[0])" in error.message


def test_two_modules_in_same_directory_are_allowed(tmp_path: Path) -> None:
    """A directory file_path holds one database per module, so sharing it is fine."""
    fb = f"{{adapter: {{name: kv, config: {{store_method: file_based, file_path: '{tmp_path}'}}}}}}"
    s = load(tmp_path, f"workers:\n  - name: state\n    config: {fb}\n  - name: stream\n    config: {fb}\n")
    assert s.state is not None and s.stream is not None


# --------------------------------------------------------------------------------------------------
# §6.2 queue


def test_queue_default_queue_always_exists(tmp_path: Path) -> None:
    """The queue `default` exists with default settings unless queue_configs defines it."""
    s = load(tmp_path, "workers:\n  - name: queue\n")
    assert s.queue is not None and s.queue.queues == {"default": QueueDefinition()}
    assert (s.queue.adapter.name, s.queue.adapter.store_method) == ("builtin", "in_memory")
    s = load(tmp_path, entry("queue", "{queue_configs: {default: {max_retries: 1}}}"))
    assert s.queue is not None and s.queue.queues["default"].max_retries == 1


def test_queue_configs(tmp_path: Path) -> None:
    """queue_configs entries are read; max_priority and priority_field are accepted and ignored."""
    s = load(
        tmp_path,
        """
        workers:
          - name: queue
            config:
              queue_configs:
                payment:
                  type: fifo
                  message_group_field: transaction_id
                  max_retries: 0
                  concurrency: 2
                  backoff_ms: 10
                  poll_interval_ms: 5
                  max_priority: 9
                  priority_field: p
        """,
    )
    assert s.queue is not None
    assert s.queue.queues["payment"] == QueueDefinition(
        type="fifo",
        message_group_field="transaction_id",
        max_retries=0,
        concurrency=2,
        backoff_ms=10,
        poll_interval_ms=5,
    )


@pytest.mark.parametrize(
    ("queue", "key"),
    [
        ("{type: fifo}", "message_group_field"),
        ("{concurrency: 0}", "concurrency"),
        ("{type: lifo}", "type"),
        ("{retries: 1}", "retries"),
        ("{max_retries: -1}", "max_retries"),
    ],
)
def test_queue_config_errors(tmp_path: Path, queue: str, key: str) -> None:
    """fifo without message_group_field, concurrency < 1, an unknown key or a bad value are config errors."""
    error = config_error(tmp_path, entry("queue", f"{{queue_configs: {{q: {queue}}}}}"))
    assert error.location == f"workers[0].config.queue_configs.q.{key}"


# --------------------------------------------------------------------------------------------------
# §7.1 observability


def test_observability_defaults(tmp_path: Path) -> None:
    """iii-observability is always present with the §7.1 defaults."""
    s = load(tmp_path, "{}")
    o = s.observability
    assert (o.enabled, o.service_name, o.level, o.format) == (True, "iii", "info", "default")
    assert (o.logs_enabled, o.logs_max_count, o.logs_retention_seconds) == (True, 1000, 3600)
    assert (o.logs_console_output, o.logs_sampling_ratio) == (True, 1.0)


def test_observability_keys(tmp_path: Path) -> None:
    """§7.1 keys are read; the accepted-and-ignored keys are allowed; empty alerts is fine."""
    s = load(
        tmp_path,
        """
        workers:
          - name: iii-observability
            config:
              enabled: false
              service_name: svc
              level: warn
              format: json
              logs_enabled: false
              logs_max_count: 5
              logs_retention_seconds: 60
              logs_console_output: false
              logs_sampling_ratio: 0.5
              exporter: memory
              logs_exporter: memory
              metrics_exporter: memory
              service_version: "1"
              endpoint: http://x
              sampling_ratio: 1
              memory_max_spans: 1
              metrics_enabled: true
              metrics_retention_seconds: 1
              metrics_max_count: 1
              alerts: []
        """,
    )
    o = s.observability
    assert (o.enabled, o.service_name, o.level, o.format, o.logs_enabled) == (
        False,
        "svc",
        "warn",
        "json",
        False,
    )
    assert (o.logs_max_count, o.logs_retention_seconds, o.logs_console_output, o.logs_sampling_ratio) == (
        5,
        60,
        False,
        0.5,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("exporter: otlp", "exporter"),
        ("exporter: both", "exporter"),
        ("logs_exporter: otlp", "logs_exporter"),
        ("metrics_exporter: both", "metrics_exporter"),
        ("alerts: [{name: a}]", "alerts"),
        ("level: verbose", "level"),
        ("format: text", "format"),
        ("logs_sampling_ratio: 1.5", "logs_sampling_ratio"),
        ("logs_max_count: 0", "logs_max_count"),
        ("spans: 1", "spans"),
    ],
)
def test_observability_errors(tmp_path: Path, text: str, key: str) -> None:
    """Checklist 41: exporter otlp/both, non-empty alerts, bad values and unknown keys are config errors."""
    error = config_error(tmp_path, entry("iii-observability", f"{{{text}}}"))
    assert error.location == f"workers[0].config.{key}"


# --------------------------------------------------------------------------------------------------
# Settings objects


def test_settings_are_frozen(tmp_path: Path) -> None:
    """Settings are immutable once validated."""
    s = load(tmp_path, "workers:\n  - name: http\n")
    with pytest.raises(AttributeError):
        s.http = None  # type: ignore[misc]


def test_settings_can_be_built_directly() -> None:
    """Every settings class has the spec defaults, so tests elsewhere can build them without a file."""
    s = Settings()
    assert s.worker_managers == (WorkerManagerSettings(),)
    assert (s.invocation_timeout_ms, s.registration_namespace_grace_ms, s.http) == (300000, 5000, None)
