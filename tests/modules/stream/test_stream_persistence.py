"""Durable ``file_based`` storage and atomic updates (spec/stream.md §7.1, §4.3.8; checklist items 27, 37)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from stream_harness import DB_FILE_NAME, EngineProcess, StreamHarness, engine_config, frame_of

from helpers import RawWorker
from pyiii.modules.state.errors import StateStartupError


async def test_kill9_keeps_acknowledged_writes(tmp_path: Path) -> None:
    """Checklist 37 (S9): a value acknowledged just before ``kill -9`` is present after restart, with its
    position; clients of the new process get it in their sync."""
    config = engine_config(tmp_path, "{name: kv, config: {store_method: file_based, file_path: ./data}}")
    engine = await EngineProcess.start(config, tmp_path)
    try:
        worker = await RawWorker.connect(engine.url)
        await worker.register("writer")
        for index in range(20):
            data = {"stream_name": "s", "group_id": "g", "item_id": f"i{index}", "data": index}
            await worker.result("stream::set", data)
        await worker.result(
            "stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i0", "data": "x"}
        )
        last = await worker.result(
            "stream::update",
            {
                "stream_name": "s",
                "group_id": "g",
                "item_id": "last",
                "ops": [{"type": "set", "path": "v", "value": 1}],
            },
        )
        assert last == {"new_value": {"v": 1}, "old_value": None}
        engine.kill9()
        assert await engine.exit_code() != 0
        await worker.close()
    finally:
        await engine.close()
    assert (tmp_path / "data" / DB_FILE_NAME).is_file()
    engine = await EngineProcess.start(config, tmp_path)
    try:
        client = await RawWorker.connect(engine.stream_url, path="/stream/s/g", hello=False)
        sync = await client.expect(frame_of("sync"))
        assert sync["event"]["data"] == ["x", *range(1, 20), {"v": 1}]
        await client.close()
    finally:
        await engine.close()


async def test_graceful_restart_keeps_values_and_order(make_stream: Callable[..., StreamHarness]) -> None:
    """§7.1 rule 3: every acknowledged write survives a graceful restart with its value and position; groups
    and streams are listed as before."""
    harness = await make_stream("file_based").start()
    for item in ("b", "a", "c"):
        await harness.set("s", "g", item, {"id": item})
    await harness.set("s", "g", "b", None)
    await harness.delete("s", "g", "a")
    await harness.set("t:x", "", "k", 1)
    await harness.restart()
    assert await harness.call("stream::list", {"stream_name": "s", "group_id": "g"}) == [None, {"id": "c"}]
    assert await harness.call("stream::list_all", {}) == {
        "count": 2,
        "stream": [{"groups": ["g"], "id": "s"}, {"groups": [""], "id": "t:x"}],
    }


async def test_corrupt_store_is_a_startup_error(
    make_stream: Callable[..., StreamHarness], tmp_path: Path
) -> None:
    """§7.1 rule 3: a corrupt store stops startup."""
    directory = tmp_path / "stream"
    directory.mkdir()
    (directory / DB_FILE_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateStartupError):
        await make_stream("file_based").start()


async def test_concurrent_increments_lose_nothing(any_stream: StreamHarness) -> None:
    """Checklist 27: 500 concurrent ``increment`` updates of one item lose nothing; each emits a frame."""
    client = await any_stream.client("/stream/s/g/n")
    await client.expect(frame_of("sync"))
    ops = [{"type": "increment", "path": "count", "by": 1}]
    results = await asyncio.gather(*(any_stream.update("s", "g", "n", ops) for _ in range(500)))
    assert sorted(r["new_value"]["count"] for r in results) == list(range(1, 501))
    assert await any_stream.call("stream::get", {"stream_name": "s", "group_id": "g", "item_id": "n"}) == {
        "count": 500
    }
    await any_stream.idle()
    last = None
    for _ in range(500):
        last = await client.expect(lambda f: f.get("type") == "stream")
    assert last is not None and last["event"]["data"] == {"count": 500}
