"""The state module as configured by a config file (spec/state.md §9; checklist N), end to end:
the file is loaded, the engine started, and the configured behaviour checked through state calls.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyiii.config import ConfigError, Settings, load_settings
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.memory import MemoryAdapter
from pyiii.modules.state.adapters.sqlite import DB_FILE_NAME, SqliteAdapter
from pyiii.modules.state.module import StateModule
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings


def load(tmp_path: Path, state_entry: str) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text("workers:\n" + textwrap.indent(textwrap.dedent(state_entry).strip("\n"), "  ") + "\n")
    return load_settings(str(path))


async def serve(settings: Settings) -> EngineServer:
    """An engine with the loaded state settings and a worker listener on a free port."""
    server = EngineServer(make_settings(state=settings.state))
    await server.start()
    return server


def state_module(server: EngineServer) -> StateModule:
    (module,) = [m for m in server.engine.modules if isinstance(m, StateModule)]
    return module


def test_unknown_top_level_field(tmp_path: Path) -> None:
    """N141: an unknown field of the module's config fails startup, naming it."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "- name: iii-state\n  config: {max_value_byte: 10}")
    assert info.value.location.endswith("max_value_byte")


def test_store_method_typo(tmp_path: Path) -> None:
    """N142: store_method file_base fails startup; it never falls back to in-memory."""
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path, "- name: iii-state\n  config: {adapter: {name: kv, config: {store_method: file_base}}}"
        )
    assert "Unknown store_method 'file_base'. Expected one of: in_memory, file_based" in str(info.value)


@pytest.mark.parametrize("name", ["bridge", "memory", "Redis"])
def test_unknown_adapter(tmp_path: Path, name: str) -> None:
    """N143: adapter bridge or any unknown name fails with the Adapter factory message."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"- name: iii-state\n  config: {{adapter: {{name: {name}}}}}")
    assert f"Adapter factory '{name}' not found. Available: [kv, redis]" in str(info.value)


async def test_unknown_adapter_config_keys_warn(tmp_path: Path) -> None:
    """N144: unknown keys inside adapter.config are a warning naming them; the engine starts."""
    settings = load(
        tmp_path,
        """
        - name: state
          config:
            adapter: {name: kv, config: {store_method: in_memory, flush_every: 3}}
        """,
    )
    assert any("flush_every" in warning for warning in settings.warnings)
    server = await serve(settings)
    try:
        await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": 1})
        assert await server.engine.invoke("state::get", {"scope": "s", "key": "k"}) == 1
    finally:
        await server.stop()


async def test_normalised_values(tmp_path: Path) -> None:
    """N145: max_value_bytes 0 is unlimited; a top-level save_interval_ms of 10 is ignored."""
    settings = load(tmp_path, "- name: iii-state\n  config: {max_value_bytes: 0, save_interval_ms: 10}")
    server = await serve(settings)
    try:
        await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": "x" * 2_000_000})
        assert state_module(server).live.max_value_bytes is None
    finally:
        await server.stop()


async def test_max_value_bytes_from_the_file(tmp_path: Path) -> None:
    """§9.1: max_value_bytes and triggers_enabled from the file apply to calls."""
    settings = load(tmp_path, "- name: iii-state\n  config: {max_value_bytes: 4, triggers_enabled: false}")
    server = await serve(settings)
    try:
        with pytest.raises(InvocationError) as info:
            await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": "12345"})
        assert info.value.code == "VALUE_TOO_LARGE"
        assert state_module(server).live.triggers_enabled is False
    finally:
        await server.stop()


async def test_file_based_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """§8.3: file_path is relative to the working directory; the store is SQLite there."""
    monkeypatch.chdir(tmp_path)
    settings = load(
        tmp_path,
        "- name: iii-state\n  config: {adapter: {name: kv, config: {store_method: file_based, "
        "file_path: ./data/state_store.db, save_interval_ms: 60000}}}",
    )
    server = await serve(settings)
    try:
        assert isinstance(state_module(server).adapter, SqliteAdapter)
        await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": 1})
    finally:
        await server.stop()
    assert (tmp_path / "data" / "state_store.db" / DB_FILE_NAME).is_file()


async def test_default_module_set(tmp_path: Path) -> None:
    """§1, config-cli §2.7: with no config file the state store is file_based under the data dir;
    --in-memory switches it to memory."""
    settings = load_settings(None, data_dir=str(tmp_path / "d"), env={})
    assert settings.state is not None and settings.state.adapter.file_based
    server = await serve(settings)
    try:
        assert isinstance(state_module(server).adapter, SqliteAdapter)
        await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": 1})
    finally:
        await server.stop()
    assert (tmp_path / "d" / "state_store.db" / DB_FILE_NAME).is_file()
    settings = load_settings(None, data_dir=str(tmp_path / "d"), in_memory=True, env={})
    server = await serve(settings)
    try:
        assert isinstance(state_module(server).adapter, MemoryAdapter)
    finally:
        await server.stop()


async def test_registered_functions(tmp_path: Path) -> None:
    """§1: the functions, their descriptions, the internal config hook and the trigger type."""
    server = await serve(load(tmp_path, "- name: iii-state"))
    try:
        engine = server.engine
        listed = await engine.invoke("engine::functions::list", {"include_internal": True})
        described = {f["function_id"]: f.get("description") for f in listed["functions"]}
        assert described["state::set"] == "Set a value in state"
        assert described["state::list"] == "Get a group from state"
        assert described["state::list_entries"] == "List the entries stored in a scope, one page at a time"
        assert await engine.invoke("iii-state::on-config-change", None) == {"ok": True}
        entry = engine.functions.get("default", "iii-state::on-config-change")
        assert entry is not None and entry.is_internal
        listed = await engine.invoke("engine::triggers::list", {"prefix": "state"})
        (state_type,) = listed["triggers"]
        assert (state_type["id"], state_type["description"]) == ("state", "State trigger")
        assert state_type["worker_name"] == "iii-state"
        workers = await engine.invoke("engine::workers::list", {})
        (module,) = [w for w in workers["workers"] if w.get("name") == "iii-state"]
        description = "Distributed key-value state management with reactive change triggers."
        assert module["description"] == description
    finally:
        await server.stop()
