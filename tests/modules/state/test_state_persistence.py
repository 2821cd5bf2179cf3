"""Persistence (spec/state.md §8.3, D1; checklist L): restarts on the persistent adapters, ``kill -9``
of an engine process in the middle of acknowledged writes, and the file_based store's startup rules.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from state_harness import NO_RESULT, EngineProcess, StateHarness, state_config

from pyiii import III, InitOptions, ReconnectionConfig, register_worker
from pyiii.config import AdapterSettings, StateSettings
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.sqlite import DB_FILE_NAME, SqliteAdapter
from pyiii.modules.state.errors import StateStartupError
from pyiii.modules.state.module import StateModule
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

FILE_BASED = "{name: kv, config: {store_method: file_based, file_path: ./data/state_store.db}}"


# ------------------------------------------------------------------------------ restarts (file_based, redis)


async def test_graceful_restart(persistent: StateHarness) -> None:
    """L125, L127-L130 [R]: values, nulls, the empty scope, order and deletions survive a restart."""
    state = persistent
    await state.set("", "", {"empty": "scope"})
    for key in ("c", "a", "b"):
        await state.set("s", key, {"k": key, "l": []})
    await state.set("s", "n", None)
    await state.set("s", "a", 2**64 - 1)  # overwrite keeps its place
    await state.delete("s", "c")
    await state.set("s", "c", "again")  # re-created at the end
    await state.set("gone", "x", 1)
    await state.delete("gone", "x")
    await state.update("s", "u", [{"type": "increment", "path": "n", "by": 5}])
    await state.restart()
    assert await state.get("", "") == {"empty": "scope"}
    assert await state.keys("s") == ["a", "b", "n", "c", "u"]
    assert await state.call("state::list", {"scope": "s"}) == [
        2**64 - 1,
        {"k": "b", "l": []},
        None,
        "again",
        {"n": 5},
    ]
    assert await state.get("gone", "x") is NO_RESULT
    assert await state.groups() == ["", "s"]
    await state.set("s", "z", 1)  # positions keep growing after a restart
    assert (await state.keys("s"))[-1] == "z"


async def test_positions_of_deleted_keys_are_not_reused_after_a_restart(persistent: StateHarness) -> None:
    """§5.7: a cursor taken before a restart still finds the keys created after it, also when the
    keys that held the highest positions were deleted before the restart (a position is never
    reused: a key given one again would be skipped)."""
    state = persistent
    for key in ("a", "b", "c", "z"):
        await state.set("s", key, key)
    page = await state.call("state::list_entries", {"scope": "s", "limit": 3})
    assert [entry["key"] for entry in page["entries"]] == ["a", "b", "c"]
    await state.delete("s", "z")
    await state.delete("s", "c")
    await state.restart()
    await state.set("s", "d", "d")
    await state.restart()  # (a restart with no delete since: the position of `d` is kept)
    await state.set("s", "e", "e")
    rest = await state.call("state::list_entries", {"scope": "s", "cursor": page["next_cursor"]})
    assert [entry["key"] for entry in rest["entries"]] == ["d", "e"]


@pytest_asyncio.fixture
async def client_of() -> AsyncIterator[Callable[..., Any]]:
    """``await client_of(url)``: a pyiii SDK worker over WebSocket that never reconnects."""
    made: list[III] = []

    async def make(url: str) -> III:
        options = InitOptions(worker_name="durability", reconnection_config=ReconnectionConfig(max_retries=0))
        client = await asyncio.to_thread(register_worker, url, options)
        made.append(client)
        return client

    yield make
    for client in made:
        await asyncio.to_thread(client.shutdown)


@pytest_asyncio.fixture
async def processes() -> AsyncIterator[list[EngineProcess]]:
    """Engine subprocesses to kill at the end."""
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        await engine.close()


async def stored_entries(client: III) -> dict[str, Any]:
    """Every entry of scope "d", walking list_entries."""
    out: dict[str, Any] = {}
    cursor = None
    while True:
        page = await client.trigger_async(
            {"function_id": "state::list_entries", "payload": {"scope": "d", "limit": 1000, "cursor": cursor}}
        )
        out.update((entry["key"], entry["value"]) for entry in page["entries"])
        cursor = page.get("next_cursor")
        if cursor is None:
            return out


@pytest.mark.slow
async def test_kill_9_in_the_middle_of_acknowledged_writes(
    tmp_path: Path, processes: list[EngineProcess], client_of: Callable[..., Any]
) -> None:
    """Issue 3, D1: kill -9 while 5,000 state::set calls are in flight; after a restart every
    acknowledged write is there with its value."""
    config = state_config(tmp_path, FILE_BASED)
    engine = await EngineProcess.start(config, tmp_path)
    processes.append(engine)
    client = await client_of(engine.url)
    acknowledged: dict[str, int] = {}
    half = asyncio.Event()
    in_flight = asyncio.Semaphore(200)

    async def write(i: int) -> None:
        async with in_flight:
            key = f"key-{i:05}"
            try:
                result = await client.trigger_async(
                    {"function_id": "state::set", "payload": {"scope": "d", "key": key, "value": {"i": i}}}
                )
            except InvocationError:
                return  # not acknowledged: the engine died first
            assert result["new_value"] == {"i": i}
            acknowledged[key] = i
            if len(acknowledged) >= 2500:
                half.set()

    writers = [asyncio.ensure_future(write(i)) for i in range(5000)]
    await half.wait()
    engine.kill9()
    assert await engine.exit_code() == -9
    await asyncio.to_thread(client.shutdown)
    for writer in writers:
        writer.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    assert 2500 <= len(acknowledged) < 5000

    engine = await EngineProcess.start(config, tmp_path)
    processes.append(engine)
    stored = await stored_entries(await client_of(engine.url))
    missing = [key for key in acknowledged if key not in stored]
    assert missing == []
    assert all(stored[key] == {"i": i} for key, i in acknowledged.items())
    assert all(value == {"i": int(key[4:])} for key, value in stored.items())  # nothing half-written


async def test_kill_9_right_after_a_batch(
    tmp_path: Path, processes: list[EngineProcess], client_of: Callable[..., Any]
) -> None:
    """L126 [R]: kill -9 immediately after 1000 acknowledged concurrent writes: all 1000 are there."""
    config = state_config(tmp_path, FILE_BASED)
    engine = await EngineProcess.start(config, tmp_path)
    processes.append(engine)
    client = await client_of(engine.url)
    await asyncio.gather(
        *(
            client.trigger_async(
                {"function_id": "state::set", "payload": {"scope": "d", "key": f"{i}", "value": i}}
            )
            for i in range(1000)
        )
    )
    engine.kill9()
    await engine.exit_code()
    engine = await EngineProcess.start(config, tmp_path)
    processes.append(engine)
    stored = await stored_entries(await client_of(engine.url))
    assert stored == {f"{i}": i for i in range(1000)}


async def test_graceful_stop_right_after_writes(
    tmp_path: Path, processes: list[EngineProcess], client_of: Callable[..., Any]
) -> None:
    """L127 [R]: SIGTERM immediately after acknowledged writes loses none of them."""
    config = state_config(tmp_path, FILE_BASED)
    engine = await EngineProcess.start(config, tmp_path)
    processes.append(engine)
    client = await client_of(engine.url)
    await asyncio.gather(
        *(
            client.trigger_async({"function_id": "state::update", "payload": {
                "scope": "d", "key": "counter", "ops": [{"type": "increment", "path": "n", "by": 1}]}})
            for _ in range(300)
        )
    )  # fmt: skip
    assert await engine.stop() == 0
    engine = await EngineProcess.start(config, tmp_path)
    processes.append(engine)
    assert await stored_entries(await client_of(engine.url)) == {"counter": {"n": 300}}
    assert (tmp_path / "data" / "state_store.db" / DB_FILE_NAME).is_file()


# ------------------------------------------------------------------------------ file_based startup rules


async def start_file_based(file_path: Path, **adapter: Any) -> EngineServer:
    settings = StateSettings(
        adapter=AdapterSettings(name="kv", store_method="file_based", file_path=str(file_path), **adapter)
    )
    server = EngineServer(make_settings(state=settings))
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    return server


async def test_file_path_resolution(tmp_path: Path) -> None:
    """L131: a missing path becomes a directory holding the database; an existing file is the database."""
    directory = tmp_path / "a" / "b" / "store.db"
    server = await start_file_based(directory)
    await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": 1})
    await server.stop()
    assert (directory / DB_FILE_NAME).is_file()

    single = tmp_path / "single.sqlite3"
    single.write_bytes(b"")  # an existing (empty) regular file
    server = await start_file_based(single)
    await server.engine.invoke("state::set", {"scope": "s", "key": "k", "value": 2})
    await server.stop()
    with sqlite3.connect(single) as conn:
        assert conn.execute("SELECT value FROM state").fetchall() == [("2",)]


async def test_reference_bin_files_are_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """L132: *.bin files in the directory log a warning; they are neither imported nor deleted."""
    directory = tmp_path / "state_store.db"
    directory.mkdir()
    (directory / "users.bin").write_bytes(b"\x00reference data")
    with caplog.at_level(logging.WARNING, logger="pyiii.state"):
        server = await start_file_based(directory)
    try:
        assert await server.engine.invoke("state::list_groups", {}) == {"groups": []}
    finally:
        await server.stop()
    assert any("users.bin" in record.getMessage() for record in caplog.records)
    assert (directory / "users.bin").read_bytes() == b"\x00reference data"


async def test_save_interval_does_not_delay(tmp_path: Path) -> None:
    """L133: save_interval_ms 60000 neither delays replies nor weakens durability."""
    server = await start_file_based(tmp_path / "s", save_interval_ms=60000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(20):
        await server.engine.invoke("state::set", {"scope": "s", "key": f"k{i}", "value": i})
    assert loop.time() - started < 5
    await server.stop()
    adapter = SqliteAdapter(str(tmp_path / "s"))
    await adapter.open()
    assert len(await adapter.list_keys("s")) == 20
    await adapter.close()


async def test_corrupt_database_fails_startup(tmp_path: Path) -> None:
    """L134: a corrupt database fails startup instead of starting empty."""
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not an sqlite database, but it is not empty either" * 100)
    with pytest.raises(StateStartupError) as info:
        await start_file_based(bad)
    assert "cannot open the state database" in str(info.value)
    assert bad.read_bytes().startswith(b"this is not an sqlite database")


async def test_corrupt_database_exits_1(tmp_path: Path, processes: list[EngineProcess]) -> None:
    """§9.2 rule 6: the pyiii process reports an unreadable store and exits 1."""
    (tmp_path / "bad.db").write_bytes(b"garbage" * 1000)
    config = state_config(tmp_path, "{name: kv, config: {store_method: file_based, file_path: ./bad.db}}")
    engine = await EngineProcess.start(config, tmp_path, wait=False)
    processes.append(engine)
    assert await engine.exit_code() == 1
    assert any("cannot open the state database" in line for line in engine.lines), engine.lines


async def test_one_engine_per_database(tmp_path: Path) -> None:
    """§8.3 rule 7: a second engine on the same database fails to start while the first runs."""
    first = await start_file_based(tmp_path / "shared")
    try:
        await first.engine.invoke("state::set", {"scope": "s", "key": "k", "value": 1})
        with pytest.raises(StateStartupError) as info:
            await start_file_based(tmp_path / "shared")
        assert "another pyiii engine" in str(info.value)
    finally:
        await first.stop()
    second = await start_file_based(tmp_path / "shared")
    assert await second.engine.invoke("state::get", {"scope": "s", "key": "k"}) == 1
    await second.stop()


async def test_unwritable_file_path_fails_startup(tmp_path: Path) -> None:
    """§9.2 rule 6: a file_path that cannot be created fails startup."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    module = StateModule(
        StateSettings(
            adapter=AdapterSettings(name="kv", store_method="file_based", file_path=str(blocker / "sub"))
        )
    )
    server = EngineServer(make_settings())
    server.engine.add_module(module)
    with pytest.raises(StateStartupError, match="cannot create directory"):
        await server.start()
    await server.stop()


async def test_a_batch_writes_each_key_once_with_its_last_state(tmp_path: Path) -> None:
    """Writes queued while a commit runs form one batch, which stores only each key's last state
    (§8.3 rule 3): a counter updated ten times is one row with the last value; a key set, deleted and
    set again keeps the new value *and* the new position it got when it was created again; a key set
    then deleted in the batch is not stored. After a reopen, reads and the position order match what
    the store answered before it closed."""
    adapter = SqliteAdapter(str(tmp_path / "s"))
    await adapter.open()
    await adapter.set("s", "k", b'"v0"')
    await adapter.set("c", "n", b"0")

    def plus_one(old: bytes | None) -> bytes:
        return str(int(old or b"0") + 1).encode()

    # The first write starts a commit at once; everything after it queues into one next batch.
    await asyncio.gather(
        adapter.set("s", "first", b"1"),
        adapter.set("s", "k", b'"v1"'),
        adapter.delete("s", "k"),
        adapter.set("s", "other", b"2"),
        adapter.set("s", "k", b'"v2"'),
        *(adapter.update("c", "n", plus_one) for _ in range(10)),
        adapter.set("s", "gone", b"3"),
        adapter.delete("s", "gone"),
    )
    before = await adapter.list_after("s", 0, 100)
    assert [key for key, _, _ in before] == ["first", "other", "k"]  # k moved to the end
    assert await adapter.get("c", "n") == b"10"
    await adapter.close()

    reopened = SqliteAdapter(str(tmp_path / "s"))
    await reopened.open()
    assert await reopened.list_after("s", 0, 100) == before
    assert await reopened.get("s", "k") == b'"v2"'
    assert await reopened.get("s", "gone") is None
    assert await reopened.get("c", "n") == b"10"
    await reopened.close()
    with sqlite3.connect(tmp_path / "s" / DB_FILE_NAME) as db:
        rows = db.execute("SELECT scope, key, pos FROM state ORDER BY scope, pos").fetchall()
    stored = [(scope, key) for scope, key, _ in rows]
    assert stored == [("c", "n"), ("s", "first"), ("s", "other"), ("s", "k")]
    assert [pos for _, _, pos in rows[1:]] == [position for _, _, position in before]


def _size(path: Path) -> int:
    return path.stat().st_size


async def _grows_while_open(adapter: SqliteAdapter, db_file: Path, rows: int) -> int:
    """Write ``rows`` 1 KiB values in batches; the size the database file (not its WAL) reaches
    while the store is still open, once the writes are acknowledged (waiting up to a few seconds
    for a checkpoint that is still running)."""
    value = b'"' + b"x" * 1024 + b'"'
    for start in range(0, rows, 50):
        await asyncio.gather(*(adapter.set("bulk", f"k{i}", value) for i in range(start, start + 50)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    size = _size(db_file)
    while size < rows * 1024 and loop.time() < deadline:
        await asyncio.sleep(0.05)
        size = _size(db_file)
    return size


async def test_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint (inside a commit) is off; a second connection checkpoints the
    WAL while the store runs, so the data reaches the database file itself before any close, and
    another process can read the database meanwhile (no exclusive locking mode)."""
    adapter = SqliteAdapter(str(tmp_path / "s"))
    await adapter.open()
    db_file = tmp_path / "s" / DB_FILE_NAME
    empty = db_file.stat().st_size
    size = await _grows_while_open(adapter, db_file, 2000)
    assert size >= 2000 * 1024 > empty  # the rows are in the database file, not only in the WAL
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as reader:
        assert reader.execute("SELECT count(*) FROM state WHERE scope = 'bulk'").fetchone() == (2000,)
    await adapter.close()
    assert not (tmp_path / "s" / f"{DB_FILE_NAME}-wal").exists() or (
        (tmp_path / "s" / f"{DB_FILE_NAME}-wal").stat().st_size == 0
    )


async def test_writer_checkpoints_when_the_checkpointer_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the checkpointer thread (its connection failed), the writer runs a RESTART
    checkpoint between batches once enough was written: the WAL stays bounded and the store works."""

    def refuse(self: SqliteAdapter) -> None:
        raise sqlite3.OperationalError("no second connection")

    monkeypatch.setattr(SqliteAdapter, "_open_checkpointer", refuse)
    adapter = SqliteAdapter(str(tmp_path / "s"))
    with caplog.at_level(logging.WARNING, logger="pyiii.state"):
        await adapter.open()
    assert "no background checkpoints" in caplog.text
    db_file = tmp_path / "s" / DB_FILE_NAME
    assert await _grows_while_open(adapter, db_file, 2000) >= 2000 * 1024
    assert len(await adapter.list_keys("bulk")) == 2000
    await adapter.close()


def _old_schema_database(path: Path, rows: list[tuple[str, str, int, str]], clock: int) -> None:
    """A database in the schema pyiii wrote before rows were keyed by position."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE state (scope TEXT NOT NULL, key TEXT NOT NULL, pos INTEGER NOT NULL,"
            " value TEXT NOT NULL, PRIMARY KEY (scope, key))"
        )
        db.execute("CREATE INDEX state_by_pos ON state (scope, pos)")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("epoch", "e" * 32), ("clock", str(clock))])
        db.executemany("INSERT INTO state (scope, key, pos, value) VALUES (?, ?, ?, ?)", rows)


async def test_a_database_of_the_earlier_schema_is_converted(tmp_path: Path) -> None:
    """A database written before rows were keyed by position opens with every key, value and list
    position (§8.3 rule 2), keeps its epoch, and takes new writes after the old positions; two rows
    that share a position (a hand-edited file) both survive, the later one keeping it."""
    db_file = tmp_path / "s" / DB_FILE_NAME
    rows = [
        ("todos", "a", 3, '{"n":1}'),
        ("todos", "b", 5, '{"n":2}'),
        ("todo-metrics", "global", 4, '{"total":2}'),
        ("other", "x", 7, '"x"'),
        ("other", "y", 7, '"y"'),  # shares position 7 with x
    ]
    _old_schema_database(db_file, rows, clock=7)
    adapter = SqliteAdapter(str(tmp_path / "s"))
    await adapter.open()
    assert adapter.epoch == "e" * 32
    assert await adapter.list_after("todos", 0, 10) == [("a", b'{"n":1}', 3), ("b", b'{"n":2}', 5)]
    assert await adapter.get("todo-metrics", "global") == b'{"total":2}'
    others = await adapter.list_after("other", 0, 10)
    assert [(key, value) for key, value, _ in others] == [("y", b'"y"'), ("x", b'"x"')]
    assert others[0][2] == 7 and others[1][2] > 7
    await adapter.set("todos", "c", b'{"n":3}')
    await adapter.close()

    reopened = SqliteAdapter(str(tmp_path / "s"))
    await reopened.open()
    listed = await reopened.list_after("todos", 0, 10)
    assert [key for key, _, _ in listed] == ["a", "b", "c"]
    assert listed[2][2] > others[1][2]  # new keys come after every converted position
    assert await reopened.list_after("other", 0, 10) == others
    await reopened.close()
    with sqlite3.connect(db_file) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "state_v1" not in tables and "state_by_pos" not in tables
