"""Configuration of ``iii-stream`` (spec/stream.md §8.2, S9, S14; checklist item 39)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from stream_harness import EngineProcess, engine_config, frame_of

from helpers import RawWorker
from pyiii.config import AdapterSettings, ConfigError, load_settings


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_settings(str(path), env={})


@pytest.mark.parametrize(
    ("config", "location", "message"),
    [
        (
            "{adapter: {name: kv, config: {store_method: memory_mapped}}}",
            "workers[0].config.adapter.config.store_method",
            "Unknown store_method 'memory_mapped'. Expected one of: in_memory, file_based",
        ),
        (
            "{adapter: {name: bridge}}",
            "workers[0].config.adapter.name",
            "Adapter factory 'bridge' not found. Available: [kv, redis]",
        ),
        ("{adapter: {name: nope}}", "workers[0].config.adapter.name", "Adapter factory 'nope' not found"),
        ("{portt: 3112}", "workers[0].config", "portt"),
        ("{adapter: {name: kv, extra: 1}}", "workers[0].config.adapter", "extra"),
        (
            "{adapter: {name: kv, config: {channel_size: 0}}}",
            "workers[0].config.adapter.config.channel_size",
            "",
        ),
        ("{port: 70000}", "workers[0].config.port", ""),
        ("{host: 5}", "workers[0].config.host", ""),
    ],
)
def test_startup_errors(tmp_path: Path, config: str, location: str, message: str) -> None:
    """Checklist 39 (§8.2): an unknown ``store_method``, ``bridge``, an unknown key, ``channel_size: 0`` and
    mistyped values each stop startup with an error naming the field."""
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, f"workers:\n  - name: iii-stream\n    config: {config}\n")
    assert info.value.location.startswith(location)
    assert message in str(info.value)


def test_entry_without_config_defaults(tmp_path: Path) -> None:
    """Checklist 39: an ``iii-stream`` entry without ``config`` is 127.0.0.1:3112 with in-memory kv."""
    settings = load_text(tmp_path, "workers:\n  - name: iii-stream\n")
    stream = settings.stream  # type: ignore[attr-defined]
    assert (stream.host, stream.port, stream.auth_function) == ("127.0.0.1", 3112, None)
    assert stream.adapter.name == "kv" and stream.adapter.store_method == "in_memory"
    assert stream.adapter.channel_size == 256


def test_unknown_adapter_config_keys_are_warnings(tmp_path: Path) -> None:
    """§8.2: unknown keys inside ``adapter.config`` are ignored with a warning naming them."""
    settings = load_text(
        tmp_path,
        "workers:\n  - name: iii-stream\n    config: {adapter: {name: redis, config: {color: blue}}}\n",
    )
    assert settings.stream.adapter == AdapterSettings(  # type: ignore[attr-defined]
        name="redis", config={}, redis_url="redis://localhost:6379"
    )
    assert any("color" in warning for warning in settings.warnings)  # type: ignore[attr-defined]


def test_same_file_as_the_state_store_is_an_error(tmp_path: Path) -> None:
    """§7.1 rule 3: naming the same existing regular file as another module's store stops startup."""
    (tmp_path / "shared.db").write_bytes(b"")
    adapter = (
        f"{{adapter: {{name: kv, config: {{store_method: file_based, file_path: {tmp_path}/shared.db}}}}}}"
    )
    with pytest.raises(ConfigError):
        load_text(
            tmp_path,
            "workers:\n"
            f"  - name: iii-state\n    config: {adapter}\n"
            f"  - name: iii-stream\n    config: {adapter}\n",
        )


async def test_engine_process_serves_streams(tmp_path: Path) -> None:
    """``pyiii -c`` with an ``iii-stream`` entry logs ``Stream API listening on address`` (cli §3.1) and
    serves clients; a write through the worker socket reaches a URL-subscribed client."""
    engine = await EngineProcess.start(engine_config(tmp_path, "{name: kv}"), tmp_path)
    try:
        client = await RawWorker.connect(engine.stream_url, path="/stream/s/g", hello=False)
        await client.expect(frame_of("sync"))
        worker = await RawWorker.connect(engine.url)
        await worker.register("writer")
        await worker.result("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i", "data": 1})
        created = await client.expect(frame_of("create"))
        assert created["event"]["data"] == 1
        await worker.close()
        await client.close()
    finally:
        await engine.close()
